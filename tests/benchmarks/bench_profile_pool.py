"""``profile-pool --load`` throughput against raw-driver loops on the same server, same run.

The load generator must not be the bottleneck: with the same concurrency, on the same
server, ``myfy-db profile-pool --load`` (a real process, the figure it reports) should reach
at least 0.8x the queries per second of a raw-driver loop. References, each a process of its
own running ``SELECT 1`` for the same duration: the driver's own pool (asyncpg
``create_pool`` / aiomysql ``create_pool``; the target), asyncpg's pool without its
reset-on-release round trip (``--load`` runs in autocommit and skips the pool's reset too),
and one dedicated connection per task (no pool at all: the ceiling). The pool is sized to
the concurrency and pre-ping is off, so ``--load`` makes one round trip per query; an
untargeted line shows what the default pre-ping costs.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

from common import BIN, Comparison, sized

URLS = {
    "postgresql": os.environ.get(
        "MYFY_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("MYFY_TEST_MYSQL_URL", "mysql+aiomysql://root@127.0.0.1:3306/test"),
}

CONCURRENCY = 8
DURATION = sized(2.0, 0.3)
ROUNDS = sized(3, 1)

RAW = r"""
import asyncio, sys, time
from sqlalchemy.engine import make_url
mode, url, concurrency, duration = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
u = make_url(url)

async def main():
    done = 0
    if u.get_backend_name() == "postgresql":
        import asyncpg
        kw = dict(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                  database=u.database)
        if mode.startswith("pool"):
            async def no_reset(conn):
                pass
            extra = {"reset": no_reset} if mode == "pool-no-reset" else {}
            pool = await asyncpg.create_pool(
                min_size=concurrency, max_size=concurrency, **kw, **extra
            )
            async def one(_):
                async with pool.acquire() as c:
                    await c.fetchval("SELECT 1")
            close = pool.close
        else:
            conns = [await asyncpg.connect(**kw) for _ in range(concurrency)]
            async def one(i):
                await conns[i].fetchval("SELECT 1")
            async def close():
                for c in conns:
                    await c.close()
    else:
        import aiomysql
        kw = dict(host=u.host, port=u.port or 3306, user=u.username, password=u.password or "",
                  db=u.database, autocommit=True)
        async def query(c):
            async with c.cursor() as cur:
                await cur.execute("SELECT 1")
                await cur.fetchall()
        if mode.startswith("pool"):
            pool = await aiomysql.create_pool(minsize=concurrency, maxsize=concurrency, **kw)
            async def one(_):
                async with pool.acquire() as c:
                    await query(c)
            async def close():
                pool.close()
                await pool.wait_closed()
        else:
            conns = [await aiomysql.connect(**kw) for _ in range(concurrency)]
            async def one(i):
                await query(conns[i])
            async def close():
                for c in conns:
                    c.close()
    start = time.perf_counter()
    deadline = start + duration
    async def task(i):
        nonlocal done
        while time.perf_counter() < deadline:
            await one(i)
            done += 1
    await asyncio.gather(*(task(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - start
    await close()
    print(done / elapsed)

asyncio.run(main())
"""


def _ours(url: str, pre_ping: bool, cwd: str) -> float:
    argv = [
        str(BIN / "myfy-db"), "profile-pool", "--json", "--url", url, "--load",
        "--concurrency", str(CONCURRENCY), "--duration", str(DURATION),
        "--pool-size", str(CONCURRENCY), "--max-overflow", "0",
        "--pre-ping" if pre_ping else "--no-pre-ping",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"profile-pool failed: {done.stderr[-500:]}")
    return float(json.loads(done.stdout)["load"]["throughput_per_s"])


def _raw(mode: str, url: str, cwd: str) -> float:
    argv = [sys.executable, "-c", RAW, mode, url, str(CONCURRENCY), str(DURATION)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=True)
    return float(done.stdout.strip())


def run() -> list[Comparison]:
    results: list[Comparison] = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend, label, driver in (
            ("postgresql", "PostgreSQL", "asyncpg"),
            ("mysql", "MariaDB", "aiomysql"),
        ):
            url = URLS[backend]
            ours, pooled, no_reset, dedicated, pinged = [], [], [], [], []
            for _ in range(ROUNDS):
                ours.append(_ours(url, False, tmp))
                pooled.append(_raw("pool", url, tmp))
                if backend == "postgresql":
                    no_reset.append(_raw("pool-no-reset", url, tmp))
                dedicated.append(_raw("dedicated", url, tmp))
                pinged.append(_ours(url, True, tmp))
            mine = statistics.median(ours)
            common = dict(unit="queries/s", higher_is_better=True)
            results += [
                Comparison(
                    f"{label} --load (c={CONCURRENCY}, no pre-ping)",
                    mine,
                    statistics.median(pooled),
                    f"{driver} pool loop",
                    target=0.8,
                    **common,  # type: ignore[arg-type]
                ),
            ]
            if no_reset:
                results.append(
                    Comparison(
                        f"{label} --load (c={CONCURRENCY}, no pre-ping)",
                        mine,
                        statistics.median(no_reset),
                        f"{driver} pool loop, reset on release skipped (as --load does)",
                        **common,  # type: ignore[arg-type]
                    )
                )
            results += [
                Comparison(
                    f"{label} --load (c={CONCURRENCY}, no pre-ping)",
                    mine,
                    statistics.median(dedicated),
                    f"{driver} dedicated connections (no pool)",
                    **common,  # type: ignore[arg-type]
                ),
                Comparison(
                    f"{label} --load (c={CONCURRENCY}, pre-ping on)",
                    statistics.median(pinged),
                    mine,
                    "same without pre-ping",
                    **common,  # type: ignore[arg-type]
                ),
            ]
    return results
