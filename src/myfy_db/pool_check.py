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
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from myfy_db.connections import abort as abort_connections
from myfy_db.engine import create_engine, describe_target, engine_options, translate_errors
from myfy_db.errors import (
    CannotConnect,
    CheckFailed,
    ConfigError,
    ExitCode,
    MyfyDbError,
    OperationFailed,
)
from myfy_db.findings import Finding
from myfy_db.pooler import (
    PoolerInfo,
    detect_pooler,
    pooler_findings,
    safe_url,
    unsafe_settings,
)
from myfy_db.settings import DatabaseSettings
from myfy_db.stats import Reservoir, log_buckets, percentile
from myfy_db.urls import is_sqlite_memory, mask_url

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = [
    "DEFAULT_SAMPLES",
    "DEFAULT_TIMEOUT",
    "HistogramBucket",
    "LatencyStats",
    "PoolReport",
    "PoolStatus",
    "ServerInfo",
    "SlotBudget",
    "TargetReport",
    "WatchLine",
    "check_pool",
    "histogram",
    "latency_stats",
    "pool_status",
    "probe_pooler",
    "targets_of",
    "watch_pool",
]

DEFAULT_SAMPLES = 20
DEFAULT_TIMEOUT = 30.0
PING_SQL = "SELECT 1"
#: Untimed pings on each connection right before its timed samples: a freshly started server
#: process (and the scheduler's placement of it) is slower for its first few round trips,
#: which is start-up cost, not the latency the application will see.
WARM_UP_PINGS = 5
HISTOGRAM_BUCKETS = 8
#: At most this many connections to one database, whatever pool_size or --connections say.
MAX_CONNECTIONS = 200
#: Slots always left free for everyone else (or a fifth of the usable slots, if more).
SLOT_MARGIN_MIN = 2
#: Timings kept per measure: beyond it a uniform sample (exact n, mean, min and max).
SAMPLE_CAPACITY = 100_000


@dataclass(frozen=True)
class LatencyStats:
    """Summary of a set of timings, in milliseconds."""

    n: int
    mean_ms: float
    min_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True)
class HistogramBucket:
    """Samples with ``from_ms <= value < to_ms`` (the last bucket includes ``to_ms``)."""

    from_ms: float
    to_ms: float
    count: int


@dataclass(frozen=True)
class ServerInfo:
    """What the server says about itself; None where it does not tell."""

    version: str | None
    max_connections: int | None
    connections_in_use: int | None


@dataclass(frozen=True)
class PoolStatus:
    """A pool's state, in plain numbers (None where the pool class does not tell).

    ``size`` is ``pool_size``; ``opened`` the connections the pool holds open (idle or
    checked out); ``overflow`` how many of them are beyond ``pool_size`` (never negative:
    SQLAlchemy's own counter starts at ``-pool_size``).
    """

    pool_class: str
    size: int | None
    opened: int | None
    checked_in: int | None
    checked_out: int | None
    overflow: int | None

    def describe(self) -> str:
        """``QueuePool: size 5, 2 open (2 idle, 0 checked out), overflow 0``."""
        if self.size is None:
            return f"{self.pool_class} (one shared connection)"
        parts = [f"size {self.size}"]
        if self.opened is not None:
            detail = ", ".join(
                f"{value} {name}"
                for name, value in (("idle", self.checked_in), ("checked out", self.checked_out))
                if value is not None
            )
            parts.append(f"{self.opened} open" + (f" ({detail})" if detail else ""))
        if self.overflow is not None:
            parts.append(f"overflow {self.overflow}")
        return f"{self.pool_class}: " + ", ".join(parts)


@dataclass(frozen=True)
class SlotBudget:
    """The server's free connection slots, read before the check opens its connections.

    ``free`` is ``max_connections`` less the reserved slots less the connections in use
    (counting the one that read them); the check opens at most ``allowed``: what is free
    less ``margin``, plus the reading connection itself (closed before the others open).
    """

    max_connections: int
    reserved: int
    in_use: int
    free: int
    margin: int
    allowed: int


