"""What ``check-pool`` reports: latency statistics, the server's facts, each target's result
and the whole report with its exit code (the worst of its targets').
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from myfy_db.errors import (
    CannotConnect,
    CheckFailed,
    ConfigError,
    MyfyDbError,
    OperationFailed,
)
from myfy_db.pool.findings import Finding
from myfy_db.pool.pooler import (
    PoolerInfo,
)
from myfy_db.pool.stats import Reservoir, log_buckets, percentile

if TYPE_CHECKING:
    pass

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
    less ``margin``, plus the reading connection itself (the check's first connection).
    """

    max_connections: int
    reserved: int
    in_use: int
    free: int
    margin: int
    allowed: int
    #: A tighter limit than the server's, when one applies: the role's or the database's
    #: CONNECTION LIMIT (PostgreSQL, for a user that is not a superuser). ``free`` and
    #: ``allowed`` then count against it.
    limited_by: str | None = None

    def describe(self) -> str:
        """Where ``free`` comes from, in words."""
        if self.limited_by is not None:
            return self.limited_by
        return (
            f"max_connections {self.max_connections} less {self.reserved} reserved less "
            f"{self.in_use} in use"
        )


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
