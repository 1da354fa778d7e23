"""Measuring the pool under concurrent load: :func:`run_load` and what it finds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from myfy_db.errors import CannotConnect, ConfigError
from myfy_db.pool import stats
from myfy_db.pool.findings import Finding
from myfy_db.pool.profile.tiers import format_number as _num
from myfy_db.pool.report import PoolStatus, SlotBudget
from myfy_db.pool.server_info import _read_slots, pool_status
from myfy_db.pool.stats import Reservoir
from myfy_db.settings import DatabaseSettings

#: Checkout waits kept for the percentiles and the histogram: beyond it, a uniform sample.
WAIT_SAMPLE = 100_000


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, by linear interpolation."""
    return stats.percentile(values, q / 100)


def histogram(values_ms: Sequence[float], buckets: int = 8) -> list[tuple[float, float, int]]:
    """Counts of ``values_ms`` in log-spaced buckets: ``(low_ms, high_ms, count)`` each."""
    return stats.log_buckets(values_ms, buckets)


@dataclass(frozen=True)
class LoadReport:
    """What :func:`run_load` measured."""

    concurrency: int
    duration_s: float
    queries: int
    timeouts: int
    errors: int
    error_samples: list[str]
    #: The checkout waits (a uniform sample of at most :data:`WAIT_SAMPLE` of them).
    waits_ms: list[float]
    pool_timeout_s: float
    pool_status: PoolStatus
    #: Every checkout made, and the longest wait (exact, beyond the sample).
    checkouts: int = -1
    wait_max_ms: float = 0.0
    #: The concurrency asked for (``--concurrency``); ``concurrency`` is what ran, capped at
    #: the free slots (``slots``, read before the run) less the margin. 0: as ``concurrency``.
    requested_concurrency: int = 0
    slots: SlotBudget | None = None
    #: Connections the server (or a pooler) refused for want of a free slot, and what it said.
    refusals: int = 0
    refusal_samples: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.requested_concurrency <= 0:
            object.__setattr__(self, "requested_concurrency", self.concurrency)
        if self.checkouts < 0:
            object.__setattr__(self, "checkouts", len(self.waits_ms))
            object.__setattr__(self, "wait_max_ms", max(self.waits_ms, default=0.0))

    @property
    def capped(self) -> bool:
        """The run used fewer tasks than asked, to stay within the server's free slots."""
        return self.concurrency < self.requested_concurrency

    @property
    def throughput(self) -> float:
        """Completed queries per second."""
        return self.queries / self.duration_s if self.duration_s else 0.0

    def wait_ms(self, q: float) -> float:
        return percentile(self.waits_ms, q)

    def as_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "requested_concurrency": self.requested_concurrency,
            "capped": self.capped,
            "slots": None if self.slots is None else asdict(self.slots),
            "refusals": self.refusals,
            "refusal_samples": list(self.refusal_samples),
            "duration_ms": round(self.duration_s * 1000, 3),
            "queries": self.queries,
            "throughput_per_s": round(self.throughput, 2),
            "timeouts": self.timeouts,
            "errors": self.errors,
            "error_samples": list(self.error_samples),
            "checkouts": self.checkouts,
            "wait_p50_ms": round(self.wait_ms(50), 3),
            "wait_p95_ms": round(self.wait_ms(95), 3),
            "wait_p99_ms": round(self.wait_ms(99), 3),
            "wait_max_ms": round(self.wait_max_ms, 3),
            "pool_timeout_ms": self.pool_timeout_s * 1000,
            "pool": asdict(self.pool_status),
            "histogram": [
                {"from_ms": round(a, 3), "to_ms": round(b, 3), "count": n}
                for a, b, n in histogram(self.waits_ms)
            ],
        }


