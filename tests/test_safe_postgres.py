"""``migrate --safe`` on real PostgreSQL: each rewrite runs while a writer inserts rows.

Each case applies one revision plainly, reads the schema, undoes it, and applies it again
with ``--safe``, while a writer inserts a row every 10 ms and a session may hold a lock as a
long request would. The checks: the writer is never blocked longer than ``BOUND`` under
``--safe`` (and, where the case is built to stall, is blocked longer than ``STALL`` by the
plain revision, so the check can fail); the schema ``--safe`` leaves is the plain one
(indexes valid, constraints validated, no helper check left behind).

The stalls are made deterministic, not left to a table's size: an index on an expression
whose IMMUTABLE function sleeps, a CHECK calling a sleeping function, a session holding a
write (or a read) in an open transaction for ``HOLD`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from helpers import CANARY, invoke, with_password
from migrate_project import query, write_project

#: The longest a writer insert may wait under --safe.
BOUND = 0.5
#: What a plain revision built to stall must make the writer wait at least.
STALL = 1.0
#: How long a holding session keeps its transaction open.
HOLD = 2.0
#: Rows in the cases' table; the sleeping functions make each row cost SLEEP seconds.
ROWS = 300
SLEEP = 0.007

FUNCTIONS = [
    "CREATE FUNCTION slow_id(i integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE AS "
    f"$f$ BEGIN PERFORM pg_sleep({SLEEP}); RETURN i; END $f$",
    "CREATE FUNCTION slow_positive(i integer) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS "
    f"$f$ BEGIN PERFORM pg_sleep({SLEEP}); RETURN i > 0; END $f$",
]
ROWS_SQL = [
    "INSERT INTO users SELECT FROM generate_series(1, 10)",
    "INSERT INTO orders (user_id, buyer, code, qty) SELECT 1 + mod(g, 10), 1, 'c' || g, "
    f"1 + mod(g, 5) FROM generate_series(1, {ROWS}) g",
]
TABLES = """\
op.create_table("users", sa.Column("id", sa.Integer, primary_key=True))
op.create_table(
    "orders",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer),
    sa.Column("buyer", sa.Integer),
    sa.Column("code", sa.String(40)),
    sa.Column("qty", sa.Integer),
)
op.create_index("ix_orders_qty", "orders", ["qty"])
"""


def _r1() -> tuple[str, str, str, str]:
    executes = "\n".join(f"op.execute({s!r})" for s in FUNCTIONS + ROWS_SQL)
    return ("r1", "tables", TABLES + executes, "pass")


@dataclass(frozen=True)
class Case:
    name: str
    upgrade: str
    downgrade: str
    #: The line --safe prints for it.
    line: str
    #: "write": a session holds a write on orders; "read": a read; None: nobody.
    holder: str | None = None
    #: The plain revision is built to stall the writer.
    stalls: bool = False


CASES = [
    Case(
        "create_index",
        'op.create_index("ix_orders_slow", "orders", [sa.text("slow_id(user_id)")])',
        'op.drop_index("ix_orders_slow", table_name="orders")',
        "r2: create_index ix_orders_slow -> CREATE INDEX CONCURRENTLY",
        stalls=True,
    ),
    Case(
        "create_index behind a writing transaction",
        'op.create_index("ix_orders_user_id", "orders", ["user_id"])',
        'op.drop_index("ix_orders_user_id", table_name="orders")',
        "r2: create_index ix_orders_user_id -> CREATE INDEX CONCURRENTLY",
        holder="write",
        stalls=True,
    ),
    Case(
        "drop_index",
        'op.drop_index("ix_orders_qty", table_name="orders")',
        'op.create_index("ix_orders_qty", "orders", ["qty"])',
        "r2: drop_index ix_orders_qty -> DROP INDEX CONCURRENTLY",
        holder="read",
        stalls=True,
    ),
    Case(
        "create_check_constraint",
        'op.create_check_constraint("ck_orders_qty", "orders", "slow_positive(qty)")',
        'op.drop_constraint("ck_orders_qty", "orders")',
        "r2: create_check_constraint ck_orders_qty -> ADD CONSTRAINT ... NOT VALID, "
        "then VALIDATE CONSTRAINT",
        stalls=True,
    ),
    Case(
        "create_foreign_key",
        'op.create_foreign_key("fk_orders_user", "orders", "users", ["user_id"], ["id"])',
        'op.drop_constraint("fk_orders_user", "orders")',
        "r2: create_foreign_key fk_orders_user -> ADD CONSTRAINT ... NOT VALID, "
        "then VALIDATE CONSTRAINT",
    ),
    Case(
        "add_column with a foreign key",
        'op.add_column("orders", sa.Column("seller_id", sa.Integer, '
        'sa.ForeignKey("users.id", name="fk_orders_seller", ondelete="SET NULL")))',
        'op.drop_column("orders", "seller_id")',
        "r2: add_column seller_id: foreign key fk_orders_seller -> ADD CONSTRAINT ... "
        "NOT VALID, then VALIDATE CONSTRAINT",
    ),
    Case(
        "alter_column nullable=False",
        'op.alter_column("orders", "qty", existing_type=sa.Integer, nullable=False)',
        'op.alter_column("orders", "qty", existing_type=sa.Integer, nullable=True)',
        "r2: alter_column orders.qty nullable=False -> CHECK (... IS NOT NULL) NOT VALID, "
        "VALIDATE, SET NOT NULL, drop the check",
    ),
    Case(
        "create_unique_constraint",
        'op.create_unique_constraint("uq_orders_code", "orders", ["code"])',
        'op.drop_constraint("uq_orders_code", "orders")',
        "r2: create_unique_constraint uq_orders_code -> CREATE UNIQUE INDEX CONCURRENTLY, "
        "then ADD CONSTRAINT ... UNIQUE USING INDEX",
        holder="write",
        stalls=True,
    ),
]


def _project(root: Path, case: Case) -> Path:
    return write_project(root, [_r1(), ("r2", case.name, case.upgrade, case.downgrade)])


def _schema(url: str) -> dict[str, Any]:
    """What a revision may change on orders: columns, indexes, constraints."""
    columns = query(
        url,
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = 'orders' ORDER BY column_name",
    )
    indexes = query(
        url,
        "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'orders'::regclass "
        "ORDER BY 1",
    )
    constraints = query(
        url,
        "SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
        "WHERE conrelid = 'orders'::regclass ORDER BY 1",
    )
    return {"columns": columns, "indexes": indexes, "constraints": constraints}


def _execute(url: str, sql: str) -> None:
    async def go() -> None:
        conn = await _connect(url, "safe-test-setup")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


def _version(url: str) -> list[Any]:
    return query(url, "SELECT version_num FROM alembic_version")


async def _connect(url: str, name: str) -> Any:
    import asyncpg

    u = make_url(url)
    return await asyncpg.connect(
        host=u.host,
        port=u.port or 5432,
        user=u.username,
        database=u.database,
        server_settings={"application_name": name},
    )


async def _writer(url: str, stop: asyncio.Event, waits: list[float]) -> None:
    """Insert a row every 10 ms, noting how long each insert took."""
    conn = await _connect(url, "safe-test-writer")
    try:
        while not stop.is_set():
            started = time.monotonic()
            await conn.execute(
                "INSERT INTO orders (user_id, buyer, code, qty) VALUES (1, 1, NULL, 1)"
            )
            waits.append(time.monotonic() - started)
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


MIGRATION_SEEN = """
SELECT count(*) FROM pg_stat_activity
WHERE application_name LIKE 'myfy-db migrate%' AND datname = current_database()
  AND state = 'active' AND query ~* '^\\s*(CREATE|DROP|ALTER)'
