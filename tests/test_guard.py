"""The production guard's rule and the database's environment record, on each backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection

from myfy_db import DatabaseSettings, open_engine
from myfy_db.errors import Refused
from myfy_db.guard import Change, ProductionGuard, read_record, record_environment
from myfy_db.settings import LoadedSettings


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
