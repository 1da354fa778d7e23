"""``migrate --safe`` and ``--online-ddl pt-osc`` on the real MariaDB, each test in its own
database.

- Each operation runs ``ALGORITHM=INSTANT`` where the server supports it, else
  ``ALGORITHM=INPLACE, LOCK=NONE``, and leaves the schema the plain revision leaves.
- A change that needs a copy is refused (exit 1) with the table unchanged: the server's
  refusal is statement-level, a multi-clause ALTER keeps none of its clauses.
- A writer is never blocked longer than a bound while an INPLACE, LOCK=NONE change runs.
- pt-online-schema-change changes the type and keeps every row (those written during the
  copy too); the revision is recorded only after its swap: pt-osc failing, killed or
  interrupted leaves the revision unrecorded, the table intact, and no ``_orders_new`` table
  or trigger behind. Without pt-osc on PATH the run is exit 2 naming percona-toolkit; the
  password is never on its command line, in its environment, or in any output.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from helpers import CANARY, REQUIRE_SERVERS, invoke, server_for
from migrate_project import write_project

#: The longest a writer's insert may wait while an INPLACE, LOCK=NONE change runs.
BOUND = 0.5

R1 = (
    "r1",
    "tables",
    """\
op.create_table("users", sa.Column("id", sa.Integer, primary_key=True))
op.create_table(
    "orders",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer),
    sa.Column("qty", sa.Integer),
    sa.Column("code", sa.String(40)),
)
op.create_index("ix_orders_qty", "orders", ["qty"])""",
    'op.drop_table("orders")\nop.drop_table("users")',
)

TYPE_CHANGE = 'op.execute("ALTER TABLE orders MODIFY qty BIGINT")'


def _project(root: Path, upgrade: str, downgrade: str = "pass") -> Path:
    return write_project(root, [R1, ("r2", "the change", upgrade, downgrade)])


# -- the database, seen from outside -------------------------------------------------------


async def _connect(url: str) -> Any:
    import aiomysql

    u = make_url(url)
    return await aiomysql.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 3306,
        user=u.username or "root",
        password=u.password or "",
        db=u.database,
        autocommit=True,
    )


async def _fetch(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cur:
        await cur.execute(sql)
        return [tuple(r) for r in await cur.fetchall()]


def sql(url: str, *statements: str) -> list[tuple[Any, ...]]:
    """Run ``statements`` on ``url``'s database; the rows of the last."""

    async def go() -> list[tuple[Any, ...]]:
        conn = await _connect(url)
        try:
            rows: list[tuple[Any, ...]] = []
            for statement in statements:
                rows = await _fetch(conn, statement)
            return rows
        finally:
            conn.close()

    return asyncio.run(go())


def fill(url: str, rows: int, users: int = 10) -> None:
    sql(
        url,
        f"INSERT INTO users (id) SELECT seq FROM seq_1_to_{users}",
        "INSERT INTO orders (user_id, qty, code) "
        f"SELECT 1 + seq % {users}, seq % 7, CONCAT('code-', seq) FROM seq_1_to_{rows}",
    )


def shape(url: str, table: str = "orders") -> str:
    """``SHOW CREATE TABLE``, without the AUTO_INCREMENT counter."""
    created = str(sql(url, f"SHOW CREATE TABLE `{table}`")[0][1])
    return re.sub(r" AUTO_INCREMENT=\d+", "", created)


def version(url: str) -> list[tuple[Any, ...]]:
    return sql(url, "SELECT version_num FROM alembic_version")


def pt_osc_triggers(url: str) -> list[str]:
    return [str(t[0]) for t in sql(url, "SHOW TRIGGERS LIKE 'orders'")]


def leftovers(url: str) -> list[str]:
    """The tables (``_orders_new``, ``_orders_old``) and triggers pt-osc left."""
    tables = [str(t[0]) for t in sql(url, "SHOW TABLES LIKE '\\_%'")]
    return tables + [f"trigger {t}" for t in pt_osc_triggers(url)]


def column_type(url: str, column: str) -> str:
    rows = sql(
        url,
        "SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
        f"AND TABLE_NAME = 'orders' AND COLUMN_NAME = '{column}'",
    )
    return str(rows[0][0])


def content(url: str) -> tuple[Any, ...]:
    """What the rows of orders hold, as numbers a type change keeps."""
    return sql(
        url,
        "SELECT COUNT(*), SUM(qty), SUM(user_id), SUM(CRC32(code)), MAX(id) FROM orders",
    )[0]


# -- the command, run beside a writer ------------------------------------------------------


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
    out, err = await asyncio.wait_for(child.communicate(), 180)
    return int(child.returncode or 0), out.decode(), err.decode()


@dataclass
class Writes:
    """What the writer saw: each insert's wait, and when it was made."""

    waits: list[float]
    at: list[float]
    rows: int = 0
    #: Inserts retried after a deadlock (pt-osc's chunk and its triggers can meet).
    deadlocks: int = 0

    def during(self, start: float, end: float) -> list[float]:
        return [w for w, t in zip(self.waits, self.at, strict=True) if start <= t <= end]


