"""Bad input, table-driven: every mistake ends in its documented exit code and one clear line.

Each case is a command line with its environment and files; each must exit with the code
DESIGN.md gives (2 for a configuration error, 4 when the database cannot be reached), print
one or two lines on stderr that name what is wrong (and where it came from), and never
"unexpected" or a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import invoke
from myfy_db.errors import MyfyDbError

PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
T = TypeVar("T")
MY = "mysql+aiomysql://root@127.0.0.1:3306/test"


@dataclass(frozen=True)
class Case:
    """One bad input: the command line, its environment and files, and what must come out."""

    id: str
    args: tuple[str, ...]
    code: int
    says: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


def url_case(
    id: str, url: str, *says: str, command: tuple[str, ...] = ("check-pool",)
) -> list[Case]:
    """The same bad URL from a flag, the environment, .env and pyproject.toml."""
    return [
        Case(f"{id}-flag", (*command, "--url", url), 2, (*says, "command-line flag")),
        Case(
            f"{id}-env",
            command,
            2,
            (*says, "environment variable MYFY_DATA_DATABASE_URL"),
            env={"MYFY_DATA_DATABASE_URL": url},
        ),
        Case(
            f"{id}-dotenv",
            command,
            2,
            (*says, "env file .env"),
            files={".env": f"MYFY_DATA_DATABASE_URL={url}\n"},
        ),
        Case(
            f"{id}-pyproject",
            command,
            2,
            (*says, "pyproject.toml"),
            files={"pyproject.toml": f'[tool.myfy-db]\ndatabase_url = "{url}"\n'},
        ),
    ]


URL_CASES = [
    *url_case(
        "port-not-a-number",
        "postgresql+asyncpg://u@127.0.0.1:notaport/db",
        "port 'notaport' is not a number",
    ),
    *url_case(
        "port-out-of-range",
        "postgresql+asyncpg://u@127.0.0.1:99999/db",
        "port 99999 is out of range",
    ),
    *url_case("unclosed-ipv6", "postgresql+asyncpg://u@[::1:5432/db", "unclosed '['"),
    *url_case("nul-in-path", "postgresql+asyncpg://u@127.0.0.1:5432/d%00b", "NUL character"),
    Case(
        "bare-query", ("check-pool", "--url", f"{PG}?foo=bar"), 2, ("unknown URL parameter 'foo'",)
    ),
    Case("sslmode-query", ("check-pool", "--url", f"{PG}?sslmode=require"), 2, ("ssl=MODE",)),
    Case("ssl-bogus", ("check-pool", "--url", f"{PG}?ssl=bogus"), 2, ("ssl='bogus'",)),
    Case(
        "pg-cache-size-text",
        ("check-pool", "--url", f"{PG}?prepared_statement_cache_size=x"),
        2,
        ("whole number",),
    ),
    Case(
        "pg-command-timeout-inf",
        ("check-pool", "--url", f"{PG}?command_timeout=inf"),
        2,
        ("finite",),
    ),
    Case("mysql-charset", ("check-pool", "--url", f"{MY}?charset=bogus"), 2, ("charset='bogus'",)),
    Case(
        "mysql-unknown-param",
        ("check-pool", "--url", f"{MY}?compress=1"),
        2,
        ("unknown URL parameter 'compress'",),
    ),
    Case(
        "mysql-port-zero",
        ("check-pool", "--url", "mysql+aiomysql://root@127.0.0.1:0/test"),
        2,
        ("port 0 is out of range",),
    ),
    Case(
        "sqlite-with-host",
        ("check-pool", "--url", "sqlite+aiosqlite://./x.db"),
        2,
        ("SQLite URL has no host",),
    ),
    Case(
        "sqlite-unknown-param",
        ("check-pool", "--url", "sqlite+aiosqlite:///x.db?foo=bar"),
        2,
        ("unknown URL parameter 'foo'",),
    ),
    Case(
        "sqlite-timeout-text",
        ("check-pool", "--url", "sqlite+aiosqlite:///x.db?timeout=soon"),
        2,
        ("timeout='soon'",),
    ),
    Case(
        "sqlite-detect-types",
        ("check-pool", "--url", "sqlite+aiosqlite:///x.db?detect_types=x"),
        2,
        ("whole number",),
    ),
    Case(
        "sqlite-nul",
        ("check-pool", "--url", "sqlite+aiosqlite:///./x%00y.db"),
        2,
        ("NUL character",),
    ),
    Case(
        "sqlite-uri-mode",
        ("check-pool", "--url", "sqlite+aiosqlite:///x.db?uri=true&mode=bogus"),
        2,
        ("mode='bogus'",),
    ),
    Case("malformed-query", ("check-pool", "--url", f"{PG}?ssl"), 2, ("malformed query",)),
    Case(
        "control-char",
        ("check-pool", "--url", "postgresql+asyncpg://u@h/d\tb"),
        2,
        ("control character",),
    ),
    Case(
        "sync-postgres",
        ("check-pool", "--url", "postgresql://u@h/db"),
        2,
        ("postgresql+asyncpg://",),
    ),
    Case(
        "sync-psycopg2",
        ("check-pool", "--url", "postgresql+psycopg2://u@h/db"),
        2,
        ("postgresql+asyncpg://",),
    ),
    Case(
        "sync-pymysql", ("check-pool", "--url", "mysql+pymysql://u@h/db"), 2, ("mysql+aiomysql://",)
    ),
    Case("sync-sqlite", ("check-pool", "--url", "sqlite:///x.db"), 2, ("sqlite+aiosqlite://",)),
    Case(
        "unknown-dialect",
        ("check-pool", "--url", "oracle+oracledb://u@h/db"),
        2,
        ("unknown database driver",),
    ),
    Case("not-a-url", ("check-pool", "--url", "localhost:5432"), 2, ("not a database URL",)),
    Case(
        "bad-replica",
        ("check-pool",),
        2,
        ("replica_urls", "port 'x'"),
        env={"MYFY_DATA_REPLICA_URLS": "postgresql+asyncpg://u@h:x/db"},
    ),
    Case(
        "config-bad-url",
        ("config", "--url", "postgresql+asyncpg://u@h:99999/db"),
        2,
        ("port 99999",),
    ),
    Case(
        "shell-bad-url",
        ("shell", "-c", "1", "--url", "postgresql+asyncpg://u@h:99999/db"),
        2,
        ("port 99999",),
    ),
    Case(
        "migrate-bad-url",
        ("migrate", "status", "--url", "postgresql+asyncpg://u@h:99999/db"),
        2,
        ("port 99999",),
    ),
    Case(
        "create-tables-bad-url",
        ("create-tables", "--url", f"{PG}?foo=bar"),
        2,
        ("unknown URL parameter",),
    ),
]

NUMBER_CASES = [
    *(
        Case(
            f"setting-{name}-{value}",
            ("check-pool",),
            2,
            (name, "finite"),
            env={f"MYFY_DATA_{name.upper()}": value},
        )
        for name in ("connect_timeout", "pool_timeout")
        for value in ("inf", "nan", "-inf")
    ),
    Case(
        "setting-connect-timeout-zero",
        ("check-pool",),
        2,
        ("connect_timeout",),
        env={"MYFY_DATA_CONNECT_TIMEOUT": "0"},
    ),
    Case(
        "setting-pool-timeout-negative",
        ("config",),
        2,
        ("pool_timeout",),
        env={"MYFY_DATA_POOL_TIMEOUT": "-1"},
    ),
    Case(
        "setting-pool-size-zero",
        ("check-pool",),
        2,
        ("pool_size",),
        env={"MYFY_DATA_POOL_SIZE": "0"},
    ),
    Case(
        "setting-pool-size-float",
        ("check-pool",),
        2,
        ("pool_size",),
        env={"MYFY_DATA_POOL_SIZE": "1.5"},
    ),
    Case(
        "setting-max-overflow-negative",
        ("check-pool",),
        2,
        ("max_overflow",),
        env={"MYFY_DATA_MAX_OVERFLOW": "-1"},
    ),
    Case(
        "setting-recycle-inf",
        ("check-pool",),
        2,
        ("pool_recycle",),
        env={"MYFY_DATA_POOL_RECYCLE": "inf"},
    ),
    Case(
        "setting-timeout-in-dotenv",
        ("check-pool",),
        2,
        ("connect_timeout", "env file .env"),
        files={".env": "MYFY_DATA_CONNECT_TIMEOUT=nan\n"},
    ),
    Case(
        "setting-timeout-in-pyproject",
        ("check-pool",),
        2,
        ("pool_timeout", "pyproject.toml"),
        files={"pyproject.toml": '[tool.myfy-db]\npool_timeout = "inf"\n'},
    ),
    Case(
        "rps-inf",
        ("profile-pool", "--offline", "--rps", "inf", "--query-ms", "5"),
        2,
        ("--rps", "finite"),
    ),
    Case(
        "rps-nan",
        ("profile-pool", "--offline", "--rps", "nan", "--query-ms", "5"),
        2,
        ("--rps", "finite"),
    ),
    Case(
        "rps-zero",
        ("profile-pool", "--offline", "--rps", "0", "--query-ms", "5"),
        2,
        ("--rps", "greater than 0"),
    ),
    Case(
        "rps-huge",
        ("profile-pool", "--offline", "--rps", "1e308", "--query-ms", "5"),
        2,
        ("--rps",),
    ),
    Case(
        "query-ms-nan",
        ("profile-pool", "--offline", "--rps", "10", "--query-ms", "nan"),
        2,
        ("--query-ms", "finite"),
    ),
    Case(
        "query-ms-negative",
        ("profile-pool", "--offline", "--rps", "10", "--query-ms", "-1"),
        2,
        ("--query-ms",),
    ),
    Case(
        "query-ms-huge",
        ("profile-pool", "--offline", "--rps", "10", "--query-ms", "1e308"),
        2,
        ("--query-ms",),
    ),
    Case(
        "duration-inf", ("profile-pool", "--load", "--duration", "inf"), 2, ("--duration", "finite")
    ),
    Case(
        "profile-pool-timeout-nan",
        ("profile-pool", "--offline", "--pool-timeout", "nan"),
        2,
        ("--pool-timeout", "finite"),
    ),
    Case("check-pool-timeout-inf", ("check-pool", "--timeout", "inf"), 2, ("--timeout", "finite")),
    Case("check-pool-timeout-nan", ("check-pool", "--timeout", "nan"), 2, ("--timeout", "finite")),
    Case("check-pool-timeout-zero", ("check-pool", "--timeout", "0"), 2, ("--timeout",)),
    Case(
        "max-latency-nan",
        ("check-pool", "--max-latency-ms", "nan"),
        2,
        ("--max-latency-ms", "finite"),
    ),
    Case(
        "max-latency-inf",
        ("check-pool", "--max-latency-ms", "inf"),
        2,
        ("--max-latency-ms", "finite"),
    ),
    Case("lock-timeout-inf", ("migrate", "--lock-timeout", "inf"), 2, ("--lock-timeout", "finite")),
    Case(
        "lock-timeout-nan", ("migrate", "--lock-timeout", "-nan"), 2, ("--lock-timeout", "finite")
    ),
    Case("samples-zero", ("check-pool", "--samples", "0"), 2, ("--samples",)),
]

UNPARSABLE_ENV = "A=1\nMYFY_DATA_ENVIRONMENT='production\nB=2\n"
SOURCE_CASES = [
    *(
        Case(
            f"unparsable-dotenv-{'-'.join(args[:2])}",
            args,
            2,
            ("cannot parse env file .env line 2", "MYFY_DATA_ENVIRONMENT"),
            files={".env": UNPARSABLE_ENV},
        )
        for args in (
            ("config",),
            ("check-pool",),
            ("profile-pool", "--offline"),
            ("create-tables", "--sql"),
            ("drop-tables", "--dry-run"),
            ("migrate", "status"),
            ("shell", "-c", "1"),
        )
    ),
    Case(
        "unparsable-env-file-flag",
        ("config", "--env-file", "prod.env"),
        2,
        ("cannot parse env file prod.env line 1",),
        files={"prod.env": 'MYFY_DATA_DATABASE_URL="postgresql+asyncpg://u:pw@h/db\n'},
    ),
    Case(
        "unknown-name-env",
        ("config",),
        2,
        ("MYFY_DATA_POOL_SIZ", "did you mean MYFY_DATA_POOL_SIZE?"),
        env={"MYFY_DATA_POOL_SIZ": "3"},
    ),
    Case(
        "unknown-name-dotenv",
        ("config",),
        2,
        ("MYFY_DATA_ENVIROMENT", "env file .env", "did you mean MYFY_DATA_ENVIRONMENT?"),
        files={".env": "MYFY_DATA_ENVIROMENT=production\n"},
    ),
    Case(
        "unknown-name-protected-typo",
        ("config",),
        2,
        ("did you mean MYFY_DATA_PROTECTED_ENVIRONMENTS?",),
        env={"MYFY_DATA_PROTECTED_ENVIRONMENT": "staging"},
    ),
    Case(
        "config-metadata-flag",
        ("config", "--metadata", "models:Nope"),
        2,
        ("metadata", "models:Nope", "command-line flag"),
    ),
    Case(
        "config-metadata-setting",
        ("config",),
        2,
        ("metadata", "nosuchmodule", "environment variable MYFY_DATA_METADATA"),
        env={"MYFY_DATA_METADATA": "nosuchmodule:Base"},
    ),
    Case(
        "config-metadata-missing-attr",
        ("config",),
        2,
        ("metadata", "Nope"),
        files={"bad_models_a.py": "X = 1\n"},
        env={"MYFY_DATA_METADATA": "bad_models_a:Nope"},
    ),
    Case(
        "config-metadata-not-metadata",
        ("config",),
        2,
        ("metadata", "bad_models_b:X"),
        files={"bad_models_b.py": "X = 1\n"},
        env={"MYFY_DATA_METADATA": "bad_models_b:X"},
    ),
    Case(
        "config-metadata-pyproject",
        ("config", "--json"),
        2,
        ("configuration is invalid",),
        files={"pyproject.toml": '[tool.myfy-db]\nmetadata = "nosuchmodule:Base"\n'},
    ),
    Case(
        "pyproject-not-toml",
        ("config",),
        2,
        ("pyproject.toml",),
        files={"pyproject.toml": "[tool.myfy-db\n"},
    ),
]

CASES = [*URL_CASES, *NUMBER_CASES, *SOURCE_CASES]


def error_lines(stderr: str) -> list[str]:
    """The lines of stderr that say something (a usage error's standard 'Usage:' and 'Try'
    lines, which only point at --help, are not counted)."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith(("Usage: ", "Try '"))
    ]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line_and_its_exit_code(case: Case, tmp_path: Path) -> None:
    for name, text in case.files.items():
        (tmp_path / name).write_text(text)
    result = invoke(*case.args, env=case.env)
    lines = error_lines(result.stderr)
    assert result.exit_code == case.code, result.stderr
    assert 1 <= len(lines) <= 2, result.stderr
    for fragment in case.says:
        assert fragment in result.stderr, result.stderr
    assert "unexpected" not in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.db").exists()
    assert not (tmp_path / "myfy.db").exists()


