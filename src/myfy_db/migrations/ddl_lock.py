"""``--ddl-lock-timeout`` and ``--retries``: a revision waits for its table locks only so long.

A revision's ``ALTER TABLE`` queued behind one long transaction makes every later query on
that table queue behind it. Before the revisions run, the migration connection gets a
session lock timeout (PostgreSQL ``lock_timeout``, MySQL/MariaDB ``lock_wait_timeout``), so
the revision fails fast instead. While the revisions run, a watcher on its own connection
notes who blocks the migration connection (PostgreSQL: ``pg_blocking_pids`` and
``pg_stat_activity``; MariaDB/MySQL: the process list and ``INNODB_TRX``), so the failure can
name the table and the holder. A revision that failed only on a lock timeout may be retried
(``--retries N``) with a growing pause, one line on stderr each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from myfy_db.driver_errors import mysql_code, sqlstate
from myfy_db.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection

    from myfy_db.settings import DatabaseSettings


Reporter = Callable[[str], None]
DEFAULT_SECONDS = 5.0
POLL_SECONDS = 0.1
# The longest a run goes before the watcher connects (see DdlLock.watching).
WATCH_AFTER_SECONDS = 1.0
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
#: The largest lock timeout each server accepts, in its own unit: PostgreSQL's
#: ``lock_timeout`` is an int of milliseconds, MySQL/MariaDB's ``lock_wait_timeout`` whole
#: seconds up to a year.
PG_MAX_MILLISECONDS = 2147483647
MYSQL_MAX_SECONDS = 31536000
#: How far below a whole unit a value may be and still count as it (float noise:
#: 2147483.647 * 1000 is 2147483647.0000002).
_NOISE = 1e-6

_PG_BLOCKERS = """
SELECT COALESCE(w.relation::regclass::text, w.locktype), b.pid, b.application_name,
       host(b.client_addr), b.state, EXTRACT(EPOCH FROM now() - b.xact_start), b.usename
