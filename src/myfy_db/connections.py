"""Every driver connection the engines of this process hold, and a way to drop them at once.

An interrupted command must end within two seconds even when the server has stopped
answering, and a graceful close (a rollback, a ``Terminate`` message, a lock release) waits
for that server. :func:`abort` instead cuts each connection where it stands, without a
word to the server: the socket is closed (asyncpg, aiomysql) or the running statement is
interrupted (sqlite3). Whatever awaited that connection fails at once, so cleanup code ends
quickly, and the server rolls back and releases the session's locks when it sees the socket
close. :func:`track` is called by :func:`myfy_db.engine.create_engine` for every engine.
"""

from __future__ import annotations

import weakref
from contextlib import suppress
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

#: Driver connections by the engine (its sync core) whose pool opened them.
_live: weakref.WeakKeyDictionary[Any, weakref.WeakSet[Any]] = weakref.WeakKeyDictionary()


def track(engine: AsyncEngine) -> None:
    """Remember every driver connection ``engine``'s pool opens (until it is collected)."""
    from sqlalchemy import event

    drivers: weakref.WeakSet[Any] = weakref.WeakSet()
    _live[engine.sync_engine] = drivers

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        if driver is not None:
            with suppress(TypeError):  # a driver object that cannot be weakly referenced
                drivers.add(driver)

    event.listen(engine.sync_engine.pool, "connect", on_connect)


def _drivers(engine: AsyncEngine | None) -> list[Any]:
    if engine is not None:
        return list(_live.get(engine.sync_engine, ()))
    return [driver for drivers in list(_live.values()) for driver in list(drivers)]


def abort(engine: AsyncEngine | None = None) -> int:
    """Cut every open connection of ``engine`` (default: of every engine) without talking
    to its server; return how many were cut.

    Call it on the event loop's thread: the sockets belong to that loop.
    """
    count = 0
    for driver in _drivers(engine):
        if _is_closed(driver):
            continue
        with suppress(Exception):
            _abort(driver)
            count += 1
    return count


def _is_closed(driver: Any) -> bool:
    is_closed = getattr(driver, "is_closed", None)
    if callable(is_closed):  # asyncpg
        with suppress(Exception):
            return bool(is_closed())
    if hasattr(driver, "_writer"):  # aiomysql
        return driver._writer is None
    if hasattr(driver, "_running"):  # aiosqlite: the worker thread runs until closed
        return not driver._running
    return False


def _abort(driver: Any) -> None:
    terminate = getattr(driver, "terminate", None)
    if callable(terminate):  # asyncpg: aborts the transport, no Terminate message
        terminate()
        return
    writer = getattr(driver, "_writer", None)
    if writer is not None:  # aiomysql: abort the socket (close would flush first)
        writer.transport.abort()
        driver.close()
        return
    sqlite = getattr(driver, "_connection", None)
    if sqlite is not None and hasattr(sqlite, "interrupt"):  # aiosqlite: stop the statement
        sqlite.interrupt()