def test_an_unknown_name_is_a_warning_once_for_other_commands(sqlite_url: str) -> None:
    result = invoke(
        "check-pool", "--url", sqlite_url, "--samples", "1", env={"MYFY_DATA_POOL_SIZ": "3"}
    )
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "MYFY_DATA_POOL_SIZ" in line]
    assert warnings == [
        "warning: unknown setting MYFY_DATA_POOL_SIZ (from environment variable); "
        "did you mean MYFY_DATA_POOL_SIZE?"
    ]


def test_every_setting_of_the_model_is_a_known_name() -> None:
    from myfy_db.settings import FIELDS, DatabaseSettings

    env = {f"MYFY_DATA_{name.upper()}": "" for name in DatabaseSettings.model_fields}
    assert len(env) == len(FIELDS)
    result = invoke("config", "--json", env={k: v for k, v in env.items() if k.endswith("ECHO")})
    assert result.exit_code == 2  # an empty bool is invalid, but it is no unknown name
    assert "unknown setting" not in result.stdout


def test_a_valid_config_with_importable_metadata_is_still_valid(tmp_path: Path) -> None:
    (tmp_path / "good_models.py").write_text(
        "from sqlalchemy import MetaData\nmetadata = MetaData()\n"
    )
    result = invoke("config", "--metadata", "good_models:metadata")
    assert result.exit_code == 0, result.stderr


