"""``check-pool --watch SECONDS``: the check again every N seconds, one line per target."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from myfy_db.errors import (
    ConfigError,
)
from myfy_db.settings import DatabaseSettings

if TYPE_CHECKING:
    pass

from myfy_db.pool.measure import check_pool
from myfy_db.pool.report import _RANK, PoolReport

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