"""


async def _holder(url: str, kind: str, started: asyncio.Event) -> None:
    """An open transaction that has written to (or read) orders, ended HOLD s after the
    migration's DDL is first seen running (or waiting)."""
    conn = await _connect(url, "safe-test-holder")
    observer = await _connect(url, "safe-test-observer")
    try:
        await conn.execute("BEGIN")
        if kind == "write":
            await conn.execute("UPDATE orders SET buyer = 2 WHERE id = 1")
        else:
            await conn.fetch("SELECT count(*) FROM orders")
        started.set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not await observer.fetchval(MIGRATION_SEEN):
            await asyncio.sleep(0.02)
        await asyncio.sleep(HOLD)
        await conn.execute("COMMIT")
    finally:
        await conn.close()
        await observer.close()


async def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))}
    full.update(env or {})
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "myfy_db",
        *args,
        env=full,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), 120)
    return int(child.returncode or 0), out.decode(), err.decode()


def _run_under_load(
    url: str, ini: Path, holder: str | None, *args: str
) -> tuple[int, str, str, list[float]]:
    """``migrate ARGS`` while the writer runs (and the holder holds, when asked)."""

    async def scenario() -> tuple[int, str, str, list[float]]:
        stop = asyncio.Event()
        waits: list[float] = []
        writer = asyncio.create_task(_writer(url, stop, waits))
        await asyncio.sleep(0.2)
        held: asyncio.Task[None] | None = None
        if holder is not None:
            started = asyncio.Event()
            held = asyncio.create_task(_holder(url, holder, started))
            await started.wait()
        try:
            code, out, err = await _cli(
                "migrate", "--url", url, "--config", str(ini), "--ddl-lock-timeout", "30", *args
            )
            await asyncio.sleep(0.1)
        finally:
            stop.set()
            await writer
            if held is not None:
                await held
        return code, out, err, waits

    return asyncio.run(scenario())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_safe_rewrite_keeps_the_writer_going_and_builds_the_plain_schema(
    case: Case, tmp_path: Path, postgres_url: str
) -> None:
    ini = _project(tmp_path, case)
    args = ["--url", postgres_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0

    code, _, plain_err, plain_waits = _run_under_load(postgres_url, ini, case.holder)
    assert code == 0, plain_err
    assert "CONCURRENTLY" not in plain_err
    plain = _schema(postgres_url)
    down = invoke("migrate", "down", "r1", *args, "--yes")
    assert down.exit_code == 0, down.stderr
    assert _schema(postgres_url) != plain

    code, out, err, waits = _run_under_load(postgres_url, ini, case.holder, "--safe", "--json")
    assert code == 0, err
    assert case.line in err.splitlines()
    assert json.loads(out)["to"] == "r2"  # stdout: the JSON document alone
    assert _version(postgres_url) == [("r2",)]
    assert _schema(postgres_url) == plain
    assert all(valid for *_, valid in plain["indexes"])
    assert all(validated for *_, validated in plain["constraints"])
    assert len(waits) > 20
    assert max(waits) < BOUND, f"--safe: an insert waited {max(waits):.2f} s"
    if case.stalls:  # the same revision, run plainly, did stall the writer
        assert max(plain_waits) > STALL, f"plain: longest insert {max(plain_waits):.2f} s"


def test_not_null_leaves_no_helper_check_and_the_column_not_null(
    tmp_path: Path, postgres_url: str
) -> None:
    case = next(c for c in CASES if c.name == "alter_column nullable=False")
    ini = _project(tmp_path, case)
    result = invoke("migrate", "--safe", "--url", postgres_url, "--config", str(ini))
    assert result.exit_code == 0, result.stderr
    assert query(
        postgres_url,
        "SELECT is_nullable FROM information_schema.columns "
        "WHERE table_name = 'orders' AND column_name = 'qty'",
    ) == [("NO",)]
    assert (
        query(
            postgres_url,
            "SELECT conname FROM pg_constraint "
            "WHERE conrelid = 'orders'::regclass AND contype = 'c'",
        )
        == []
    )


def test_operations_on_a_table_created_in_the_same_revision_run_as_written(
    tmp_path: Path, postgres_url: str
) -> None:
    ini = write_project(
        tmp_path,
        [
            (
                "r1",
                "new table and its index",
                'op.create_table("fresh", sa.Column("id", sa.Integer, primary_key=True),'
                ' sa.Column("n", sa.Integer))\n'
                'op.create_index("ix_fresh_n", "fresh", ["n"])\n'
                'op.create_check_constraint("ck_fresh_n", "fresh", "n > 0")',
                'op.drop_table("fresh")',
            )
        ],
    )
    result = invoke("migrate", "--safe", "--url", postgres_url, "--config", str(ini))
    assert result.exit_code == 0, result.stderr
    assert "->" not in result.stderr
    assert _version(postgres_url) == [("r1",)]


def _failing_unique_project(root: Path) -> Path:
    return write_project(
        root,
        [
            _r1(),
            (
                "r2",
                "unique index on duplicates",
                'op.add_column("orders", sa.Column("note", sa.String(10)))\n'
                'op.create_index("ix_orders_buyer", "orders", ["buyer"], unique=True)',
                'op.drop_index("ix_orders_buyer", table_name="orders")\n'
                'op.drop_column("orders", "note")',
            ),
        ],
    )


def _buyer_index(url: str) -> list[Any]:
    return query(
        url,
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = 'ix_orders_buyer'",
    )


def test_a_failed_concurrent_build_is_cleaned_up_by_the_rerun(
    tmp_path: Path, postgres_url: str
) -> None:
    ini = _failing_unique_project(tmp_path)
    args = ["--url", postgres_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0

    failed = invoke("migrate", "--safe", *args)
    assert failed.exit_code == 1
    assert "revision r2 (unique index on duplicates) failed" in failed.stderr
    assert "could not create unique index" in failed.stderr
    assert "what --safe ran of the failing revision outside its transaction stays" in (
        failed.stderr
    )
    assert "Traceback" not in failed.stderr
    assert _version(postgres_url) == [("r1",)]  # the version row only after the whole revision
    assert _buyer_index(postgres_url) == [(False,)]  # the INVALID index the build left
    # the add_column before it committed with the step; the record of it did too
    assert query(postgres_url, "SELECT revision, done FROM myfy_db_safe_progress") == [("r2", 1)]

    _execute(postgres_url, "UPDATE orders SET buyer = id")  # the duplicates are gone
    rerun = invoke("migrate", "--safe", *args)
    assert rerun.exit_code == 0, rerun.stderr
    assert (
        "r2: index ix_orders_buyer -> DROP INDEX CONCURRENTLY (INVALID, left by a failed build)"
        in rerun.stderr
    )
    assert "r2: add_column note -> done by an interrupted run: skipped" in rerun.stderr
    assert _buyer_index(postgres_url) == [(True,)]
    assert _version(postgres_url) == [("r2",)]
    assert query(postgres_url, "SELECT to_regclass('myfy_db_safe_progress')") == [(None,)]


def test_a_not_valid_constraint_left_behind_is_validated_by_the_rerun(
    tmp_path: Path, postgres_url: str
) -> None:
    case = next(c for c in CASES if c.name == "create_foreign_key")
    ini = _project(tmp_path, case)
    args = ["--url", postgres_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    # What a lock timeout in VALIDATE leaves: the constraint, NOT VALID, and no version row.
    _execute(
        postgres_url,
        "ALTER TABLE orders ADD CONSTRAINT fk_orders_user FOREIGN KEY (user_id) "
        "REFERENCES users (id) NOT VALID",
    )
    result = invoke("migrate", "--safe", *args)
    assert result.exit_code == 0, result.stderr
    assert query(
        postgres_url, "SELECT convalidated FROM pg_constraint WHERE conname = 'fk_orders_user'"
    ) == [(True,)]


def test_the_ddl_lock_timeout_bounds_the_concurrent_build_and_retries_finish_it(
    tmp_path: Path, postgres_url: str
) -> None:
    """CREATE INDEX CONCURRENTLY waits for older transactions: the lock_timeout set before the
    run still holds inside the autocommit block, and --retries runs the revision again."""
    case = CASES[1]
    ini = _project(tmp_path, case)
    args = ["--url", postgres_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0

    async def scenario() -> tuple[int, str, float]:
        started = asyncio.Event()
        held = asyncio.create_task(_holder(postgres_url, "write", started))
        await started.wait()
        began = time.monotonic()
        code, _, err = await _cli("migrate", *args, "--safe", "--ddl-lock-timeout", "0.5")
        elapsed = time.monotonic() - began
        await held
        return code, err, elapsed

    code, err, elapsed = asyncio.run(scenario())
    assert code == 1, err
    assert "could not lock" in err or "lock timeout" in err
    assert elapsed < HOLD + 1.0
    assert _version(postgres_url) == [("r1",)]

    async def retried() -> tuple[int, str]:
        started = asyncio.Event()
        held = asyncio.create_task(_holder(postgres_url, "write", started))
        await started.wait()
        code, _, err = await _cli(
            "migrate", *args, "--safe", "--ddl-lock-timeout", "0.5", "--retries", "5"
        )
        await held
        return code, err

    code, err = asyncio.run(retried())
    assert code == 0, err
    assert "retry 1 of 5" in err
    assert _version(postgres_url) == [("r2",)]
    assert query(
        postgres_url,
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = 'ix_orders_user_id'",
    ) == [(True,)]


UNSAFE = [
    _r1(),
    (
        "r2",
        "an index, safe with --safe",
        'op.create_index("ix_orders_user_id", "orders", ["user_id"])',
        'op.drop_index("ix_orders_user_id", table_name="orders")',
    ),
    (
        "r3",
        "a type change that rewrites the table",
        'op.alter_column("orders", "qty", type_=sa.String(20), existing_type=sa.Integer)',
        'op.alter_column("orders", "qty", type_=sa.Integer, existing_type=sa.String(20))',
    ),
]


def test_what_safe_cannot_make_safe_is_refused_before_anything_runs(
    tmp_path: Path, postgres_url: str
) -> None:
    ini = write_project(tmp_path, UNSAFE)
    args = ["--url", postgres_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    before = _schema(postgres_url)
    result = invoke("migrate", "--safe", *args)
    assert result.exit_code == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith("Error: --safe cannot make revision r3 (")
    assert "PG006 column-type-rewrite" in first
    assert "nothing was run" in first
    assert "safe form: add a new column of the new type" in result.stderr
    assert "Traceback" not in result.stderr
    assert "->" not in result.stderr  # not even r2's safe index ran
    assert _version(postgres_url) == [("r1",)]
    assert _schema(postgres_url) == before


def test_a_volatile_default_is_refused_and_an_allow_comment_lets_it_run(
    tmp_path: Path, postgres_url: str
) -> None:
    column = (
        'op.add_column("orders", sa.Column("token", sa.Float, server_default=sa.text("random()")))'
    )
    ini = write_project(
        tmp_path, [_r1(), ("r2", "volatile", column, 'op.drop_column("orders", "token")')]
    )
    args = ["--url", postgres_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    refused = invoke("migrate", "up", "head", "--safe", *args)
    assert refused.exit_code == 1
    assert "PG004 volatile-default" in refused.stderr
    assert _version(postgres_url) == [("r1",)]

    allowed = write_project(
        tmp_path / "allowed",
        [_r1(), ("r2", "volatile", column + "  # myfy-db: allow PG004 -- tiny table", "pass")],
    )
    result = invoke("migrate", "--safe", "--url", postgres_url, "--config", str(allowed))
    assert result.exit_code == 0, result.stderr


def test_the_setting_turns_safe_on_and_no_safe_turns_it_off(
    tmp_path: Path, postgres_url: str
) -> None:
    ini = write_project(tmp_path, UNSAFE[:2])
    args = ["--url", postgres_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    env = {"MYFY_DATA_SAFE_MIGRATIONS": "true"}
    plain = invoke("migrate", "--no-safe", *args, "--sql", env=env)
    assert "CONCURRENTLY" not in plain.stdout
    safe = invoke("migrate", "up", "head", *args, env=env)
    assert safe.exit_code == 0, safe.stderr
    assert "r2: create_index ix_orders_user_id -> CREATE INDEX CONCURRENTLY" in safe.stderr


def test_sql_safe_renders_the_rewritten_statements(tmp_path: Path, postgres_url: str) -> None:
    ini = write_project(
        tmp_path, [_r1(), *[("r2", c.name, c.upgrade, c.downgrade) for c in CASES[:1]]]
    )
    result = invoke(
        "migrate", "up", "r1:r2", "--sql", "--safe", "--url", postgres_url, "--config", str(ini)
    )
    assert result.exit_code == 0, result.stderr
    sql = result.stdout
    assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_orders_slow ON orders" in sql
    # outside the revision's transaction, whose version row comes after it
    assert sql.index("COMMIT;") < sql.index("CONCURRENTLY") < sql.index("UPDATE alembic_version")
    assert "r2: create_index ix_orders_slow -> CREATE INDEX CONCURRENTLY" in result.stderr
    assert "CONCURRENTLY" not in result.stderr.replace("-> CREATE INDEX CONCURRENTLY", "")

    refused = invoke(
        "migrate",
        "--sql",
        "--safe",
        "--url",
        postgres_url,
        "--config",
        str(write_project(tmp_path / "u", UNSAFE)),
    )
    assert refused.exit_code == 1
    assert "PG006" in refused.stderr
    assert "ALTER TABLE" not in refused.stdout


def test_safe_with_atomic_is_a_usage_error(tmp_path: Path, postgres_url: str) -> None:
    ini = write_project(tmp_path, UNSAFE[:2])
    result = invoke("migrate", "--safe", "--atomic", "--url", postgres_url, "--config", str(ini))
    assert result.exit_code == 2
    assert "--safe cannot run with --atomic" in result.stderr
    assert query(postgres_url, "SELECT to_regclass('alembic_version') IS NULL") == [(True,)]


def test_online_ddl_is_refused_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    ini = write_project(tmp_path, UNSAFE[:2])
    args = ["--url", postgres_url, "--config", str(ini)]
    result = invoke("migrate", "--online-ddl", "pt-osc", *args)
    assert result.exit_code == 2
    assert "--online-ddl pt-osc is for MySQL/MariaDB" in result.stderr
    lag = invoke("migrate", "--safe", "--max-lag", "1", *args)
    assert lag.exit_code == 2
    assert "go with --online-ddl pt-osc" in lag.stderr


def test_lint_safe_marks_what_safe_fixes_and_does_not_fail_on_it(
    tmp_path: Path, postgres_url: str
) -> None:
    ini = write_project(tmp_path, UNSAFE[:2])
    args = ["--url", postgres_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    plain = invoke("migrate", "lint", *args)
    assert plain.exit_code == 5
    safe = invoke("migrate", "lint", "--safe", *args)
    assert safe.exit_code == 0, safe.stderr + safe.stdout
    assert "PG001 error (made safe by --safe)" in safe.stdout
    document = json.loads(invoke("migrate", "lint", "--safe", "--json", *args).stdout)
    assert [f["made_safe"] for f in document["findings"] if f["rule"] == "PG001"] == [True]

    unsafe = write_project(tmp_path / "unsafe", UNSAFE)
    still = invoke("migrate", "lint", "--safe", "--url", postgres_url, "--config", str(unsafe))
    assert still.exit_code == 5  # PG006 is not made safe
    assert "PG006 error " in still.stdout


def test_the_password_never_appears(tmp_path: Path, postgres_url: str) -> None:
    url = with_password(postgres_url)
    ini = _failing_unique_project(tmp_path)
    args = ["--url", url, "--config", str(ini)]
    outputs = [invoke("migrate", "up", "r1", *args)]
    outputs.append(invoke("migrate", "--safe", *args))  # fails: duplicates
    outputs.append(invoke("migrate", "--safe", "--sql", *args))
    outputs.append(invoke("migrate", "lint", "--safe", *args))
    outputs.append(invoke("migrate", "--safe", "--atomic", *args))
    assert [o.exit_code for o in outputs] == [0, 1, 0, 0, 2]
    for output in outputs:
        assert CANARY not in output.stdout + output.stderr


@pytest.mark.parametrize("shape", ["generic", "async", "attributes", "engine", "scaffold"])
def test_safe_drives_every_env_py_shape(shape: str, tmp_path: Path, postgres_url: str) -> None:
    """The rewrites follow the connection env.py migrates on: myfy-db's, a new one from its
    engine, or one env.py opens itself (on a thread of its own for the async template)."""
    from migrate_project import STANDARD, write_env_shape

    ini = write_env_shape(tmp_path, shape)
    index = (
        "r4",
        "index items.name",
        'op.add_column("items", sa.Column("rank", sa.Integer))\n'
        'op.create_index("ix_items_name", "items", ["name"], unique=True)',
        'op.drop_index("ix_items_name", table_name="items")\nop.drop_column("items", "rank")',
    )
    versions = ini.parent / "migrations" / "versions"
    write_project(tmp_path / "chain", [*STANDARD, index])
    (versions / "r4.py").write_text((tmp_path / "chain/migrations/versions/r4.py").read_text())
    args = ["--url", postgres_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r3", *args).exit_code == 0
    _execute(postgres_url, "INSERT INTO items (id, name) VALUES (1, 'a'), (2, 'a')")
    failed = invoke("migrate", "--safe", *args)
    assert failed.exit_code == 1, failed.stderr
    assert _version(postgres_url) == [("r3",)]
    _execute(postgres_url, "UPDATE items SET name = 'b' WHERE id = 2")
    result = invoke("migrate", "--safe", *args)
    assert result.exit_code == 0, result.stderr
    assert "r4: add_column rank -> done by an interrupted run: skipped" in result.stderr
    assert "r4: create_index ix_items_name -> CREATE UNIQUE INDEX CONCURRENTLY" in result.stderr
    assert _version(postgres_url) == [("r4",)]
    assert query(
        postgres_url,
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = 'ix_items_name'",
    ) == [(True,)]


def test_safe_on_sqlite_says_there_is_nothing_to_rewrite(tmp_path: Path, sqlite_url: str) -> None:
    ini = write_project(tmp_path)
    result = invoke("migrate", "--safe", "--url", sqlite_url, "--config", str(ini))
    assert result.exit_code == 0, result.stderr
    assert "--safe: nothing to rewrite on sqlite (one writer at a time); run as written" in (
        result.stderr
    )
    assert query(sqlite_url, "SELECT version_num FROM alembic_version") == [("r3",)]


CONVENTION = (
    "from sqlalchemy import MetaData\n"
    "target_metadata = MetaData(naming_convention={"
    '"uq": "uq_%(table_name)s_%(column_0_name)s", '
    '"ck": "ck_%(table_name)s_%(constraint_name)s", '
    '"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"})'
)
NAMED_BY_CONVENTION = """\
op.create_foreign_key(None, "orders", "users", ["user_id"], ["id"])
op.create_unique_constraint(None, "orders", ["code"])
op.create_check_constraint("positive", "orders", "qty > 0")
op.add_column("orders", sa.Column("seller_id", sa.Integer, sa.ForeignKey("users.id")))"""


@pytest.mark.parametrize("convention", [True, False], ids=["convention", "server-named"])
def test_safe_names_constraints_as_the_plain_revision_does(
    convention: bool, tmp_path: Path, postgres_url: str
) -> None:
    """The target metadata's naming convention (which Alembic's operations follow) names
    the constraints --safe builds, and without one the server's own names are kept."""
    from migrate_project import _ENV_HEAD, _ENV_TAIL, ENV_SHAPES

    ini = write_project(tmp_path, [_r1(), ("r2", "named", NAMED_BY_CONVENTION, "pass")])
    if convention:
        head = _ENV_HEAD.replace("target_metadata = None", CONVENTION)
        assert head != _ENV_HEAD
        (tmp_path / "migrations" / "env.py").write_text(head + ENV_SHAPES["generic"] + _ENV_TAIL)
    args = ["--url", postgres_url, "--config", str(ini)]
    assert invoke("migrate", *args).exit_code == 0
    plain = _schema(postgres_url)
    assert invoke("migrate", "down", "r1", "--yes", *args).exit_code == 0
    _execute(
        postgres_url,
        "ALTER TABLE orders DROP COLUMN seller_id; "
        + "; ".join(
            f'ALTER TABLE orders DROP CONSTRAINT "{name}"'
            for name, definition, _ in plain["constraints"]
            if "PRIMARY" not in definition and "seller_id" not in definition
        ),
    )
    safe = invoke("migrate", "--safe", *args)
    assert safe.exit_code == 0, safe.stderr
    assert _schema(postgres_url) == plain
    names = {name for name, _, _ in plain["constraints"]}
    expected = (
        {"ck_orders_positive", "uq_orders_code", "fk_orders_user_id_users"}
        if convention
        else {"positive", "orders_code_key", "orders_user_id_fkey"}
    )
    assert expected <= names


FAILS_AFTER_A_BUILD = """\
op.add_column("orders", sa.Column("note_a", sa.Text))
op.create_index("ix_orders_buyer", "orders", ["buyer"])
op.execute("SELECT * FROM no_such_table")"""


def _interrupted(tmp_path: Path, url: str) -> tuple[Path, list[str]]:
    """r2 failed under --safe after its concurrent build: add_column committed, recorded."""
    ini = write_project(tmp_path, [_r1(), ("r2", "half", FAILS_AFTER_A_BUILD, "pass")])
    args = ["--url", url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    failed = invoke("migrate", "--safe", *args)
    assert failed.exit_code == 1, failed.stderr
    assert query(url, "SELECT revision, done FROM myfy_db_safe_progress") == [("r2", 1)]
    return ini, args


def _columns(url: str) -> set[str]:
    rows = query(
        url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders'"
    )
    return {row[0] for row in rows}


def test_a_revision_edited_after_the_failure_runs_what_changed(
    tmp_path: Path, postgres_url: str
) -> None:
    """The re-run skips an operation only where the revision still has it: one that took
    the place of a committed one runs."""
    ini, args = _interrupted(tmp_path, postgres_url)
    _execute(postgres_url, "ALTER TABLE orders DROP COLUMN note_a")
    edited = FAILS_AFTER_A_BUILD.replace("note_a", "note_b").rsplit("\n", 1)[0]
    revision = ini.parent / "migrations" / "versions" / "r2.py"
    body = revision.read_text()
    indented = textwrap.indent(FAILS_AFTER_A_BUILD, "    ")
    assert indented in body
    revision.write_text(body.replace(indented, textwrap.indent(edited, "    ")))
    result = invoke("migrate", "--safe", *args)
    assert result.exit_code == 0, result.stderr
    assert "r2: add_column note_b -> not what the interrupted run did here" in result.stderr
    assert "skipped" not in result.stderr
    assert {"note_b"} <= _columns(postgres_url)
    assert "note_a" not in _columns(postgres_url)
    assert _version(postgres_url) == [("r2",)]
    assert query(postgres_url, "SELECT to_regclass('myfy_db_safe_progress')") == [(None,)]


def test_progress_left_before_a_plain_run_and_a_downgrade_is_stale(
    tmp_path: Path, postgres_url: str
) -> None:
    """A plain run applies the fixed revision (the progress row stays), a downgrade undoes
    it: the next --safe run must run every operation, not skip the committed one of long
    ago."""
    ini, args = _interrupted(tmp_path, postgres_url)
    revision = ini.parent / "migrations" / "versions" / "r2.py"
    text = revision.read_text().replace('    op.execute("SELECT * FROM no_such_table")\n', "")
    downgrade = (
        '    op.drop_index("ix_orders_buyer", table_name="orders")\n'
        '    op.drop_column("orders", "note_a")\n'
    )
    revision.write_text(
        text.replace("def downgrade():\n    pass\n", f"def downgrade():\n{downgrade}")
    )
    _execute(postgres_url, "ALTER TABLE orders DROP COLUMN note_a; DROP INDEX ix_orders_buyer")
    assert invoke("migrate", "--no-safe", *args).exit_code == 0
    assert invoke("migrate", "down", "r1", "--yes", *args).exit_code == 0
    assert "note_a" not in _columns(postgres_url)
    result = invoke("migrate", "--safe", *args)
    assert result.exit_code == 0, result.stderr
    assert "skipped" not in result.stderr
    assert "r2: the progress an interrupted run left is stale" in result.stderr
    assert "note_a" in _columns(postgres_url)
    assert query(postgres_url, "SELECT to_regclass('myfy_db_safe_progress')") == [(None,)]


QUALIFIED = [
    (
        "r1",
        "a schema of its own, mixed-case names",
        """\
op.execute("CREATE SCHEMA app")
op.create_table("users", sa.Column("id", sa.Integer, primary_key=True), schema="app")
op.create_table(
    "Orders",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("UserId", sa.Integer),
    sa.Column("code", sa.String(20)),
    sa.Column("qty", sa.Integer),
    schema="app",
)
op.execute('INSERT INTO app.users VALUES (1)')
op.execute('INSERT INTO app."Orders" VALUES (1, 1, \\'a\\', 2), (2, NULL, \\'b\\', 3)')""",
        "pass",
    ),
    (
        "r2",
        "every rewrite on app.Orders",
        """\
op.create_index("IxQty", "Orders", ["qty"], schema="app", postgresql_where=sa.text("qty > 0"))
op.create_index("ix_lower", "Orders", [sa.text("lower(code)")], schema="app", unique=True)
op.create_foreign_key(
    "FkUser", "Orders", "users", ["UserId"], ["id"], source_schema="app", referent_schema="app"
)
op.create_unique_constraint("UqCode", "Orders", ["code"], schema="app")
op.create_check_constraint("CkQty", "Orders", "qty > 0", schema="app")
op.alter_column("Orders", "qty", existing_type=sa.Integer, nullable=False, schema="app")
op.add_column(
    "Orders", sa.Column("SellerId", sa.Integer, sa.ForeignKey("app.users.id")), schema="app"
)
op.drop_index("IxQty", table_name="Orders", schema="app")""",
        "pass",
    ),
]


def _app_schema(url: str) -> list[Any]:
    return query(
        url,
        "SELECT 'c', conname, pg_get_constraintdef(c.oid), convalidated::text "
        "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE nspname = 'app' UNION ALL "
        "SELECT 'i', c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid::text "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = 'app' UNION ALL "
        "SELECT 'n', table_name, column_name, is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'app' UNION ALL "
        "SELECT 'v', version_num, '', '' FROM alembic_version ORDER BY 1, 2, 3",
    )


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")
def test_sql_safe_runs_in_psql_and_builds_what_the_plain_run_builds(
    tmp_path: Path, postgres_url: str
) -> None:
    """Schema-qualified, mixed-case tables; a partial and an expression index: the live
    --safe run and the --sql --safe file (applied with psql -v ON_ERROR_STOP=1) both leave
    the schema the plain run leaves."""
    ini = write_project(tmp_path, QUALIFIED)
    args = ["--url", postgres_url, "--config", str(ini)]
    reset = "DROP SCHEMA app CASCADE; DROP TABLE alembic_version"
    assert invoke("migrate", *args).exit_code == 0
    plain = _app_schema(postgres_url)
    assert (
        "i",
        "ix_lower",
        'CREATE UNIQUE INDEX ix_lower ON app."Orders" USING btree (lower((code)::text))',
        "true",
    ) in plain
    _execute(postgres_url, reset)
    live = invoke("migrate", "--safe", *args)
    assert live.exit_code == 0, live.stderr
    assert "r2: create_foreign_key FkUser -> ADD CONSTRAINT ... NOT VALID" in live.stderr
    assert _app_schema(postgres_url) == plain
    _execute(postgres_url, reset)
    rendered = invoke("migrate", "--sql", "--safe", *args)
    assert rendered.exit_code == 0, rendered.stderr
    assert "CONCURRENTLY" in rendered.stdout
    script = tmp_path / "safe.sql"
    script.write_text(rendered.stdout)
    u = make_url(postgres_url)
    applied = subprocess.run(
        [
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            u.host or "localhost",
            "-p",
            str(u.port or 5432),
            "-U",
            u.username or "postgres",
            "-d",
            u.database or "",
            "-f",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PGPASSWORD": u.password or ""},
    )
    assert applied.returncode == 0, applied.stderr
    assert _app_schema(postgres_url) == plain


SERVER_NAMED = """\
op.create_check_constraint(None, "orders", "qty > 0")
op.create_check_constraint(None, "orders", "buyer > 0")
op.create_check_constraint(None, "orders", "buyer < qty + 100")
op.create_check_constraint(None, "orders", sa.column("qty") < 1000)
op.create_foreign_key(None, "orders", "users", ["user_id"], ["id"])
op.create_foreign_key(None, "orders", "users", ["user_id"], ["id"], ondelete="CASCADE")"""


def _constraints(url: str) -> list[Any]:
    return query(
        url,
        "SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
        "WHERE conrelid = 'orders'::regclass ORDER BY 1",
    )


def test_unnamed_constraints_are_each_added_under_the_name_the_server_gives(
    tmp_path: Path, postgres_url: str
) -> None:
    """PostgreSQL names an unnamed CHECK after its one column (orders_qty_check), and the
    next of a name in use orders_qty_check1: --safe must add every one, never take a name
    in use for one already there and skip the add."""
    ini = write_project(tmp_path, [_r1(), ("r2", "unnamed", SERVER_NAMED, "pass")])
    args = ["--url", postgres_url, "--config", str(ini)]
    _execute(postgres_url, "CREATE TABLE other (x integer CONSTRAINT orders_check CHECK (x > 0))")
    applied = invoke("migrate", *args)
    assert applied.exit_code == 0, applied.stderr
    plain = _constraints(postgres_url)
    assert len(plain) == 7, plain
    assert invoke("migrate", "down", "r1", "--yes", *args).exit_code == 0
    _execute(
        postgres_url,
        "; ".join(
            f'ALTER TABLE orders DROP CONSTRAINT "{name}"'
            for name, definition, _ in plain
            if "PRIMARY" not in definition
        ),
    )
    safe = invoke("migrate", "--safe", *args)
    assert safe.exit_code == 0, safe.stderr
    assert "r2: create_check_constraint orders_qty_check1 -> ADD CONSTRAINT" in safe.stderr
    assert _constraints(postgres_url) == plain


def test_an_unnamed_check_left_not_valid_by_the_interrupted_run_is_validated_once(
    tmp_path: Path, postgres_url: str
) -> None:
    """The operation the interrupted run was on added orders_qty_check NOT VALID and
    stopped before VALIDATE: the re-run validates it, and adds no second one."""
    body = 'op.create_check_constraint(None, "orders", "qty > 0")'
    ini = write_project(tmp_path, [_r1(), ("r2", "one check", body, "pass")])
    args = ["--url", postgres_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    _execute(
        postgres_url,
        "ALTER TABLE orders ADD CHECK (qty > 0) NOT VALID; "
        "CREATE TABLE myfy_db_safe_progress (revision varchar(255) PRIMARY KEY, "
        "done integer NOT NULL, ops text, versions text); "
        "INSERT INTO myfy_db_safe_progress SELECT 'r2', 0, '', "
        "string_agg(xmin::text, ',' ORDER BY xmin::text) FROM alembic_version",
    )
    result = invoke("migrate", "--safe", *args)
    assert result.exit_code == 0, result.stderr
    assert "r2: create_check_constraint orders_qty_check -> ADD CONSTRAINT" in result.stderr
    checks = [row for row in _constraints(postgres_url) if "CHECK" in row[1]]
    assert checks == [("orders_qty_check", "CHECK ((qty > 0))", True)]
    assert query(postgres_url, "SELECT to_regclass('myfy_db_safe_progress')") == [(None,)]


def test_the_not_null_recipe_written_by_hand_runs_under_safe(
    tmp_path: Path, postgres_url: str
) -> None:
    """PG007's safe form, written in the revision (a check named orders_qty_not_null,
    validated, SET NOT NULL, the check dropped): the helper check of --safe's rewrite is
    its own, so the revision's check is neither taken for it nor dropped before the
    revision drops it."""
    recipe = """\
op.create_check_constraint(
    "orders_qty_not_null", "orders", "qty IS NOT NULL", postgresql_not_valid=True
)
op.execute("ALTER TABLE orders VALIDATE CONSTRAINT orders_qty_not_null")
op.alter_column("orders", "qty", existing_type=sa.Integer, nullable=False)
op.drop_constraint("orders_qty_not_null", "orders")"""
    ini = write_project(tmp_path, [_r1(), ("r2", "the recipe", recipe, "pass")])
    args = ["--url", postgres_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    result = invoke("migrate", "--safe", *args)
    assert result.exit_code == 0, result.stderr
    assert _version(postgres_url) == [("r2",)]
    checks = [row for row in _constraints(postgres_url) if "CHECK" in row[1]]
    assert checks == []
    nullable = query(
        postgres_url,
        "SELECT is_nullable FROM information_schema.columns "
        "WHERE table_name = 'orders' AND column_name = 'qty'",
    )
    assert nullable == [("NO",)]
