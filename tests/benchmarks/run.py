"""Benchmark runner: ``python tests/benchmarks/run.py [NAME ...]``.

Each benchmark measures myfy-db and a reference in the same run, on the same machine, and
prints both medians and their ratio. Benchmarks are modules ``bench_*.py`` beside this file
exposing ``run() -> list[Comparison]``; they are not collected by the test run.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import Comparison, compile_package  # noqa: E402


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    results: list[Comparison] = []
    compile_package()
    for name in names:
        module = importlib.import_module(f"bench_{name}")
        print(f"== {name}", flush=True)
        for comparison in module.run():
            print(comparison.line(), flush=True)
            results.append(comparison)
    failed = [c for c in results if not c.ok]
    print(f"\n{len(results) - len(failed)} within target, {len(failed)} over target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
