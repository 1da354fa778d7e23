"""Passwords with URL-special characters are masked wherever myfy-db prints, and ``--url``
with a password warns.

Masking uses SQLAlchemy's own parser, so whatever password SQLAlchemy would connect with
(``/ ? # @ : %`` or a space in it, raw or URL-encoded) is what disappears from text output,
``--json``, error messages and ``--traceback``. A hypothesis property test tries passwords
from the whole printable range in every URL form SQLAlchemy accepts.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from helpers import free_port, invoke, run_process
from myfy_db.urls import mask_url, redact

SPECIALS = ["/", "?", "#", "@", ":", "%", " "]


def _password(special: str) -> str:
    return f"Pw{special}Canary{special}x9Q"


def _raw_url(password: str, host: str = "127.0.0.1", port: int = 5432) -> str:
    return f"postgresql+asyncpg://app:{password}@{host}:{port}/appdb"


def _encoded_url(password: str, host: str = "127.0.0.1", port: int = 5432) -> str:
    url = URL.create(
        "postgresql+asyncpg", username="app", password=password, host=host, port=port
    ).set(database="appdb")
    return str(url.render_as_string(hide_password=False))


def _leaks(text: str, password: str) -> list[str]:
    """The forms of ``password`` found in ``text`` (raw, encoded, JSON-escaped)."""
    forms = {password, quote(password, safe=""), json.dumps(password)[1:-1]}
    if "@" in password:  # what SQLAlchemy takes for the host when the "@" is raw
        forms.add(password.split("@", 1)[1])
    return sorted(f for f in forms if len(f) >= 3 and f in text)


def _forms() -> list[tuple[str, str, str]]:
    cases = []
    for special in SPECIALS:
        password = _password(special)
        cases.append((f"raw {special!r}", password, _raw_url(password)))
        cases.append((f"encoded {special!r}", password, _encoded_url(password)))
    return cases


FORMS = _forms()
IDS = [label for label, _, _ in FORMS]


@pytest.mark.parametrize(("label", "password", "url"), FORMS, ids=IDS)
def test_config_masks_every_special_character_text_and_json(
    label: str, password: str, url: str
) -> None:
    for extra in ([], ["--json"]):
        result = invoke("config", "--url", url, *extra)
        assert result.exit_code == 0, result.stderr
        assert not _leaks(result.stdout + result.stderr, password), (label, result.stdout)
        if extra:
            shown = json.loads(result.stdout)["settings"]["database_url"]["value"]
            assert "***" in shown


@pytest.mark.parametrize(("label", "password", "url"), FORMS, ids=IDS)
def test_replica_urls_are_masked_too(label: str, password: str, url: str) -> None:
    env = {"MYFY_DATA_REPLICA_URLS": url}
    result = invoke("config", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    assert not _leaks(result.stdout + result.stderr, password), label


@pytest.mark.parametrize("special", SPECIALS)
def test_unreachable_server_errors_never_show_the_password(special: str) -> None:
    password = _password(special)
    port = free_port()
    for url in (_raw_url(password, port=port), _encoded_url(password, port=port)):
        for args in (["check-pool", "--json"], ["check-pool"], ["--traceback", "check-pool"]):
            head, cmd = (args[:1], args[1:]) if args[0] == "--traceback" else ([], args)
            result = invoke(*head, *cmd, "--url", url)
            assert result.exit_code == 4, result.stderr
            assert not _leaks(result.stdout + result.stderr, password), result.stderr


def test_cannot_resolve_host_error_hides_what_a_raw_at_sign_left_of_the_password() -> None:
    password = "Pw@Canary@resolve9"
    url = f"postgresql+asyncpg://app:{password}@127.0.0.1:5432/appdb"
    result = run_process("check-pool", "--url", url, timeout=60)
    assert result.returncode == 4, result.stderr
    assert "cannot resolve host" in result.stderr
    assert not _leaks(result.stdout + result.stderr, password), result.stderr


def test_traceback_output_is_redacted_like_every_other_output(tmp_path: Path) -> None:
    password = "Trace/Canary?7#x"
    (tmp_path / "boom.py").write_text(
        "import os\nraise RuntimeError('import boom with ' + os.environ['LEAK'])\n"
    )
    env = {"MYFY_DATA_DATABASE_URL": _encoded_url(password), "LEAK": password}
    result = run_process(
        "--traceback", "create-tables", "--metadata", "boom:Base", env=env, cwd=str(tmp_path)
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" in result.stderr
    assert "import boom with ***" in result.stderr
    assert not _leaks(result.stdout + result.stderr, password), result.stderr


def test_a_password_in_url_warns_once_naming_the_safer_ways() -> None:
    result = invoke("config", "--url", _encoded_url("Warn-Canary-1"))
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    assert "MYFY_DATA_DATABASE_URL" in warnings[0]
    assert "--env-file" in warnings[0]
    assert "Warn-Canary-1" not in result.stderr


@pytest.mark.parametrize(
    ("how", "url"),
    [
        ("no password", "postgresql+asyncpg://app@127.0.0.1:5432/appdb"),
        ("sqlite", "sqlite+aiosqlite:///./x.db"),
    ],
)
def test_no_warning_without_a_password_in_url(how: str, url: str) -> None:
    result = invoke("config", "--url", url)
    assert "process list" not in result.stderr, how


def test_no_warning_when_the_password_comes_from_the_environment() -> None:
    env = {"MYFY_DATA_DATABASE_URL": _encoded_url("Env-Canary-1")}
    result = invoke("config", env=env)
    assert result.exit_code == 0
    assert "process list" not in result.stderr


# --- the property: any printable password, any URL form SQLAlchemy accepts ---------------

PRINTABLE = st.text(
    alphabet=st.sampled_from(string.printable.strip() + " "), min_size=8, max_size=24
)


def _url_forms(password: str) -> list[str]:
    """Every form of a URL SQLAlchemy reads ``password`` from (as it connects with it)."""
    forms = [_encoded_url(password)]
    raw = _raw_url(password)
    try:
        accepted = make_url(raw).password == password
    except (ValueError, ArgumentError):  # SQLAlchemy refuses this raw form
        accepted = False
    if accepted:  # the raw form counts when SQLAlchemy reads the password from it whole
        forms.append(raw)
    query = "postgresql+asyncpg://app@127.0.0.1:5432/appdb?password=" + quote(password, safe="")
    forms.append(query)
    return forms


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(password=PRINTABLE)
def test_no_printable_password_survives_any_output(password: str) -> None:
    assume(len(set(password.strip())) >= 5)
    port = free_port()
    for url in _url_forms(password):
        assert not _leaks(mask_url(url), password), url
        assert not _leaks(redact(f"failed on {url}"), password)
        result = invoke("config", "--json", "--url", url)
        assert not _leaks(result.stdout + result.stderr, password), (url, result.stdout)
    # A command that connects and fails, with the traceback shown, once per password.
    bad = _url_forms(password)[0].replace(":5432/", f":{port}/")
    result = invoke("--traceback", "check-pool", "--json", "--url", bad)
    assert result.exit_code == 4, result.stderr
    assert not _leaks(result.stdout + result.stderr, password), result.stderr


def test_pool_reports_mask_primary_and_replica_passwords(postgres_url: str) -> None:
    """PostgreSQL (trust auth) connects whatever the password: the reports run in full."""
    u = make_url(postgres_url)
    primary_pw = "Pr/?#: %Canary-1"
    replica_pw = "Re/?#@: %Canary-2"
    primary = f"postgresql+asyncpg://postgres:{primary_pw}@{u.host}:{u.port}/{u.database}"
    replica = str(
        u.set(username="postgres", password=replica_pw).render_as_string(hide_password=False)
    )
    env = {"MYFY_DATA_DATABASE_URL": primary, "MYFY_DATA_REPLICA_URLS": replica}
    for args in (
        ["check-pool", "--samples", "2"],
        ["check-pool", "--samples", "2", "--json"],
        ["profile-pool", "--workers", "2"],
        ["profile-pool", "--workers", "2", "--json"],
        ["--traceback", "check-pool", "--samples", "2", "--replica", replica],
    ):
        result = invoke(*args, env=env)
        assert result.exit_code != 4, (args, result.stderr)
        out = result.stdout + result.stderr
        assert not _leaks(out, primary_pw), (args, out)
        assert not _leaks(out, replica_pw), (args, out)
