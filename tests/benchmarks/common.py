"""Shared benchmark helpers: timing whole processes and functions, and reporting ratios.

Quick mode (``run.py --quick``, or ``MYFY_BENCH_QUICK=1`` in the environment) runs every
benchmark once with small sizes: few repetitions, small revision and table counts, short
loads. Its figures are not worth reading; it exists so that a test can prove every benchmark
still runs. Benchmarks read their sizes through :func:`sized` at import time, after
``run.py`` has set the variable.
"""

from __future__ import annotations

import functools
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
BIN = Path(sys.executable).parent
QUICK_ENV = "MYFY_BENCH_QUICK"
SKIPPED: list[str] = []


def quick() -> bool:
    """Whether the benchmarks run in quick mode (``MYFY_BENCH_QUICK`` set, not ``0``)."""
    return os.environ.get(QUICK_ENV, "") not in ("", "0")


def sized(full: T, small: T) -> T:
    """``full`` normally, ``small`` in quick mode."""
    return small if quick() else full


def warm_ups() -> int:
    """Untimed runs before the timed ones: 1, or 0 in quick mode (whose figures are not read)."""
    return sized(1, 0)


def skip(part: str, reason: str) -> None:
    """Say that ``part`` of a benchmark does not run here, and why (``run.py`` lists them)."""
    line = f"{part}: {reason}"
    SKIPPED.append(line)
    print(f"  skipped: {line}", flush=True)


def sqlite_database(path: Path) -> str:
    """Make a SQLite database file at ``path`` (one table) and return its async URL.

    Commands that only read (``check-pool``) refuse a file that does not exist: a benchmark
    makes its database before the clock starts, so that no run pays for creating it either.
    """
    import sqlite3

    connection = sqlite3.connect(path)
    try:
        connection.execute("CREATE TABLE IF NOT EXISTS bench (id INTEGER PRIMARY KEY)")
        connection.commit()
    finally:
        connection.close()
    return f"sqlite+aiosqlite:///{path}"


def compile_package() -> None:
    """Compile myfy-db's bytecode, as a regular ``pip install`` does.

    An editable install (``pip install -e``) compiles nothing, and where
    ``PYTHONDONTWRITEBYTECODE`` is set (as on CI machines) Python never caches it either, so
    every run would compile each of the package's modules from source: a cost no installed
    copy pays. The references' own packages (SQLAlchemy, Alembic, Typer) were compiled when
    pip installed them; scripts written by a benchmark (an ``env.py``, revisions) are compiled
    on every run on both sides alike.
    """
    import compileall

    import myfy_db

    compileall.compile_dir(str(Path(myfy_db.__file__).parent), quiet=1)


def warm_page_cache() -> None:
    """Read every installed module file (bytecode and extensions), ours and the references'.

    On a machine that reclaims the page cache between runs, a whole-process run otherwise
    reads part of its imports from disk, by chance and differently each time: a noise of
    tens of percent. Both sides of a comparison call this before each timed run. In quick
    mode only the first call reads (about a second each on a loaded machine).
    """
    if quick() and _installed_files.cache_info().currsize:
        return
    for path in _installed_files():
        with suppress(OSError), path.open("rb") as handle:
            handle.read()


@functools.cache
def _installed_files() -> list[Path]:
    roots = {Path(p) for p in sys.path if p and Path(p).is_dir()}
    return [path for root in roots for pattern in ("*.pyc", "*.so") for path in root.rglob(pattern)]


@dataclass
class Comparison:
    """One figure of ours beside its reference: ``ratio = ours / reference``."""

    name: str
    ours: float
    reference: float
    reference_name: str
    unit: str = "s"
    target: float | None = None
    higher_is_better: bool = False

    @property
    def ratio(self) -> float:
        return self.ours / self.reference if self.reference else float("inf")

    @property
    def ok(self) -> bool:
        if self.target is None:
            return True
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    def line(self) -> str:
        target = ""
        if self.target is not None:
            sign = ">=" if self.higher_is_better else "<="
            target = f"  target {sign} {self.target:.2f}  {'ok' if self.ok else 'OVER'}"
        return (
            f"{self.name}: {self.ours:.4g} {self.unit} vs {self.reference_name} "
            f"{self.reference:.4g} {self.unit}  ratio {self.ratio:.3f}{target}"
        )


def median_process_time(
    argv: Sequence[str],
    runs: int = 15,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    check: bool = True,
) -> float:
    """Median wall time of running ``argv`` as a process ``runs`` times (after one warm-up;
    in quick mode one run, no warm-up)."""
    runs, skipped = sized(runs, 1), warm_ups()
    full_env = {**os.environ, **(env or {})}
    times = []
    for i in range(skipped + runs):
        start = time.perf_counter()
        done = subprocess.run(argv, env=full_env, cwd=cwd, capture_output=True, check=False)
        elapsed = time.perf_counter() - start
        if check and done.returncode != 0:
            raise RuntimeError(f"{argv} failed: {done.stderr.decode()[-500:]}")
        if i >= skipped:
            times.append(elapsed)
    return statistics.median(times)


def interleaved(
    a: Callable[[], float], b: Callable[[], float], rounds: int = 5
) -> tuple[float, float]:
    """Medians of alternating measurements of ``a`` and ``b`` (fair under machine noise;
    one round in quick mode)."""
    xs, ys = [], []
    for _ in range(sized(rounds, 1)):
        xs.append(a())
        ys.append(b())
    return statistics.median(xs), statistics.median(ys)