@dataclass(frozen=True)
class TargetReport:
    """The check of one database: the primary or one replica.

    A target that could not be checked has ``ok`` False, its ``exit_code`` and ``error``
    (and ``hint``), and None for what was not measured.
    """

    role: str
    url: str
    target: str
    backend: str
    ok: bool
    exit_code: int
    error: str | None
    hint: str | None
    requested: int
    connections: int
    samples_per_connection: int
    pre_ping: bool
    connect: LatencyStats | None = None
    checkout: LatencyStats | None = None
    round_trip: LatencyStats | None = None
    histogram: list[HistogramBucket] = field(default_factory=list)
    server: ServerInfo | None = None
    pool: PoolStatus | None = None
    slots: SlotBudget | None = None
    pooler: PoolerInfo | None = None
    findings: list[Finding] = field(default_factory=list)


@dataclass(frozen=True)
class PoolReport:
    """The result of :func:`check_pool`: one :class:`TargetReport` per database."""

    targets: list[TargetReport]
    connections: int
    samples: int
    timeout_s: float | None
    max_latency_ms: float | None
    elapsed_ms: float
    over_threshold: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """The worst target's exit code (an unreachable one, 4, outranks a finding, 5)."""
        return max((t.exit_code for t in self.targets), key=_RANK.__getitem__, default=0)

    @property
    def ok(self) -> bool:
        """True when every target was checked and nothing was found."""
        return self.exit_code == 0

    def failure(self) -> MyfyDbError | None:
        """The error the command ends with (exit code :attr:`exit_code`), or None."""
        code = self.exit_code
        if code == 0:
            return None
        problems = [f"{t.role}: {t.error}" for t in self.targets if t.exit_code != 0 and t.error]
        hints = [t.hint for t in self.targets if t.exit_code == code and t.hint]
        error_class = _ERRORS.get(code, OperationFailed)
        hint = hints[0] if len(problems) == 1 and hints else None
        return error_class("; ".join(problems), hint=hint)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (the ``--json`` document): times in ``*_ms`` keys."""
        document = asdict(self)
        document["ok"] = self.ok
        document["exit_code"] = self.exit_code
        return document


#: Exit codes from least to most severe, for "the worst one".
_RANK = {0: 0, 5: 1, 1: 2, 4: 3, 2: 4}
_ERRORS: dict[int, type[MyfyDbError]] = {
    1: OperationFailed,
    2: ConfigError,
    4: CannotConnect,
    5: CheckFailed,
}


def reservoir_stats(reservoir: Reservoir) -> LatencyStats:
    """:func:`latency_stats` of a :class:`Reservoir`: exact n, mean, min and max; the
    percentiles from its bounded sample."""
    if not reservoir.count:
        return latency_stats([])
    ordered = sorted(reservoir.values)
    return LatencyStats(
        n=reservoir.count,
        mean_ms=reservoir.total / reservoir.count,
        min_ms=reservoir.low,
        p50_ms=percentile(ordered, 0.50),
        p95_ms=percentile(ordered, 0.95),
        p99_ms=percentile(ordered, 0.99),
        max_ms=reservoir.high,
    )


def latency_stats(values_ms: Sequence[float]) -> LatencyStats:
    """n, mean, min, p50, p95, p99 and max of ``values_ms``."""
    ordered = sorted(values_ms)
    if not ordered:
        return LatencyStats(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    return LatencyStats(
        n=len(ordered),
        mean_ms=sum(ordered) / len(ordered),
        min_ms=ordered[0],
        p50_ms=percentile(ordered, 0.50),
        p95_ms=percentile(ordered, 0.95),
        p99_ms=percentile(ordered, 0.99),
        max_ms=ordered[-1],
    )


def histogram(
    values_ms: Sequence[float], buckets: int = HISTOGRAM_BUCKETS
) -> list[HistogramBucket]:
    """Log-width buckets from the smallest to the largest value (see :func:`log_buckets`)."""
    return [HistogramBucket(*bucket) for bucket in log_buckets(values_ms, buckets)]


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class _Progress:
    """What the check is doing now, so a timeout can say what did not finish."""

    def __init__(self) -> None:
        self.step = "starting"


def _backend(url: str) -> str:
    from sqlalchemy.engine import make_url

    name = make_url(url).get_backend_name()
    return "mysql" if name == "mariadb" else name


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
    """The server's free slots, read on one driver connection (counted as in use)."""
    if backend == "postgresql":
        row = await driver.fetchrow(
            "SELECT current_setting('max_connections')::int, "
            "current_setting('superuser_reserved_connections')::int, "
            "coalesce(current_setting('reserved_connections', true)::int, 0), "
            "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        )
        limit, superuser, reserved_role, in_use = (int(v) for v in row)
        reserved = superuser + reserved_role
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
    else:
        return None
    free = limit - reserved - in_use
    margin = max(SLOT_MARGIN_MIN, (limit - reserved) // 5)
    allowed = max(1, min(MAX_CONNECTIONS, free - margin + 1))
    return SlotBudget(limit, reserved, in_use, free, margin, allowed)


async def _probe(
    settings: DatabaseSettings, url: str, backend: str, requested: int
) -> tuple[SlotBudget | None, PoolerInfo | None]:
    """Read the free slots and, on PostgreSQL, look for a transaction pooler.

    Runs on a probe engine of its own, with the prepared-statement caches off (safe behind
    any pooler, whatever the application's settings), and closes it before the check opens
    its connections.
    """
    safe = safe_url(url) if backend == "postgresql" else url
    engine = create_engine(settings, safe, pool_size=2, max_overflow=0, pool_pre_ping=False)
    opened: list[AsyncConnection] = []
    try:
        first = engine.connect()
        opened.append(first)
        await first.start()
        driver = (await first.get_raw_connection()).driver_connection
        slots = await _read_slots(backend, driver)
        pooler = None
        if backend == "postgresql" and (slots is None or slots.allowed >= 2):
            second = engine.connect()
            opened.append(second)
            await second.start()
            other = (await second.get_raw_connection()).driver_connection
            detected, pids, held, evidence = await detect_pooler(driver, other)
            unsafe = unsafe_settings(url, engine_options(settings, url).get("connect_args", {}))
            pooler = PoolerInfo(detected, pids, held, evidence, unsafe if detected else [])
    except BaseException:
        await asyncio.shield(_close(opened, engine, invalidate=True))
        raise
    await asyncio.shield(_close(opened, engine, invalidate=False))
    return slots, pooler


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
                f"(max_connections {slots.max_connections} less {slots.reserved} reserved "
                f"less {slots.in_use} in use); opened {slots.allowed}, keeping a margin of "
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


async def probe_pooler(settings: DatabaseSettings, url: str | None = None) -> PoolerInfo | None:
    """Whether ``url`` (default: the primary) sits behind a transaction pooler, and whether
    the engine's settings are safe for it; None where it does not apply (not PostgreSQL)."""
    target = url or settings.database_url
    backend = _backend(target)
    if backend != "postgresql":
        return None
    with translate_errors(target, "looking for a transaction pooler"):
        _, pooler = await _probe(settings, target, backend, 1)
    return pooler


# -- one target ----------------------------------------------------------------------------


async def _check_target(
    settings: DatabaseSettings,
    url: str,
    role: str,
    requested: int,
    samples: int,
    timeout: float | None,
    max_latency_ms: float | None,
) -> TargetReport:
    """Check one database; its failure is reported, not raised (Ctrl-C still propagates)."""
    backend = _backend(url)
    progress = _Progress()
    base: dict[str, Any] = {
        "role": role,
        "url": mask_url(url),
        "target": describe_target(url),
        "backend": backend,
        "requested": requested,
        "samples_per_connection": samples,
        "pre_ping": settings.pool_pre_ping,
    }
    where = f"{role} {describe_target(url)}"
    try:
        async with asyncio.timeout(timeout):
            with translate_errors(url, f"check-pool on {where}"):
                progress.step = f"connecting to {where}"
                slots: SlotBudget | None = None
                pooler: PoolerInfo | None = None
                if backend != "sqlite":
                    slots, pooler = await _probe(settings, url, backend, requested)
                findings = _probe_findings(requested, slots, pooler)
                count = min(requested, MAX_CONNECTIONS if slots is None else slots.allowed)
                if is_sqlite_memory(url):
                    count = 1  # one shared connection (a static pool)
                if pooler is not None and pooler.unsafe:
                    # Connecting through the pooler with these settings is what fails.
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
                figures = await _measure(settings, url, backend, where, count, samples, progress)
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
    return TargetReport(
        **base,
        ok=False,
        exit_code=int(error.exit_code),
        error=error.message,
        hint=error.hint,
        connections=0,
    )


async def _measure(
    settings: DatabaseSettings,
    url: str,
    backend: str,
    where: str,
    count: int,
    samples: int,
    progress: _Progress,
) -> dict[str, Any]:
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

        results = await asyncio.gather(*(open_one() for _ in range(count)), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        opened_ok = [r for r in results if not isinstance(r, BaseException)]
        connect_ms = [p for _, _, p in opened_ok if p is not None]
        drivers = [driver for _, driver, _ in opened_ok]
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
    return {
        "connect": latency_stats(connect_ms),
        "checkout": reservoir_stats(checkout),
        "round_trip": reservoir_stats(round_trip),
        "histogram": histogram(round_trip.values),
        "server": server,
        "pool": pool,
    }


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
    settings: DatabaseSettings, replicas: Sequence[str] | None = None, primary_only: bool = False
) -> list[tuple[str, str]]:
    """``(role, url)`` of each database to check: the primary, then each replica.

    ``replicas`` (``--replica``) replaces the configured ``replica_urls``;
    ``primary_only`` skips them.
    """
    targets = [("primary", settings.database_url)]
    if not primary_only:
        urls = list(replicas) if replicas else list(settings.replica_urls or [])
        targets += [(f"replica {i}", url) for i, url in enumerate(urls, 1)]
    return targets


async def check_pool(
    settings: DatabaseSettings,
    *,
    connections: int | None = None,
    samples: int = DEFAULT_SAMPLES,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_latency_ms: float | None = None,
    replicas: Sequence[str] | None = None,
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


# -- --watch: the check again every N seconds ---------------------------------------------


@dataclass(frozen=True)
class WatchLine:
    """One target in one round of :func:`watch_pool`."""

    time: str
    round: int
    role: str
    target: str
    ok: bool
    exit_code: int
    p50_ms: float | None
    p95_ms: float | None
    #: Rounds of this target that failed so far (this one included).
    errors: int
    error: str | None
    connections_in_use: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """``16:45:01 primary 127.0.0.1:5432/shop p50 0.120 ms p95 0.310 ms errors 0 in use 12``."""

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f} ms"

        in_use = "?" if self.connections_in_use is None else str(self.connections_in_use)
        line = (
            f"{self.time} {self.role} {self.target} p50 {ms(self.p50_ms)} p95 {ms(self.p95_ms)} "
            f"errors {self.errors} in use {in_use}"
        )
        return line if self.error is None else f"{line}: {self.error}"


async def watch_pool(
    settings: DatabaseSettings,
    interval: float,
    on_round: Callable[[list[WatchLine], PoolReport], None],
    *,
    count: int | None = None,
    **check: Any,
) -> int:
    """Run :func:`check_pool` every ``interval`` seconds, ``count`` times (None: until
    cancelled); ``on_round`` gets one :class:`WatchLine` per target each round. Returns the
    worst exit code seen. ``check`` holds :func:`check_pool`'s keyword arguments.
    """
    import datetime

    if interval <= 0:
        raise ConfigError(f"--watch must be more than 0 seconds (got {interval:g})")
    if count is not None and count < 1:
        raise ConfigError(f"--count must be at least 1 (got {count})")
    failures: dict[str, int] = {}
    worst = 0
    round_number = 0
    next_start = time.monotonic()
    while count is None or round_number < count:
        round_number += 1
        report = await check_pool(settings, **check)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines = []
        for target in report.targets:
            if not target.ok:
                failures[target.role] = failures.get(target.role, 0) + 1
            lines.append(
                WatchLine(
                    time=stamp,
                    round=round_number,
                    role=target.role,
                    target=target.target,
                    ok=target.ok,
                    exit_code=target.exit_code,
                    p50_ms=None if target.round_trip is None else target.round_trip.p50_ms,
                    p95_ms=None if target.round_trip is None else target.round_trip.p95_ms,
                    errors=failures.get(target.role, 0),
                    error=target.error,
                    connections_in_use=None
                    if target.server is None
                    else target.server.connections_in_use,
                )
            )
        worst = max(worst, report.exit_code, key=_RANK.__getitem__)
        on_round(lines, report)
        if count is not None and round_number >= count:
            break
        next_start += interval
        await asyncio.sleep(max(0.0, next_start - time.monotonic()))
    return worst
