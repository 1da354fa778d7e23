"""``create-database``: create the database the URL names, with the server's own command.

For CI steps and new developers: a no-op when the database exists. PostgreSQL connects to its
maintenance database (``postgres``, else ``template1``) and runs ``CREATE DATABASE`` outside
a transaction; MariaDB/MySQL connects without a database and runs ``CREATE DATABASE``; a
SQLite file is created by opening it. Whether the database existed is read from the server's
catalog (``pg_database``, ``information_schema.SCHEMATA``), never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from myfy_db.errors import ConfigError

if TYPE_CHECKING:
    from myfy_db.settings import DatabaseSettings
    from myfy_db.urls import DatabaseUrl

__all__ = ["CreatedDatabase", "create_database"]

#: Where PostgreSQL's CREATE DATABASE is run from, in order of preference.
_MAINTENANCE = ("postgres", "template1")


@dataclass(frozen=True)
class CreatedDatabase:
    """What ``create-database`` found and did."""

    database: str
    target: str
    created: bool

    def to_dict(self) -> dict[str, Any]:
        return {"database": self.database, "target": self.target, "created": self.created}


async def create_database(settings: DatabaseSettings) -> CreatedDatabase:
    """Create the database ``settings`` names when it does not exist yet."""
    url = settings.url
    name = url.database
    if url.backend == "sqlite":
        return _create_sqlite(url)
    if not name:
        raise ConfigError(
            f"the URL names no database to create: {url.masked}",
            hint="add the database name to the URL (…/NAME)",
        )
    if url.backend == "postgresql":
        return await _create_postgresql(settings, url, name)
    return await _create_mysql(settings, url, name)


def _create_sqlite(url: DatabaseUrl) -> CreatedDatabase:
    path = url.sqlite_file
    if path is None:
        raise ConfigError(
            f"{url.masked} is an in-memory database: there is nothing to create",
            hint="name a file: sqlite+aiosqlite:///./app.db",
        )
    import sqlite3

    target = Path(path)
    existed = target.exists()
    if not existed:
        if not target.parent.is_dir():
            raise ConfigError(f"cannot create {path}: its directory does not exist")
        sqlite3.connect(target).close()  # SQLite creates the file as it opens it
    return CreatedDatabase(target.name, url.target, not existed)


def _variant(url: DatabaseUrl, database: str | None) -> str:
    """The same server and credentials, another database (None: none selected)."""
    # URL.set() reads None as "unchanged"; the named tuple's _replace sets it.
    return url.sqlalchemy_url._replace(database=database).render_as_string(hide_password=False)


async def _create_postgresql(
    settings: DatabaseSettings, url: DatabaseUrl, name: str
) -> CreatedDatabase:
    from sqlalchemy import text

    from myfy_db.engine import open_engine, translate_errors

    last: Exception | None = None
    for maintenance in _MAINTENANCE:
        try:
            with translate_errors(url, "create-database"):
                async with (
                    open_engine(
                        settings, _variant(url, maintenance), isolation_level="AUTOCOMMIT"
                    ) as engine,
                    engine.connect() as connection,
                ):
                    exists = await connection.scalar(
                        text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                    )
                    if exists:
                        return CreatedDatabase(name, url.target, False)
                    quoted = connection.dialect.identifier_preparer.quote_identifier(name)
                    await connection.exec_driver_sql(f"CREATE DATABASE {quoted}")
                    return CreatedDatabase(name, url.target, True)
        except Exception as exc:  # the maintenance database is missing: try the next
            last = exc
            if "does not exist" not in str(getattr(exc, "message", exc)):
                raise
    assert last is not None
    raise last


async def _create_mysql(settings: DatabaseSettings, url: DatabaseUrl, name: str) -> CreatedDatabase:
    from sqlalchemy import text

    from myfy_db.engine import open_engine, translate_errors

    with translate_errors(url, "create-database"):
        async with (
            open_engine(settings, _variant(url, None)) as engine,
            engine.connect() as connection,
        ):
            exists = await connection.scalar(
                text("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name"),
                {"name": name},
            )
            if exists:
                return CreatedDatabase(name, url.target, False)
            quoted = connection.dialect.identifier_preparer.quote_identifier(name)
            await connection.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS {quoted}")
            await connection.commit()
            return CreatedDatabase(name, url.target, True)
