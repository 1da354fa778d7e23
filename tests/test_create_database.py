"""``create-database`` (issue 22): the database the URL names, created with the server's own
command, a no-op when it exists; checked from the server's catalog afterwards."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from helpers import CANARY, free_port, invoke
from test_shell_sandbox import _sql


@pytest.fixture
def new_name(server_url: str) -> Iterator[tuple[str, str]]:
    """A database name no server has yet, and the URL naming it; dropped afterwards."""
    name = f"myfy_cd_{uuid.uuid4().hex[:10]}"
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    yield name, url
    if make_url(server_url).get_backend_name() == "postgresql":
        import asyncio

        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        async def drop() -> None:
            engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
            async with engine.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            await engine.dispose()

        asyncio.run(drop())
    else:
        _sql(server_url, f"DROP DATABASE IF EXISTS `{name}`")


def _exists(server_url: str, name: str) -> bool:
    if make_url(server_url).get_backend_name() == "postgresql":
        rows = _sql(server_url, f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
    else:
        rows = _sql(
            server_url, f"SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{name}'"
        )
    return bool(rows)


def test_create_database_creates_it_once(server_url: str, new_name: tuple[str, str]) -> None:
    name, url = new_name
    first = invoke("create-database", "--url", url, "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["created"] is True
    assert _exists(server_url, name)
    again = invoke("create-database", "--url", url)
    assert again.exit_code == 0, again.output
    assert "already exists; nothing to do" in again.stdout
    migrated = invoke("check-pool", "--url", url, "--connections", "1", "--samples", "1")
    assert migrated.exit_code == 0, migrated.output  # the new database is usable at once


def test_create_database_makes_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    result = invoke("create-database", "--url", f"sqlite+aiosqlite:///{path}")
    assert result.exit_code == 0, result.output
    assert path.is_file()
    assert "created" in result.stdout


def test_create_database_on_an_unreachable_server_is_exit_4() -> None:
    url = f"postgresql+asyncpg://u:{CANARY}@127.0.0.1:{free_port()}/newdb"
    result = invoke("create-database", "--url", url)
    assert result.exit_code == 4
    assert CANARY not in result.output
    assert "Traceback" not in result.output


def test_create_database_needs_a_name(mysql_url: str) -> None:
    url = make_url(mysql_url)._replace(database=None).render_as_string(hide_password=False)
    result = invoke("create-database", "--url", url)
    assert result.exit_code == 2
    assert "names no database" in result.stderr
