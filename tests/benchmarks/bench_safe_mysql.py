"""A column type change that needs a table copy on MariaDB, while a writer inserts: the plain
``ALTER`` against ``myfy-db migrate --online-ddl pt-osc``.

A table of 1,000,000 rows (``orders``); a writer inserts one row every 2 ms on its own
connection, timing each insert (a deadlock, which pt-osc's copy and its triggers can cause,
is retried as an application would, and the retry counts in that insert's time). The same
revision, ``ALTER TABLE orders MODIFY qty BIGINT`` (INT to BIGINT: MariaDB refuses INSTANT and
INPLACE for it), runs twice through ``myfy-db migrate`` as a process:

- plain: the server copies the table with ``ALGORITHM=COPY``, writes blocked throughout;
- ``--online-ddl pt-osc``: pt-online-schema-change copies it in chunks while triggers carry
  the writes along, then swaps the tables, with myfy-db's defaults (``--chunk-time 0.01`` on
  this server: each chunk holds the AUTO-INC lock the writer's inserts wait for, see
  ``myfy_db.migrations.safe.pt_osc.AUTO_INC_CHUNK_TIME``).

Between the two the revision is undone (``migrate down``, itself a plain copy, untimed). For
each: the writer's p99 and maximum insert latency during the run, and the revision's own
duration (from ``--json``). The p99 counts the inserts a blocked writer could not make: an
insert that waited longer than 2 ms stands for those it would have made meanwhile, each
waiting for the rest of the stall (HdrHistogram's expected-interval correction), so a writer
blocked for 4 s weighs 2,000 slow inserts, not one among fast ones. The goal under pt-osc:
p99 under 50 ms, no insert over 1 s; the plain run shows the stall it causes. ``ours`` is
pt-osc, the reference the plain ALTER.

Needs the MariaDB of the tests (``MYFY_TEST_MYSQL_URL``) and pt-online-schema-change
(``percona-toolkit``); without the latter it is skipped with a line saying so.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from common import Comparison, sized, skip
from writer_load import Run, cli, goal, migrate_under_load, report, write_project

MYSQL_URL = os.environ.get("MYFY_TEST_MYSQL_URL", "mysql+aiomysql://root@127.0.0.1:3306/test")
ROWS = sized(1_000_000, 20_000)

TABLE = """\
op.create_table(
    "orders",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("qty", sa.Integer, nullable=False),
    sa.Column("code", sa.String(40), nullable=False),
    sa.Column("created", sa.DateTime, server_default=sa.func.now(), nullable=False),
)
op.create_index("ix_orders_user_id", "orders", ["user_id"])"""


def _url(database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(MYSQL_URL).set(database=database).render_as_string(hide_password=False)


async def _connect(database: str | None) -> Any:
    import aiomysql
    from sqlalchemy.engine import make_url

    u = make_url(MYSQL_URL)
    return await aiomysql.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 3306,
        user=u.username or "root",
        password=u.password or "",
        db=database,
        autocommit=True,
    )


async def _execute(database: str | None, *statements: str) -> None:
    conn = await _connect(database)
    try:
        async with conn.cursor() as cur:
            for statement in statements:
                await cur.execute(statement)
    finally:
        conn.close()


def _project(root: Path) -> Path:
    return write_project(
        root,
        [
            ("r1", None, "orders", TABLE, 'op.drop_table("orders")'),
            (
                "r2",
                "r1",
                "orders.qty to BIGINT",
                'op.execute("ALTER TABLE orders MODIFY qty BIGINT NOT NULL")',
                'op.execute("ALTER TABLE orders MODIFY qty INTEGER NOT NULL")',
            ),
        ],
    )


async def _under_load(database: str, ini: Path, *flags: str) -> Run:
    import pymysql

    conn = await _connect(database)
    deadlocks = 0

    async def insert(_n: int) -> None:
        nonlocal deadlocks
        while True:  # a deadlock (pt-osc's copy and triggers) is retried, as an app would
            try:
                async with conn.cursor() as cur:
                    await cur.execute(
                        "INSERT INTO orders (user_id, qty, code) VALUES (7, 3, 'written')"
                    )
                return
            except pymysql.err.OperationalError as exc:
                if exc.args[0] != 1213:
                    raise
                deadlocks += 1

    try:
        run = await migrate_under_load(_url(database), ini, insert, *flags)
    finally:
        conn.close()
    run.writes.deadlocks = deadlocks
    return run


async def _scenario(root: Path) -> tuple[Run, Run]:
    database = f"myfy_bench_safe_{uuid.uuid4().hex[:10]}"
    ini = _project(root)
    url = _url(database)
    await _execute(None, f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    try:
        code, _, err = await cli("migrate", "up", "r1", "--url", url, "--config", str(ini))
        if code != 0:
            raise RuntimeError(f"migrate up r1 failed: {err.strip()[-500:]}")
        await _execute(
            database,
            "INSERT INTO orders (user_id, qty, code) "
            f"SELECT seq % 1000, seq % 50, CONCAT('code-', seq) FROM seq_1_to_{ROWS}",
        )
        plain = await _under_load(database, ini)
        code, _, err = await cli(
            "migrate", "down", "r1", "--yes", "--url", url, "--config", str(ini)
        )
        if code != 0:
            raise RuntimeError(f"migrate down r1 failed: {err.strip()[-500:]}")
        pt_osc = await _under_load(database, ini, "--online-ddl", "pt-osc")
    finally:
        await _execute(None, f"DROP DATABASE IF EXISTS `{database}`")
    return plain, pt_osc


def run() -> list[Comparison]:
    if shutil.which("pt-online-schema-change") is None:
        skip("safe_mysql", "pt-online-schema-change is not installed (package percona-toolkit)")
        return []
    with tempfile.TemporaryDirectory(prefix="myfy-bench-safe-mysql-") as directory:
        plain, pt_osc = asyncio.run(_scenario(Path(directory)))
    rows = f"{ROWS:,} rows"
    name = "INT->BIGINT"
    report(name, "plain ALTER", plain)
    report(name, "--online-ddl pt-osc", pt_osc)
    goal(name, "pt-osc", pt_osc)
    return [
        Comparison(
            f"writer p99 insert, MariaDB INT->BIGINT, {rows}",
            pt_osc.writes.p99_ms(),
            plain.writes.p99_ms(),
            "plain ALTER",
            unit="ms",
        ),
        Comparison(
            f"writer max insert, MariaDB INT->BIGINT, {rows}",
            pt_osc.writes.max_ms(),
            plain.writes.max_ms(),
            "plain ALTER",
            unit="ms",
        ),
        Comparison(
            f"the revision's duration, MariaDB INT->BIGINT, {rows}",
            pt_osc.seconds,
            plain.seconds,
            "plain ALTER",
        ),
    ]
