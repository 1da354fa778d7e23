"""Bad input, table-driven: every mistake ends in its documented exit code and one clear line.

Each case is a command line with its environment and files; each must exit with the code
DESIGN.md gives (2 for a configuration error, 4 when the database cannot be reached), print
one or two lines on stderr that name what is wrong (and where it came from), and never
"unexpected" or a traceback.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import invoke
from migrate_project import write_project
from myfy_db.errors import MyfyDbError
from schema_support import EXAMPLE, execute, write_module

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
    setup: Callable[[Path], object] | None = None


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

TYPO = "sqlite+aiosqlite:///./typo.db"
READ_ONLY_CASES = [
    Case(
        f"missing-sqlite-{'-'.join(args).replace('--', '')}",
        (*args, "--url", TYPO),
        4,
        ("no such database file: ./typo.db",),
        setup=write_project if args[0] == "migrate" else None,
    )
    for args in (
        ("check-pool",),
        ("migrate", "status"),
        ("migrate", "current"),
        ("migrate", "check", "--metadata", "myfy_db.example:Base"),
        ("drop-tables", "--dry-run", "--all"),
        ("drop-tables", "--dry-run", "--metadata", "myfy_db.example:Base"),
        ("shell", "--read-only", "-c", "1"),
    )
]


def _revision(body: str, name: str = "r1") -> Callable[[Path], object]:
    """A project whose one revision file is ``body``."""

    def setup(root: Path) -> None:
        write_project(root, [])
        (root / "migrations" / "versions" / f"{name}.py").write_text(body)

    return setup


def _without_env_py(root: Path) -> None:
    write_project(root)
    (root / "migrations" / "env.py").unlink()


def _bad_ini(line: str) -> Callable[[Path], object]:
    def setup(root: Path) -> None:
        ini = write_project(root)
        text = ini.read_text()
        ini.write_text(text.replace("[alembic]\n", f"[alembic]\n{line}\n", 1))

    return setup


def _interpolated_location(root: Path) -> None:
    ini = write_project(root)
    lines = [
        "script_location = %(nope)s" if line.startswith("script_location") else line
        for line in ini.read_text().splitlines()
    ]
    ini.write_text("\n".join(lines) + "\n")


SYNTAX_ERROR = 'revision = "r1"\ndown_revision = None\ndef upgrade(:\n    pass\n'
DANGLING = 'revision = "r1"\ndown_revision = "gone"\ndef upgrade():\n    pass\n'
IMPORT_ERROR = 'import no_such_module_here\nrevision = "r1"\ndown_revision = None\n'
EXITS_ON_LOAD = 'import sys\nrevision = "r1"\ndown_revision = None\nsys.exit(0)\n'
SQLITE_FILE = "sqlite+aiosqlite:///./alembic_cases.db"
ALEMBIC_CASES = [
    *(
        Case(
            f"alembic-{name}-{'-'.join(verb) or 'up'}",
            ("migrate", *verb, "--url", SQLITE_FILE),
            2,
            says,
            setup=setup,
        )
        for name, setup, says in (
            ("bad-interpolation", _interpolated_location, ("alembic.ini", "%(nope)s")),
            ("syntax-error", _revision(SYNTAX_ERROR), ("r1.py line 3", "invalid syntax")),
            ("dangling", _revision(DANGLING), ("revision r1", "'gone'")),
            ("no-env-py", _without_env_py, ("no env.py", "env.py not found")),
            ("import-error", _revision(IMPORT_ERROR), ("r1.py line 1", "no_such_module_here")),
            ("exits-on-load", _revision(EXITS_ON_LOAD), ("r1.py line 4", "sys.exit(0)")),
        )
        for verb in ((), ("status",), ("history",))
    ),
    Case(
        "alembic-bad-interpolation-other-option",
        ("migrate", "history"),
        2,
        ("alembic.ini", "%(missing_option)s"),
        setup=_bad_ini("file_template = %(missing_option)s"),
    ),
    Case(
        "alembic-no-ini",
        ("migrate", "status"),
        2,
        ("no Alembic project",),
    ),
]

CASES = [*URL_CASES, *NUMBER_CASES, *SOURCE_CASES, *READ_ONLY_CASES, *ALEMBIC_CASES]


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
    if case.setup is not None:
        case.setup(tmp_path)
    before = _tree(tmp_path)
    result = invoke(*case.args, env=case.env)
    lines = error_lines(result.stderr)
    assert result.exit_code == case.code, result.stderr
    assert 1 <= len(lines) <= 2, result.stderr
    for fragment in case.says:
        assert fragment in result.stderr, result.stderr
    assert "unexpected" not in result.stderr
    assert "Traceback" not in result.stderr
    assert _tree(tmp_path) == before  # a refused command creates nothing


def _tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if "__pycache__" not in p.parts}


def test_an_unknown_name_is_a_warning_once_for_other_commands(
    sqlite_url: str, tmp_path: Path
) -> None:
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


@pytest.mark.parametrize(
    "args",
    [("create-tables", "--metadata", "myfy_db.example:Base"), ("shell", "-c", "1"), ("migrate",)],
)
def test_a_writing_command_still_creates_its_sqlite_file(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    write_project(tmp_path)
    result = invoke(*args, "--url", TYPO)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "typo.db").is_file()


def test_a_revision_that_calls_sys_exit_is_a_failed_revision(tmp_path: Path) -> None:
    _revision(
        'import sys\nrevision = "r1"\ndown_revision = None\n'
        "def upgrade():\n    sys.exit(0)\ndef downgrade():\n    pass\n"
    )(tmp_path)
    result = invoke("migrate", "--url", SQLITE_FILE)
    assert result.exit_code == 1, result.stderr
    first, second = result.stderr.strip().splitlines()
    assert "revision r1" in first
    assert "sys.exit(0)" in first
    assert "stays at revision base" in second
    assert invoke("migrate", "current", "--url", SQLITE_FILE).stdout.count("r1") == 0


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


# -- stdout whose reader went away (`| head -1`): one rule for every command ------------

PIPE_COMMANDS = [
    ("config",),
    ("check-pool", "--samples", "1", "--json"),
    ("profile-pool", "--offline"),
    ("create-tables", "--sql", "--metadata", "myfy_db.example:Base"),
    ("drop-tables", "--dry-run", "--all"),
    ("migrate", "status"),  # exit 5: not at head, with or without a reader
    ("migrate", "--sql"),
    ("shell", "-c", "print('x' * 100)"),
]


def _run_with_stdout(args: tuple[str, ...], cwd: Path, *, reader_gone: bool) -> tuple[int, str]:
    """Run ``python -m myfy_db ARGS`` with stdout a pipe whose reader is gone (or reads)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))}
    env["MYFY_DATA_DATABASE_URL"] = f"sqlite+aiosqlite:///{cwd / 'pipe.db'}"
    read_end, write_end = os.pipe()
    if reader_gone:
        os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "myfy_db", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
        if not reader_gone:
            os.close(read_end)
    return done.returncode, done.stderr


