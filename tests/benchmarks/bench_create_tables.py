"""``myfy-db create-tables`` on a generated 300-table metadata against a plain script that
calls ``metadata.create_all`` on the same backend, whole process on both sides.

Every measurement starts from an empty database (SQLite: a new file; PostgreSQL: the public
schema dropped and re-created), prepared outside the timed region. The two sides alternate
so machine noise falls on both. PostgreSQL is skipped (with a line saying so) when its
server is unreachable.
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from common import BIN, Comparison, sized, skip, warm_ups

TABLES = sized(300, 20)
ROUNDS = sized(7, 1)
POSTGRES_URL = os.environ.get(
    "MYFY_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)

REFERENCE = """
import asyncio
import sys

from sqlalchemy.ext.asyncio import create_async_engine

from bench_models import Base


async def main() -> None:
    engine = create_async_engine(sys.argv[1])
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()


asyncio.run(main())
"""


def models_source(count: int = TABLES) -> str:
    """A declarative module of ``count`` tables; each after the first references an earlier
    one, and has a few typed columns, a unique constraint and an index."""
    lines = [
        "from datetime import datetime",
        "from sqlalchemy import DateTime, ForeignKey, Numeric, String, func",
        "from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column",
        "",
        "",
        "class Base(DeclarativeBase):",
        "    pass",
        "",
    ]
    for i in range(count):
        lines += [
            "",
            f"class Model{i}(Base):",
            f"    __tablename__ = 'table_{i:03d}'",
            "    id: Mapped[int] = mapped_column(primary_key=True)",
            "    code: Mapped[str] = mapped_column(String(40), unique=True)",
            "    name: Mapped[str] = mapped_column(String(100), index=True)",
            "    amount: Mapped[float] = mapped_column(Numeric(12, 2))",
            "    created_at: Mapped[datetime] = mapped_column("
            "DateTime(timezone=True), server_default=func.now())",
        ]
        if i:
            lines.append(
                f"    parent_id: Mapped[int | None] = mapped_column("
                f"ForeignKey('table_{i // 2:03d}.id'))"
            )
    return "\n".join(lines) + "\n"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(argv: list[str], cwd: str, prepare: Callable[[], None]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run of ``argv`` as a process."""
    prepare()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))}
    cpu = _cpu()
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    cpu = _cpu() - cpu
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed: {done.stderr.decode()[-800:]}")
    return elapsed, cpu


def _compare(
    label: str, url: str, tmp: str, prepare: Callable[[], None]
) -> tuple[list[Comparison], list[tuple[float, float]], list[tuple[float, float]]]:
    ours_argv = [str(BIN / "myfy-db"), "create-tables", "--metadata", "bench_models:Base"]
    ours_argv += ["--url", url]
    reference_argv = [sys.executable, str(Path(tmp) / "reference.py"), url]
    # One warm-up of each (disk cache, .pyc files; none in quick mode), then alternate.
    for _ in range(warm_ups()):
        _timed(ours_argv, tmp, prepare)
        _timed(reference_argv, tmp, prepare)
    ours, reference = [], []
    for _ in range(ROUNDS):
        ours.append(_timed(ours_argv, tmp, prepare))
        reference.append(_timed(reference_argv, tmp, prepare))
    name = f"create-tables {TABLES} tables ({label})"
    reference_name = "script calling metadata.create_all"
    wall = Comparison(
        name,
        statistics.median(t for t, _ in ours),
        statistics.median(t for t, _ in reference),
        reference_name,
        target=1.1,
    )
    cpu = Comparison(
        f"{name}, CPU user+sys",
        statistics.median(c for _, c in ours),
        statistics.median(c for _, c in reference),
        reference_name,
        unit="s CPU",
    )
    return [wall, cpu], ours, reference


def _postgres_admin(*statements: str, database: str | None = None) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(POSTGRES_URL)

    async def run() -> None:
        conn = await asyncpg.connect(
            host=u.host,
            port=u.port or 5432,
            user=u.username,
            password=u.password,
            database=database or u.database,
            timeout=5,
        )
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def run() -> list[Comparison]:
    results: list[Comparison] = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bench_models.py").write_text(models_source())
        (Path(tmp) / "reference.py").write_text(REFERENCE)
        db = Path(tmp) / "bench.db"

        def fresh_sqlite() -> None:
            for suffix in ("", "-journal", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)

        comparisons, ours, ref = _compare("SQLite", f"sqlite+aiosqlite:///{db}", tmp, fresh_sqlite)
        results.extend(comparisons)
        _print_runs(ours, ref)

        try:
            _postgres_admin("SELECT 1")
        except Exception as exc:
            skip("create_tables on PostgreSQL", f"server unreachable ({type(exc).__name__})")
            return results
        from sqlalchemy.engine import make_url

        name = f"myfy_bench_{uuid.uuid4().hex[:8]}"
        _postgres_admin(f'CREATE DATABASE "{name}"')
        url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        try:

            def fresh_postgres() -> None:
                _postgres_admin("DROP SCHEMA public CASCADE", "CREATE SCHEMA public", database=name)

            comparisons, ours, ref = _compare("PostgreSQL", url, tmp, fresh_postgres)
            results.extend(comparisons)
            _print_runs(ours, ref)
        finally:
            _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return results


def _print_runs(ours: list[tuple[float, float]], reference: list[tuple[float, float]]) -> None:
    """Every run, wall/CPU seconds, so noise on a shared machine is visible."""
    print("  ours      " + " ".join(f"{t:.2f}/{c:.2f}" for t, c in ours))
    print("  reference " + " ".join(f"{t:.2f}/{c:.2f}" for t, c in reference))
