"""Transaction poolers (PgBouncer and the like) between the application and PostgreSQL.

Behind a pooler in transaction (or statement) mode, one client connection runs each
transaction on whichever server backend is free. :func:`detect_pooler` sees that from the
client side: it runs a transaction on one connection, has a second connection hold a
transaction open (taking the backend the first one just released, if a pooler hands it on),
then runs another transaction on the first connection. A plain server, or a pooler in
session mode, runs both on the same backend; a transaction pooler runs them on different
ones, or makes the first connection wait for the second to finish.

asyncpg behind such a pooler needs its prepared-statement caches off and unique statement
names (:func:`unsafe_settings`); the engine factory sets all three from the URL alone
(``?prepared_statement_cache_size=0``, see :func:`myfy_db.engine.engine_options`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from myfy_db.pool.findings import Finding
from myfy_db.urls import DatabaseUrl

__all__ = [
    "DETECTED_MESSAGE",
    "SAFE_URL_QUERY",
    "PoolerInfo",
    "detect_pooler",
    "direct_backend",
    "is_prepared_statement_clash",
    "pooler_findings",
    "safe_url",
    "unsafe_settings",
]

DETECTED_MESSAGE = (
    "transaction pooler detected: consecutive transactions on one connection ran on "
    "different server backends"
)
#: The URL query that makes myfy-db's engine safe behind a transaction pooler.
SAFE_URL_QUERY = "prepared_statement_cache_size=0"
#: How long the first connection may wait for a backend while the second holds one.
_HANDOVER_WAIT = 0.5
_PID_SQL = "SELECT pg_backend_pid()"


@dataclass(frozen=True)
class PoolerInfo:
    """What :func:`detect_pooler` saw on two client connections."""

    detected: bool
    #: Server backends (``pg_backend_pid()``) of the first connection's two transactions
    #: and of the second connection's held transaction.
    first_pids: list[int]
    held_pid: int | None
    evidence: str
    unsafe: list[str] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        return not self.unsafe


async def detect_pooler(first: Any, second: Any) -> tuple[bool, list[int], int | None, str]:
    """Whether two asyncpg connections sit behind a transaction pooler.

    Returns ``(detected, first_pids, held_pid, evidence)``. Uses unnamed statements only
    (``execute`` for the transaction control, ``fetchval`` with the driver's own settings
    for the pid), so it works whatever the prepared-statement settings are.
    """
    before = int(await first.fetchval(_PID_SQL))
    await second.execute("BEGIN")
    try:
        held = int(await second.fetchval(_PID_SQL))
        pending = asyncio.ensure_future(first.fetchval(_PID_SQL))
        done, _ = await asyncio.wait({pending}, timeout=_HANDOVER_WAIT)
        waited = not done
    finally:
        await second.execute("ROLLBACK")
    after = int(await pending)
    pids = [before, after]
    if before != after:
        return True, pids, held, f"backend {before}, then backend {after}"
    if held == before:
        return True, pids, held, f"a second connection's transaction ran on backend {before}"
    if waited:
        return (
            True,
            pids,
            held,
            "the connection waited for a backend while another connection held a transaction",
        )
    return False, pids, held, f"both transactions ran on backend {before}"


async def direct_backend(driver: Any) -> PoolerInfo | None:
    """A :class:`PoolerInfo` saying "no pooler" when the asyncpg connection ``driver`` is
    the server's own backend, else None (something sits in between: look with
    :func:`detect_pooler`).

    The server tells each client its backend's pid at startup (BackendKeyData, asyncpg's
    ``get_server_pid()``); a pooler hands out keys of its own (PgBouncer: random ones),
    since the backend behind a client changes. So a startup pid equal to
    ``pg_backend_pid()`` means the client talks to the backend itself: one round trip on a
    connection that is open anyway, instead of a second connection and two transactions.
    """
    startup = driver.get_server_pid()
    backend = int(await driver.fetchval(_PID_SQL))
    if startup != backend:
        return None
    return PoolerInfo(
        False,
        [backend, startup],
        None,
        f"the connection is the server's own backend {backend} (the pid it gave at startup)",
    )


#: asyncpg's errors for a prepared statement that already exists or does not exist: what a
#: statement cache meets on a backend that a transaction pooler shares between clients.
_CLASH_NAMES = frozenset({"DuplicatePreparedStatementError", "InvalidSQLStatementNameError"})


def is_prepared_statement_clash(exc: BaseException) -> bool:
    """``exc`` is a prepared statement that already exists or does not exist (the mark of a
    statement cache behind a transaction pooler)."""
    from myfy_db.driver_errors import walk

    return any(type(item).__name__ in _CLASH_NAMES for item in walk(exc))


def safe_url(url: str | DatabaseUrl) -> str:
    """``url`` with ``prepared_statement_cache_size=0`` in its query: with it, myfy-db's
    engine factory builds an engine that is safe behind a transaction pooler."""
    parsed = DatabaseUrl.of(url).sqlalchemy_url
    query = dict(parsed.query)
    query["prepared_statement_cache_size"] = "0"
    return parsed.set(query=query).render_as_string(hide_password=False)


def unsafe_settings(url: str | DatabaseUrl, connect_args: Mapping[str, Any]) -> list[str]:
    """What is unsafe behind a transaction pooler in an asyncpg engine's configuration.

    ``url`` is the engine's URL and ``connect_args`` what it passes to the driver (see
    :func:`myfy_db.engine.engine_options`). Each entry names the setting and what to use.
    Read from the configuration, not from a connection: connecting with unsafe settings
    through the pooler is what fails.
    """
    database_url = DatabaseUrl.of(url)
    if database_url.dialect != "postgresql" or database_url.driver != "asyncpg":
        return []
    parsed = database_url.sqlalchemy_url
    problems = []
    if str(parsed.query.get("prepared_statement_cache_size", "100")) != "0":
        problems.append(
            f"SQLAlchemy's prepared-statement cache is on: add ?{SAFE_URL_QUERY} to the URL"
        )
    if connect_args.get("statement_cache_size", 100) != 0:
        problems.append(
            "asyncpg's statement cache is on: statement_cache_size=0 must reach the driver "
            f"(myfy-db's engine factory passes it when the URL has ?{SAFE_URL_QUERY})"
        )
    if connect_args.get("prepared_statement_name_func") is None:
        problems.append(
            "prepared statements get per-connection names (__asyncpg_stmt_N__) that collide "
            "on a shared backend: unique names via prepared_statement_name_func (myfy-db's "
            f"engine factory sets it when the URL has ?{SAFE_URL_QUERY})"
        )
    return problems


def pooler_findings(pooler: PoolerInfo | None) -> list[Finding]:
    """``transaction_pooler`` (info) when one was detected, and ``pooler_unsafe_settings``
    (error) with what to set when the engine's settings are unsafe for it."""
    if pooler is None or not pooler.detected:
        return []
    findings = [Finding("transaction_pooler", "info", f"{DETECTED_MESSAGE} ({pooler.evidence})")]
    if pooler.unsafe:
        findings.append(
            Finding(
                "pooler_unsafe_settings",
                "error",
                "the engine's settings are unsafe behind a transaction pooler (prepared "
                "statements that 'do not exist' or 'already exist'): "
                + "; ".join(pooler.unsafe)
                + f". Use ?{SAFE_URL_QUERY} in the database URL",
            )
        )
    return findings