FROM pg_locks w
JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid) ON true
JOIN pg_stat_activity b ON b.pid = bp.pid
WHERE w.pid = :pid AND NOT w.granted
"""

_MYSQL_BLOCKERS = """
SELECT w.INFO, p.ID, p.USER, p.HOST, p.INFO, TIMESTAMPDIFF(SECOND, t.trx_started, NOW())
FROM information_schema.PROCESSLIST w
JOIN information_schema.PROCESSLIST p ON p.DB = w.DB AND p.ID <> w.ID
JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID
WHERE w.ID = :pid AND w.STATE LIKE 'Waiting for%lock%' AND p.ID <> CONNECTION_ID()
"""


@dataclass(frozen=True)
class Blocker:
    """A session holding a lock the migration waits for."""

    pid: int
    application: str | None = None
    user: str | None = None
    client: str | None = None
    state: str | None = None
    transaction_seconds: float | None = None
    statement: str | None = None

    def describe(self) -> str:
        parts = [f"pid {self.pid}" if self.statement is None else f"connection {self.pid}"]
        if self.application:
            parts.append(f"application {self.application!r}")
        if self.user:
            parts.append(f"user {self.user!r}")
        if self.client:
            parts.append(f"client {self.client}")
        if self.state:
            parts.append(self.state)
        if self.transaction_seconds is not None:
            parts.append(f"transaction open {self.transaction_seconds:.1f} s")
        if self.statement is not None:
            text = " ".join(self.statement.split())
            parts.append(f"running {text[:80]!r}" if text else "idle in transaction")
        return ", ".join(parts)


@dataclass
class Waiting:
    """What the watcher last saw the migration connection wait for."""

    target: str
    blockers: list[Blocker] = field(default_factory=list)


def is_lock_timeout(exc: BaseException) -> bool:
    """True when ``exc`` is the server giving up waiting for a lock."""
    return sqlstate(exc) == "55P03" or mysql_code(exc) == 1205


_TABLE_IN = re.compile(
    r"\b(?:ALTER\s+TABLE|DROP\s+TABLE|RENAME\s+TABLE|TRUNCATE\s+TABLE|ON)\s+"
    r"(?:IF\s+EXISTS\s+)?[`\"]?(?P<table>[\w$]+(?:[`\"]?\.[`\"]?[\w$]+)?)",
    re.I,
)


def _mysql_target(statement: str) -> str:
    """``table items ('ALTER TABLE items ADD ...')`` from the waiting statement."""
    text = " ".join(statement.split())
    match = _TABLE_IN.search(text)
    quoted = repr(text[:80] + ("..." if len(text) > 80 else ""))
    return f"table {match.group('table')} ({quoted})" if match else f"the table of {quoted}"


@dataclass
class DdlLock:
    """The lock-timeout policy for one migration run."""

    seconds: float = DEFAULT_SECONDS
    retries: int = 0
    report: Reporter = lambda _: None
    waiting: Waiting | None = None
    _pid: int | None = None

    @classmethod
    def for_run(
        cls, settings: DatabaseSettings, retries: int = 0, report: Reporter = lambda _: None
    ) -> DdlLock:
        """The policy for a run against ``settings``, checked against its server (:meth:`check`)."""
        policy = cls(float(settings.ddl_lock_timeout), retries, report)
        policy.check(settings.url.backend)
        return policy

    @property
    def enabled(self) -> bool:
        """False for 0: no limit (the server's own setting stays)."""
        return self.seconds > 0

    def _in_unit(self, backend: str) -> int | None:
        """The timeout in ``backend``'s unit, a positive value rounded up (never to 0, which
        the server reads as "no limit"); None where no timeout is set."""
        if not self.enabled:
            return None
        if backend == "postgresql":
            return max(1, math.ceil(self.seconds * 1000 - _NOISE))
        if backend in ("mysql", "mariadb"):
            return max(1, math.ceil(self.seconds - _NOISE))
        return None

    def check(self, backend: str) -> None:
        """:class:`ConfigError` (exit 2) when the server of ``backend`` (``settings.url
        .backend``) cannot take this timeout: called when the run starts, before anything."""
        value = self._in_unit(backend)
        if value is None:
            return
        if backend == "postgresql":
            top, most = PG_MAX_MILLISECONDS, f"{PG_MAX_MILLISECONDS / 1000:.3f} s"
            what = "PostgreSQL's lock_timeout"
        else:
            top, most = MYSQL_MAX_SECONDS, f"{MYSQL_MAX_SECONDS} s (a year)"
            what = "MySQL/MariaDB's lock_wait_timeout"
        if value > top:
            raise ConfigError(
                f"--ddl-lock-timeout (MYFY_DATA_DDL_LOCK_TIMEOUT) {self.seconds:g} s is more "
                f"than {what} accepts: at most {most}",
                hint="give a smaller number of seconds, or 0 for no limit",
            )

    def statement(self, dialect: str) -> str | None:
        """The statement that sets the session's lock timeout on ``dialect``; None: none."""
        value = self._in_unit(dialect)
        if value is None:
            return None
        if dialect == "postgresql":
            return f"SET lock_timeout = {value}"
        return f"SET SESSION lock_wait_timeout = {value}"

    def apply(self, connection: Connection) -> None:
        """Set the session's lock timeout (committed, so a rolled-back revision keeps it).

        A connection already inside a transaction keeps it open: the setting then lasts from
        that transaction's commit on.
        """
        statement = self.statement(connection.dialect.name)
        if statement is None:
            return
        was_open = connection.in_transaction()
        connection.exec_driver_sql(statement)
        if not was_open:
            connection.commit()

    def should_retry(self, exc: BaseException, attempt: int) -> float | None:
        """The pause before retry number ``attempt`` (1-based), or None: do not retry."""
        if attempt > self.retries or not is_lock_timeout(exc):
            return None
        return float(min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** (attempt - 1)))

    def retrying(self, what: str, attempt: int, pause: float) -> None:
        """Say on stderr that ``what`` timed out and is retried, then wait ``pause``."""
        self.report(f"{what}: {self.explain()}; retry {attempt} of {self.retries} in {pause:.1f} s")
        self.waiting = None
        time.sleep(pause)

    def explain(self) -> str:
        """``could not lock items within 1 s, held by pid 42 (...)``."""
        limit = f"{self.seconds:g} s (--ddl-lock-timeout)"
        seen = self.waiting
        if seen is None:
            return f"could not get a lock within {limit}"
        text = f"could not lock {seen.target} within {limit}"
        if seen.blockers:
            text += "; held by " + "; ".join(b.describe() for b in seen.blockers)
        return text

    async def _poll(self, conn: AsyncConnection, dialect: str) -> None:
        from sqlalchemy import text

        query = text(_PG_BLOCKERS if dialect == "postgresql" else _MYSQL_BLOCKERS)
        while True:
            rows = (await conn.execute(query, {"pid": self._pid})).all()
            await conn.commit()
            if rows:
                if dialect == "postgresql":
                    blockers = [
                        Blocker(
                            int(r[1]),
                            application=r[2] or None,
                            user=r[6] or None,
                            client=r[3],
                            state=r[4],
                            transaction_seconds=float(r[5]) if r[5] is not None else None,
                        )
                        for r in rows
                    ]
                    target = f"table {rows[0][0]}"
                else:
                    blockers = [
                        Blocker(
                            int(r[1]),
                            user=r[2] or None,
                            client=r[3] or None,
                            transaction_seconds=float(r[5]) if r[5] is not None else None,
                            statement=r[4] or "",
                        )
                        for r in rows
                    ]
                    target = _mysql_target(str(rows[0][0] or ""))
                self.waiting = Waiting(target, blockers)
            await asyncio.sleep(POLL_SECONDS)

    @asynccontextmanager
    async def watching(self, connection: AsyncConnection, open_watcher: Any) -> AsyncIterator[None]:
        """Watch who blocks ``connection`` while the block runs (PostgreSQL, MySQL/MariaDB).

        ``open_watcher`` is an async context manager factory giving a second connection,
        opened in the background.
        """
        from sqlalchemy import text

        dialect = connection.dialect.name
        dialect = "mysql" if dialect == "mariadb" else dialect
        if not self.enabled or dialect not in ("postgresql", "mysql"):
            yield
            return
        function = "pg_backend_pid()" if dialect == "postgresql" else "CONNECTION_ID()"
        self._pid = int((await connection.execute(text(f"SELECT {function}"))).scalar_one())
        await connection.commit()

        async def watch() -> None:
            # Connects in the background, and only once the run has lasted a quarter of the
            # timeout (at most WATCH_AFTER_SECONDS): a quick run never opens it, and a blocked
            # statement is still seen by several polls before its lock timeout fires.
            await asyncio.sleep(min(self.seconds / 4, WATCH_AFTER_SECONDS))
            async with open_watcher() as watcher:
                await self._poll(watcher, dialect)

        task = asyncio.create_task(watch())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
