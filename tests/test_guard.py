"""The production guard's rule and the database's environment record, on each backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection

from helpers import invoke, run_process
from migrate_project import STANDARD, write_project
from myfy_db import DatabaseSettings, open_engine
from myfy_db.errors import Refused
from myfy_db.guard import Change, ProductionGuard, read_record, record_environment
from myfy_db.settings import LoadedSettings
from schema_support import EXAMPLE, execute, tables


def _guard(environment: str, environ: dict[str, str] | None = None) -> ProductionGuard:
    loaded = LoadedSettings(
        DatabaseSettings(environment=environment),
        {"environment": "environment variable MYFY_DATA_ENVIRONMENT"},
    )
    return ProductionGuard(loaded, environ or {})


def _on(url: str, fn: Callable[[Connection], Any]) -> Any:
    async def scenario() -> Any:
        settings = DatabaseSettings(database_url=url)
        async with open_engine(settings) as engine, engine.begin() as conn:
            return await conn.run_sync(fn)

    return asyncio.run(scenario())


def test_unrecorded_database_has_no_record(db_url: str) -> None:
    assert _on(db_url, read_record) is None


def test_record_is_written_kept_raised_and_never_lowered(db_url: str) -> None:
    assert _on(db_url, lambda c: record_environment(c, "development")).environment == "development"
    assert _on(db_url, lambda c: record_environment(c, "staging")).environment == "development"
    assert _on(db_url, lambda c: record_environment(c, "production")).environment == "production"
    assert _on(db_url, lambda c: record_environment(c, "development")).environment == "production"
    record = _on(db_url, read_record)
    assert record.environment == "production"
    assert record.tool_version


def test_protected_environment_refuses_guarded_commands_naming_the_source() -> None:
    guard = _guard("production")
    for command in ("create-tables", "drop-tables", "migrate down"):
        with pytest.raises(Refused, match="'production' \\(from environment variable"):
            guard.check_local(command)
    guard.check_local("migrate")


def test_record_rules() -> None:
    from myfy_db.guard import EnvironmentRecord

    prod = EnvironmentRecord("production", None, "0")
    staging = EnvironmentRecord("staging", None, "0")
    dev = _guard("development")
    with pytest.raises(Refused, match="recorded as 'production'"):
        dev.check_record(prod, "migrate", Change.SCHEMA)
    dev.check_record(staging, "create-tables", Change.SCHEMA)
    with pytest.raises(Refused, match="recorded as 'staging'"):
        dev.check_record(staging, "drop-tables", Change.DESTRUCTIVE)
    _guard("production").check_record(prod, "migrate", Change.SCHEMA)
    overridden = _guard("development", {"MYFY_DB_DISABLE_ENVIRONMENT_CHECK": "1"})
    overridden.check_record(prod, "drop-tables", Change.DESTRUCTIVE)


# --- the record remembers protection, is normalised, and is written first -------------------


LIVE = {"MYFY_DATA_ENVIRONMENT": "live", "MYFY_DATA_PROTECTED_ENVIRONMENTS": "live"}


def test_custom_protected_environment_stays_protected_for_later_invocations(
    db_url: str, tmp_path: Path
) -> None:
    ini = str(write_project(tmp_path))
    first = invoke("migrate", "--config", ini, "--url", db_url, env=LIVE)
    assert first.exit_code == 0, first.stderr
    record = _on(db_url, read_record)
    assert record.environment == "live"
    assert record.protected
    # From development, whose own protected list does not name `live`:
    for args in (
        ["migrate", "stamp", "base"],
        ["migrate", "up", "head"],
        ["migrate", "down", "base", "--yes"],
        ["migrate", "reset", "--yes"],
        ["migrate"],
        ["create-tables", "--metadata", EXAMPLE],
        ["drop-tables", "--all", "--yes"],
    ):
        if args[0] == "migrate":
            argv = ["migrate", *args[1:2], "--config", ini, "--url", db_url, *args[2:]]
            argv = [a for a in argv if a]
        else:
            argv = [*args, "--url", db_url]
        # A process each: an in-process run of several migrate commands in a row on MariaDB
        # has been seen to hang intermittently in the event loop (not in the guard).
        result = run_process(*argv, cwd=str(tmp_path), timeout=60)
        assert result.returncode == 3, (argv, result.stdout, result.stderr)
        assert "recorded as 'live' (protected)" in result.stderr
    # From `live` itself, without `live` in the list: create/drop are refused as protected.
    again = invoke(
        "create-tables",
        "--metadata",
        EXAMPLE,
        "--url",
        db_url,
        env={"MYFY_DATA_ENVIRONMENT": "live"},
    )
    assert again.exit_code == 3, again.stderr
    assert "protected" in again.stderr
    assert _on(db_url, read_record).protected
    assert "items" in tables(db_url)


def test_a_protected_record_is_never_lowered_by_its_own_environment(db_url: str) -> None:
    _on(db_url, lambda c: record_environment(c, "live", ["live"]))
    # `live` again, from an invocation that does not list it: still protected.
    assert _on(db_url, lambda c: record_environment(c, "live")).protected
    assert _on(db_url, lambda c: record_environment(c, "development")).environment == "live"
    assert _on(db_url, read_record).protected


def test_the_override_passes_a_protected_record_without_lowering_it(
    db_url: str, tmp_path: Path
) -> None:
    _on(db_url, lambda c: record_environment(c, "live", ["live"]))
    ini = str(write_project(tmp_path))
    override = {"MYFY_DB_DISABLE_ENVIRONMENT_CHECK": "1"}
    result = invoke("migrate", "--config", ini, "--url", db_url, env=override)
    assert result.exit_code == 0, result.stderr
    record = _on(db_url, read_record)
    assert (record.environment, record.protected) == ("live", True)


@pytest.mark.parametrize("stored", [" PRODUCTION ", "Production", "\tprod\n"])
def test_records_are_compared_trimmed_and_case_folded(db_url: str, stored: str) -> None:
    _on(db_url, lambda c: record_environment(c, "development"))
    execute(db_url, f"UPDATE myfy_db_meta SET environment = '{stored}', protected = NULL")
    result = invoke("create-tables", "--metadata", EXAMPLE, "--url", db_url)
    assert result.exit_code == 3, result.stderr
    assert "(protected)" in result.stderr
    assert "accounts" not in tables(db_url)


def test_setting_and_record_compared_normalised_on_the_setting_side(db_url: str) -> None:
    _on(db_url, lambda c: record_environment(c, "staging"))
    result = invoke(
        "drop-tables",
        "--all",
        "--yes",
        "--url",
        db_url,
        env={"MYFY_DATA_ENVIRONMENT": "  STAGING "},
    )
    assert result.exit_code == 0, result.stderr


def test_a_record_from_before_the_protected_column_still_protects(db_url: str) -> None:
    execute(
        db_url,
        "CREATE TABLE myfy_db_meta (id INTEGER PRIMARY KEY, environment VARCHAR(64) NOT NULL,"
        " recorded_at TIMESTAMP NOT NULL, tool_version VARCHAR(32) NOT NULL)",
        "INSERT INTO myfy_db_meta VALUES (1, 'production', CURRENT_TIMESTAMP, '0.1')",
    )
    assert _on(db_url, read_record).protected
    result = invoke("create-tables", "--metadata", EXAMPLE, "--url", db_url)
    assert result.exit_code == 3
    ok = invoke(
        "create-tables",
        "--metadata",
        EXAMPLE,
        "--url",
        db_url,
        env={"MYFY_DATA_ENVIRONMENT": "production", "MYFY_DB_DISABLE_ENVIRONMENT_CHECK": "1"},
    )
    assert ok.exit_code == 3  # refused locally: production never creates tables
    record = _on(db_url, lambda c: record_environment(c, "production"))
    assert record.protected
    assert _on(db_url, read_record).protected


FAILS_AT_TWO = [
    STANDARD[0],
    ("r2", "fails", 'op.execute("SELECT * FROM no_such_table")', "pass"),
]


def test_a_production_migrate_that_fails_still_leaves_the_record(
    db_url: str, tmp_path: Path
) -> None:
    ini = str(write_project(tmp_path, FAILS_AT_TWO))
    result = invoke(
        "migrate", "--config", ini, "--url", db_url, env={"MYFY_DATA_ENVIRONMENT": "production"}
    )
    assert result.exit_code == 1, result.stderr
    record = _on(db_url, read_record)
    assert record is not None
    assert (record.environment, record.protected) == ("production", True)
    drop = invoke("drop-tables", "--all", "--yes", "--url", db_url)
    assert drop.exit_code == 3, drop.stderr
    assert "items" in tables(db_url)


def test_a_failed_create_tables_still_leaves_the_record(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "badmodels.py").write_text(
        "from sqlalchemy import CheckConstraint, Column, Integer, MetaData, Table\n"
        "metadata = MetaData()\n"
        "Table('ok_first', metadata, Column('id', Integer, primary_key=True))\n"
        "Table('zz_bad', metadata, Column('id', Integer, primary_key=True),\n"
        "      CheckConstraint('this is ) not sql'))\n"
    )
    result = invoke("create-tables", "--metadata", "badmodels:metadata", "--url", db_url)
    assert result.exit_code == 1, result.stderr
    record = _on(db_url, read_record)
    assert record is not None
    assert record.environment == "development"


def test_shell_decision_follows_the_record() -> None:
    from myfy_db.guard import EnvironmentRecord

    live = EnvironmentRecord("live", None, "0", protected=True)
    dev = _guard("development").shell_decision(live)
    assert dev.sandbox
    assert dev.confirm
    assert dev.no_sandbox_refusal is not None
    same = _guard(" LIVE ").shell_decision(live)
    assert same.sandbox
    assert same.confirm
    assert same.no_sandbox_refusal is None
    plain = _guard("development").shell_decision(EnvironmentRecord("staging", None, "0"))
    assert not plain.sandbox
    assert plain.no_sandbox_refusal is None
    overridden = _guard("development", {"MYFY_DB_DISABLE_ENVIRONMENT_CHECK": "1"})
    assert overridden.shell_decision(live).no_sandbox_refusal is None
    assert _guard("development").shell_decision(None).sandbox is False
