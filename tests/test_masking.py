"""Passwords stay hidden in URLs SQLAlchemy cannot parse, in replica lists, and whatever
their length; ``--replica`` with a password warns like ``--url``.

The rule: text that looks like a URL with credentials has everything between the scheme
(or what looks like one) and the last ``@`` masked as one field, whether or not it parses;
a settings error never echoes a URL-valued setting's value.
"""

from __future__ import annotations

import json
import string
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import CANARY, free_port, invoke
from myfy_db.urls import DatabaseUrl, mask_text, mask_url, redact, split_url_list

PG = "postgresql+asyncpg"
#: A second marker, short and after the password's specials: what a raw "@" or "," leaves.
TAIL = "Tq7Zk"


def _config(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """``myfy-db config`` in text and in ``--json``: the exit code and both outputs."""
    text = invoke("config", *args, env=env)
    as_json = invoke("config", "--json", *args, env=env)
    assert text.exit_code == as_json.exit_code, (text.stderr, as_json.stderr)
    json.loads(as_json.stdout)  # exactly one JSON document, valid or not
    return text.exit_code, text.stdout + text.stderr, as_json.stdout + as_json.stderr


def _forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}


def _assert_hidden(output: str, *secrets: str) -> None:
    for secret in secrets:
        for form in _forms(secret):
            assert form not in output, (form, output)


# --- 1. unparseable URLs are masked by their text, in text and --json ---------------------

UNPARSEABLE = [
    ("quoted", f'"{PG}://u:{CANARY}@h/db"'),
    ("single-quoted", f"'{PG}://u:{CANARY}@h/db'"),
    ("no-colon", f"{PG}//u:{CANARY}@h/db"),
    ("space-before-colon", f"{PG} ://u:{CANARY}@h/db"),
    ("no-scheme", f"u:{CANARY}@h/db"),
]


@pytest.mark.parametrize(("label", "value"), UNPARSEABLE, ids=[c[0] for c in UNPARSEABLE])
def test_an_unparseable_database_url_is_masked_in_the_settings_error(
    label: str, value: str
) -> None:
    code, text, as_json = _config({"MYFY_DATA_DATABASE_URL": value})
    assert code == 2, text
    assert "invalid setting database_url" in text
    _assert_hidden(text + as_json, CANARY)
    document = json.loads(invoke("config", "--json", env={"MYFY_DATA_DATABASE_URL": value}).stdout)
    assert document["errors"][0]["value"] is None, label  # a URL-valued setting: never echoed


def test_a_quoted_url_is_named_as_quoted() -> None:
    code, text, _ = _config({"MYFY_DATA_DATABASE_URL": f'"{PG}://u:{CANARY}@h/db"'})
    assert code == 2
    assert "remove the quotes" in text


@pytest.mark.parametrize("value", [v for _, v in UNPARSEABLE])
def test_mask_url_masks_what_sqlalchemy_cannot_parse(value: str) -> None:
    masked = mask_url(value)
    assert CANARY not in masked
    assert "***@h/db" in masked


def test_a_replica_list_in_json_form_is_read_and_masked() -> None:
    env = {"MYFY_DATA_REPLICA_URLS": json.dumps([f"{PG}://u:{CANARY}@h/db", f"{PG}://v@h2/db"])}
    code, text, as_json = _config(env)
    assert code == 0, text
    _assert_hidden(text + as_json, CANARY)
    shown = json.loads(invoke("config", "--json", env=env).stdout)
    assert shown["settings"]["replica_urls"]["value"] == [f"{PG}://u:***@h/db", f"{PG}://v@h2/db"]


def test_a_broken_json_replica_list_is_masked_in_the_settings_error() -> None:
    env = {"MYFY_DATA_REPLICA_URLS": f'["{PG}://u:{CANARY}@h/db", "{PG}://v:{TAIL}@h2/db"'}
    code, text, as_json = _config(env)
    assert code == 2, text
    assert "invalid setting replica_urls" in text
    _assert_hidden(text + as_json, CANARY, TAIL)


# --- 2. a comma in a replica's password -------------------------------------------------


def test_a_comma_in_a_replica_password_does_not_split_the_list() -> None:
    password = f"{CANARY},{TAIL}"
    env = {"MYFY_DATA_REPLICA_URLS": f"{PG}://u:{password}@h/db,{PG}://v@h2/db"}
    code, text, as_json = _config(env)
    assert code == 0, text
    _assert_hidden(text + as_json, CANARY, TAIL, password)
    assert "port" not in text
    shown = json.loads(invoke("config", "--json", env=env).stdout)
    assert shown["settings"]["replica_urls"]["value"] == [f"{PG}://u:***@h/db", f"{PG}://v@h2/db"]


@pytest.mark.parametrize(
    ("value", "urls"),
    [
        (f"{PG}://u:pa,ss@h/db", [f"{PG}://u:pa,ss@h/db"]),
        (f"{PG}://u@h/a, {PG}://u@h/b", [f"{PG}://u@h/a", f"{PG}://u@h/b"]),
        (f"{PG}://u:a@b,c@h/db", [f"{PG}://u:a@b,c@h/db"]),
        (f"{PG}://u@h/a,not-a-url", [f"{PG}://u@h/a", "not-a-url"]),
        (json.dumps([f"{PG}://u:x,y@h/db"]), [f"{PG}://u:x,y@h/db"]),
    ],
)
def test_replica_lists_split_only_between_urls(value: str, urls: list[str]) -> None:
    assert split_url_list(value) == urls


