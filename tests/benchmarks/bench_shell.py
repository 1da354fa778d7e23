"""``myfy-db shell -c`` whole-process against a plain async-engine script, same query, same DB.

The reference builds an async engine with SQLAlchemy directly and runs ``SELECT 1``; ours
runs ``myfy-db shell -c "await session.scalar(text('SELECT 1'))"`` (settings, engine
factory, session, namespace with the preloaded helpers, connect check, teardown). SQLite
file, PostgreSQL and MariaDB. Target: at most 1.15x (issue 15), on CPU time (the stable figure on
a shared machine) and on wall time. The SQLite file is made before the clock starts, so no
run pays for creating it.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import (
    BIN,
    Comparison,
    interleaved,
    median_process_time,
    sized,
    sqlite_database,
    warm_ups,
)

PLAIN = """
import asyncio
import sys

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


async def main() -> None:
    engine = create_async_engine(sys.argv[1])
    async with engine.connect() as conn:
        print((await conn.execute(text("SELECT 1"))).scalar())
    await engine.dispose()


asyncio.run(main())
"""

SNIPPET = "await session.scalar(text('SELECT 1'))"
POSTGRES_URL = os.environ.get(
    "MYFY_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("MYFY_TEST_MYSQL_URL", "mysql+aiomysql://root@127.0.0.1:3306/test")
TARGET = 1.15


def median_cpu_time(argv: list[str], runs: int, cwd: str) -> float:
    """Median CPU time (user + system) of the process: far less sensitive than wall time to
    other work on a shared machine. One run, no warm-up, in quick mode."""
    runs, skipped = sized(runs, 1), warm_ups()
    times = []
    for i in range(skipped + runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, cwd=cwd, capture_output=True, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if i >= skipped:
            times.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(times)


def _compare(label: str, url: str, tmp: str) -> list[Comparison]:
    plain = Path(tmp) / "plain.py"
    plain.write_text(PLAIN)
    ours_argv = [str(BIN / "myfy-db"), "shell", "--url", url, "-c", SNIPPET]
    plain_argv = [sys.executable, str(plain), url]
    ours, reference = interleaved(
        lambda: median_process_time(ours_argv, runs=7, cwd=tmp),
        lambda: median_process_time(plain_argv, runs=7, cwd=tmp),
    )
    ours_cpu, reference_cpu = interleaved(
        lambda: median_cpu_time(ours_argv, runs=5, cwd=tmp),
        lambda: median_cpu_time(plain_argv, runs=5, cwd=tmp),
        rounds=3,
    )
    return [
        Comparison(
            f"myfy-db shell -c SELECT 1 ({label}), wall",
            ours,
            reference,
            "plain async-engine script",
            target=TARGET,
        ),
        Comparison(
            f"myfy-db shell -c SELECT 1 ({label}), CPU",
            ours_cpu,
            reference_cpu,
            "plain async-engine script",
            target=TARGET,
        ),
    ]


def run() -> list[Comparison]:
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = sqlite_database(Path(tmp) / "bench.db")
        return (
            _compare("SQLite file", sqlite_url, tmp)
            + _compare("PostgreSQL", POSTGRES_URL, tmp)
            + _compare("MariaDB", MYSQL_URL, tmp)
        )
