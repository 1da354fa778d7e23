"""Pool profiling: judge a pool configuration against the traffic tiers and the server.

The traffic-tier table (DESIGN.md, from ``seeds/002_*``) is data here (:data:`TIERS`).
:func:`assess_tiers` says, for every setting and every tier, whether the setting meets the
tier, and names the tier the configuration fits. What "meets" means (:class:`Requirement`):

* ``pool_size`` and ``max_overflow``: at least the tier's value ("20+" is ``>= 20``);
* ``pool_timeout`` and ``pool_recycle``: at most the tier's value (busier tiers fail fast and
  recycle sooner; ``pool_recycle = -1``, never, meets no tier);
* ``pool_pre_ping`` and ``pool_use_lifo``: must be on where the tier says ``true``; a tier
  that says ``false`` accepts either.

The configuration *fits* the highest tier all of whose requirements it meets; one that does
not even meet ``low`` fits none. :func:`shortfall` lists what falls short of a tier, and by
how much.

:func:`find_issues` adds what the table alone cannot see (each a :class:`Finding` with a
severity and a reason); the server-aware ones use :class:`ServerFacts`, read by
:func:`fetch_server_facts`. :func:`run_load` drives the pool with concurrent short queries
through real checkouts and measures the checkout wait.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from myfy_db import stats
from myfy_db.errors import ConfigError
from myfy_db.settings import DatabaseSettings
from myfy_db.urls import is_sqlite_memory

__all__ = [
    "MYSQL_DEFAULT_WAIT_TIMEOUT",
    "TIERS",
    "TIER_NAMES",
    "Finding",
    "LoadReport",
    "Requirement",
    "ServerFacts",
    "SettingVerdict",
    "Shortfall",
    "TierAssessment",
    "Traffic",
    "assess_tiers",
    "fetch_server_facts",
    "find_issues",
    "get_tier",
    "histogram",
    "load_findings",
    "percentile",
    "run_load",
    "shortfall",
]

Comparison = Literal["at_least", "at_most", "required_on"]
Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")

#: MySQL's and MariaDB's default ``wait_timeout`` (seconds), assumed when offline.
MYSQL_DEFAULT_WAIT_TIMEOUT = 28800


@dataclass(frozen=True)
class Requirement:
    """What one tier asks of one setting."""

    setting: str
    value: int | float | bool
    comparison: Comparison

    @property
    def label(self) -> str:
        """The requirement as the table shows it: ``20+``, ``<= 15``, ``true``, ``any``."""
        if self.comparison == "at_least":
            return f"{self.value}+"
        if self.comparison == "at_most":
            return f"<= {self.value}"
        return "true" if self.value else "any"

    def meets(self, actual: Any) -> bool:
        """True when ``actual`` satisfies this requirement."""
        if self.comparison == "at_least":
            return bool(actual >= self.value)
        if self.comparison == "at_most":
            if self.setting == "pool_recycle" and actual < 0:
                return False
            return bool(actual <= self.value)
        return bool(actual) or not self.value

    def gap(self, actual: Any) -> str | None:
        """How far ``actual`` falls short, in words; None when it meets the requirement."""
        if self.meets(actual):
            return None
        unit = " s" if self.setting in ("pool_timeout", "pool_recycle") else ""
        if self.comparison == "at_least":
            return f"{_num(self.value - actual)}{unit} too few"
        if self.comparison == "at_most":
            if self.setting == "pool_recycle" and actual < 0:
                return "never recycles"
            return f"{_num(actual - self.value)}{unit} too long"
        return "off"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _tier(
    pool_size: int,
    max_overflow: int,
    pool_timeout: int,
    pool_recycle: int,
    pool_pre_ping: bool,
    pool_use_lifo: bool,
) -> tuple[Requirement, ...]:
    return (
        Requirement("pool_size", pool_size, "at_least"),
        Requirement("max_overflow", max_overflow, "at_least"),
        Requirement("pool_timeout", pool_timeout, "at_most"),
        Requirement("pool_recycle", pool_recycle, "at_most"),
        Requirement("pool_pre_ping", pool_pre_ping, "required_on"),
        Requirement("pool_use_lifo", pool_use_lifo, "required_on"),
    )


#: The traffic-tier table, lowest tier first (DESIGN.md "Traffic tiers", seeds/002_*).
TIERS: dict[str, tuple[Requirement, ...]] = {
    "low": _tier(5, 10, 60, 7200, False, False),
    "medium": _tier(10, 20, 30, 3600, True, False),
    "high": _tier(20, 40, 15, 1800, True, True),
}
TIER_NAMES: tuple[str, ...] = tuple(TIERS)
POOL_SETTINGS: tuple[str, ...] = tuple(r.setting for r in TIERS["low"])


def get_tier(name: str) -> tuple[Requirement, ...]:
    """The requirements of tier ``name``; :class:`ConfigError` (exit 2) for an unknown name."""
    key = name.strip().casefold()
    if key not in TIERS:
        raise ConfigError(f"unknown tier {name!r}; choose one of: {', '.join(TIER_NAMES)}")
    return TIERS[key]


@dataclass(frozen=True)
class SettingVerdict:
    """One setting beside every tier's requirement."""

    setting: str
    value: Any
    meets: dict[str, bool]
    required: dict[str, str]
    gaps: dict[str, str | None]


