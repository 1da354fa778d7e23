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
writer's p99 and maximum insert latency while the process ran, and the revision's own
duration (from ``--json``). The goal under ``--safe``: p99 under 50 ms, no insert over 1 s;
the plain runs show the stall they cause. ``ours`` is ``--safe``, the reference the plain
revision.

Needs the PostgreSQL of the tests (``MYFY_TEST_POSTGRES_URL``).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import Comparison, sized

POSTGRES_URL = os.environ.get(
    "MYFY_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
ROWS = sized(1_000_000, 20_000)
USERS = 1_000
#: The writer's pause between inserts.
EVERY = 0.002
#: The goal under --safe.
P99_GOAL_MS = 50.0
MAX_GOAL_MS = 1000.0

REVISION = '''"""{message}"""
import sqlalchemy as sa
from alembic import op

revision = {revision!r}
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
{upgrade}


def downgrade():
{downgrade}
'''

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


@dataclass
class Writes:
    waits: list[float] = field(default_factory=list)

    def p99_ms(self) -> float:
        return statistics.quantiles(self.waits, n=100)[98] * 1000 if len(self.waits) > 1 else 0.0

    def max_ms(self) -> float:
        return max(self.waits, default=0.0) * 1000


@dataclass
class Run:
    writes: Writes
    #: The revision's own duration, as ``migrate --json`` reports it.
    seconds: float


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
    from myfy_db.migrations.scaffold import init_project

    init_project(root / "migrations", root / "alembic.ini")
    revisions = [
        ("r1", None, "orders and users", TABLES, 'op.drop_table("orders")\nop.drop_table("users")'),
        ("r2", "r1", message, upgrade, downgrade),
    ]
    for revision, down, text, up, undo in revisions:
        (root / "migrations" / "versions" / f"{revision}.py").write_text(
            REVISION.format(
                message=text,
                revision=revision,
                down=down,
                upgrade=textwrap.indent(up, "    "),
                downgrade=textwrap.indent(undo, "    "),
            )
        )
    return root / "alembic.ini"


async def _cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "myfy_db",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()
    return int(child.returncode or 0), out.decode(), err.decode()


async def _checked(*args: str) -> str:
    code, out, err = await _cli(*args)
    if code != 0:
        raise RuntimeError(f"myfy-db {' '.join(args[:2])} failed ({code}): {err.strip()[-500:]}")
    return out


async def _writer(database: str, stop: asyncio.Event, writes: Writes) -> None:
    conn = await _connect(database)
    try:
        n = 0
        while not stop.is_set():
            n += 1
            started = time.perf_counter()
            await conn.execute(
                "INSERT INTO orders (user_id, qty, code) VALUES ($1, 3, 'written')",
                1 + n % USERS,
            )
            writes.waits.append(time.perf_counter() - started)
            await asyncio.sleep(EVERY)
    finally:
        await conn.close()


async def _migrate_under_load(database: str, ini: Path, *flags: str) -> Run:
    stop = asyncio.Event()
    writes = Writes()
    writer = asyncio.create_task(_writer(database, stop, writes))
    await asyncio.sleep(0.5)
    try:
        out = await _checked(
            "migrate", "--json", "--url", _url(database), "--config", str(ini), *flags
        )
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await writer
    applied = json.loads(out)["applied"]
    return Run(writes, float(applied[0]["duration_ms"]) / 1000)


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
                await _checked("migrate", "up", "r1", *args)
                await _execute(
                    database,
                    f"INSERT INTO users SELECT g FROM generate_series(1, {USERS}) g",
                    "INSERT INTO orders (user_id, qty, code) SELECT 1 + g % "
                    f"{USERS}, g % 50, 'code-' || g FROM generate_series(1, {ROWS}) g",
                    "VACUUM ANALYZE orders",
                )
            plain = await _migrate_under_load(database, ini)
            await _checked("migrate", "down", "r1", "--yes", *args)
            safe = await _migrate_under_load(database, ini, "--safe")
            await _checked("migrate", "down", "r1", "--yes", *args)
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
        for label, run_ in (("plain", plain), ("--safe", safe)):
            w = run_.writes
            print(
                f"  {name}, {label}: {len(w.waits)} inserts, p99 {w.p99_ms():.1f} ms, max "
                f"{w.max_ms():.1f} ms; the revision took {run_.seconds:.2f} s",
                flush=True,
            )
        p99_ok = safe.writes.p99_ms() < P99_GOAL_MS
        max_ok = safe.writes.max_ms() < MAX_GOAL_MS
        print(
            f"  {name}: goal under --safe: p99 < {P99_GOAL_MS:g} ms {'ok' if p99_ok else 'OVER'}"
            f", max < {MAX_GOAL_MS:g} ms {'ok' if max_ok else 'OVER'}",
            flush=True,
        )
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