async def _writer(url: str, stop: asyncio.Event, writes: Writes, every: float = 0.005) -> None:
    import pymysql

    conn = await _connect(url)
    try:
        while not stop.is_set():
            started = time.monotonic()
            while True:
                try:
                    async with conn.cursor() as cur:
                        await cur.execute(
                            "INSERT INTO orders (user_id, qty, code) VALUES (1, 3, 'written')"
                        )
                    break
                except pymysql.err.OperationalError as exc:
                    if exc.args[0] != 1213:  # a deadlock is retried, as an application would
                        raise
                    writes.deadlocks += 1
            writes.waits.append(time.monotonic() - started)
            writes.at.append(started)
            writes.rows += 1
            await asyncio.sleep(every)
    finally:
        conn.close()


#: The migration's DDL as the process list shows it while it runs.
_RUNNING_DDL = (
    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() "
    "AND ID <> CONNECTION_ID() AND (INFO LIKE 'ALTER TABLE%' OR INFO LIKE 'CREATE%INDEX%')"
)


async def _watch_ddl(url: str, stop: asyncio.Event, seen: list[float]) -> None:
    conn = await _connect(url)
    try:
        while not stop.is_set():
            if (await _fetch(conn, _RUNNING_DDL))[0][0]:
                seen.append(time.monotonic())
            await asyncio.sleep(0.01)
    finally:
        conn.close()


def run_with_writer(url: str, *args: str) -> tuple[int, str, str, Writes, list[float]]:
    """``myfy-db ARGS`` while a writer inserts into orders every 5 ms; also when the
    migration's DDL was seen running."""

    async def scenario() -> tuple[int, str, str, Writes, list[float]]:
        stop = asyncio.Event()
        writes = Writes([], [])
        seen: list[float] = []
        tasks = [
            asyncio.create_task(_writer(url, stop, writes)),
            asyncio.create_task(_watch_ddl(url, stop, seen)),
        ]
        await asyncio.sleep(0.2)
        try:
            code, out, err = await _cli(*args)
            await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        return code, out, err, writes, seen

    return asyncio.run(scenario())


# -- pt-online-schema-change -------------------------------------------------------------


