"""Every benchmark still runs: ``tests/benchmarks/run.py --quick`` as a process.

Quick mode runs each benchmark once with small sizes against the test servers (PostgreSQL and
MariaDB, as the rest of the suite). This asserts only that each one ran to the end; its
figures are noise and nothing here reads them (benchmarks print ratios, tests never assert
speed). A part that needs what this machine lacks (pgbouncer, psycopg2) is skipped by the
benchmark with a printed reason, never failed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent / "benchmarks"
NAMES = sorted(p.stem.removeprefix("bench_") for p in BENCHMARKS.glob("bench_*.py"))


def test_every_benchmark_runs_in_quick_mode() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    report = f"stdout:\n{done.stdout[-6000:]}\nstderr:\n{done.stderr[-6000:]}"
    ran = set(re.findall(r"^-- (\w+): ran, ", done.stdout, re.MULTILINE))
    failed = re.findall(r"^-- \w+: FAILED: .*$", done.stdout, re.MULTILINE)
    assert not failed, report
    assert done.returncode == 0, report
    assert NAMES, "no benchmarks found"
    assert ran == set(NAMES), report
