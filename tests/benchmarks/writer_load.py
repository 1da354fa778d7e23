"""A writer inserting on its own connection while ``myfy-db migrate`` runs as a process: what
the safe-execution benchmarks (``bench_safe_postgres``, ``bench_safe_mysql``) measure alike.

The writer inserts one row every :data:`EVERY` seconds and times each insert. Its p99 counts
the inserts a blocked writer could not make: an insert that waited longer than the interval
stands for those it would have made meanwhile, each waiting for the rest of the stall
(HdrHistogram's expected-interval correction), so a writer blocked for 4 s weighs 2,000 slow
inserts, not one among fast ones.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

#: The writer's pause between inserts.
EVERY = 0.002
#: The goal under the safe form: p99 and maximum insert latency.
P99_GOAL_MS = 50.0
MAX_GOAL_MS = 1000.0

REVISION = '''"""{message}"""
import sqlalchemy as sa
from alembic import op

revision = {revision!r}
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
{upgrade}


def downgrade():
{downgrade}
'''


@dataclass
class Writes:
    waits: list[float] = field(default_factory=list)
    #: Inserts retried after a deadlock (the retry counts in that insert's time).
    deadlocks: int = 0

    def corrected(self) -> list[float]:
        """Each wait, and for one longer than the interval the inserts it would have made
        meanwhile, each waiting for the rest of it."""
        samples: list[float] = []
        for wait in self.waits:
            samples.append(wait)
            behind = wait - EVERY
            while behind > 0:
                samples.append(behind)
                behind -= EVERY
        return samples

    def p99_ms(self) -> float:
        samples = self.corrected()
        return statistics.quantiles(samples, n=100)[98] * 1000 if len(samples) > 1 else 0.0

    def max_ms(self) -> float:
        return max(self.waits, default=0.0) * 1000


@dataclass
class Run:
    writes: Writes
    #: The revision's own duration, as ``migrate --json`` reports it.
    seconds: float


#: One insert on the writer's connection.
Insert = Callable[[int], Awaitable[None]]


def write_project(root: Path, revisions: list[tuple[str, str | None, str, str, str]]) -> Path:
    """A scaffolded project (``migrate init``) holding ``revisions``: (id, down, message,
    upgrade, downgrade); returns its alembic.ini."""
    from myfy_db.migrations.scaffold import init_project

    init_project(root / "migrations", root / "alembic.ini")
    for revision, down, message, upgrade, downgrade in revisions:
        (root / "migrations" / "versions" / f"{revision}.py").write_text(
            REVISION.format(
                message=message,
                revision=revision,
                down=down,
                upgrade=textwrap.indent(upgrade, "    "),
                downgrade=textwrap.indent(downgrade, "    "),
            )
        )
    return root / "alembic.ini"


async def cli(*args: str) -> tuple[int, str, str]:
    """``python -m myfy_db ARGS`` as a process, without the caller's ``MYFY_DATA_*``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "myfy_db",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()
    return int(child.returncode or 0), out.decode(), err.decode()


async def checked(*args: str) -> str:
    """:func:`cli`, failing loudly on a non-zero exit."""
    code, out, err = await cli(*args)
    if code != 0:
        raise RuntimeError(f"myfy-db {' '.join(args[:2])} failed ({code}): {err.strip()[-500:]}")
    return out


async def _write(insert: Insert, stop: asyncio.Event, writes: Writes) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        started = time.perf_counter()
        await insert(n)
        writes.waits.append(time.perf_counter() - started)
        await asyncio.sleep(EVERY)


async def migrate_under_load(url: str, ini: Path, insert: Insert, *flags: str) -> Run:
    """``myfy-db migrate --json FLAGS`` while ``insert`` runs every :data:`EVERY` seconds
    (from half a second before to half a second after)."""
    stop = asyncio.Event()
    writes = Writes()
    writer = asyncio.create_task(_write(insert, stop, writes))
    await asyncio.sleep(0.5)
    try:
        out = await checked("migrate", "--json", "--url", url, "--config", str(ini), *flags)
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await writer
    applied = json.loads(out)["applied"]
    return Run(writes, float(applied[0]["duration_ms"]) / 1000)


def report(name: str, label: str, run: Run) -> None:
    """One line on a run: inserts, p99, max, deadlocks retried, the revision's duration."""
    w = run.writes
    retried = f", {w.deadlocks} deadlock(s) retried" if w.deadlocks else ""
    print(
        f"  {name}, {label}: {len(w.waits)} inserts, p99 {w.p99_ms():.1f} ms, max "
        f"{w.max_ms():.1f} ms{retried}; the revision took {run.seconds:.2f} s",
        flush=True,
    )


def goal(name: str, label: str, run: Run) -> None:
    """Whether ``run`` (the safe form) meets the goal: p99 and maximum insert latency."""
    p99_ok = run.writes.p99_ms() < P99_GOAL_MS
    max_ok = run.writes.max_ms() < MAX_GOAL_MS
    print(
        f"  {name}: goal under {label}: p99 < {P99_GOAL_MS:g} ms {'ok' if p99_ok else 'OVER'}"
        f", max < {MAX_GOAL_MS:g} ms {'ok' if max_ok else 'OVER'}",
        flush=True,
    )