async def run_load(
    settings: DatabaseSettings,
    concurrency: int,
    duration: float,
    on_progress: Callable[[float, int], None] | None = None,
) -> LoadReport:
    """Drive the configured pool with ``concurrency`` tasks for ``duration`` seconds.

    Each task loops: check a connection out of the engine's own pool (timed: the checkout
    wait, including any connect, pre-ping and recycle the pool settings cause), run
    ``SELECT 1`` on the driver's connection, and return it to the pool. The queries run in
    autocommit, so no transaction is ever open and the pool skips its rollback-on-return:
    each query is one round trip, and the figures are the pool's and the server's, not the
    ORM's. On a server, the first connection reads the free slots first (as check-pool
    does), and the run never uses more tasks, so never opens more connections, than are
    free less the margin (:attr:`LoadReport.capped`). A connection the server refuses for
    want of a slot ("too many clients") is a refusal, counted apart from the errors; the
    run goes on. ``on_progress(elapsed_s, queries)`` is called about ten times a second. Raises
    :class:`CannotConnect` (exit 4) when not even the first connection can be made, and
    when the server goes away during the run (a checkout cannot connect): the run stops
    there.
    """
    from sqlalchemy import exc as sa_exc
    from sqlalchemy import util as sa_util
    from sqlalchemy.util import greenlet_spawn

    await_: Callable[[Awaitable[Any]], Any] = getattr(sa_util, "await_", None) or sa_util.await_only

    from myfy_db.driver_errors import driver_exception, is_refusal
    from myfy_db.engine import (
        classify_connect_error,
        describe_target,
        open_engine,
        translate_errors,
    )

    if concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    if duration <= 0:
        raise ConfigError("--duration must be greater than 0")
    url = settings.database_url
    backend = settings.backend
    waits = Reservoir(WAIT_SAMPLE)  # bounded, however long --duration is
    counts = {"queries": 0, "timeouts": 0, "errors": 0, "refusals": 0}
    samples: list[str] = []
    refused: list[str] = []
    slots: SlotBudget | None = None
    requested = concurrency
    clock = time.perf_counter
    select_one = _driver_select_one(backend)

    with translate_errors(url, "the load run"):
        async with open_engine(
            settings, isolation_level="AUTOCOMMIT", pool_reset_on_return=None
        ) as engine:
            # One checkout first: an unreachable server is exit 4, not a run of errors.
            first = await engine.raw_connection()
            try:
                try:
                    await select_one(first.driver_connection)
                except Exception as exc:  # the driver's own error, outside SQLAlchemy's
                    lost = classify_connect_error(exc, url) or CannotConnect(
                        f"the server ended the connection to {describe_target(url)}: "
                        f"{_first_line(exc)}"
                    )
                    raise lost from exc
                # The free slots, before the run opens more (counting this connection).
                slots = await _read_slots(backend, first.driver_connection)
            finally:
                await greenlet_spawn(first.close)
            if slots is not None:
                concurrency = min(concurrency, slots.allowed)
            started = clock()
            deadline = started + duration

            sync_engine = engine.sync_engine

            def worker() -> None:
                # Runs in a greenlet, as SQLAlchemy's own sync code does: a checkout that
                # finds a free connection costs no task switch, which keeps the generator's
                # own overhead per query small (the driver and the server set the pace).
                record = waits.add
                while clock() < deadline and not gone:
                    begin = clock()
                    try:
                        fairy = sync_engine.raw_connection()
                    except sa_exc.TimeoutError:
                        counts["timeouts"] += 1
                        continue
                    except Exception as exc:
                        if is_refusal(exc):
                            counts["refusals"] += 1
                            _sample(refused, _first_line(driver_exception(exc)))
                        else:
                            _count_error(exc, counts, samples, url, classify_connect_error)
                            note_lost(exc)
                        await_(asyncio.sleep(0.01))
                        continue
                    record((clock() - begin) * 1000)
                    try:
                        await_(select_one(fairy.driver_connection))
                        counts["queries"] += 1
                    except Exception as exc:
                        _count_error(exc, counts, samples, url, classify_connect_error)
                        fairy.invalidate()
                    finally:
                        fairy.close()

            gone: list[CannotConnect] = []

            def note_lost(exc: BaseException) -> None:
                """A checkout could not connect: the server went away, so the run stops.

                A connection cut while the server stays up (a terminated backend) is an
                error of the run; the pool reconnects and the run goes on.
                """
                error = classify_connect_error(exc, url, "the load run")
                if error is not None and not gone:
                    gone.append(error)

            async def ticker() -> None:
                while True:
                    await asyncio.sleep(0.1)
                    if on_progress is not None:
                        on_progress(min(clock() - started, duration), counts["queries"])

            tick = asyncio.create_task(ticker())
            try:
                await asyncio.gather(*(greenlet_spawn(worker) for _ in range(concurrency)))
            finally:
                tick.cancel()
            elapsed = clock() - started
            if gone:
                done = f"after {counts['queries']} queries in {elapsed:.1f} s"
                raise CannotConnect(
                    f"the server went away during the load run ({done}): {gone[0].message}",
                    hint=gone[0].hint,
                )
            if on_progress is not None:
                on_progress(duration, counts["queries"])
            status = pool_status(engine)
    return LoadReport(
        concurrency=concurrency,
        duration_s=elapsed,
        queries=counts["queries"],
        timeouts=counts["timeouts"],
        errors=counts["errors"],
        error_samples=samples,
        waits_ms=waits.values,
        checkouts=waits.count,
        wait_max_ms=0.0 if not waits.count else waits.high,
        pool_timeout_s=settings.pool_timeout,
        pool_status=status,
        requested_concurrency=requested,
        slots=slots,
        refusals=counts["refusals"],
        refusal_samples=refused,
    )


