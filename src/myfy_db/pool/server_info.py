"""What the server tells about itself: its version, its connection limits and the slots in
use, read on the driver's own connection; and the pool's status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

from myfy_db.pool.report import (
    MAX_CONNECTIONS,
    SLOT_MARGIN_MIN,
    PoolStatus,
    ServerInfo,
    SlotBudget,
)


async def _scalar(backend: str, driver: Any, sql: str) -> Any:
    """The first column of the first row of ``sql`` on the driver connection, or None."""
    try:
        if backend == "postgresql":
            return await driver.fetchval(sql)
        if backend == "mysql":
            cursor = await driver.cursor()
            try:
                await cursor.execute(sql)
                row = await cursor.fetchone()
            finally:
                await cursor.close()
        else:
            async with driver.execute(sql) as cursor:
                row = await cursor.fetchone()
        return None if row is None else row[0]
    except Exception:
        return None


def _as_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def product_version(backend: str, version: str) -> str:
    """The version with the product's name: ``PostgreSQL 16.4``, ``SQLite 3.45.1``,
    ``MySQL 8.0.36``; MariaDB names itself in its version (``10.11.6-MariaDB``)."""
    if backend == "postgresql":
        return f"PostgreSQL {version}"
    if backend == "sqlite":
        return f"SQLite {version}"
    return version if "mariadb" in version.casefold() else f"MySQL {version}"


async def _server_info(backend: str, driver: Any) -> ServerInfo:
    if backend == "postgresql":
        version = await _scalar(backend, driver, "SHOW server_version")
        limit = await _scalar(backend, driver, "SHOW max_connections")
        in_use = await _scalar(
            backend,
            driver,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
        )
    elif backend == "mysql":
        version = await _scalar(backend, driver, "SELECT VERSION()")
        limit = await _scalar(backend, driver, "SELECT @@max_connections")
        in_use = await _scalar(
            backend,
            driver,
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
            "WHERE VARIABLE_NAME = 'THREADS_CONNECTED'",
        )
        if in_use is None:
            in_use = await _scalar(
                backend, driver, "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
            )
    else:
        version = await _scalar(backend, driver, "SELECT sqlite_version()")
        limit = in_use = None
    return ServerInfo(
        version=None if version is None else product_version(backend, str(version)),
        max_connections=_as_int(limit),
        connections_in_use=_as_int(in_use),
    )


def pool_status(engine: AsyncEngine) -> PoolStatus:
    """The state of ``engine``'s pool, in plain numbers."""
    pool = engine.pool

    def number(name: str) -> int | None:
        method = getattr(pool, name, None)
        if not callable(method):
            return None
        try:
            return int(method())
        except Exception:
            return None

    size = number("size")
    counter = number("overflow")  # SQLAlchemy's: opened - pool_size, from -pool_size up
    opened = None if size is None or counter is None else size + counter
    return PoolStatus(
        pool_class=type(pool).__name__,
        size=size,
        opened=opened,
        checked_in=number("checkedin"),
        checked_out=number("checkedout"),
        overflow=None if counter is None else max(0, counter),
    )


# -- free slots and the pooler, before the check opens its connections ---------------------


async def _read_slots(backend: str, driver: Any) -> SlotBudget | None:
    """The server's free slots, read on one driver connection (counted as in use).

    On PostgreSQL, a role's or a database's CONNECTION LIMIT tighter than what the server
    has free is the limit (it does not bind a superuser).
    """
    limited_by: str | None = None
    if backend == "postgresql":
        row = await driver.fetchrow(
            "SELECT current_setting('max_connections')::int, "
            "current_setting('superuser_reserved_connections')::int, "
            "coalesce(current_setting('reserved_connections', true)::int, 0), "
            "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), "
            "r.rolsuper, r.rolconnlimit, "
            "(SELECT count(*) FROM pg_stat_activity WHERE usesysid = r.oid "
            " AND backend_type = 'client backend'), "
            "d.datconnlimit, "
            "(SELECT count(*) FROM pg_stat_activity WHERE datid = d.oid "
            " AND backend_type = 'client backend') "
            "FROM pg_roles r, pg_database d "
            "WHERE r.rolname = current_user AND d.datname = current_database()"
        )
        limit, superuser, reserved_role, in_use = (int(v) for v in row[:4])
        reserved = superuser + reserved_role
        free = limit - reserved - in_use
        usable = limit - reserved
        if not row[4]:  # a superuser is not bound by them
            for label, own_limit, own_in_use in (
                ("role", row[5], row[6]),
                ("database", row[7], row[8]),
            ):
                if own_limit is None or int(own_limit) < 0:
                    continue
                own_free = int(own_limit) - int(own_in_use)
                if own_free < free:
                    free, usable = own_free, int(own_limit)
                    limited_by = (
                        f"the {label}'s CONNECTION LIMIT {own_limit} less {own_in_use} in use"
                    )
    elif backend == "mysql":
        mysql_limit = _as_int(await _scalar(backend, driver, "SELECT @@GLOBAL.max_connections"))
        connected = _as_int(
            await _scalar(
                backend,
                driver,
                "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                "WHERE VARIABLE_NAME = 'THREADS_CONNECTED'",
            )
        )
        if mysql_limit is None or connected is None:
            return None
        limit, in_use, reserved = mysql_limit, connected, 0
        free, usable = limit - in_use, limit
    else:
        return None
    margin = max(SLOT_MARGIN_MIN, usable // 5)
    allowed = max(1, min(MAX_CONNECTIONS, free - margin + 1))
    return SlotBudget(limit, reserved, in_use, free, margin, allowed, limited_by)
