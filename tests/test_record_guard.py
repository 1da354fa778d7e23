"""The record protects itself, and a database without one is not assumed safe (issue 21).

- A trigger on ``myfy_db_meta`` makes the database itself refuse deleting or lowering a
  protected record, from any client, under any spelling.
- A database that holds tables but has no record: destructive commands refuse (exit 3) and
  name ``myfy-db set-environment NAME``, a guarded command that writes the record.
"""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError

from helpers import backend_of, invoke
from test_shell_sandbox import _recorded, _sql, _tables

EXAMPLE = "myfy_db.example:Base"


def _protected_record(url: str) -> None:
    env = {"MYFY_DATA_ENVIRONMENT": "production"}
    created = invoke("create-tables", "--metadata", EXAMPLE, "--url", url, env={})
    assert created.exit_code == 0, created.output
    raised = invoke("set-environment", "production", "--url", url, "--yes", env=env)
    assert raised.exit_code == 3  # a record of another environment is never moved
    _sql(url, "UPDATE myfy_db_meta SET environment = 'production', protected = TRUE")


LOWERINGS = [
    "DELETE FROM myfy_db_meta",
    "UPDATE myfy_db_meta SET protected = FALSE",
    "UPDATE myfy_db_meta SET environment = 'development'",
    "UPDATE myfy_db_meta SET protected = NULL",
]


@pytest.mark.parametrize("statement", LOWERINGS)
def test_the_database_refuses_lowering_a_protected_record(db_url: str, statement: str) -> None:
    _protected_record(db_url)
    with pytest.raises(DBAPIError, match="protected environment cannot be deleted or lowered"):
        _sql(db_url, statement)
    assert _recorded(db_url) == "production"


def test_refreshing_a_protected_record_still_works(db_url: str) -> None:
    _protected_record(db_url)
    env = {"MYFY_DATA_ENVIRONMENT": "production"}
    again = invoke("set-environment", "production", "--url", db_url, "--yes", env=env)
    assert again.exit_code == 0, again.output
    assert "already recorded as 'production'" in again.output
    _sql(db_url, "UPDATE myfy_db_meta SET tool_version = 'x'")
    assert _recorded(db_url) == "production"


def test_postgres_refuses_truncating_a_protected_record(postgres_url: str) -> None:
    _protected_record(postgres_url)
    with pytest.raises(DBAPIError, match="protected environment"):
        _sql(postgres_url, "TRUNCATE myfy_db_meta")
    assert _recorded(postgres_url) == "production"


def test_a_database_with_tables_and_no_record_refuses_destruction(db_url: str) -> None:
    _sql(db_url, "CREATE TABLE legacy (id INTEGER PRIMARY KEY)")
    dropped = invoke("drop-tables", "--all", "--yes", "--url", db_url)
    assert dropped.exit_code == 3, dropped.output
    assert "no environment record" in dropped.stderr
    assert "myfy-db set-environment NAME" in dropped.stderr
    assert "legacy" in _tables(db_url)

    no_terminal = invoke("set-environment", "development", "--url", db_url)
    assert no_terminal.exit_code == 3
    assert "myfy_db_meta" not in _tables(db_url)

    recorded = invoke("set-environment", "development", "--url", db_url, "--yes", "--json")
    assert recorded.exit_code == 0, recorded.output
    assert '"written": true' in recorded.stdout
    assert _recorded(db_url) == "development"

    dropped = invoke("drop-tables", "--all", "--yes", "--url", db_url)
    assert dropped.exit_code == 0, dropped.output
    assert "legacy" not in _tables(db_url)


def test_set_environment_never_moves_a_record(db_url: str) -> None:
    _sql(db_url, "CREATE TABLE legacy (id INTEGER PRIMARY KEY)")
    assert invoke("set-environment", "staging", "--url", db_url, "--yes").exit_code == 0
    moved = invoke("set-environment", "development", "--url", db_url, "--yes")
    assert moved.exit_code == 3
    assert "already recorded as 'staging'" in moved.stderr
    assert _recorded(db_url) == "staging"


def test_from_a_protected_environment_only_a_protected_name_is_recorded(sqlite_url: str) -> None:
    _sql(sqlite_url, "CREATE TABLE legacy (id INTEGER PRIMARY KEY)")
    env = {"MYFY_DATA_ENVIRONMENT": "production"}
    refused = invoke("set-environment", "development", "--url", sqlite_url, "--yes", env=env)
    assert refused.exit_code == 3
    assert "myfy_db_meta" not in _tables(sqlite_url)
    ok = invoke("set-environment", "production", "--url", sqlite_url, "--yes", env=env)
    assert ok.exit_code == 0, ok.output
    with pytest.raises(DBAPIError, match="protected environment"):
        _sql(sqlite_url, "DELETE FROM myfy_db_meta")
    assert backend_of(sqlite_url) == "sqlite"


def test_the_override_lets_a_destructive_command_past_a_missing_record(sqlite_url: str) -> None:
    _sql(sqlite_url, "CREATE TABLE legacy (id INTEGER PRIMARY KEY)")
    env = {"MYFY_DB_DISABLE_ENVIRONMENT_CHECK": "1"}
    dropped = invoke("drop-tables", "--all", "--yes", "--url", sqlite_url, env=env)
    assert dropped.exit_code == 0, dropped.output
    assert "legacy" not in _tables(sqlite_url)
