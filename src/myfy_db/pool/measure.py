"""``check_pool``: a connectivity and latency check through the application's own engine.

The check builds the engine with :func:`myfy_db.engine.create_engine` (the same factory and
pool settings the application uses), opens the pool's connections concurrently, pings each,
and measures separately:

- the physical connect time of each connection (driver connect and handshake, without
  SQLAlchemy's first-connect dialect initialisation);
- the round-trip latency of ``SELECT 1`` timed on the driver's own connection (asyncpg
  ``fetchval``, an aiomysql cursor, aiosqlite ``execute``), so the figure is the server's and
  not the ORM's; samples are taken one connection at a time, after a few untimed warm-up
  pings, so the check does not compete with itself for the event loop;
- the cost of a pooled checkout from a warm pool (including pre-ping where it is on);
- the server's version, ``max_connections`` and the connections in use where it tells;
- the pool's status at the end.

Every configured replica is checked the same way. The whole check is bounded by ``timeout``;
every connection is closed and every engine disposed on success, failure and cancellation
(Ctrl-C).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from myfy_db.connections import abort as abort_connections
from myfy_db.driver_errors import STATEMENT_POOLING_REASON, StatementPooling, translate_errors
from myfy_db.engine import create_engine, engine_options
from myfy_db.errors import (
    CannotConnect,
    ConfigError,
    ExitCode,
    MyfyDbError,
)
from myfy_db.pool.findings import Finding
from myfy_db.pool.pooler import (
    SAFE_URL_QUERY,
    PoolerInfo,
    detect_pooler,
    direct_backend,
    is_prepared_statement_clash,
    pooler_findings,
    safe_url,
    unsafe_settings,
)
from myfy_db.pool.server_info import _read_slots, _server_info, pool_status
from myfy_db.pool.stats import Reservoir
from myfy_db.settings import DatabaseSettings
from myfy_db.urls import DatabaseUrl

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from myfy_db.pool.report import (
    DEFAULT_SAMPLES,
    DEFAULT_TIMEOUT,
    MAX_CONNECTIONS,
    PING_SQL,
    SAMPLE_CAPACITY,
    WARM_UP_PINGS,
    PoolReport,
    SlotBudget,
    TargetReport,
    histogram,
    latency_stats,
    reservoir_stats,
)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class _Progress:
    """What the check is doing now, so a timeout can say what did not finish."""

    def __init__(self) -> None:
        self.step = "starting"


# -- the driver's own connection -----------------------------------------------------------


def _pinger(backend: str, driver: Any) -> Callable[[], Coroutine[Any, Any, Any]]:
    """A coroutine function running ``SELECT 1`` on the driver connection and fetching it."""
    if backend == "postgresql":

        async def ping_pg() -> Any:
            return await driver.fetchval(PING_SQL)

        return ping_pg
    if backend == "mysql":
        cursors: list[Any] = []  # one cursor per connection, reused (it holds nothing open)

        async def ping_mysql() -> Any:
            if not cursors:
                cursors.append(await driver.cursor())
            await cursors[0].execute(PING_SQL)
            return await cursors[0].fetchone()

        return ping_mysql

    async def ping_sqlite() -> Any:
        async with driver.execute(PING_SQL) as cursor:
            return await cursor.fetchone()

    return ping_sqlite


async def _probe(
    settings: DatabaseSettings, url: DatabaseUrl
) -> tuple[SlotBudget | None, PoolerInfo | None]:
    """Read the free slots and, on PostgreSQL, look for a transaction pooler, on an engine of
    its own.

    The engine has the prepared-statement caches off (safe behind any pooler, whatever the
    application's settings) and is closed before returning. A connection that is the
    server's own backend (:func:`direct_backend`) settles the question alone; otherwise a
    second connection looks (:func:`detect_pooler`).
    """
    backend = url.backend
    safe = DatabaseUrl.parse(safe_url(url)) if backend == "postgresql" else url
    engine = create_engine(settings, safe, pool_size=2, max_overflow=0, pool_pre_ping=False)
    opened: list[AsyncConnection] = []
    try:
        first = engine.connect()
        opened.append(first)
        await first.start()
        driver = (await first.get_raw_connection()).driver_connection
        slots = await _read_slots(backend, driver)
        pooler = None
        if backend == "postgresql":
            pooler = await direct_backend(driver)
            if pooler is None and (slots is None or slots.allowed >= 2):
                second = engine.connect()
                opened.append(second)
                await second.start()
                other = (await second.get_raw_connection()).driver_connection
                pooler = await _detect(settings, url, driver, other)
    except BaseException:
        await asyncio.shield(_close(opened, engine, invalidate=True))
        raise
    await asyncio.shield(_close(opened, engine, invalidate=False))
    return slots, pooler


async def _detect(
    settings: DatabaseSettings, url: DatabaseUrl, first: Any, second: Any
) -> PoolerInfo:
    """:func:`detect_pooler` on two driver connections, with the engine's unsafe settings."""
    detected, pids, held, evidence = await detect_pooler(first, second)
    unsafe = unsafe_settings(url, engine_options(settings, url).get("connect_args", {}))
    return PoolerInfo(detected, pids, held, evidence, unsafe if detected else [])


def _probe_findings(
    requested: int, slots: SlotBudget | None, pooler: PoolerInfo | None
) -> list[Finding]:
    findings = []
    if slots is not None and requested > slots.allowed:
        findings.append(
            Finding(
                "free_slots",
                "error",
                f"asked for {requested} connections, but the server has {slots.free} free "
                f"({slots.describe()}); opened {slots.allowed}, keeping a margin of "
                f"{slots.margin} for everyone else",
            )
        )
    elif slots is None and requested > MAX_CONNECTIONS:
        findings.append(
            Finding(
                "connection_cap",
                "error",
                f"asked for {requested} connections; check-pool opens at most "
                f"{MAX_CONNECTIONS} to one database (opened {MAX_CONNECTIONS})",
            )
        )
    findings += pooler_findings(pooler)
    return findings


async def probe_pooler(
    settings: DatabaseSettings, url: str | DatabaseUrl | None = None
) -> PoolerInfo | None:
    """Whether ``url`` (default: the primary) sits behind a transaction pooler, and whether
    the engine's settings are safe for it; None where it does not apply (not PostgreSQL)."""
    target = settings.url if not url else DatabaseUrl.of(url)
    if target.backend != "postgresql":
        return None
    with translate_errors(target, "looking for a transaction pooler"):
        _, pooler = await _probe(settings, target)
    return pooler


# -- one target ----------------------------------------------------------------------------


async def _check_target(
    settings: DatabaseSettings,
    url: DatabaseUrl,
    role: str,
    requested: int,
    samples: int,
    timeout: float | None,
    max_latency_ms: float | None,
) -> TargetReport:
    """Check one database; its failure is reported, not raised (Ctrl-C still propagates)."""
    backend = url.backend
    progress = _Progress()
    base: dict[str, Any] = {
        "role": role,
        "url": url.masked,
        "target": url.target,
        "backend": backend,
        "requested": requested,
        "samples_per_connection": samples,
        "pre_ping": settings.pool_pre_ping,
    }
    where = f"{role} {url.target}"
    try:
        async with asyncio.timeout(timeout):
            with translate_errors(url, f"check-pool on {where}"):
                progress.step = f"connecting to {where}"
                measured = await _measure(
                    settings, url, backend, where, requested, samples, progress
                )
                slots, pooler, count = measured.slots, measured.pooler, measured.count
                findings = _probe_findings(requested, slots, pooler)
                if measured.figures is None:
                    # Behind a transaction pooler with unsafe settings: measuring is what fails.
                    return TargetReport(
                        **base,
                        ok=False,
                        exit_code=int(ExitCode.CHECK_FAILED),
                        error=findings[-1].reason,
                        hint=None,
                        connections=0,
                        slots=slots,
                        pooler=pooler,
                        findings=findings,
                    )
                figures = measured.figures
    except TimeoutError:
        return _failed(
            base,
            CannotConnect(
                f"check-pool did not finish within {timeout:g} s: timed out {progress.step}",
                hint="the server did not answer in time; check the host, port and firewall",
            ),
        )
    except MyfyDbError as error:
        return _failed(base, error)
    round_trip = figures["round_trip"]
    if max_latency_ms is not None and round_trip.p95_ms > max_latency_ms:
        findings.append(
            Finding(
                "max_latency",
                "error",
                f"round-trip p95 {round_trip.p95_ms:.3f} ms above --max-latency-ms "
                f"{max_latency_ms:g}",
            )
        )
    errors = [f for f in findings if f.severity == "error"]
    return TargetReport(
        **base,
        **figures,
        ok=not errors,
        exit_code=int(ExitCode.CHECK_FAILED) if errors else 0,
        error="; ".join(f.reason for f in errors) or None,
        hint=None,
        connections=count,
        slots=slots,
        pooler=pooler,
        findings=findings,
    )


def _failed(base: dict[str, Any], error: MyfyDbError) -> TargetReport:
    findings = []
    if isinstance(error, StatementPooling):
        findings.append(
            Finding(
                "statement_pooler",
                "error",
                f"{STATEMENT_POOLING_REASON}: use pool_mode = transaction (with "
                f"?{SAFE_URL_QUERY} in the URL) or session for this database",
            )
        )
    return TargetReport(
        **base,
        ok=False,
        exit_code=int(error.exit_code),
        error=error.message,
        hint=error.hint,
        connections=0,
        findings=findings,
    )


def _safe_for_a_pooler(settings: DatabaseSettings, url: DatabaseUrl) -> bool:
    return not unsafe_settings(url, engine_options(settings, url).get("connect_args", {}))


@dataclass(frozen=True)
class _Measured:
    """What :func:`_measure` found: the figures (None when it stopped at an unsafe pooler),
    the free slots, the pooler and the connections it opened (or would have)."""

    figures: dict[str, Any] | None
    slots: SlotBudget | None
    pooler: PoolerInfo | None
    count: int


async def _measure(
    settings: DatabaseSettings,
    url: DatabaseUrl,
    backend: str,
    where: str,
    requested: int,
    samples: int,
    progress: _Progress,
) -> _Measured:
    """Open the connections, read the slots and look for a pooler on them, and time them.

    The first connection reads the free slots (so the others never take more than are free
    less the margin) and, on PostgreSQL, tells whether it is the server's own backend
    (:func:`direct_backend`); only when it is not does the check look for a transaction
    pooler, on its first two connections when the engine's settings are safe for one, or on
    a probe engine of its own (:func:`_probe`) when they are not.
    """
    from sqlalchemy import event

    engine = create_engine(settings, url)
    connected_at: dict[int, float] = {}

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        connected_at[id(dbapi_connection)] = time.perf_counter()

    event.listen(engine.sync_engine.pool, "connect", on_connect, insert=True)
    opened: list[AsyncConnection] = []
    try:
        progress.step = f"connecting to {where}"

        async def open_one() -> tuple[AsyncConnection, Any, float | None]:
            start = time.perf_counter()
            conn = engine.connect()
            opened.append(conn)
            await conn.start()
            raw = await conn.get_raw_connection()
            done = connected_at.get(id(raw.dbapi_connection))
            physical = (done - start) * 1000.0 if done is not None else None
            return conn, raw.driver_connection, physical

        results: list[tuple[AsyncConnection, Any, float | None]] = []
        slots: SlotBudget | None = None
        pooler: PoolerInfo | None = None
        try:
            results.append(await open_one())
            first = results[0][1]
            slots = await _read_slots(backend, first)
            count = min(requested, MAX_CONNECTIONS if slots is None else slots.allowed)
            if url.memory:
                count = 1  # one shared connection (a static pool)
            if backend == "postgresql":
                progress.step = f"looking for a transaction pooler in front of {where}"
                pooler = await direct_backend(first)
                if pooler is None and count >= 2 and _safe_for_a_pooler(settings, url):
                    results.append(await open_one())
                    pooler = await _detect(settings, url, first, results[1][1])
        except Exception as exc:
            if backend != "postgresql" or not is_prepared_statement_clash(exc):
                raise
            # The application's statement cache met a backend shared through a pooler.
            await asyncio.shield(_close(opened, engine, invalidate=True))
            slots, pooler = await _probe(settings, url)
            count = min(requested, MAX_CONNECTIONS if slots is None else slots.allowed)
            if pooler is None or not pooler.unsafe:
                raise
            return _Measured(None, slots, pooler, count)
        if pooler is None and backend == "postgresql":
            # Something sits in between, and these settings may not survive it: look on a
            # probe engine with the caches off before measuring.
            _, pooler = await _probe(settings, url)
        if pooler is not None and pooler.unsafe:
            await asyncio.shield(_close(opened, engine, invalidate=False))
            return _Measured(None, slots, pooler, count)

        progress.step = f"connecting to {where}"
        more = await asyncio.gather(
            *(open_one() for _ in range(count - len(results))), return_exceptions=True
        )
        for result in more:
            if isinstance(result, BaseException):
                raise result
        results += [r for r in more if not isinstance(r, BaseException)]
        connect_ms = [p for _, _, p in results if p is not None]
        drivers = [driver for _, driver, _ in results]
        pings = [_pinger(backend, driver) for driver in drivers]

        progress.step = f"pinging the connections to {where}"
        await asyncio.gather(*(ping() for ping in pings))

        progress.step = f"measuring round trips on {where}"
        round_trip = Reservoir(SAMPLE_CAPACITY)
        for ping in pings:
            for _ in range(WARM_UP_PINGS):
                await ping()
            for _ in range(samples):
                start = time.perf_counter()
                await ping()
                round_trip.add(_ms(start))

        progress.step = f"reading server information from {where}"
        server = await _server_info(backend, drivers[0])

        progress.step = f"returning the connections to the pool of {where}"
        while opened:
            await opened.pop().close()

        progress.step = f"measuring pooled checkouts on {where}"
        checkout = Reservoir(SAMPLE_CAPACITY)
        for _ in range(samples):
            conn = engine.connect()
            opened.append(conn)
            start = time.perf_counter()
            await conn.start()
            checkout.add(_ms(start))
            await opened.pop().close()
        pool = pool_status(engine)
    except BaseException:
        # Interrupted, timed out or failed: a connection may be mid-query, so it is closed
        # without a reset (invalidated) rather than returned to the pool.
        await asyncio.shield(_close(opened, engine, invalidate=True))
        raise
    await asyncio.shield(_close(opened, engine, invalidate=False))
    figures = {
        "connect": latency_stats(connect_ms),
        "checkout": reservoir_stats(checkout),
        "round_trip": reservoir_stats(round_trip),
        "histogram": histogram(round_trip.values),
        "server": server,
        "pool": pool,
    }
    return _Measured(figures, slots, pooler, count)


async def _close(opened: list[AsyncConnection], engine: AsyncEngine, *, invalidate: bool) -> None:
    """Close every connection still checked out, then dispose of the pool.

    With ``invalidate`` each connection is cut first (no word to a server that may have
    stopped answering) and then closed without the pool's reset, which could not run on a
    connection interrupted mid-query.
    """
    if invalidate:
        abort_connections(engine)
    while opened:
        conn = opened.pop()
        try:
            if invalidate:
                await conn.invalidate()
            await conn.close()
        except Exception:
            pass  # the connection is gone either way; dispose below drops the pool
    with suppress(Exception):
        await engine.dispose()


# -- the whole check -----------------------------------------------------------------------


def _connections_for(settings: DatabaseSettings, connections: int | None) -> int:
    count = settings.pool_size if connections is None else connections
    if count < 1:
        raise ConfigError(f"--connections must be at least 1 (got {count})")
    limit = settings.pool_size + settings.max_overflow
    if settings.max_overflow >= 0 and count > limit:
        raise ConfigError(
            f"cannot open {count} connections: the pool holds at most {limit} "
            f"(pool_size {settings.pool_size} + max_overflow {settings.max_overflow})",
            hint="lower --connections or raise MYFY_DATA_MAX_OVERFLOW",
        )
    return count


def targets_of(
    settings: DatabaseSettings,
    replicas: Sequence[str | DatabaseUrl] | None = None,
    primary_only: bool = False,
) -> list[tuple[str, DatabaseUrl]]:
    """``(role, url)`` of each database to check: the primary, then each replica, parsed.

    ``replicas`` (``--replica``) replaces the configured ``replica_urls``;
    ``primary_only`` skips them.
    """
    targets = [("primary", settings.url)]
    if not primary_only:
        urls = [DatabaseUrl.of(u) for u in replicas] if replicas else list(settings.replicas)
        targets += [(f"replica {i}", url) for i, url in enumerate(urls, 1)]
    return targets


async def check_pool(
    settings: DatabaseSettings,
    *,
    connections: int | None = None,
    samples: int = DEFAULT_SAMPLES,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_latency_ms: float | None = None,
    replicas: Sequence[str | DatabaseUrl] | None = None,
    primary_only: bool = False,
) -> PoolReport:
    """Check the primary database and every replica through the shared engine factory.

    Each database is reported on its own (:class:`TargetReport`): its figures, or its
    failure and the reason; one that fails never hides the others. On a server, the free
    slots are read first and the check never opens more connections than are free less a
    margin (asking for more is a ``free_slots`` finding); on PostgreSQL it looks for a
    transaction pooler and judges the engine's settings for it. ``connections`` (default
    ``pool_size``) are opened concurrently and each is sampled ``samples`` times (in bounded
    memory). ``timeout`` seconds bound each database's check: past it, that database is
    reported as not answering (exit 4). Round-trip p95s above ``max_latency_ms`` are listed
    in :attr:`PoolReport.over_threshold`.
    """
    if samples < 1:
        raise ConfigError(f"--samples must be at least 1 (got {samples})")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"--timeout must be more than 0 seconds (got {timeout})")
    count = _connections_for(settings, connections)
    started = time.perf_counter()
    reports = [
        await _check_target(settings, url, role, count, samples, timeout, max_latency_ms)
        for role, url in targets_of(settings, replicas, primary_only)
    ]
    over = [
        f"{r.role} ({r.target}): p95 {r.round_trip.p95_ms:.3f} ms"
        for r in reports
        if r.round_trip is not None
        and max_latency_ms is not None
        and r.round_trip.p95_ms > max_latency_ms
    ]
    return PoolReport(
        targets=reports,
        connections=count,
        samples=samples,
        timeout_s=timeout,
        max_latency_ms=max_latency_ms,
        elapsed_ms=_ms(started),
        over_threshold=over,
    )
