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
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from myfy_db.engine import create_engine, describe_target, translate_errors
from myfy_db.errors import CannotConnect, ConfigError
from myfy_db.settings import DatabaseSettings
from myfy_db.stats import log_buckets, percentile
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
    "TargetReport",
    "check_pool",
    "histogram",
    "latency_stats",
    "pool_status",
]

DEFAULT_SAMPLES = 20
DEFAULT_TIMEOUT = 30.0
PING_SQL = "SELECT 1"
#: Untimed pings on each connection right before its timed samples: a freshly started server
#: process (and the scheduler's placement of it) is slower for its first few round trips,
#: which is start-up cost, not the latency the application will see.
WARM_UP_PINGS = 5
HISTOGRAM_BUCKETS = 8


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
class TargetReport:
    """The check of one database: the primary or one replica."""

    role: str
    url: str
    target: str
    backend: str
    connections: int
    samples_per_connection: int
    pre_ping: bool
    connect: LatencyStats
    checkout: LatencyStats
    round_trip: LatencyStats
    histogram: list[HistogramBucket]
    server: ServerInfo
    pool: PoolStatus


@dataclass(frozen=True)
class PoolReport:
    """The result of :func:`check_pool`."""

    targets: list[TargetReport]
    connections: int
    samples: int
    timeout_s: float | None
    max_latency_ms: float | None
    elapsed_ms: float
    over_threshold: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """False when a target's round-trip p95 is above ``max_latency_ms``."""
        return not self.over_threshold

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (the ``--json`` document): times in ``*_ms`` keys."""
        document = asdict(self)
        document["ok"] = self.ok
        return document


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


# -- one target ----------------------------------------------------------------------------


async def _check_target(
    settings: DatabaseSettings,
    url: str,
    role: str,
    connections: int,
    samples: int,
    progress: _Progress,
) -> TargetReport:
    from sqlalchemy import event

    backend = _backend(url)
    where = f"{role} {describe_target(url)}"
    if is_sqlite_memory(url):
        connections = 1  # one shared connection (a static pool)
    engine = create_engine(settings, url)
    connected_at: dict[int, float] = {}

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        connected_at[id(dbapi_connection)] = time.perf_counter()

    event.listen(engine.sync_engine.pool, "connect", on_connect, insert=True)
    opened: list[AsyncConnection] = []
    try:
        with _naming(role), translate_errors(url, f"check-pool on {where}"):
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

            results = await asyncio.gather(
                *(open_one() for _ in range(connections)), return_exceptions=True
            )
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
            round_trip_ms: list[float] = []
            for ping in pings:
                for _ in range(WARM_UP_PINGS):
                    await ping()
                for _ in range(samples):
                    start = time.perf_counter()
                    await ping()
                    round_trip_ms.append(_ms(start))

            progress.step = f"reading server information from {where}"
            server = await _server_info(backend, drivers[0])

            progress.step = f"returning the connections to the pool of {where}"
            while opened:
                await opened.pop().close()

            progress.step = f"measuring pooled checkouts on {where}"
            checkout_ms: list[float] = []
            for _ in range(samples):
                conn = engine.connect()
                opened.append(conn)
                start = time.perf_counter()
                await conn.start()
                checkout_ms.append(_ms(start))
                await opened.pop().close()
            pool = pool_status(engine)
    except BaseException:
        # Interrupted, timed out or failed: a connection may be mid-query, so it is closed
        # without a reset (invalidated) rather than returned to the pool.
        await asyncio.shield(_close(opened, engine, invalidate=True))
        raise
    await asyncio.shield(_close(opened, engine, invalidate=False))
    return TargetReport(
        role=role,
        url=mask_url(url),
        target=describe_target(url),
        backend=backend,
        connections=connections,
        samples_per_connection=samples,
        pre_ping=settings.pool_pre_ping,
        connect=latency_stats(connect_ms),
        checkout=latency_stats(checkout_ms),
        round_trip=latency_stats(round_trip_ms),
        histogram=histogram(round_trip_ms),
        server=server,
        pool=pool,
    )


@contextmanager
def _naming(role: str) -> Iterator[None]:
    """Prefix a connection failure with the role of the database (primary, replica N)."""
    try:
        yield
    except CannotConnect as error:
        raise CannotConnect(f"{role}: {error.message}", hint=error.hint) from error


async def _close(opened: list[AsyncConnection], engine: AsyncEngine, *, invalidate: bool) -> None:
    """Close every connection still checked out, then dispose of the pool.

    With ``invalidate`` each connection is closed without the pool's reset, which could not
    run on a connection interrupted mid-query.
    """
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


async def check_pool(
    settings: DatabaseSettings,
    *,
    connections: int | None = None,
    samples: int = DEFAULT_SAMPLES,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_latency_ms: float | None = None,
) -> PoolReport:
    """Check the primary database and every replica through the shared engine factory.

    ``connections`` (default ``pool_size``) are opened concurrently on each target and each is
    sampled ``samples`` times. ``timeout`` seconds bound the whole check: past it, the check
    stops with :class:`CannotConnect` (exit 4) naming what did not finish. A target that
    cannot be reached raises :class:`CannotConnect` naming it. The report lists targets whose
    round-trip p95 is above ``max_latency_ms`` in :attr:`PoolReport.over_threshold`; raising
    for them (exit 5) is the caller's choice, after rendering the report.
    """
    if samples < 1:
        raise ConfigError(f"--samples must be at least 1 (got {samples})")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"--timeout must be more than 0 seconds (got {timeout})")
    count = _connections_for(settings, connections)
    targets = [("primary", settings.database_url)]
    targets += [(f"replica {i}", url) for i, url in enumerate(settings.replica_urls or [], 1)]
    progress = _Progress()
    started = time.perf_counter()
    reports: list[TargetReport] = []
    try:
        async with asyncio.timeout(timeout):
            for role, url in targets:
                reports.append(await _check_target(settings, url, role, count, samples, progress))
    except TimeoutError:
        raise CannotConnect(
            f"check-pool did not finish within {timeout:g} s: timed out {progress.step}",
            hint="the server did not answer in time; check the host, port and firewall",
        ) from None
    over = [
        f"{r.role} ({r.target}): p95 {r.round_trip.p95_ms:.3f} ms"
        for r in reports
        if max_latency_ms is not None and r.round_trip.p95_ms > max_latency_ms
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