# --- 3. a raw "@" with a short tail: the whole field, never substrings --------------------


def test_a_raw_at_sign_with_a_short_tail_is_masked_whole() -> None:
    url = f"{PG}://u:Cx7@ZQ@127.0.0.1/db"
    assert mask_url(url) == f"{PG}://u:***@127.0.0.1/db"
    parsed = DatabaseUrl.parse(url)
    assert "ZQ" not in parsed.target + parsed.masked + repr(parsed)
    code, text, as_json = _config({"MYFY_DATA_DATABASE_URL": url})
    assert code == 0, text
    assert "ZQ" not in text + as_json
    assert "Cx7" not in text + as_json


def test_a_raw_at_sign_before_a_question_mark_is_masked_whole() -> None:
    """SQLAlchemy reads ``b...`` as the host and ``c@h/db`` as a query here."""
    url = f"{PG}://u:a@{CANARY}?{TAIL}@127.0.0.1/db"
    assert mask_url(url) == f"{PG}://u:***@127.0.0.1/db"
    _code, text, as_json = _config({"MYFY_DATA_DATABASE_URL": url})
    _assert_hidden(text + as_json, CANARY, TAIL)


def test_a_port_that_may_be_a_password_is_not_echoed() -> None:
    code, text, as_json = _config({"MYFY_DATA_DATABASE_URL": f"{PG}://u:{CANARY}"})
    assert code == 2
    _assert_hidden(text + as_json, CANARY)


def test_check_pool_never_prints_the_tail_of_a_raw_at_sign() -> None:
    url = f"{PG}://u:Cx7@ZQ@127.0.0.1:{free_port()}/db"
    for args in (["check-pool", "--timeout", "5"], ["check-pool", "--timeout", "5", "--json"]):
        result = invoke(*args, env={"MYFY_DATA_DATABASE_URL": url})
        assert result.exit_code == 4, result.stderr
        assert "ZQ" not in result.stdout + result.stderr, result.stderr


# --- 4. --replica with a password warns like --url ----------------------------------------


def test_a_password_in_replica_warns_once(sqlite_url: str) -> None:
    replica = f"{PG}://u:{CANARY}@127.0.0.1:{free_port()}/db"
    result = invoke(
        "check-pool",
        "--url",
        sqlite_url,
        "--replica",
        replica,
        "--replica",
        replica,
        "--timeout",
        "5",
    )
    warnings = [line for line in result.stderr.splitlines() if "process list" in line]
    assert len(warnings) == 1, result.stderr
    assert "--replica" in warnings[0]
    assert "MYFY_DATA_REPLICA_URLS" in warnings[0]
    assert CANARY not in result.stdout + result.stderr


def test_a_replica_without_a_password_does_not_warn(sqlite_url: str) -> None:
    replica = f"{PG}://u@127.0.0.1:{free_port()}/db"
    result = invoke("check-pool", "--url", sqlite_url, "--replica", replica, "--timeout", "5")
    assert "process list" not in result.stderr


# --- the property: any printable password, parseable or not ------------------------------

SPECIALS = "/@:,%\"'?# "
TEXT = st.text(alphabet=st.sampled_from(string.printable.strip() + " "), max_size=10)
PIECES = st.text(alphabet=st.sampled_from(SPECIALS), min_size=1, max_size=3)


@st.composite
def passwords(draw: st.DrawFn) -> tuple[str, str, str]:
    """A password with a canary inside and a short marker after a special character; both
    new for each example, so that no earlier registration of them can hide a leak."""
    token = draw(st.uuids()).hex
    canary, tail = f"{CANARY}-{token[:8]}", f"Tq{token[8:12]}"
    password = draw(TEXT) + draw(PIECES) + canary + draw(TEXT) + draw(PIECES) + tail
    return (password + draw(TEXT)).strip(), canary, tail


def _unparseable(password: str) -> list[str]:
    return [
        f'"{PG}://app:{password}@127.0.0.1:5432/appdb"',
        f"{PG}//app:{password}@127.0.0.1:5432/appdb",
        f"{PG} ://app:{password}@127.0.0.1:5432/appdb",
    ]


def _parseable(password: str) -> list[str]:
    encoded = quote(password, safe="")
    return [
        f"{PG}://app:{encoded}@127.0.0.1:5432/appdb",
        f"{PG}://app:{password}@127.0.0.1:5432/appdb",  # raw: SQLAlchemy may read it otherwise
        f"{PG}://app@127.0.0.1:5432/appdb?password={encoded}",
    ]


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(secret=passwords())
def test_no_password_survives_masking_in_any_form(secret: tuple[str, str, str]) -> None:
    password, canary, tail = secret
    for url in _unparseable(password) + _parseable(password):
        for shown in (mask_text(url), mask_url(url), redact(f"failed on {mask_url(url)}")):
            assert canary not in shown, (url, shown)
            assert tail not in shown, (url, shown)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(secret=passwords())
def test_no_password_survives_config_in_text_or_json(secret: tuple[str, str, str]) -> None:
    password, canary, tail = secret
    for url in _unparseable(password) + _parseable(password):
        for env in (
            {"MYFY_DATA_DATABASE_URL": url},
            {"MYFY_DATA_REPLICA_URLS": url},
            {"MYFY_DATA_REPLICA_URLS": json.dumps([url])},
        ):
            _code, text, as_json = _config(env)
            assert canary not in text + as_json, (env, text, as_json)
            assert tail not in text + as_json, (env, text, as_json)
