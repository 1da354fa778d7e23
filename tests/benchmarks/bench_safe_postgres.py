"""Three operations on a PostgreSQL table of 1,000,000 rows while a writer inserts: the plain
revision against ``myfy-db migrate --safe``.

A table ``orders`` of 1,000,000 rows (and ``users``, 1,000 rows); a writer inserts one row
every 2 ms on its own connection, timing each insert. Each operation is a revision of its
own, run twice through ``myfy-db migrate`` as a process:

- ``create_index`` on ``orders.user_id``: plain, ``CREATE INDEX`` holds a SHARE lock for the
  whole build; ``--safe``, ``CREATE INDEX CONCURRENTLY``;
- a foreign key ``orders.user_id -> users.id``: plain, ``ADD FOREIGN KEY`` checks every row
  under a lock that blocks writes; ``--safe``, ``NOT VALID`` then ``VALIDATE CONSTRAINT``;
- ``alter_column(nullable=False)`` on ``orders.qty``: plain, ``SET NOT NULL`` scans the table
  under an ACCESS EXCLUSIVE lock; ``--safe``, a NOT VALID check, validated, then ``SET NOT
  NULL`` without the scan.

Between the two runs the revision is undone (``migrate down``, untimed). For each: the
writer's p99 and maximum insert latency while the process ran (:mod:`writer_load`: the p99
counts the inserts a blocked writer could not make), and the revision's own duration (from
``--json``). The goal under ``--safe``: p99 under 50 ms, no insert over 1 s;
the plain runs show the stall they cause. ``ours`` is ``--safe``, the reference the plain
revision.

Needs the PostgreSQL of the tests (``MYFY_TEST_POSTGRES_URL``).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from common import Comparison, sized
from writer_load import Run, checked, goal, migrate_under_load, report, write_project

POSTGRES_URL = os.environ.get(
    "MYFY_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
ROWS = sized(1_000_000, 20_000)
USERS = 1_000

TABLES = """\
op.create_table("users", sa.Column("id", sa.Integer, primary_key=True))
op.create_table(
    "orders",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer),
    sa.Column("qty", sa.Integer),
    sa.Column("code", sa.String(40)),
)"""

#: (name, upgrade, downgrade) of each operation measured.
OPERATIONS = [
    (
        "create_index",
        'op.create_index("ix_orders_user_id", "orders", ["user_id"])',
        'op.drop_index("ix_orders_user_id", table_name="orders")',
    ),
    (
        "foreign key",
        'op.create_foreign_key("fk_orders_user", "orders", "users", ["user_id"], ["id"])',
        'op.drop_constraint("fk_orders_user", "orders")',
    ),
    (
        "NOT NULL",
        'op.alter_column("orders", "qty", existing_type=sa.Integer, nullable=False)',
        'op.alter_column("orders", "qty", existing_type=sa.Integer, nullable=True)',
    ),
]


def _url(database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(POSTGRES_URL).set(database=database).render_as_string(hide_password=False)


async def _connect(database: str) -> Any:
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(POSTGRES_URL)
    return await asyncpg.connect(
        host=u.host,
        port=u.port or 5432,
        user=u.username,
        password=u.password,
        database=database,
        server_settings={"application_name": "myfy-bench-writer"},
    )


async def _execute(database: str, *statements: str) -> None:
    conn = await _connect(database)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _project(root: Path, upgrade: str, downgrade: str, message: str) -> Path:
    return write_project(
        root,
        [
            (
                "r1",
                None,
                "orders and users",
                TABLES,
                'op.drop_table("orders")\nop.drop_table("users")',
            ),
            ("r2", "r1", message, upgrade, downgrade),
        ],
    )


async def _under_load(database: str, ini: Path, *flags: str) -> Run:
    conn = await _connect(database)

    async def insert(n: int) -> None:
        await conn.execute(
            "INSERT INTO orders (user_id, qty, code) VALUES ($1, 3, 'written')", 1 + n % USERS
        )

    try:
        return await migrate_under_load(_url(database), ini, insert, *flags)
    finally:
        await conn.close()


async def _scenario(root: Path) -> list[tuple[str, Run, Run]]:
    database = f"myfy_bench_safe_{uuid.uuid4().hex[:10]}"
    admin = await _connect("postgres")
    await admin.execute(f'CREATE DATABASE "{database}"')
    measured: list[tuple[str, Run, Run]] = []
    try:
        url = _url(database)
        for n, (name, upgrade, downgrade) in enumerate(OPERATIONS):
            ini = _project(root / f"op{n}", upgrade, downgrade, name)
            args = ("--url", url, "--config", str(ini))
            if n == 0:
                await checked("migrate", "up", "r1", *args)
                await _execute(
                    database,
                    f"INSERT INTO users SELECT g FROM generate_series(1, {USERS}) g",
                    "INSERT INTO orders (user_id, qty, code) SELECT 1 + g % "
                    f"{USERS}, g % 50, 'code-' || g FROM generate_series(1, {ROWS}) g",
                    "VACUUM ANALYZE orders",
                )
            plain = await _under_load(database, ini)
            await checked("migrate", "down", "r1", "--yes", *args)
            safe = await _under_load(database, ini, "--safe")
            await checked("migrate", "down", "r1", "--yes", *args)
            measured.append((name, plain, safe))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
    return measured


def run() -> list[Comparison]:
    with tempfile.TemporaryDirectory(prefix="myfy-bench-safe-postgres-") as directory:
        measured = asyncio.run(_scenario(Path(directory)))
    rows = f"{ROWS:,} rows"
    comparisons: list[Comparison] = []
    for name, plain, safe in measured:
        report(name, "plain", plain)
        report(name, "--safe", safe)
        goal(name, "--safe", safe)
        comparisons += [
            Comparison(
                f"writer p99 insert, PostgreSQL {name}, {rows}",
                safe.writes.p99_ms(),
                plain.writes.p99_ms(),
                "plain",
                unit="ms",
            ),
            Comparison(
                f"writer max insert, PostgreSQL {name}, {rows}",
                safe.writes.max_ms(),
                plain.writes.max_ms(),
                "plain",
                unit="ms",
            ),
            Comparison(
                f"the revision's duration, PostgreSQL {name}, {rows}",
                safe.seconds,
                plain.seconds,
                "plain",
            ),
        ]
    return comparisons
