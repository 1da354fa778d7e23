"""``myfy-db check-pool``: its reported latency against a raw driver, its run against Alembic.

1. The round-trip p50 that ``myfy-db check-pool --json`` reports, against a raw-driver loop
   (asyncpg ``fetchval('SELECT 1')``, an aiomysql cursor ``SELECT 1``) on the same server,
   the same number of samples each, timed the same way, each in a fresh process (localhost
   round trips are bimodal with CPU placement, so both sides get the same conditions),
   interleaved over several rounds. Target: at most 1.3x.
2. The same through a real PgBouncer in transaction mode in front of PostgreSQL: the p50
   that check-pool reports with the safe URL (``?prepared_statement_cache_size=0``) against
   a raw asyncpg loop through the same PgBouncer with its statement cache off
   (``statement_cache_size=0``). Target: at most 1.3x.
3. The whole ``myfy-db check-pool`` process against ``alembic current`` (a minimal project
   with an async ``env.py``) on the same database. Target: at most 1.0x.

Servers: ``MYFY_TEST_POSTGRES_URL`` / ``MYFY_TEST_MYSQL_URL`` (defaults as in the tests).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import BIN, Comparison, interleaved, median_process_time, sized, skip

POSTGRES_URL = os.environ.get(
    "MYFY_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("MYFY_TEST_MYSQL_URL", "mysql+aiomysql://root@127.0.0.1:3306/test")
CONNECTIONS = 5
ENV = {"COLUMNS": "100"}
SAMPLES_PER_CONNECTION = sized(40, 4)
SAMPLES = CONNECTIONS * SAMPLES_PER_CONNECTION

ALEMBIC_INI = """[alembic]
script_location = {script}
sqlalchemy.url = {url}

[loggers]
keys = root

[handlers]
keys =

[formatters]
keys =

[logger_root]
level = WARN
handlers =
"""

ASYNC_ENV_PY = """
import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine


def run_migrations(connection):
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


async def main():
    engine = create_async_engine(
        context.config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool
    )
    async with engine.connect() as connection:
        await connection.run_sync(run_migrations)
    await engine.dispose()


