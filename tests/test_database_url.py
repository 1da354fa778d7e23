"""The database URL parsed once (myfy_db.urls.DatabaseUrl) and carried down as it is."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from helpers import CANARY
from myfy_db import DatabaseSettings, open_engine
from myfy_db.errors import ConfigError
from myfy_db.migrations.lock import sqlite_lock_path
from myfy_db.urls import DatabaseUrl, describe_target


@pytest.mark.parametrize(
    ("url", "backend", "dialect", "database", "target"),
    [
        (
            "postgresql+asyncpg://u@db.example:6432/app",
            "postgresql",
            "postgresql",
            "app",
            "db.example:6432/app",
        ),
        ("mysql+aiomysql://u@db.example/app", "mysql", "mysql", "app", "db.example/app"),
        ("mariadb+aiomysql://u@db.example/app", "mysql", "mariadb", "app", "db.example/app"),
        (
            "sqlite+aiosqlite:///./app.db",
            "sqlite",
            "sqlite",
            "./app.db",
            "SQLite database ./app.db",
        ),
    ],
)
def test_a_parsed_url_knows_its_backend_database_and_target(
    url: str, backend: str, dialect: str, database: str, target: str
) -> None:
    parsed = DatabaseUrl.parse(url)
    assert (parsed.backend, parsed.dialect, parsed.database, parsed.target) == (
        backend,
        dialect,
        database,
        target,
    )
    assert parsed.sqlalchemy_url.database == database
    assert not parsed.memory


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite://",
        "sqlite+aiosqlite:///:memory:",
        "sqlite+aiosqlite:///file:x?mode=memory&uri=true",
    ],
)
def test_in_memory_sqlite_is_known_and_has_no_file(url: str) -> None:
    parsed = DatabaseUrl.parse(url)
    assert parsed.memory
    assert parsed.sqlite_file is None
    assert sqlite_lock_path(parsed) is None


def test_a_sqlite_file_uri_names_its_path_without_the_query() -> None:
    parsed = DatabaseUrl.parse("sqlite+aiosqlite:///file:data/app.db?mode=ro&uri=true")
    assert parsed.sqlite_file == "data/app.db"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+asyncpg://u:{CANARY}@127.0.0.1:5432/db",
        f"mysql+aiomysql://u:{CANARY}@127.0.0.1/db",
        f"postgresql+asyncpg://u@127.0.0.1/db?password={CANARY}",
    ],
)
def test_the_password_never_shows_in_str_repr_or_the_masked_text(url: str) -> None:
    parsed = DatabaseUrl.parse(url)
    shown = [str(parsed), repr(parsed), f"{parsed}", parsed.masked, parsed.target]
    assert all(CANARY not in item for item in shown), shown
    assert "***" in parsed.masked
    assert parsed.masked == str(parsed)


def test_settings_give_the_parsed_url_once_per_url() -> None:
    settings = DatabaseSettings(
        database_url=f"postgresql+asyncpg://u:{CANARY}@h/app",
        replica_urls=f"postgresql+asyncpg://u:{CANARY}@r1/app,mysql+aiomysql://u@r2/app",
    )
    assert settings.url is settings.url
    assert settings.url.masked == settings.masked_url
    assert [r.target for r in settings.replicas] == ["r1/app", "r2/app"]
    assert settings.url.sqlalchemy_url.password == CANARY


def test_a_parsed_url_is_taken_as_it_is_and_a_string_is_parsed() -> None:
    parsed = DatabaseUrl.parse("sqlite+aiosqlite:///./a.db")
    assert DatabaseUrl.of(parsed) is parsed
    assert DatabaseUrl.of(parsed.sqlalchemy_url).target == parsed.target
    assert describe_target(parsed) == describe_target("sqlite+aiosqlite:///./a.db")


def test_an_unreadable_url_is_a_config_error_without_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        DatabaseUrl.parse(f"not a url :{CANARY}@")
    assert CANARY not in str(caught.value)


def test_the_engine_factory_takes_the_parsed_url(tmp_path: Path) -> None:
    url = DatabaseUrl.parse(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")

    async def scenario() -> int:
        async with open_engine(DatabaseSettings(), url) as engine, engine.connect() as conn:
            assert engine.url.database == url.database
            return int((await conn.execute(text("SELECT 1"))).scalar_one())

    assert asyncio.run(scenario()) == 1
