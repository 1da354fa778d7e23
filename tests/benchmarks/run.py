"""Benchmark runner: ``python tests/benchmarks/run.py [--quick] [NAME ...]``.

Each benchmark measures myfy-db and a reference in the same run, on the same machine, and
prints both medians and their ratio. Benchmarks are modules ``bench_*.py`` beside this file
exposing ``run() -> list[Comparison]``; they are not collected by the test run.

A benchmark that raises is reported on one line, ``-- NAME: FAILED: error`` (its traceback
goes to stderr), and the others still run; one that completes ends with ``-- NAME: ran, ...``.
The exit status is 1 when any benchmark failed, else 0: a figure over its target is printed
as such, never an error (benchmarks print ratios; nothing asserts speed).

``--quick`` (or ``MYFY_BENCH_QUICK=1``) runs every benchmark once with small sizes, so the
whole run takes about a minute: ``tests/test_benchmarks_quick.py`` runs it to prove that
every benchmark still runs. Its figures are not meant to be read.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import QUICK_ENV, SKIPPED, Comparison, compile_package, quick  # noqa: E402


def benchmark_names() -> list[str]:
    """Every benchmark beside this file, by name (``bench_NAME.py``)."""
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def describe(exc: BaseException, width: int = 400) -> str:
    """One line for a benchmark's failure: the exception and, for a process, its last words.

    A long message keeps its start (what failed) and its end (a child's last error line);
    the whole traceback goes to stderr.
    """
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, subprocess.CalledProcessError) and exc.stderr:
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr
        text += f" | stderr: {stderr.strip()[-300:]}"
    text = " ".join(text.split())
    if len(text) > width:
        text = f"{text[: width // 3]} ... {text[-(width - width // 3) :]}"
    return text


def main(argv: list[str]) -> int:
    if "--quick" in argv:
        os.environ[QUICK_ENV] = "1"  # before any benchmark module reads its sizes
    names = [a for a in argv if a != "--quick"] or benchmark_names()
    started = time.perf_counter()
    results: list[Comparison] = []
    ran: list[str] = []
    failed: list[str] = []
    compile_package()
    if quick():
        print("quick mode: every benchmark once, small sizes; the figures are not meaningful")
    for name in names:
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"bench_{name}")
            comparisons = []
            for comparison in module.run():
                print(comparison.line(), flush=True)
                comparisons.append(comparison)
        except Exception as exc:
            traceback.print_exc()
            sys.stderr.flush()
            print(f"-- {name}: FAILED: {describe(exc)}", flush=True)
            failed.append(name)
            continue
        results.extend(comparisons)
        ran.append(name)
        elapsed = time.perf_counter() - start
        print(f"-- {name}: ran, {len(comparisons)} figures in {elapsed:.1f} s", flush=True)
    over = [c for c in results if not c.ok]
    print(f"\n{len(results) - len(over)} within target, {len(over)} over target")
    for line in SKIPPED:
        print(f"skipped: {line}")
    print(
        f"{len(ran)} benchmark(s) ran, {len(failed)} failed"
        + (f" ({', '.join(failed)})" if failed else "")
        + f", in {time.perf_counter() - started:.1f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
