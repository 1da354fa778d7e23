"""The two sides of a diff: what each spec names, and reading it without writing.

A side is a database URL, ``models`` (the ``--metadata`` target) or a revision (``head``,
an id) replayed on a scratch database. A database is read inside a read-only transaction
(``SET TRANSACTION READ ONLY`` on PostgreSQL, the session's ``TRANSACTION READ ONLY`` on
MySQL/MariaDB, where DDL would otherwise commit its way out; a SQLite file opened by SQLite
with ``mode=ro``), and a missing SQLite file is exit 4, never created.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from myfy_db.errors import ConfigError
from myfy_db.urls import DatabaseUrl

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection

    from myfy_db.settings import DatabaseSettings

T = TypeVar("T")

_REVISION = re.compile(r"^[A-Za-z0-9_@+\-.]+$")


@dataclass(frozen=True)
class Side:
    """One side as given: ``kind`` is ``url``, ``models`` or ``revision``."""

    kind: str
    url: DatabaseUrl | None = None
    revision: str | None = None
    #: What the side is called in the report, when not its URL (a replayed revision).
    name: str | None = None

    @property
    def label(self) -> str:
        if self.name is not None:
            return self.name
        if self.url is not None:
            return self.url.masked
        if self.kind == "models":
            return "models"
        return f"revision {self.revision}"


def parse_side(text: str, which: str) -> Side:
    """Read the FROM or TO spec (``which``); :class:`ConfigError` (exit 2) when it names
    nothing diff knows."""
    spec = text.strip()
    if spec == "models":
        return Side("models")
    if "://" in spec or spec.lower().startswith("sqlite"):
        from myfy_db.settings import _check_url

        try:
            spec = _check_url(spec)  # what every --url goes through: async drivers only
        except ValueError as exc:
            raise ConfigError(f"{which}: {exc}") from None
        url = DatabaseUrl.parse(spec)
        if url.problem is not None:
            raise ConfigError(f"{which} {url.masked}: {url.problem}")
        return Side("url", url=url)
    if spec and _REVISION.match(spec):
        return Side("revision", revision=spec)
    raise ConfigError(
        f"{which} is neither a database URL, `models` nor a revision",
        hint="a side is a URL (postgresql+asyncpg://...), `models` (--metadata), or a "
        "revision such as head (replayed on --dev-url)",
    )


def same_database(a: Side, b: Side) -> bool:
    """True when both sides name one thing (then there is nothing to compare)."""
    if a.kind != b.kind:
        return False
    if a.url is not None and b.url is not None:
        from myfy_db.migrations.scratch import same_database as same

        return same(a.url, b.url)
    return a.revision == b.revision


def read_only_url(url: DatabaseUrl) -> DatabaseUrl:
    """A SQLite file's URL opened read-only by SQLite itself (``mode=ro``); the URL itself
    elsewhere. A missing file is left for the engine factory to refuse (exit 4)."""
    from pathlib import Path
    from urllib.parse import quote

    database = url.sqlite_file
    if database is None or "uri" in url.sqlalchemy_url.query or url.database != database:
        return url
    if not Path(database).is_file():
        return url
    path = quote(str(Path(database).resolve()))
    query = {**url.sqlalchemy_url.query, "mode": "ro", "uri": "true"}
    ro = url.sqlalchemy_url.set(database=f"file:{path}", query=query)
    return DatabaseUrl.of(ro.render_as_string(hide_password=False))


def begin_read_only(connection: Connection) -> None:
    """Make the transaction ``connection`` is about to begin read-only, before anything is
    read: the server then refuses any write (SQLite's file is read-only already)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")
    elif connection.dialect.name in ("mysql", "mariadb"):
        # The session's: a DDL statement commits the transaction it is in implicitly, and
        # would run outside a transaction-only READ ONLY (the server refuses it this way).
        connection.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")


@asynccontextmanager
async def read_only_connection(
    settings: DatabaseSettings, url: DatabaseUrl
) -> AsyncIterator[AsyncConnection]:
    """One connection to ``url`` whose transaction is read-only (rolled back at the end);
    driver errors become myfy-db's (unreachable: exit 4)."""
    from myfy_db.engine import open_engine, translate_errors

    with translate_errors(url, "diff"):
        async with (
            open_engine(settings, read_only_url(url)) as engine,
            engine.connect() as connection,
        ):
            await connection.run_sync(begin_read_only)
            try:
                yield connection
            finally:
                await connection.rollback()


async def read_database(
    settings: DatabaseSettings, url: DatabaseUrl, work: Callable[[Connection], T]
) -> T:
    """Run ``work`` on a :func:`read_only_connection` to ``url``."""
    async with read_only_connection(settings, url) as connection:
        return await connection.run_sync(work)


def alembic_impl(connection: Any) -> Any:
    """Alembic's dialect implementation on ``connection``: the one ``migrate check`` uses."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection, opts={"compare_type": True}).impl


def schemas_of(names: Sequence[str]) -> list[str | None]:
    """The default schema, then each ``--schema`` (in order, once)."""
    found: list[str | None] = [None]
    for name in names:
        if name not in found:
            found.append(name)
    return found