@dataclass(frozen=True)
class TierAssessment:
    """Each setting's verdict per tier, and the tier the configuration fits (None: below low)."""

    fits: str | None
    verdicts: list[SettingVerdict]

    def meets_tier(self, tier: str) -> bool:
        return all(v.meets[tier] for v in self.verdicts)


def assess_tiers(settings: DatabaseSettings) -> TierAssessment:
    """Judge ``settings`` against every tier; name the highest tier it fully meets."""
    verdicts = []
    for index, setting in enumerate(POOL_SETTINGS):
        value = getattr(settings, setting)
        reqs = {name: reqs[index] for name, reqs in TIERS.items()}
        verdicts.append(
            SettingVerdict(
                setting=setting,
                value=value,
                meets={name: r.meets(value) for name, r in reqs.items()},
                required={name: r.label for name, r in reqs.items()},
                gaps={name: r.gap(value) for name, r in reqs.items()},
            )
        )
    fits = None
    for name in TIER_NAMES:
        if all(v.meets[name] for v in verdicts):
            fits = name
    return TierAssessment(fits=fits, verdicts=verdicts)


@dataclass(frozen=True)
class Shortfall:
    """One setting that falls short of a tier."""

    setting: str
    value: Any
    required: str
    gap: str


def shortfall(settings: DatabaseSettings, tier: str) -> list[Shortfall]:
    """Each setting of ``settings`` that falls short of ``tier``, and by how much."""
    result = []
    for requirement in get_tier(tier):
        value = getattr(settings, requirement.setting)
        gap = requirement.gap(value)
        if gap is not None:
            result.append(Shortfall(requirement.setting, value, requirement.label, gap))
    return result


# -- server facts ------------------------------------------------------------------------


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
        version=version,
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
        version=version,
        max_connections=max_connections,
        reserved_connections=0,
        usable_connections=usable,
        connections_in_use=in_use,
        wait_timeout=wait_timeout,
        notes=notes,
    )


# -- findings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """Something the tier table alone cannot see, with a reason a person can act on."""

    rule: str
    severity: Severity
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "severity": self.severity, "reason": self.reason}


@dataclass(frozen=True)
class Traffic:
    """The deployment around the pool: worker processes and the expected request load.

    ``rps`` is the total request rate across all workers; ``query_ms`` is how long one
    request holds a connection.
    """

    workers: int = 1
    rps: float | None = None
    query_ms: float | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if (self.rps is None) != (self.query_ms is None):
            raise ConfigError(
                "the Little's-law estimate needs both --rps and --query-ms",
                hint="give both (total requests per second, and ms a request holds a connection)",
            )
        if self.rps is not None and self.rps <= 0:
            raise ConfigError("--rps must be greater than 0")
        if self.query_ms is not None and self.query_ms <= 0:
            raise ConfigError("--query-ms must be greater than 0")

    def needed_connections(self) -> float | None:
        """Little's law: connections busy on average, all workers together (rps x seconds)."""
        if self.rps is None or self.query_ms is None:
            return None
        return self.rps * self.query_ms / 1000