@pytest.mark.parametrize("args", PIPE_COMMANDS, ids=[" ".join(a[:2]) for a in PIPE_COMMANDS])
def test_a_closed_stdout_leaves_the_exit_code_and_says_nothing(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    write_project(tmp_path)
    (tmp_path / "pipe.db").touch()
    expected, _ = _run_with_stdout(args, tmp_path, reader_gone=False)
    code, stderr = _run_with_stdout(args, tmp_path, reader_gone=True)
    assert code == expected, stderr
    assert "Traceback" not in stderr
    assert "unexpected" not in stderr
    assert "Broken pipe" not in stderr
    assert "Error" not in stderr or expected != 0


def test_head_dash_1_on_a_long_output_exits_as_without_it(tmp_path: Path) -> None:
    write_project(tmp_path)
    script = f"{sys.executable} -m myfy_db create-tables --sql --metadata myfy_db.example:Base"
    script += f" --url sqlite+aiosqlite:///{tmp_path / 'h.db'} | head -1; exit ${{PIPESTATUS[0]}}"
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1
    assert "Traceback" not in done.stderr


# -- the shell without standard input --------------------------------------------------


def test_shell_with_stdin_closed_and_no_code_is_exit_2(tmp_path: Path) -> None:
    url = "sqlite+aiosqlite:///:memory:"
    done = subprocess.run(
        ["bash", "-c", f'exec "$0" -m myfy_db shell --url {url} <&-', sys.executable],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1:] == [
        "Error: no terminal: use -c CODE or run it in a terminal"
    ]
    assert "Traceback" not in done.stderr


def test_shell_reads_code_piped_to_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "myfy_db", "shell", "--url", "sqlite+aiosqlite:///:memory:"],
        input="print(6 * 7)\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "42" in done.stdout


# -- server errors keep the server's words: class and code, DETAIL and HINT -------------