def test_the_table_holds_at_least_sixty_cases() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


# -- property: whatever a URL or a setting says, only documented errors come out --------

_url_text = st.text(alphabet=st.sampled_from(list("abcxyz0129:/@?&=%[]#.+-_ \t\x00é")), max_size=40)
_schemes = st.sampled_from(
    [
        "sqlite+aiosqlite",
        "postgresql+asyncpg",
        "mysql+aiomysql",
        "mariadb+aiomysql",
        "postgresql",
        "mysql+pymysql",
        "oracle",
        "",
    ]
)
_urls = st.one_of(
    st.builds(lambda s, rest: f"{s}://{rest}", _schemes, _url_text),
    st.builds(
        lambda s, host, port, db, query: f"{s}://u:pw@{host}:{port}/{db}?{query}",
        _schemes,
        st.sampled_from(["127.0.0.1", "[::1]", "[::1", "h", ""]),
        st.one_of(st.integers(-5, 70000).map(str), _url_text),
        _url_text,
        st.lists(
            st.tuples(
                st.sampled_from(["ssl", "charset", "timeout", "uri", "mode", "foo", "host"]),
                _url_text,
            ),
            max_size=3,
        ).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)),
    ),
)
_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["inf", "-inf", "nan", "NaN", "1e999", "", " ", "0x10", "1_000", "true"]),
)
_values = st.fixed_dictionaries(
    {},
    optional={
        "MYFY_DATA_POOL_SIZE": _numbers,
        "MYFY_DATA_MAX_OVERFLOW": _numbers,
        "MYFY_DATA_POOL_TIMEOUT": _numbers,
        "MYFY_DATA_POOL_RECYCLE": _numbers,
        "MYFY_DATA_CONNECT_TIMEOUT": _numbers,
        "MYFY_DATA_POOL_PRE_PING": st.sampled_from(["true", "maybe", "", "1", "2"]),
        "MYFY_DATA_ENVIRONMENT": _url_text,
        "MYFY_DATA_METADATA": _url_text,
        "MYFY_DATA_REPLICA_URLS": _urls,
    },
)


