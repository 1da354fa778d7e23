"""The shared engine factory against real databases, and the 'cannot connect' translation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.pool import StaticPool

from helpers import CANARY, MYSQL_URL, POSTGRES_URL, free_port, server_for, with_password
from myfy_db import DatabaseSettings, SessionFactory, create_engine, open_engine
from myfy_db.engine import engine_options, translate_errors
from myfy_db.errors import CannotConnect, OperationFailed


def test_file_sqlite_gets_pool_arguments() -> None:
    options = engine_options(DatabaseSettings(pool_size=3, pool_use_lifo=True))
    assert options["pool_size"] == 3
    assert options["pool_use_lifo"] is True
    assert options["pool_pre_ping"] is True


def test_memory_sqlite_gets_a_static_pool_and_no_pool_arguments() -> None:
    options = engine_options(DatabaseSettings(database_url="sqlite+aiosqlite://"))
    assert options["poolclass"] is StaticPool
    assert "pool_size" not in options


def test_connect_timeout_in_each_drivers_form() -> None:
    pg = engine_options(DatabaseSettings(database_url=POSTGRES_URL, connect_timeout=3))
    my = engine_options(DatabaseSettings(database_url=MYSQL_URL, connect_timeout=3))
    assert pg["connect_args"] == {"timeout": 3.0}
    assert my["connect_args"] == {"connect_timeout": 3}


def test_engine_runs_a_query_on_each_backend(db_url: str) -> None:
    async def scenario() -> int:
        settings = DatabaseSettings(database_url=db_url)
        async with open_engine(settings) as engine, engine.connect() as conn:
            return int((await conn.execute(text("SELECT 1"))).scalar_one())

    assert asyncio.run(scenario()) == 1


def test_memory_sqlite_keeps_one_database_across_checkouts() -> None:
    async def scenario() -> int:
        async with open_engine(DatabaseSettings(database_url="sqlite+aiosqlite://")) as engine:
            async with engine.begin() as conn:
                await conn.execute(text("CREATE TABLE t (x INT)"))
                await conn.execute(text("INSERT INTO t VALUES (1)"))
            async with engine.connect() as conn:
                return int((await conn.execute(text("SELECT count(*) FROM t"))).scalar_one())

    assert asyncio.run(scenario()) == 1


def test_session_context_commits_on_success_and_rolls_back_on_error(db_url: str) -> None:
    async def scenario() -> int:
        async with open_engine(DatabaseSettings(database_url=db_url)) as engine:
            async with engine.begin() as conn:
                await conn.execute(text("CREATE TABLE notes (id INT PRIMARY KEY)"))
            sessions = SessionFactory(engine)
            async with sessions.session_context() as session:
                await session.execute(text("INSERT INTO notes VALUES (1)"))
            try:
                async with sessions.session_context() as session:
                    await session.execute(text("INSERT INTO notes VALUES (2)"))
                    raise RuntimeError("boom")
            except RuntimeError:
                pass
            async with sessions.session_context() as session:
                return int((await session.execute(text("SELECT count(*) FROM notes"))).scalar_one())

    assert asyncio.run(scenario()) == 1


async def _connect(url: str, **settings: float) -> None:
    config = DatabaseSettings(database_url=url, **settings)  # type: ignore[arg-type]
    engine = create_engine(config)
    try:
        with translate_errors(url, "connect"):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


@pytest.mark.parametrize("scheme", ["postgresql+asyncpg", "mysql+aiomysql"])
def test_refused_port_is_cannot_connect(scheme: str) -> None:
    url = f"{scheme}://u:{CANARY}@127.0.0.1:{free_port()}/db"
    with pytest.raises(CannotConnect, match="connection refused") as caught:
        asyncio.run(_connect(url))
    assert CANARY not in str(caught.value)


@pytest.mark.parametrize("scheme", ["postgresql+asyncpg", "mysql+aiomysql"])
def test_unknown_host_is_cannot_connect(scheme: str) -> None:
    with pytest.raises(CannotConnect, match="cannot resolve host"):
        asyncio.run(_connect(f"{scheme}://u@no-such-host.invalid/db"))


@pytest.mark.parametrize("scheme", ["postgresql+asyncpg", "mysql+aiomysql"])
def test_hung_server_times_out_as_cannot_connect(scheme: str, silent_port: int) -> None:
    url = f"{scheme}://u@127.0.0.1:{silent_port}/db"
    with pytest.raises(CannotConnect, match="timed out"):
        asyncio.run(_connect(url, connect_timeout=1))


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_missing_database_is_named(backend: str) -> None:
    server = server_for(backend)
    server.require()
    url = server.url_for("myfy_no_such_database")
    with pytest.raises(CannotConnect, match="database 'myfy_no_such_database' does not exist"):
        asyncio.run(_connect(url))


def test_wrong_password_is_authentication_failed() -> None:
    server = server_for("mysql")
    server.require()
    url = with_password(server.url)
    with pytest.raises(CannotConnect, match="authentication failed for user 'root'") as caught:
        asyncio.run(_connect(url))
    assert CANARY not in str(caught.value)


def test_unopenable_sqlite_file_is_cannot_connect(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x.db'}"
    with pytest.raises(CannotConnect, match="cannot open SQLite database"):
        asyncio.run(_connect(url))


def test_failed_statement_is_operation_failed(sqlite_url: str) -> None:
    async def scenario() -> None:
        async with open_engine(DatabaseSettings(database_url=sqlite_url)) as engine:
            with translate_errors(sqlite_url, "query"):
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(OperationFailed, match=r"query failed: .*no_such_table"):
        asyncio.run(scenario())