def _driver_select_one(backend: str) -> Callable[[Any], Awaitable[None]]:
    """``SELECT 1`` on a driver connection (asyncpg, aiomysql or aiosqlite), one round trip."""
    if backend == "postgresql":

        async def postgres(conn: Any) -> None:
            await conn.fetchval("SELECT 1")

        return postgres
    if backend == "sqlite":

        async def sqlite(conn: Any) -> None:
            async with conn.execute("SELECT 1") as cursor:
                await cursor.fetchall()

        return sqlite

    async def mysql(conn: Any) -> None:
        async with conn.cursor() as cursor:
            await cursor.execute("SELECT 1")
            await cursor.fetchall()

    return mysql


def _sample(samples: list[str], text: str) -> None:
    if len(samples) < 3 and text not in samples:
        samples.append(text)


def _count_error(
    exc: BaseException,
    counts: dict[str, int],
    samples: list[str],
    url: str,
    classify: Callable[[BaseException, str], Any],
) -> None:
    counts["errors"] += 1
    if len(samples) < 3:
        connect = classify(exc, url)
        text = str(connect.message) if connect is not None else _first_line(exc)
        if text not in samples:
            samples.append(text)


def _first_line(exc: BaseException) -> str:
    from myfy_db.urls import redact

    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip() or type(orig).__name__
    return redact(text.splitlines()[0])


def load_findings(report: LoadReport) -> list[Finding]:
    """What the load run says about the pool, compared with ``pool_timeout``."""
    findings = []
    timeout_ms = report.pool_timeout_s * 1000
    p99 = report.wait_ms(99)
    if report.timeouts:
        findings.append(
            Finding(
                "load_timeouts",
                "error",
                f"{report.timeouts} checkout(s) waited the full pool_timeout "
                f"({_num(report.pool_timeout_s)} s) and failed at concurrency "
                f"{report.concurrency}: the pool is too small for this load",
            )
        )
    elif p99 > 0.5 * timeout_ms:
        findings.append(
            Finding(
                "load_wait",
                "warning",
                f"checkout wait p99 {p99:.1f} ms is {p99 / timeout_ms:.0%} of pool_timeout "
                f"({_num(report.pool_timeout_s)} s): a little more load and checkouts time out",
            )
        )
    else:
        findings.append(
            Finding(
                "load_wait",
                "info",
                f"checkout wait p99 {p99:.2f} ms is {p99 / timeout_ms:.2%} of pool_timeout "
                f"({_num(report.pool_timeout_s)} s) at concurrency {report.concurrency}",
            )
        )
    if report.capped and report.slots is not None:
        slots = report.slots
        findings.append(
            Finding(
                "load_capped",
                "warning",
                f"--load ran {report.concurrency} task(s), not the {report.requested_concurrency} "
                f"asked for: the server had {slots.free} connection(s) free "
                f"({slots.describe()}), and the run keeps a margin of {slots.margin} for "
                "everyone else",
            )
        )
    if report.refusals:
        findings.append(
            Finding(
                "load_refused",
                "error",
                f"the server refused {report.refusals} connection(s) during the run for want "
                f"of a free slot ({'; '.join(report.refusal_samples)}): other clients were "
                "refused too while it ran",
            )
        )
    if report.errors:
        findings.append(
            Finding(
                "load_errors",
                "error",
                f"{report.errors} checkout(s) or query(ies) failed: "
                + "; ".join(report.error_samples),
            )
        )
    return findings


#: Findings that say the pools fit the server's (or the pooler's) limit.
_FIT_IDS = frozenset({"max_connections", "pooler_max_client_conn"})


def after_load(findings: Sequence[Finding], report: LoadReport) -> list[Finding]:
    """``findings`` as the load run leaves them: a run that saw the server refuse a
    connection never reports a fit (an ``info`` about the connection budget goes)."""
    if not report.refusals:
        return list(findings)
    return [f for f in findings if not (f.id in _FIT_IDS and f.severity == "info")]