def _attempt(function: Callable[..., T], *args: object) -> tuple[T | None, MyfyDbError | None]:
    """``function(*args)`` and None, or None and the documented error it raised."""
    try:
        return function(*args), None
    except MyfyDbError as error:
        return None, error


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(url=_urls, values=_values)
def test_any_url_and_settings_give_an_engine_or_a_documented_error(
    url: str, values: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from myfy_db.engine import create_engine
    from myfy_db.settings import load_settings

    for name, value in values.items():
        if "\x00" in value:
            continue  # the environment itself cannot hold a NUL byte
        monkeypatch.setenv(name, value)
    try:
        loaded, error = _attempt(load_settings, {"database_url": url})
        if error is not None:
            assert int(error.exit_code) == 2
            assert str(error).strip()
            return
        assert loaded is not None
        settings_ = loaded.settings
        assert math.isfinite(settings_.connect_timeout)
        assert settings_.connect_timeout > 0
        assert math.isfinite(settings_.pool_timeout)
        assert settings_.pool_timeout > 0
        for target in [settings_.database_url, *settings_.replica_urls]:
            engine, error = _attempt(create_engine, settings_, target)
            if error is not None:
                assert int(error.exit_code) == 2
            else:
                assert engine is not None
                engine.sync_engine.dispose()
    finally:
        for name in values:
            monkeypatch.delenv(name, raising=False)
