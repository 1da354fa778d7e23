"""What the server says about its connection limits and idle-connection timeouts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from myfy_db.pool.server_info import product_version
from myfy_db.settings import DatabaseSettings

#: MySQL's and MariaDB's default ``wait_timeout`` (seconds), assumed when offline.
MYSQL_DEFAULT_WAIT_TIMEOUT = 28800


@dataclass(frozen=True)
class ServerFacts:
    """What the server says about its connection limits and idle-connection timeouts."""

    backend: str
    version: str
    max_connections: int
    reserved_connections: int
    usable_connections: int
    connections_in_use: int | None = None
    #: MySQL/MariaDB: the session ``wait_timeout`` a pooled connection gets (seconds).
    wait_timeout: int | None = None
    #: PostgreSQL: ``idle_session_timeout`` in seconds (0: never).
    idle_session_timeout: float | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "version": self.version,
            "max_connections": self.max_connections,
            "reserved_connections": self.reserved_connections,
            "usable_connections": self.usable_connections,
            "connections_in_use": self.connections_in_use,
            "wait_timeout_ms": None if self.wait_timeout is None else self.wait_timeout * 1000,
            "idle_session_timeout_ms": (
                None if self.idle_session_timeout is None else self.idle_session_timeout * 1000
            ),
            "notes": list(self.notes),
        }


async def fetch_server_facts(settings: DatabaseSettings) -> ServerFacts | None:
    """Read the server's limits through one real connection; None for SQLite.

    Raises :class:`~myfy_db.errors.CannotConnect` (exit 4) when the server cannot be reached.
    """
    from myfy_db.engine import open_engine, translate_errors

    backend = settings.backend
    if backend == "sqlite":
        return None
    url = settings.database_url
    with translate_errors(url, "reading the server's connection limits"):
        async with open_engine(settings, pool_size=1, max_overflow=0) as engine:
            conn = await engine.connect()
            try:
                if backend == "postgresql":
                    return await _read_postgres(conn)
                return await _read_mysql(conn)
            finally:
                await conn.close()


async def _read_postgres(conn: Any) -> ServerFacts:
    from sqlalchemy import text

    rows = await conn.execute(
        text(
            "SELECT name, setting FROM pg_settings WHERE name IN ('max_connections', "
            "'superuser_reserved_connections', 'reserved_connections', 'idle_session_timeout')"
        )
    )
    values = {str(name): str(value) for name, value in rows}
    version = str((await conn.execute(text("SHOW server_version"))).scalar())
    in_use = (
        await conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
        )
    ).scalar()
    limits = (
        await conn.execute(
            text(
                "SELECT (SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user), "
                "(SELECT datconnlimit FROM pg_database WHERE datname = current_database())"
            )
        )
    ).one()
    return _postgres_facts(values, version, in_use, limits[0], limits[1])


async def _read_mysql(conn: Any) -> ServerFacts:
    from sqlalchemy import text

    row = (
        await conn.execute(
            text(
                "SELECT @@GLOBAL.max_connections, @@SESSION.wait_timeout, "
                "@@GLOBAL.max_user_connections, VERSION()"
            )
        )
    ).one()
    status = (await conn.execute(text("SHOW STATUS LIKE 'Threads_connected'"))).one()
    return _mysql_facts(int(row[0]), int(row[1]), int(row[2]), str(row[3]), int(status[1]))


def _postgres_facts(
    values: Mapping[str, str],
    version: str,
    in_use: Any,
    role_limit: Any,
    database_limit: Any,
) -> ServerFacts:
    max_connections = int(values["max_connections"])
    superuser = int(values.get("superuser_reserved_connections", "0"))
    reserved_role = int(values.get("reserved_connections", "0"))
    reserved = superuser + reserved_role
    usable = max_connections - reserved
    notes = [
        f"max_connections {max_connections} less {superuser} superuser_reserved_connections"
        + (f" and {reserved_role} reserved_connections" if "reserved_connections" in values else "")
    ]
    for label, limit in (("role", role_limit), ("database", database_limit)):
        if limit is not None and int(limit) >= 0 and int(limit) < usable:
            usable = int(limit)
            notes.append(f"the {label}'s CONNECTION LIMIT is {limit}")
    idle_ms = int(values.get("idle_session_timeout", "0"))
    return ServerFacts(
        backend="postgresql",
        version=product_version("postgresql", version),
        max_connections=max_connections,
        reserved_connections=reserved,
        usable_connections=usable,
        connections_in_use=None if in_use is None else int(in_use),
        idle_session_timeout=idle_ms / 1000,
        notes=notes,
    )


def _mysql_facts(
    max_connections: int, wait_timeout: int, max_user: int, version: str, in_use: int
) -> ServerFacts:
    usable = max_connections
    notes = [
        f"max_connections {max_connections}; the one extra slot beyond it is kept for an "
        "administrator (SUPER / CONNECTION ADMIN), not the application"
    ]
    if 0 < max_user < usable:
        usable = max_user
        notes.append(f"max_user_connections is {max_user}")
    return ServerFacts(
        backend="mysql",
        version=product_version("mysql", version),
        max_connections=max_connections,
        reserved_connections=0,
        usable_connections=usable,
        connections_in_use=in_use,
        wait_timeout=wait_timeout,
        notes=notes,
    )