def _require_pt_osc() -> None:
    if shutil.which("pt-online-schema-change") is None:
        reason = "pt-online-schema-change is not installed (the Debian package percona-toolkit)"
        if REQUIRE_SERVERS:
            pytest.fail(f"MYFY_TEST_REQUIRE_SERVERS=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture
def canary_url(mysql_url: str) -> Iterator[str]:
    """The test's database, through a user whose password is the canary (pt-osc needs
    PROCESS and REPLICATION MASTER ADMIN to look for replicas)."""
    server = server_for("mysql")
    database = make_url(mysql_url).database
    user = f"myfy_ptosc_{uuid.uuid4().hex[:8]}"
    for host in ("%", "localhost"):
        server.admin(
            f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{CANARY}'",
            f"GRANT ALL ON `{database}`.* TO '{user}'@'{host}'",
            f"GRANT PROCESS, REPLICATION MASTER ADMIN ON *.* TO '{user}'@'{host}'",
        )
    try:
        yield (
            make_url(mysql_url)
            .set(username=user, password=CANARY)
            .render_as_string(hide_password=False)
        )
    finally:
        for host in ("%", "localhost"):
            server.admin(f"DROP USER IF EXISTS '{user}'@'{host}'")


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid:
            found.append(int(entry.name))
    return found


def _pt_osc_of(pid: int) -> int | None:
    for child in _children(pid):
        try:
            cmdline = (Path("/proc") / str(child) / "cmdline").read_bytes()
        except OSError:
            continue
        if b"pt-online-schema-change" in cmdline:
            return child
    return None


# -- INSTANT, else INPLACE with LOCK=NONE ------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    upgrade: str
    downgrade: str
    line: str


CASES = [
    Case(
        "add a nullable column at the end",
        'op.add_column("orders", sa.Column("note", sa.String(50)))',
        'op.drop_column("orders", "note")',
        "r2: add_column orders.note -> ALGORITHM=INSTANT",
    ),
    Case(
        "create_index",
        'op.create_index("ix_orders_code", "orders", ["code"])',
        'op.drop_index("ix_orders_code", table_name="orders")',
        "r2: create_index ix_orders_code -> ALGORITHM=INPLACE, LOCK=NONE",
    ),
    Case(
        "drop_index",
        'op.drop_index("ix_orders_qty", table_name="orders")',
        'op.create_index("ix_orders_qty", "orders", ["qty"])',
        "r2: drop_index ix_orders_qty -> ALGORITHM=INPLACE, LOCK=NONE",
    ),
    Case(
        "create_unique_constraint",
        'op.create_unique_constraint("uq_orders_code", "orders", ["code"])',
        'op.drop_constraint("uq_orders_code", "orders", type_="unique")',
        "r2: create_unique_constraint uq_orders_code -> ALGORITHM=INPLACE, LOCK=NONE",
    ),
    Case(
        "create_foreign_key",
        'op.create_foreign_key("fk_orders_user", "orders", "users", ["user_id"], ["id"])',
        'op.drop_constraint("fk_orders_user", "orders", type_="foreignkey")\n'
        'op.drop_index("fk_orders_user", table_name="orders")',
        "r2: create_foreign_key fk_orders_user -> ALGORITHM=INPLACE, LOCK=NONE with "
        "foreign_key_checks=0, then the existing rows checked",
    ),
    Case(
        "rename a column",
        'op.alter_column("orders", "code", new_column_name="ref", existing_type=sa.String(40))',
        'op.alter_column("orders", "ref", new_column_name="code", existing_type=sa.String(40))',
        "r2: alter_column orders.code -> ALGORITHM=INSTANT",
    ),
    Case(
        "drop_column",
        'op.drop_column("orders", "code")',
        'op.add_column("orders", sa.Column("code", sa.String(40)))',
        "r2: drop_column orders.code -> ALGORITHM=INSTANT",
    ),
    Case(
        "op.execute of one ALTER TABLE",
        'op.execute("ALTER TABLE orders ADD COLUMN extra INT")',
        'op.execute("ALTER TABLE orders DROP COLUMN extra")',
        "r2: execute ALTER TABLE orders -> ALGORITHM=INSTANT",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_operation_runs_online_and_leaves_the_plain_schema(
    case: Case, tmp_path: Path, mysql_url: str
) -> None:
    ini = _project(tmp_path, case.upgrade, case.downgrade)
    args = ["--url", mysql_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    fill(mysql_url, 200)
    before = shape(mysql_url)

    plain = invoke("migrate", *args)
    assert plain.exit_code == 0, plain.stderr
    assert "ALGORITHM" not in plain.stderr
    plain_shape = shape(mysql_url)
    assert plain_shape != before
    down = invoke("migrate", "down", "r1", *args, "--yes")
    assert down.exit_code == 0, down.stderr
    assert shape(mysql_url) == before

    safe = invoke("migrate", "--safe", *args)
    assert safe.exit_code == 0, safe.stderr
    assert case.line in safe.stderr.splitlines(), safe.stderr
    assert shape(mysql_url) == plain_shape
    assert version(mysql_url) == [("r2",)]


def test_a_table_created_in_the_same_revision_is_left_as_written(
    tmp_path: Path, mysql_url: str
) -> None:
    ini = _project(
        tmp_path,
        'op.create_table("tags", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("n", sa.Integer))\n'
        'op.create_index("ix_tags_n", "tags", ["n"])\n'
        'op.alter_column("tags", "n", type_=sa.BigInteger, existing_type=sa.Integer)\n'
        'op.add_column("orders", sa.Column("tag_id", sa.Integer))',
    )
    result = invoke("migrate", "--safe", "--url", mysql_url, "--config", str(ini))
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if " -> " in line]
    assert lines == ["r2: add_column orders.tag_id -> ALGORITHM=INSTANT"]
    assert "bigint" in shape(mysql_url, "tags")


def test_a_copy_is_refused_and_the_table_is_left_unchanged(tmp_path: Path, mysql_url: str) -> None:
    """Two clauses in one ALTER, one of which needs a copy: the server refuses the whole
    statement before it changes anything, so neither clause is applied."""
    ini = _project(
        tmp_path, 'op.execute("ALTER TABLE orders ADD COLUMN extra INT, MODIFY qty BIGINT")'
    )
    args = ["--url", mysql_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    fill(mysql_url, 100)
    before, rows = shape(mysql_url), content(mysql_url)

    result = invoke("migrate", "--safe", *args)
    assert result.exit_code == 1
    first, hint = result.stderr.strip().splitlines()[-2:]
    assert first == (
        "Error: r2: execute ALTER TABLE orders needs a table copy that blocks writes: the "
        "server refuses ALGORITHM=INSTANT and ALGORITHM=INPLACE, LOCK=NONE for it (Cannot "
        "change column type)"
    )
    assert "--online-ddl pt-osc" in hint
    assert "maintenance window" in hint
    assert "nothing of r2 ran before it" in hint
    assert shape(mysql_url) == before
    assert content(mysql_url) == rows
    assert version(mysql_url) == [("r1",)]


def test_a_revision_refused_half_way_says_what_of_it_stays(tmp_path: Path, mysql_url: str) -> None:
    ini = _project(
        tmp_path,
        'op.add_column("orders", sa.Column("note", sa.String(50)))\n' + TYPE_CHANGE,
    )
    result = invoke("migrate", "--safe", "--url", mysql_url, "--config", str(ini))
    assert result.exit_code == 1
    assert "r2: add_column orders.note -> ALGORITHM=INSTANT" in result.stderr
    assert "1 statement(s) of r2 ran before it and stay" in result.stderr
    assert "note" in shape(mysql_url)  # MariaDB committed it: what the message says
    assert version(mysql_url) == [("r1",)]


def test_a_type_change_the_linter_sees_is_refused_before_anything_runs(
    tmp_path: Path, mysql_url: str
) -> None:
    ini = _project(
        tmp_path,
        'op.add_column("orders", sa.Column("note", sa.String(50)))\n'
        'op.alter_column("orders", "qty", type_=sa.BigInteger, existing_type=sa.Integer)',
    )
    args = ["--url", mysql_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    before = shape(mysql_url)
    result = invoke("migrate", "--safe", *args)
    assert result.exit_code == 1
    assert "MY001" in result.stderr
    assert "nothing was run" in result.stderr
    assert shape(mysql_url) == before


def test_a_foreign_key_over_rows_that_point_at_nothing_is_dropped_again(
    tmp_path: Path, mysql_url: str
) -> None:
    ini = _project(
        tmp_path,
        'op.create_foreign_key("fk_orders_user", "orders", "users", ["user_id"], ["id"])',
    )
    args = ["--url", mysql_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    fill(mysql_url, 50)
    sql(mysql_url, "INSERT INTO orders (user_id, qty, code) VALUES (999, 1, 'orphan')")
    before = shape(mysql_url)

    result = invoke("migrate", "--safe", *args)
    assert result.exit_code == 1
    assert (
        "r2: create_foreign_key fk_orders_user: rows of orders point at no row of users "
        "(the first: user_id=999); the foreign key fk_orders_user was dropped again"
    ) in result.stderr
    assert shape(mysql_url) == before  # neither the key nor the index it brought
    assert version(mysql_url) == [("r1",)]
    # the server checks what is written while the key exists: nothing slipped in either
    assert sql(mysql_url, "SELECT @@GLOBAL.foreign_key_checks") == [(1,)]


def test_sql_safe_renders_lock_none(tmp_path: Path, mysql_url: str) -> None:
    ini = _project(
        tmp_path,
        'op.add_column("orders", sa.Column("note", sa.String(50)))\n'
        'op.create_index("ix_orders_code", "orders", ["code"])\n'
        'op.drop_index("ix_orders_qty", table_name="orders")',
    )
    result = invoke("migrate", "--safe", "--sql", "--url", mysql_url, "--config", str(ini))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "ALTER TABLE orders ADD COLUMN note VARCHAR(50), LOCK=NONE;" in out
    assert "CREATE INDEX ix_orders_code ON orders (code) LOCK=NONE;" in out
    assert "ALTER TABLE orders DROP INDEX ix_orders_qty, LOCK=NONE;" in out
    assert "CREATE INDEX ix_orders_qty ON orders (qty);" in out  # r1's new table: as written


@pytest.mark.wall_clock
def test_a_writer_is_not_blocked_while_an_inplace_change_runs(
    tmp_path: Path, mysql_url: str
) -> None:
    ini = _project(tmp_path, 'op.create_index("ix_orders_code_qty", "orders", ["code", "qty"])')
    args = ["--url", mysql_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    fill(mysql_url, 300_000)

    code, _, err, writes, seen = run_with_writer(mysql_url, "migrate", "--safe", *args)
    assert code == 0, err
    assert "r2: create_index ix_orders_code_qty -> ALGORITHM=INPLACE, LOCK=NONE" in err
    assert seen, "the index build was never seen running"
    during = writes.during(seen[0], seen[-1] + 0.05)
    assert len(during) >= 3, f"only {len(during)} inserts while the index was built"
    assert max(writes.waits) < BOUND, f"an insert waited {max(writes.waits):.2f} s"


# -- pt-online-schema-change -------------------------------------------------------------


def test_pt_osc_changes_the_type_and_keeps_every_row(tmp_path: Path, canary_url: str) -> None:
    _require_pt_osc()
    ini = _project(
        tmp_path,
        'op.create_foreign_key("fk_orders_user", "orders", "users", ["user_id"], ["id"])\n'
        + TYPE_CHANGE,
    )
    args = ["--url", canary_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    fill(canary_url, 20_000)
    before = content(canary_url)

    code, out, err, writes, _ = run_with_writer(
        canary_url, "migrate", "--online-ddl", "pt-osc", "--chunk-time", "0.05", *args
    )
    assert code == 0, err
    lines = err.splitlines()
    assert (
        "r2: execute ALTER TABLE orders -> pt-online-schema-change (the server refuses "
        "ALGORITHM=INSTANT and ALGORITHM=INPLACE, LOCK=NONE: Cannot change column type)"
    ) in lines
    assert any(
        re.fullmatch(
            r"r2: execute ALTER TABLE orders: pt-online-schema-change swapped "
            r"orders in [\d.]+ s",
            line,
        )
        for line in lines
    ), err
    assert column_type(canary_url, "qty") == "bigint"
    after = content(canary_url)
    assert after[0] == before[0] + writes.rows  # every row, those written during the copy too
    assert after[1] == before[1] + 3 * writes.rows
    assert writes.rows > 20
    shown = shape(canary_url)
    assert "CONSTRAINT `fk_orders_user` FOREIGN KEY (`user_id`) REFERENCES `users`" in shown
    assert leftovers(canary_url) == []
    assert version(canary_url) == [("r2",)]
    assert CANARY not in out + err


def test_pt_osc_failing_leaves_the_revision_unrecorded_and_the_table_intact(
    tmp_path: Path, canary_url: str
) -> None:
    _require_pt_osc()
    ini = _project(tmp_path, TYPE_CHANGE)
    args = ["--url", canary_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    fill(canary_url, 5_000)
    before, rows = shape(canary_url), content(canary_url)

    # pt-osc's own thread makes Threads_running 1: it aborts at its first chunk
    result = invoke(
        "migrate", "--online-ddl", "pt-osc", "--critical-load", "Threads_running=1", *args
    )
    assert result.exit_code == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1
    assert re.fullmatch(
        r"Error: r2: execute ALTER TABLE orders: pt-online-schema-change failed \(exit status "
        r"\d+\): Error copying rows from `\w+`.`orders` to `\w+`.`_orders_new`: "
        r"Threads_running=\d+ exceeds its critical threshold 1",
        error[0],
    ), error[0]
    assert shape(canary_url) == before
    assert content(canary_url) == rows
    assert leftovers(canary_url) == []
    assert version(canary_url) == [("r1",)]
    assert CANARY not in result.stdout + result.stderr


@pytest.mark.wall_clock
@pytest.mark.parametrize("stop", ["kill pt-osc", "Ctrl-C myfy-db"])
def test_pt_osc_stopped_mid_copy_leaves_nothing_behind_and_never_shows_the_password(
    stop: str, tmp_path: Path, canary_url: str
) -> None:
    """pt-osc keeps its triggers and its new table when it is interrupted: myfy-db drops
    them. While it runs, its command line and its environment hold no password."""
    _require_pt_osc()
    ini = _project(tmp_path, TYPE_CHANGE)
    args = ["--url", canary_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    fill(canary_url, 150_000)
    before, rows = shape(canary_url), content(canary_url)
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))}
    flags = ["--online-ddl", "pt-osc", "--chunk-time", "0.01"]
    process = subprocess.Popen(
        [sys.executable, "-m", "myfy_db", "migrate", *flags, *args],
        env=full,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    said: list[str] = []
    assert process.stderr is not None
    reader = threading.Thread(target=lambda: said.extend(process.stderr or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        tool = None
        while tool is None and time.monotonic() < deadline and process.poll() is None:
            tool = _pt_osc_of(process.pid)
            time.sleep(0.01)
        assert tool is not None, "pt-online-schema-change never started"
        proc = Path("/proc") / str(tool)
        cmdline = (proc / "cmdline").read_bytes()
        assert CANARY.encode() not in cmdline
        assert b"--ask-pass" in cmdline
        assert CANARY.encode() not in (proc / "environ").read_bytes()
        progress = re.compile(
            r"r2: execute ALTER TABLE orders: copying orders: \d+% done, \S+ remaining"
        )
        while time.monotonic() < deadline and not any(progress.match(line) for line in said):
            time.sleep(0.01)
        assert any(progress.match(line) for line in said), said
        assert version(canary_url) == [("r1",)]  # not while the copy runs
        assert pt_osc_triggers(canary_url), "pt-osc has no triggers while it copies"
        stopped = time.monotonic()
        if stop == "kill pt-osc":
            os.kill(tool, signal.SIGTERM)
        else:
            process.send_signal(signal.SIGINT)
        out = process.stdout.read() if process.stdout else ""
        process.wait(timeout=30)
        took = time.monotonic() - stopped
        reader.join(10)
        err = "".join(said)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if stop == "kill pt-osc":
        assert process.returncode == 1, err
        assert (
            "Error: r2: execute ALTER TABLE orders: pt-online-schema-change failed (exit "
            "status 1): Exiting on SIGTERM."
        ) in err
        assert "dropped what it left: trigger pt_osc_" in err
    else:
        assert process.returncode == 130, err
        assert took < 2.5, f"Ctrl-C took {took:.1f} s"
    assert not Path(f"/proc/{tool}").exists() or "zombie" in (proc / "status").read_text()
    assert leftovers(canary_url) == []
    assert shape(canary_url) == before
    assert content(canary_url) == rows
    assert version(canary_url) == [("r1",)]
    assert CANARY not in out + err


def test_without_pt_osc_on_path_the_run_is_exit_2_naming_the_package(
    tmp_path: Path, mysql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ini = _project(tmp_path, TYPE_CHANGE)
    args = ["--url", mysql_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = invoke("migrate", "--online-ddl", "pt-osc", *args)
    assert result.exit_code == 2
    assert "pt-online-schema-change" in result.stderr
    assert "percona-toolkit" in result.stderr
    assert version(mysql_url) == [("r1",)]


# -- pt-osc's command line and its errors (no server) ------------------------------------


def test_pt_osc_command_line_carries_the_options_and_never_the_password() -> None:
    from myfy_db.migrations.options import PtOscOptions
    from myfy_db.migrations.safe.pt_osc import PtOscJob

    job = PtOscJob(
        url=make_url(f"mysql+aiomysql://app:{CANARY}@db.internal:3307/shop"),
        database="shop",
        table="orders",
        alter="MODIFY total BIGINT",
        options=PtOscOptions(max_lag=2.5, chunk_time=0.2, critical_load="Threads_running=80"),
        lock_wait_timeout=5,
    )
    argv = job.argv("/usr/bin/pt-online-schema-change")
    assert CANARY not in " ".join(argv)
    assert argv[-1] == "h=db.internal,P=3307,u=app,D=shop,t=orders,A=utf8mb4"
    joined = " ".join(argv)
    for part in (
        "--execute",
        "--no-version-check",
        "--ask-pass",
        "--alter MODIFY total BIGINT",
        "--max-lag 2.5",
        "--chunk-time 0.2",
        "--critical-load Threads_running=80",
        "--set-vars lock_wait_timeout=5",
    ):
        assert part in joined


def test_a_name_pt_osc_cannot_carry_in_its_dsn_is_a_usage_error() -> None:
    from myfy_db.errors import ConfigError
    from myfy_db.migrations.options import PtOscOptions
    from myfy_db.migrations.safe.pt_osc import PtOscJob

    job = PtOscJob(make_url("mysql+aiomysql://u@h/db"), "db", "a,b", "ADD x INT", PtOscOptions())
    with pytest.raises(ConfigError, match="table 'a,b'"):
        job.dsn()


PT_OSC_OUTPUTS = [
    (
        "no primary key",
        [
            "Altering `shop`.`nopk`...",
            "Creating new table...",
            "Created new table shop._nopk_new OK.",
            "The new table `shop`.`_nopk_new` does not have a PRIMARY KEY or a unique index "
            "which is required for the DELETE trigger.",
            "Please check you have at least one UNIQUE and NOT NULLABLE index.",
            "2026-12-06T05:06:48 Dropping new table...",
            "2026-12-06T05:06:48 Dropped new table OK.",
            "`shop`.`nopk` was not altered.",
        ],
        ["Enter MySQL password: "],
        "The new table `shop`.`_nopk_new` does not have a PRIMARY KEY or a unique index which "
        "is required for the DELETE trigger. Please check you have at least one UNIQUE and NOT "
        "NULLABLE index.",
    ),
    (
        "a table other tables reference",
        [
            "Child tables:",
            "  `shop`.`child` (approx. 1 rows)",
            "You did not specify --alter-foreign-keys-method, but there are foreign keys that "
            "reference the table. Please read the tool's documentation carefully.",
        ],
        ["Enter MySQL password: "],
        "You did not specify --alter-foreign-keys-method, but there are foreign keys that "
        "reference the table. Please read the tool's documentation carefully.",
    ),
    (
        "a warning while copying",
        ["2026-12-06T05:07:26 Dropped new table OK.", "`shop`.`v` was not altered."],
        [
            "Enter MySQL password: \t(in cleanup) 2026-12-06T05:07:26 Error copying rows from "
            "`shop`.`v` to `shop`.`_v_new`: 2026-12-06T05:07:26 Copying rows caused a MySQL "
            "error 1366:",
            "    Level: Warning",
            "     Code: 1366",
            "  Message: Incorrect integer value: 'abc' for column `shop`.`_v_new`.`s` at row 2",
            "    Query: INSERT LOW_PRIORITY IGNORE INTO `shop`.`_v_new` ...",
        ],
        "Error copying rows from `shop`.`v` to `shop`.`_v_new`: Copying rows caused a MySQL "
        "error 1366: Incorrect integer value: 'abc' for column `shop`.`_v_new`.`s` at row 2",
    ),
    (
        "a missing privilege",
        [],
        [
            "Enter MySQL password: ",
            "You do not have the PROCESS privilege at /usr/bin/pt-online-schema-change line "
            "4455, <STDIN> line 1.",
        ],
        "You do not have the PROCESS privilege",
    ),
    (
        "the progress is no error",
        ["Copying approximately 1000219 rows..."],
        ["Copying `shop`.`t2`:   6% 00:14 remain", "# Exiting on SIGTERM."],
        "Exiting on SIGTERM.",
    ),
]


@pytest.mark.parametrize(
    ("stdout", "stderr", "expected"),
    [case[1:] for case in PT_OSC_OUTPUTS],
    ids=[case[0] for case in PT_OSC_OUTPUTS],
)
def test_pt_osc_last_error_is_one_line(stdout: list[str], stderr: list[str], expected: str) -> None:
    from myfy_db.migrations.safe.pt_osc import error_line

    assert error_line(stdout, stderr) == expected


# -- which statements run online, and how (no server) ------------------------------------


@pytest.mark.parametrize(
    ("sql", "instant", "inplace"),
    [
        (
            "ALTER TABLE orders MODIFY total BIGINT;",
            "ALTER TABLE orders MODIFY total BIGINT, ALGORITHM=INSTANT",
            "ALTER TABLE orders MODIFY total BIGINT, ALGORITHM=INPLACE, LOCK=NONE",
        ),
        (
            "CREATE UNIQUE INDEX ix_a ON `shop`.`orders` (a, b)",
            "CREATE UNIQUE INDEX ix_a ON `shop`.`orders` (a, b) ALGORITHM=INSTANT",
            "CREATE UNIQUE INDEX ix_a ON `shop`.`orders` (a, b) ALGORITHM=INPLACE LOCK=NONE",
        ),
        (
            "DROP INDEX ix_a ON orders",
            "ALTER TABLE orders DROP INDEX ix_a, ALGORITHM=INSTANT",
            "ALTER TABLE orders DROP INDEX ix_a, ALGORITHM=INPLACE, LOCK=NONE",
        ),
        (
            "-- a comment\nALTER TABLE t ADD COLUMN c VARCHAR(3) DEFAULT ';'",
            "ALTER TABLE t ADD COLUMN c VARCHAR(3) DEFAULT ';', ALGORITHM=INSTANT",
            "ALTER TABLE t ADD COLUMN c VARCHAR(3) DEFAULT ';', ALGORITHM=INPLACE, LOCK=NONE",
        ),
    ],
)
def test_a_statement_that_takes_an_algorithm_gets_each_form(
    sql: str, instant: str, inplace: str
) -> None:
    from myfy_db.migrations.safe.mysql import INPLACE, INSTANT
    from myfy_db.migrations.safe.mysql_statements import online_statement

    found = online_statement(sql)
    assert found is not None
    assert not found.given
    assert found.form(INSTANT) == instant
    assert found.form(INPLACE) == inplace


def test_what_is_left_as_written() -> None:
    from myfy_db.migrations.safe.mysql_statements import online_statement

    assert online_statement("ALTER TABLE t ADD c INT; ALTER TABLE t ADD d INT") is None
    assert online_statement("INSERT INTO t VALUES (1)") is None
    assert online_statement("CREATE TABLE t (id INT)") is None
    given = online_statement("ALTER TABLE t ADD COLUMN x INT, ALGORITHM=COPY")
    assert given is not None
    assert given.given
    named = online_statement("ALTER TABLE t ADD COLUMN algorithm INT, ADD COLUMN `lock` INT")
    assert named is not None
    assert not named.given  # columns named like the options are not the options
    key = online_statement("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES p (id)")
    assert key is not None
    assert key.adds_foreign_key
    assert key.clauses == "ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES p (id)"


@pytest.mark.parametrize("env", ["generic", "async", "attributes", "engine", "scaffold"])
def test_every_env_py_shape_runs_online_and_through_pt_osc(
    env: str, tmp_path: Path, mysql_url: str
) -> None:
    """The rewrites follow the statements whatever connection env.py migrates on: myfy-db's,
    a new one from its engine, or one of env.py's own (on a thread and an event loop of its
    own for the async template, where pt-osc runs too)."""
    from migrate_project import STANDARD, write_env_shape

    _require_pt_osc()
    ini = write_env_shape(tmp_path, env)
    change = (
        "r4",
        "items: rank, an index, a wider id",
        'op.add_column("items", sa.Column("rank", sa.Integer))\n'
        'op.create_index("ix_items_name", "items", ["name"])\n'
        'op.execute("ALTER TABLE items MODIFY id BIGINT NOT NULL AUTO_INCREMENT")',
        "pass",
    )
    write_project(tmp_path / "chain", [*STANDARD, change])
    versions = ini.parent / "migrations" / "versions"
    (versions / "r4.py").write_text((tmp_path / "chain/migrations/versions/r4.py").read_text())
    args = ["--url", mysql_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r3", *args).exit_code == 0
    sql(mysql_url, "INSERT INTO items (name) SELECT CONCAT('n', seq) FROM seq_1_to_500")

    result = invoke("migrate", "--online-ddl", "pt-osc", *args)
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "r4: add_column items.rank -> ALGORITHM=INSTANT" in lines
    assert "r4: create_index ix_items_name -> ALGORITHM=INPLACE, LOCK=NONE" in lines
    assert any(
        line.startswith("r4: execute ALTER TABLE items -> pt-online-schema-change")
        for line in lines
    ), result.stderr
    assert version(mysql_url) == [("r4",)]
    assert sql(mysql_url, "SELECT COUNT(*) FROM items") == [(500,)]
    assert "bigint" in shape(mysql_url, "items")


def test_lint_safe_marks_the_foreign_key_made_safe_and_never_a_copy(
    tmp_path: Path, mysql_url: str
) -> None:
    """A foreign key is made safe (checks off, rows checked after); a type change that needs
    a copy is not: only pt-osc could run it without blocking writes."""
    ini = _project(
        tmp_path,
        'op.create_foreign_key("fk_orders_user", "orders", "users", ["user_id"], ["id"])\n'
        'op.alter_column("orders", "qty", type_=sa.BigInteger, existing_type=sa.Integer)',
    )
    args = ["--url", mysql_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    result = invoke("migrate", "lint", "--safe", "--json", *args)
    assert result.exit_code == 5
    found = {f["rule"]: f["made_safe"] for f in json.loads(result.stdout)["findings"]}
    assert found["MY005"] is True
    assert found["MY001"] is False


def test_pt_osc_refusing_a_referenced_table_says_why_and_changes_nothing(
    tmp_path: Path, mysql_url: str
) -> None:
    _require_pt_osc()
    ini = write_project(
        tmp_path,
        [
            R1,
            (
                "r2",
                "a key to users",
                'op.create_foreign_key("fk_orders_user", "orders", "users", ["user_id"], ["id"])',
                "pass",
            ),
            ("r3", "users.id wider", 'op.execute("ALTER TABLE users MODIFY id BIGINT")', "pass"),
        ],
    )
    args = ["--url", mysql_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r2", *args).exit_code == 0
    fill(mysql_url, 100)
    before = shape(mysql_url, "users")
    result = invoke("migrate", "--online-ddl", "pt-osc", *args)
    assert result.exit_code == 1
    assert "You did not specify --alter-foreign-keys-method" in result.stderr
    assert "foreign keys of other tables point at this one" in result.stderr
    assert shape(mysql_url, "users") == before
    assert leftovers(mysql_url) == []
    assert version(mysql_url) == [("r2",)]


@pytest.mark.wall_clock
def test_the_server_gone_mid_copy_is_exit_4_and_the_rerun_names_what_pt_osc_left(
    tmp_path: Path, mysql_url: str, fault_proxy: Any
) -> None:
    """The server goes away while pt-osc copies: nobody can drop its triggers, so the run
    that finds them refuses (exit 1) with the statements that drop them, and never starts a
    second pt-osc over the first one's triggers."""
    _require_pt_osc()
    ini = _project(tmp_path, TYPE_CHANGE)
    args = ["--config", str(ini)]
    assert invoke("migrate", "up", "r1", "--url", mysql_url, *args).exit_code == 0
    fill(mysql_url, 150_000)
    before, rows = shape(mysql_url), content(mysql_url)
    proxy = fault_proxy(mysql_url)
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))}
    flags = ["--online-ddl", "pt-osc", "--chunk-time", "0.01", "--url", proxy.url]
    process = subprocess.Popen(
        [sys.executable, "-m", "myfy_db", "migrate", *flags, *args],
        env=full,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not pt_osc_triggers(mysql_url):
            time.sleep(0.01)
        assert pt_osc_triggers(mysql_url), "pt-osc never created its triggers"
        proxy.kill()
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 4, err
    assert version(mysql_url) == [("r1",)]
    assert content(mysql_url)[0] == rows[0]
    left = pt_osc_triggers(mysql_url)
    assert left  # the server kept them: nobody was there to drop them

    again = invoke("migrate", "--online-ddl", "pt-osc", "--url", mysql_url, *args)
    assert again.exit_code == 1
    assert "orders still has the triggers of an earlier pt-online-schema-change" in again.stderr
    for trigger in left:
        assert f"DROP TRIGGER `{make_url(mysql_url).database}`.`{trigger}`" in again.stderr
    assert version(mysql_url) == [("r1",)]
    sql(mysql_url, *[f"DROP TRIGGER `{t}`" for t in left], "DROP TABLE IF EXISTS _orders_new")
    assert shape(mysql_url) == before
    done = invoke("migrate", "--online-ddl", "pt-osc", "--url", mysql_url, *args)
    assert done.exit_code == 0, done.stderr
    assert column_type(mysql_url, "qty") == "bigint"


def test_pt_osc_keeps_the_tables_own_triggers(tmp_path: Path, mysql_url: str) -> None:
    _require_pt_osc()
    ini = _project(tmp_path, TYPE_CHANGE)
    args = ["--url", mysql_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    fill(mysql_url, 100)
    sql(
        mysql_url,
        "CREATE TABLE audit (order_id INT)",
        "CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW "
        "INSERT INTO audit VALUES (NEW.id)",
    )
    result = invoke("migrate", "--online-ddl", "pt-osc", *args)
    assert result.exit_code == 0, result.stderr
    assert column_type(mysql_url, "qty") == "bigint"
    assert pt_osc_triggers(mysql_url) == ["orders_audit"]
    sql(mysql_url, "INSERT INTO orders (user_id, qty, code) VALUES (1, 1, 'after')")
    assert sql(mysql_url, "SELECT COUNT(*) FROM audit") == [(1,)]


def test_pt_osc_runs_an_alembic_type_change_the_linter_sees(tmp_path: Path, mysql_url: str) -> None:
    _require_pt_osc()
    ini = _project(
        tmp_path, 'op.alter_column("orders", "qty", type_=sa.BigInteger, existing_type=sa.Integer)'
    )
    args = ["--url", mysql_url, "--config", str(ini)]
    assert invoke("migrate", "up", "r1", *args).exit_code == 0
    fill(mysql_url, 2_000)
    rows = content(mysql_url)
    refused = invoke("migrate", "--safe", *args)
    assert refused.exit_code == 1
    assert "MY001" in refused.stderr
    result = invoke("migrate", "--online-ddl", "pt-osc", *args)
    assert result.exit_code == 0, result.stderr
    assert "r2: alter_column orders.qty -> pt-online-schema-change" in result.stderr
    assert column_type(mysql_url, "qty") == "bigint"
    assert content(mysql_url) == rows
    assert leftovers(mysql_url) == []
    assert version(mysql_url) == [("r2",)]
    sql_out = invoke("migrate", "--online-ddl", "pt-osc", "--sql", *args)
    assert sql_out.exit_code == 0, sql_out.stderr
