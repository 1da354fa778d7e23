"""The migration lock: one migration run per database at a time (DESIGN.md).

A session-level lock held on a dedicated connection for the whole run:

- PostgreSQL: ``pg_advisory_lock`` (polled with ``pg_try_advisory_lock``); the holder is
  named from ``pg_locks`` and ``pg_stat_activity``.
- MySQL / MariaDB: ``GET_LOCK`` on a name derived from the database (lock names are
  server-wide); the holder is named from ``IS_USED_LOCK`` and the process list.
- SQLite: an exclusive ``flock`` on ``<database>.migrate.lock`` beside the file; the holder
  writes its pid there. An in-memory database belongs to one process and needs no lock.

Waiting is bounded by ``timeout`` seconds and reported through ``report``; running out of
time raises :class:`LockTimeout` (exit 1) naming the holder where the server can tell.
``timeout`` 0 means "do not wait": one non-blocking try (``pg_try_advisory_lock``,
``GET_LOCK(name, 0)``, a non-blocking ``flock``), and a taken lock fails at once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from myfy_db.connections import abort as abort_connections
from myfy_db.errors import OperationFailed
from myfy_db.urls import DatabaseUrl

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

#: First key of the PostgreSQL advisory lock: "myfy" in ASCII.
PG_LOCK_CLASS = 0x6D796679
#: Second key: a checksum of the lock's purpose.
PG_LOCK_OBJECT = zlib.crc32(b"myfy-db migrate") & 0x7FFFFFFF
APPLICATION_NAME = "myfy-db migrate"
POLL_SECONDS = 0.1
REPORT_EVERY_SECONDS = 10.0
#: How long a try (or a look for the holder) still in flight at the deadline may take to be
#: answered when the deadline leaves it less: with ``timeout`` 0 the one try and the look
#: for the holder need an answer, but a server that stops answering is cut by then.
ANSWER_SECONDS = 1.0

Reporter = Callable[[str], None]


T = TypeVar("T")


def _cutter(conn: AsyncConnection) -> Callable[[], object]:
    """A function that drops ``conn``'s engine's connections without a word to the server."""
    return lambda: abort_connections(conn.engine)


class LockTimeout(OperationFailed):
    """The migration lock was not acquired within ``--lock-timeout`` (exit 1)."""


@dataclass
class LockInfo:
    """How the lock was taken: the mechanism and how long it took to get it."""

    kind: str
    waited_ms: float = 0.0


def sqlite_lock_path(url: str | DatabaseUrl) -> Path | None:
    """``<database>.migrate.lock`` beside a SQLite file; None for an in-memory database."""
    database_url = DatabaseUrl.of(url)
    if database_url.memory:
        return None
    return Path(f"{database_url.database or ''}.migrate.lock")


def mysql_lock_name(database: str) -> str:
    """The ``GET_LOCK`` name for ``database`` (at most 64 characters, as MySQL requires)."""
    name = f"myfy_db.migrate.{database}"
    if len(name) > 64:
        name = f"myfy_db.migrate.{zlib.crc32(database.encode()):08x}.{database}"[:64]
    return name


async def _wait_for(
    attempt: Callable[[], Awaitable[bool]],
    holder: Callable[[], Awaitable[str | None]],
    *,
    target: str,
    timeout: float,
    report: Reporter,
    cut: Callable[[], object],
) -> float:
    """Call ``attempt`` until it succeeds or ``timeout`` passes; return the ms waited.

    ``timeout`` bounds the whole wait, a server that stops answering included: a query still
    unanswered at the deadline is ended by ``cut`` (which drops the connection) rather than
    cancelled, since a cancelled query would still wait for the server to acknowledge it.
    """
    start = time.monotonic()
    # The tries stop at ``timeout``; an answer in flight then may come up to ANSWER_SECONDS
    # after the start (``timeout`` 0: the one try and the look for the holder).
    deadline = start + max(timeout, ANSWER_SECONDS)
    next_report = 0.0
    known: str | None = None

    async def bounded(call: Callable[[], Awaitable[T]]) -> T:
        task = asyncio.ensure_future(call())
        try:
            await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not task.done():
            cut()
            await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # retrieved: the connection was cut on purpose
            raise _OutOfTime
        return task.result()

    try:
        while True:
            if await bounded(attempt):
                return (time.monotonic() - start) * 1000
            elapsed = time.monotonic() - start
            if elapsed >= timeout:
                known = await bounded(holder) or known
                break
            if elapsed >= next_report:
                known = await bounded(holder) or known
                by = f" held by {known}" if known else ""
                if next_report == 0.0:
                    report(f"waiting for the migration lock on {target}{by} (up to {timeout:g} s)")
                else:
                    report(f"still waiting for the migration lock ({elapsed:.0f} s){by}")
                next_report = elapsed + REPORT_EVERY_SECONDS
            await asyncio.sleep(min(POLL_SECONDS, max(0.0, timeout - elapsed)))
    except _OutOfTime:
        # The server did not answer before the deadline; its connection is gone.
        if timeout <= 0:
            raise LockTimeout(
                f"{target} did not answer within {ANSWER_SECONDS:g} s when asked for the "
                "migration lock (--lock-timeout 0)",
                hint="check that the database server is running and answering",
            ) from None
    by = f", held by {known}" if known else ""
    if timeout <= 0:
        raise LockTimeout(
            f"the migration lock on {target} is taken{by}; not waiting (--lock-timeout 0)",
            hint="another migration is running: let it finish, or give --lock-timeout "
            "the seconds to wait for it",
        )
    raise LockTimeout(
        f"timed out after {timeout:g} s waiting for the migration lock on {target}{by}",
        hint="another migration is running: let it finish, or raise --lock-timeout",
    )


class _OutOfTime(Exception):
    """The deadline passed while the server had not answered."""


@asynccontextmanager
async def migration_lock(
    engine: AsyncEngine, url: str | DatabaseUrl, timeout: float, report: Reporter
) -> AsyncIterator[LockInfo]:
    """Hold the migration lock for ``url``'s database while the block runs.

    ``url`` is best given parsed (``settings.url``); a string is parsed here.
    """
    database_url = DatabaseUrl.of(url)
    backend = database_url.backend
    target = database_url.target
    if backend == "sqlite":
        path = sqlite_lock_path(database_url)
        if path is None:
            yield LockInfo("none (in-memory database)")
            return
        async with _file_lock(path, target, timeout, report) as info:
            yield info
        return
    async with engine.connect() as conn:
        if backend == "postgresql":
            lock = _pg_lock(conn, target, timeout, report)
        elif backend == "mysql":
            lock = _mysql_lock(conn, target, timeout, report)
        else:
            yield LockInfo(f"none ({database_url.dialect} has no supported lock)")
            return
        held = False
        try:
            async with lock as info:
                held = True
                yield info
        except BaseException:
            if not held:
                # Timed out or interrupted while waiting, maybe inside a query the server
                # never answered: cut the connection (the server drops it, and anything it
                # held) rather than wait for a rollback.
                abort_connections(engine)
                await conn.invalidate()
            raise


@asynccontextmanager
async def _pg_lock(
    conn: AsyncConnection, target: str, timeout: float, report: Reporter
) -> AsyncIterator[LockInfo]:
    from sqlalchemy import text

    keys = {"k1": PG_LOCK_CLASS, "k2": PG_LOCK_OBJECT}

    async def attempt() -> bool:
        got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k1, :k2)"), keys)).scalar()
        await conn.commit()
        return bool(got)

    async def holder() -> str | None:
        row = (
            await conn.execute(
                text(
                    "SELECT a.pid, a.application_name, host(a.client_addr), a.usename "
                    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :k1 "
                    "AND l.objid = :k2 AND l.objsubid = 2 AND l.database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                keys,
            )
        ).first()
        await conn.commit()
        if row is None:
            return None
        pid, application, address, user = row
        details = ", ".join(
            part
            for part in (
                f"application {application!r}" if application else "",
                f"user {user!r}" if user else "",
                f"from {address}" if address else "",
            )
            if part
        )
        return f"backend pid {pid}" + (f" ({details})" if details else "")

    waited = await _wait_for(
        attempt, holder, target=target, timeout=timeout, report=report, cut=_cutter(conn)
    )
    try:
        yield LockInfo("pg_advisory_lock", waited)
    finally:
        with suppress(Exception):
            await conn.rollback()
            await conn.execute(text("SELECT pg_advisory_unlock(:k1, :k2)"), keys)
            await conn.commit()


@asynccontextmanager
async def _mysql_lock(
    conn: AsyncConnection, target: str, timeout: float, report: Reporter
) -> AsyncIterator[LockInfo]:
    from sqlalchemy import text

    # The URL names the database the connection uses: no query before the bounded wait.
    database = conn.engine.url.database or (await conn.execute(text("SELECT DATABASE()"))).scalar()
    name = {"name": mysql_lock_name(str(database or ""))}

    async def attempt() -> bool:
        got = (await conn.execute(text("SELECT GET_LOCK(:name, 0)"), name)).scalar()
        await conn.commit()
        return got == 1

    async def holder() -> str | None:
        holder_id = (await conn.execute(text("SELECT IS_USED_LOCK(:name)"), name)).scalar()
        if holder_id is None:
            await conn.commit()
            return None
        row = (
            await conn.execute(
                text("SELECT USER, HOST FROM information_schema.PROCESSLIST WHERE ID = :id"),
                {"id": holder_id},
            )
        ).first()
        await conn.commit()
        details = f" (user {row[0]!r} from {row[1]})" if row is not None else ""
        return f"connection {holder_id}{details}"

    waited = await _wait_for(
        attempt, holder, target=target, timeout=timeout, report=report, cut=_cutter(conn)
    )
    try:
        yield LockInfo("GET_LOCK", waited)
    finally:
        with suppress(Exception):
            await conn.rollback()
            await conn.execute(text("SELECT RELEASE_LOCK(:name)"), name)
            await conn.commit()


@asynccontextmanager
async def _file_lock(
    path: Path, target: str, timeout: float, report: Reporter
) -> AsyncIterator[LockInfo]:
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OperationFailed(
            f"cannot open the migration lock file {path}: {exc.strerror}",
            hint="check that the database's directory exists and is writable",
        ) from None

    async def attempt() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    async def holder() -> str | None:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return text or None

    try:
        waited = await _wait_for(
            attempt, holder, target=target, timeout=timeout, report=report, cut=lambda: None
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        try:
            yield LockInfo(f"file lock {path}", waited)
        finally:
            with suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