asyncio.run(main())
"""


def _reported_p50(url: str, connections: int) -> float:
    """The round-trip p50 that ``myfy-db check-pool --json`` reports for ``url`` (ms)."""
    argv = [str(BIN / "myfy-db"), "check-pool", "--json", "--url", url]
    argv += ["--connections", str(connections), "--samples", str(SAMPLES // connections)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    document: dict[str, Any] = json.loads(done.stdout)
    return float(document["targets"][0]["round_trip"]["p50_ms"])


async def _raw_connect(url: str) -> tuple[Any, Any]:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() == "postgresql":
        import asyncpg

        # Behind a transaction pooler (the URL says so): asyncpg's statement cache off.
        cache_off = str(u.query.get("prepared_statement_cache_size", "")) == "0"
        conn = await asyncpg.connect(
            host=u.host,
            port=u.port or 5432,
            user=u.username,
            password=u.password,
            database=u.database,
            **({"statement_cache_size": 0} if cache_off else {}),
        )

        async def ping_pg() -> None:
            await conn.fetchval("SELECT 1")

        return conn, ping_pg
    import aiomysql

    conn = await aiomysql.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 3306,
        user=u.username or "root",
        password=u.password or "",
        db=u.database,
    )
    cursor = await conn.cursor()

    async def ping_mysql() -> None:
        await cursor.execute("SELECT 1")
        await cursor.fetchone()

    return conn, ping_mysql


async def _raw_loop(url: str, connections: int) -> float:
    """p50 of ``SELECT 1`` on bare driver connections, sampled like the check does (ms).

    ``connections`` connections are opened concurrently; each gets 5 untimed pings, then
    its share of the samples, timed one by one, one connection at a time.
    """
    opened = await asyncio.gather(*(_raw_connect(url) for _ in range(connections)))
    times: list[float] = []
    try:
        for _, ping in opened:
            for _ in range(5):
                await ping()
            for _ in range(SAMPLES // connections):
                start = time.perf_counter()
                await ping()
                times.append((time.perf_counter() - start) * 1000)
    finally:
        for conn, _ in opened:
            result = conn.close()
            if asyncio.iscoroutine(result):
                await result
    return statistics.median(times)


def _raw_p50(url: str, connections: int) -> float:
    """:func:`_raw_loop` in a fresh process, like the check it is compared with (ms)."""
    argv = [sys.executable, __file__, "raw", url, str(connections)]
    return float(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)


def _alembic_project(tmp: Path, url: str) -> Path:
    script = tmp / "migrations"
    (script / "versions").mkdir(parents=True)
    (script / "env.py").write_text(ASYNC_ENV_PY)
    ini = tmp / "alembic.ini"
    ini.write_text(ALEMBIC_INI.format(script=script, url=url.replace("%", "%%")))
    return ini


def _through_pgbouncer() -> list[Comparison]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pgbouncer import PgBouncer, available

    if not available():
        skip("check_pool through PgBouncer", "pgbouncer is not installed")
        return []
    results = []
    with PgBouncer.start(POSTGRES_URL, "transaction") as bouncer:
        url = bouncer.url_with(prepared_statement_cache_size="0")
        for connections in (CONNECTIONS, 1):
            ours, raw = interleaved(
                lambda u=url, c=connections: _reported_p50(u, c),  # type: ignore[misc]
                lambda u=url, c=connections: _raw_p50(u, c),  # type: ignore[misc]
                rounds=9,
            )
            results.append(
                Comparison(
                    f"check-pool reported round-trip p50 (PgBouncer transaction mode, "
                    f"{connections} conn)",
                    ours,
                    raw,
                    f"raw asyncpg fetchval loop p50, cache off, same PgBouncer "
                    f"({connections} conn)",
                    unit="ms",
                    target=1.3,
                )
            )
    return results


def run() -> list[Comparison]:
    results: list[Comparison] = _through_pgbouncer()
    for label, url in (("PostgreSQL", POSTGRES_URL), ("MariaDB", MYSQL_URL)):
        driver = "asyncpg fetchval" if label == "PostgreSQL" else "aiomysql cursor"
        for connections in (CONNECTIONS, 1):
            ours, raw = interleaved(
                lambda u=url, c=connections: _reported_p50(u, c),  # type: ignore[misc]
                lambda u=url, c=connections: _raw_p50(u, c),  # type: ignore[misc]
                rounds=9,
            )
            results.append(
                Comparison(
                    f"check-pool reported round-trip p50 ({label}, {connections} conn)",
                    ours,
                    raw,
                    f"raw {driver} SELECT 1 loop p50 ({connections} conn)",
                    unit="ms",
                    target=1.3,
                )
            )
        with tempfile.TemporaryDirectory() as tmp:
            ini = _alembic_project(Path(tmp), url)
            ours_argv = [str(BIN / "myfy-db"), "check-pool", "--url", url]
            alembic_argv = [str(BIN / "alembic"), "-c", str(ini), "current"]
            ours_t, alembic_t = interleaved(
                lambda a=ours_argv, d=tmp: median_process_time(a, runs=3, env=ENV, cwd=d),  # type: ignore[misc]
                lambda a=alembic_argv, d=tmp: median_process_time(a, runs=3, env=ENV, cwd=d),  # type: ignore[misc]
                rounds=5,
            )
        results.append(
            Comparison(
                f"myfy-db check-pool process ({label})",
                ours_t,
                alembic_t,
                "alembic current (async env.py)",
                target=1.0,
            )
        )
    return results


if __name__ == "__main__" and sys.argv[1:2] == ["raw"]:
    print(asyncio.run(_raw_loop(sys.argv[2], int(sys.argv[3]))))