def find_issues(
    settings: DatabaseSettings,
    traffic: Traffic,
    facts: ServerFacts | None,
    sources: Mapping[str, str] | None = None,
) -> list[Finding]:
    """Every finding for ``settings``, most severe first.

    ``facts`` is None when the server was not consulted (``--offline``) or for SQLite;
    ``sources`` (setting -> where it came from) lets the SQLite rule name explicit settings.
    """
    if settings.backend == "sqlite":
        findings = _sqlite_findings(settings, sources or {})
    else:
        findings = _connection_budget(settings, traffic, facts)
        findings += _idle_cut(settings, facts)
    findings += _lifo(settings)
    findings += _littles_law(settings, traffic)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: order[f.severity])


def _per_worker(settings: DatabaseSettings) -> int:
    return settings.pool_size + settings.max_overflow


def _connection_budget(
    settings: DatabaseSettings, traffic: Traffic, facts: ServerFacts | None
) -> list[Finding]:
    if facts is None:
        return []
    per_worker = _per_worker(settings)
    total = traffic.workers * per_worker
    usable = facts.usable_connections
    sizing = (
        f"{traffic.workers} worker(s) x (pool_size {settings.pool_size} + max_overflow "
        f"{settings.max_overflow}) = {total} connections"
    )
    limit = f"the server allows {usable} ({'; '.join(facts.notes)})"
    if total > usable:
        fit = max(0, usable // traffic.workers - settings.pool_size)
        return [
            Finding(
                "max_connections",
                "error",
                f"{sizing} at peak, but {limit}: under load the server will refuse "
                f"connections ('too many clients'). Lower pool_size/max_overflow (with "
                f"pool_size {settings.pool_size}, max_overflow <= {fit}), run fewer workers, "
                "put a pooler (PgBouncer, ProxySQL) in between, or raise max_connections",
            )
        ]
    if total > 0.8 * usable:
        return [
            Finding(
                "max_connections",
                "warning",
                f"{sizing} at peak is {total / usable:.0%} of what {limit}; migrations, "
                "cron jobs and admin sessions need the rest, and one more worker "
                f"(+{per_worker}) may not fit",
            )
        ]
    return [
        Finding(
            "max_connections",
            "info",
            f"{sizing} at peak fits: {limit}"
            + (
                f"; {facts.connections_in_use} in use now"
                if facts.connections_in_use is not None
                else ""
            ),
        )
    ]


def _idle_cut(settings: DatabaseSettings, facts: ServerFacts | None) -> list[Finding]:
    recycle = settings.pool_recycle
    findings: list[Finding] = []
    cut_after: float | None = None
    what = ""
    if settings.backend in ("mysql", "mariadb"):
        known = facts.wait_timeout if facts is not None else None
        assumed = known is None
        wait = MYSQL_DEFAULT_WAIT_TIMEOUT if known is None else known
        cut_after = float(wait)
        what = f"wait_timeout {wait} s" + (
            " (the server default, assumed: the server was not consulted)" if assumed else ""
        )
        if recycle < 0 or recycle >= wait:
            recycle_text = "-1 (never)" if recycle < 0 else f"{recycle} s"
            findings.append(
                Finding(
                    "pool_recycle_vs_wait_timeout",
                    "warning" if settings.pool_pre_ping else "error",
                    f"pool_recycle {recycle_text} is at or beyond the server's {what}: the "
                    "server closes idle connections before the pool replaces them"
                    + (
                        ", and pre-ping is what catches them (one extra round trip per checkout)"
                        if settings.pool_pre_ping
                        else " and, with pre-ping off, the next checkout fails with 'MySQL "
                        "server has gone away' (2006/2013)"
                    )
                    + f". Set pool_recycle below {wait} (e.g. {max(1, wait - 300)})",
                )
            )
            return findings
    elif facts is not None and facts.idle_session_timeout:
        cut_after = facts.idle_session_timeout
        what = f"idle_session_timeout {_num(cut_after)} s"
    if cut_after is None or settings.pool_pre_ping:
        return findings
    if recycle < 0 or recycle >= cut_after:
        findings.append(
            Finding(
                "pre_ping_off_idle_cut",
                "error",
                f"pool_pre_ping is off, and the server cuts connections idle longer than "
                f"{what}, sooner than pool_recycle "
                f"{'-1 (never)' if recycle < 0 else f'{recycle} s'} replaces them: a checkout "
                "after a quiet spell gets a dead connection and the request fails. Turn "
                f"pool_pre_ping on, or set pool_recycle below {_num(cut_after)}",
            )
        )
    return findings


def _lifo(settings: DatabaseSettings) -> list[Finding]:
    if settings.backend == "sqlite" or not settings.pool_use_lifo:
        return []
    if settings.pool_pre_ping or settings.pool_recycle >= 0:
        return []
    return [
        Finding(
            "lifo_without_pre_ping_or_recycle",
            "warning",
            "pool_use_lifo keeps reusing the most recent connections, so the rest sit idle "
            "at the bottom of the stack for as long as traffic stays low; with neither "
            "pool_pre_ping nor pool_recycle nothing notices when a server timeout, firewall "
            "or proxy has cut them, and the next burst fails on dead connections. Turn "
            "pool_pre_ping on or set pool_recycle",
        )
    ]


def _littles_law(settings: DatabaseSettings, traffic: Traffic) -> list[Finding]:
    needed = traffic.needed_connections()
    if needed is None or is_sqlite_memory(settings.database_url):
        return []
    workers = traffic.workers
    steady = workers * settings.pool_size
    peak = workers * _per_worker(settings)
    per_worker = needed / workers
    estimate = (
        f"Little's law: {_num(traffic.rps or 0)} req/s x {_num(traffic.query_ms or 0)} ms held "
        f"= {needed:.1f} connections busy on average across {workers} worker(s) "
        f"({per_worker:.1f} per worker)"
    )
    if needed > peak:
        return [
            Finding(
                "littles_law",
                "error",
                f"{estimate}, more than the {peak} the pools allow at peak: requests queue, "
                f"and wait up to pool_timeout {_num(settings.pool_timeout)} s before failing. "
                f"Allow at least {math.ceil(per_worker)} connections per worker",
            )
        ]
    if needed > steady:
        return [
            Finding(
                "littles_law",
                "warning",
                f"{estimate}, more than pool_size allows ({steady}): the pool lives on "
                "overflow connections, opened and closed all the time. Raise pool_size to "
                f"{math.ceil(per_worker)}",
            )
        ]
    if needed > 0.8 * steady:
        return [
            Finding(
                "littles_law",
                "warning",
                f"{estimate}, {needed / steady:.0%} of pool_size ({steady}): little headroom "
                "for bursts before overflow and queueing",
            )
        ]
    return [
        Finding(
            "littles_law",
            "info",
            f"{estimate}: within pool_size ({steady}), {needed / steady:.0%} used on average",
        )
    ]


def _sqlite_findings(settings: DatabaseSettings, sources: Mapping[str, str]) -> list[Finding]:
    explicit = [s for s in POOL_SETTINGS if sources.get(s, "default") != "default"]
    if is_sqlite_memory(settings.database_url):
        ignored = explicit or list(POOL_SETTINGS)
        return [
            Finding(
                "sqlite_settings_ignored",
                "warning" if explicit else "info",
                "an in-memory SQLite database uses one shared connection (a static pool): "
                f"{', '.join(ignored)} "
                + ("are set but " if explicit else "")
                + "do not apply, and the tier table does not describe it",
            )
        ]
    findings = []
    pointless = [
        name
        for name, on in (
            ("pool_recycle", settings.pool_recycle >= 0),
            ("pool_pre_ping", settings.pool_pre_ping),
        )
        if on
    ]
    if pointless:
        findings.append(
            Finding(
                "sqlite_settings_ignored",
                "warning" if any(p in explicit for p in pointless) else "info",
                f"a SQLite file has no server to drop idle connections: {' and '.join(pointless)} "
                "protect against nothing here (pre-ping only adds a query per checkout)",
            )
        )
    if _per_worker(settings) > 1:
        findings.append(
            Finding(
                "sqlite_single_writer",
                "info",
                f"SQLite allows one writer at a time: the pool's {_per_worker(settings)} "
                "connections help concurrent reads only; writers wait on the file lock "
                f"(connect_timeout {_num(settings.connect_timeout)} s), not on the pool",
            )
        )
    return findings


# -- load --------------------------------------------------------------------------------


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
    waits_ms: list[float]
    pool_timeout_s: float
    pool_status: str

    @property
    def throughput(self) -> float:
        """Completed queries per second."""
        return self.queries / self.duration_s if self.duration_s else 0.0

    def wait_ms(self, q: float) -> float:
        return percentile(self.waits_ms, q)

    def as_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "duration_ms": round(self.duration_s * 1000, 3),
            "queries": self.queries,
            "throughput_per_s": round(self.throughput, 2),
            "timeouts": self.timeouts,
            "errors": self.errors,
            "error_samples": list(self.error_samples),
            "checkouts": len(self.waits_ms),
            "wait_p50_ms": round(self.wait_ms(50), 3),
            "wait_p95_ms": round(self.wait_ms(95), 3),
            "wait_p99_ms": round(self.wait_ms(99), 3),
            "wait_max_ms": round(max(self.waits_ms, default=0.0), 3),
            "pool_timeout_ms": self.pool_timeout_s * 1000,
            "pool_status": self.pool_status,
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
    ORM's. ``on_progress(elapsed_s, queries)`` is called about ten times a second. Raises
    :class:`CannotConnect` (exit 4) when not even the first connection can be made.
    """
    from sqlalchemy import exc as sa_exc
    from sqlalchemy import util as sa_util
    from sqlalchemy.util import greenlet_spawn

    await_: Callable[[Awaitable[Any]], Any] = getattr(sa_util, "await_", None) or sa_util.await_only

    from myfy_db.engine import classify_connect_error, open_engine, translate_errors

    if concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    if duration <= 0:
        raise ConfigError("--duration must be greater than 0")
    url = settings.database_url
    backend = settings.backend
    waits: list[float] = []
    counts = {"queries": 0, "timeouts": 0, "errors": 0}
    samples: list[str] = []
    clock = time.perf_counter
    select_one = _driver_select_one(backend)

    with translate_errors(url, "the load run"):
        async with open_engine(
            settings, isolation_level="AUTOCOMMIT", pool_reset_on_return=None
        ) as engine:
            # One checkout first: an unreachable server is exit 4, not a run of errors.
            first = await engine.raw_connection()
            try:
                await select_one(first.driver_connection)
            finally:
                await greenlet_spawn(first.close)
            started = clock()
            deadline = started + duration

            sync_engine = engine.sync_engine

            def worker() -> None:
                # Runs in a greenlet, as SQLAlchemy's own sync code does: a checkout that
                # finds a free connection costs no task switch, which keeps the generator's
                # own overhead per query small (the driver and the server set the pace).
                record = waits.append
                while clock() < deadline:
                    begin = clock()
                    try:
                        fairy = sync_engine.raw_connection()
                    except sa_exc.TimeoutError:
                        counts["timeouts"] += 1
                        continue
                    except Exception as exc:
                        _count_error(exc, counts, samples, url, classify_connect_error)
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
            if on_progress is not None:
                on_progress(duration, counts["queries"])
            status = engine.pool.status()
    return LoadReport(
        concurrency=concurrency,
        duration_s=elapsed,
        queries=counts["queries"],
        timeouts=counts["timeouts"],
        errors=counts["errors"],
        error_samples=samples,
        waits_ms=waits,
        pool_timeout_s=settings.pool_timeout,
        pool_status=status,
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