def test_a_postgresql_failure_keeps_its_sqlstate_detail_and_hint(postgres_url: str) -> None:
    assert invoke("create-tables", "--url", postgres_url, "--metadata", EXAMPLE).exit_code == 0
    execute(postgres_url, "CREATE VIEW user_names AS SELECT name FROM users")
    result = invoke("drop-tables", "--url", postgres_url, "--metadata", EXAMPLE, "--yes")
    assert result.exit_code == 1
    first, second = result.stderr.strip().splitlines()
    assert "dependent objects still exist (2BP01)" in first
    assert "cannot drop table users because other objects depend on it" in first
    assert "DETAIL: view user_names depends on table users" in second
    assert "HINT: Use DROP ... CASCADE" in second
    assert "nothing was dropped" in second


def test_a_postgresql_error_is_named_by_its_sqlstate_class(
    postgres_url: str, tmp_path: Path
) -> None:
    write_module(tmp_path, "elsewhere_models", NOWHERE_SCHEMA)
    result = invoke("create-tables", "--url", postgres_url, "--metadata", "elsewhere_models:md")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "invalid schema name (3F000)" in lines[0]
    assert 'schema "nowhere" does not exist' in lines[0]


def test_a_mysql_failure_keeps_its_code_and_message(mysql_url: str, tmp_path: Path) -> None:
    write_module(tmp_path, "long_models", LONG_NAME)
    result = invoke("create-tables", "--url", mysql_url, "--metadata", "long_models:md")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "MySQL error 1103" in lines[0]
    assert "Incorrect table name" in lines[0]


NOWHERE_SCHEMA = """
from sqlalchemy import Column, Integer, MetaData, Table
md = MetaData()
Table("t", md, Column("id", Integer, primary_key=True), schema="nowhere")
"""
LONG_NAME = f"""
from sqlalchemy import Column, Integer, MetaData, Table
md = MetaData()
Table("{"t" * 70}", md, Column("id", Integer, primary_key=True))
"""


# -- every number, now and later: derived from the command tree and the settings model --


def _float_flags() -> list[tuple[tuple[str, ...], str]]:
    import typer.main

    from myfy_db.cli.application import app

    found: list[tuple[tuple[str, ...], str]] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        for param in getattr(command, "params", []):
            annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
            if isinstance(annotation, type) and issubclass(annotation, float):
                found.append((path, param.opts[0]))
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return found


FLOAT_FLAGS = _float_flags()


@pytest.mark.parametrize(
    ("path", "flag"), FLOAT_FLAGS, ids=[f"{' '.join(p)} {f}" for p, f in FLOAT_FLAGS]
)
@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_every_number_flag_refuses_a_non_finite_value(
    path: tuple[str, ...], flag: str, value: str
) -> None:
    result = invoke(*path, flag, value)
    assert result.exit_code == 2, result.stderr
    assert flag in result.stderr
    assert "finite" in result.stderr or "greater than" in result.stderr


def test_every_number_setting_refuses_a_non_finite_value() -> None:
    from myfy_db.settings import DatabaseSettings, InvalidSettings, env_var, load_settings

    numbers = [
        name
        for name, info in DatabaseSettings.model_fields.items()
        if info.annotation in (float, int)
    ]
    assert {"pool_timeout", "connect_timeout", "pool_size"} <= set(numbers)
    for name in numbers:
        for value in ("inf", "nan", "-inf", "1e999"):
            with pytest.raises(InvalidSettings) as raised:
                load_settings({name: value})
            assert name in str(raised.value)
            assert env_var(name)  # the name a user would set it by exists


def test_a_failed_migration_names_the_server_error_and_keeps_its_detail(
    postgres_url: str, tmp_path: Path
) -> None:
    _revision(
        'from alembic import op\nrevision = "r1"\ndown_revision = None\n'
        "def upgrade():\n"
        '    op.execute("CREATE TABLE a (id int primary key)")\n'
        '    op.execute("CREATE TABLE b (a_id int references a(id))")\n'
        '    op.execute("INSERT INTO b VALUES (7)")\n'
        "def downgrade():\n    pass\n"
    )(tmp_path)
    result = invoke("migrate", "--url", postgres_url)
    assert result.exit_code == 1, result.stderr
    first, second = result.stderr.strip().splitlines()
    assert "revision r1" in first
    assert "foreign key violation (23503)" in first
    assert "DETAIL: Key (a_id)=(7) is not present in table" in second
    assert "stays at revision base" in second
