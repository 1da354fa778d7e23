"""What the tier table alone cannot see: each a :class:`Finding` with an id and a severity."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from myfy_db.errors import ConfigError
from myfy_db.pool.findings import SEVERITIES, Finding
from myfy_db.pool.pooler import PoolerInfo, pooler_findings
from myfy_db.pool.profile.server import MYSQL_DEFAULT_WAIT_TIMEOUT, ServerFacts
from myfy_db.pool.profile.tiers import POOL_SETTINGS
from myfy_db.pool.profile.tiers import format_number as _num
from myfy_db.settings import DatabaseSettings
from myfy_db.urls import is_sqlite_memory


@dataclass(frozen=True)
class Traffic:
    """The deployment around the pool: worker processes and the expected request load.

    ``rps`` is the total request rate across all workers; ``query_ms`` is how long one
    request holds a connection. ``pooler_max_client_conn`` is the client-connection limit
    of a pooler (PgBouncer's ``max_client_conn``) between the workers and the server: behind
    one, that is the limit the pools meet, not the server's ``max_connections``.
    ``max_connections`` stands in for the server's limit when it is not consulted.
    """

    workers: int = 1
    rps: float | None = None
    query_ms: float | None = None
    pooler_max_client_conn: int | None = None
    max_connections: int | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError("--workers must be at least 1")
        for flag, value in (
            ("--pooler-max-client-conn", self.pooler_max_client_conn),
            ("--max-connections", self.max_connections),
        ):
            if value is not None and value < 1:
                raise ConfigError(f"{flag} must be at least 1 (got {value})")
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
    pooler: PoolerInfo | None = None,
) -> list[Finding]:
    """Every finding for ``settings``, most severe first.

    ``facts`` is None when the server was not consulted (``--offline``) or for SQLite;
    ``sources`` (setting -> where it came from) lets the SQLite rule name explicit settings;
    ``pooler`` is what :func:`myfy_db.pool.measure.probe_pooler` saw (None: not looked).
    """
    if settings.backend == "sqlite":
        findings = _sqlite_findings(settings, sources or {})
    else:
        behind = pooler is not None and pooler.detected
        findings = pooler_findings(pooler) if behind else []
        if behind and traffic.pooler_max_client_conn is None:
            findings.append(
                Finding(
                    "pooler_max_client_conn",
                    "warning",
                    "behind a transaction pooler the server's max_connections limits the "
                    "pooler's own server connections, not the application's: give "
                    "--pooler-max-client-conn N (PgBouncer's max_client_conn) to judge "
                    f"{traffic.workers} worker(s) x (pool_size + max_overflow) = "
                    f"{traffic.workers * _per_worker(settings)} connections against it",
                )
            )
        else:
            findings += _connection_budget(settings, traffic, facts)
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
    per_worker = _per_worker(settings)
    total = traffic.workers * per_worker
    sizing = (
        f"{traffic.workers} worker(s) x (pool_size {settings.pool_size} + max_overflow "
        f"{settings.max_overflow}) = {total} connections"
    )
    if traffic.pooler_max_client_conn is not None:
        usable = traffic.pooler_max_client_conn
        limit = (
            f"the pooler accepts {usable} client connections (max_client_conn; the server's "
            "max_connections limits the pooler's own server connections, not the application)"
        )
        if total > usable:
            return [
                Finding(
                    "pooler_max_client_conn",
                    "error",
                    f"{sizing} at peak, but {limit}: under load the pooler refuses clients "
                    "('no more connections allowed'). Lower pool_size/max_overflow, run "
                    "fewer workers, or raise max_client_conn",
                )
            ]
        share = f"{total / usable:.0%} of what {limit}"
        return [
            Finding(
                "pooler_max_client_conn",
                "warning" if total > 0.8 * usable else "info",
                f"{sizing} at peak is {share}",
            )
        ]
    if facts is not None:
        usable = facts.usable_connections
        limit = f"the server allows {usable} ({'; '.join(facts.notes)})"
    elif traffic.max_connections is not None:
        usable = traffic.max_connections
        limit = f"the server allows {usable} (--max-connections; the server was not consulted)"
    else:
        return []
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
                if facts is not None and facts.connections_in_use is not None
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
