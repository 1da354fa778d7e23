"""Shared benchmark helpers: timing whole processes and functions, and reporting ratios."""

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

BIN = Path(sys.executable).parent


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
    tens of percent. Both sides of a comparison call this before each timed run.
    """
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
    """Median wall time of running ``argv`` as a process ``runs`` times (after one warm-up)."""
    full_env = {**os.environ, **(env or {})}
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        done = subprocess.run(argv, env=full_env, cwd=cwd, capture_output=True, check=False)
        elapsed = time.perf_counter() - start
        if check and done.returncode != 0:
            raise RuntimeError(f"{argv} failed: {done.stderr.decode()[-500:]}")
        if i:
            times.append(elapsed)
    return statistics.median(times)


def interleaved(
    a: Callable[[], float], b: Callable[[], float], rounds: int = 5
) -> tuple[float, float]:
    """Medians of alternating measurements of ``a`` and ``b`` (fair under machine noise)."""
    xs, ys = [], []
    for _ in range(rounds):
        xs.append(a())
        ys.append(b())
    return statistics.median(xs), statistics.median(ys)
