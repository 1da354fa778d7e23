"""The shell's safety model, tried as an adversary would (issue 11's shell parts, issue 15's
session model): the database's record, an unescapable sandbox, --read-only that stays
read-only, an idle shell that holds nothing, and lazy loading through the greenlet bridge.

Every test runs a real ``python -m myfy_db`` against a real database and checks the server
from an independent connection; the interactive ones go through a pseudo-terminal.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from helpers import backend_of, run_process
from test_shell import _Pty

TABLE = "shell_items"
INSERT = f"await session.execute(text('INSERT INTO {TABLE} (id) VALUES (1)'))"
INSERT_AND_COMMIT = f"{INSERT}\nawait session.commit()"
OVERRIDE = "MYFY_DB_DISABLE_ENVIRONMENT_CHECK"


def _sql(url: str, *statements: str, params: dict[str, Any] | None = None) -> Any:
    """Run statements on a fresh engine (committed); return the last one's rows."""

    async def go() -> Any:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                rows: Any = None
                for statement in statements:
                    cursor = await conn.execute(text(statement), params or {})
                    rows = cursor.all() if cursor.returns_rows else None
                return rows
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _with_table(url: str) -> str:
    _sql(url, f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY)")
    return url


def _count(url: str, table: str = TABLE) -> int:
    return int(_sql(url, f"SELECT count(*) FROM {table}")[0][0])


def _tables(url: str) -> set[str]:
    async def go() -> set[str]:
        from sqlalchemy import inspect

        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        finally:
            await engine.dispose()

    return {name.lower() for name in asyncio.run(go())}


def _record(url: str, environment: str) -> None:
    """Record ``environment`` in the database's myfy_db_meta, as a guarded command would."""
    from myfy_db.guard import record_environment

    async def go() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(record_environment, environment)
        finally:
            await engine.dispose()

    asyncio.run(go())


def _recorded(url: str) -> str:
    return str(_sql(url, "SELECT environment FROM myfy_db_meta")[0][0])


def _attempts(*attempts: tuple[str, str]) -> str:
    """A snippet that tries each (label, awaitable expression) and prints what happened."""
    lines = [INSERT_AND_COMMIT]
    for label, expression in attempts:
        lines += [
            "try:",
            f"    await ({expression})",
            f"    print({label!r}, 'RAN')",
            "except Exception as exc:",
            f"    print({label!r}, type(exc).__name__, str(exc).splitlines()[0])",
        ]
    lines.append(f"print('inside', await session.scalar(text('SELECT count(*) FROM {TABLE}')))")
    return "\n".join(lines)


def _refused_lines(stdout: str, prefix: str) -> list[str]:
    """The attempt lines that were not refused by the shell with ``prefix``."""
    return [
        line
        for line in stdout.splitlines()
        if not line.startswith("inside") and f"StatementRefused {prefix}" not in line
    ]


@pytest.fixture
def pty() -> Iterator[Callable[..., _Pty]]:
    """Start shells on a pseudo-terminal; any still running at the end is killed (before the
    database fixture drops its database, which a shell holding a transaction would block)."""
    started: list[_Pty] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> _Pty:
        shell = _Pty(args, env=env)
        started.append(shell)
        return shell

    yield start
    for shell in started:
        if shell.process.poll() is None:
            shell.process.kill()
            shell.process.wait(10)


# -- the sandbox cannot be escaped --------------------------------------------------------

RAW_ESCAPES = [
    "COMMIT",
    "commit work",
    "/* note */ COMMIT",
    "END",
    "ROLLBACK",
    "BEGIN",
    "START TRANSACTION",
    "SAVEPOINT s1",
    "RELEASE SAVEPOINT sa_savepoint_1",
    "ROLLBACK TO SAVEPOINT sa_savepoint_1",
    "SELECT 1; COMMIT",
]
MYSQL_IMPLICIT_COMMITS = [
    "CREATE TABLE sb_implicit (x int)",
    "DROP TABLE shell_items",
    "TRUNCATE TABLE shell_items",
    "ALTER TABLE shell_items ADD COLUMN y int",
    "RENAME TABLE shell_items TO sb_renamed",
    "CREATE INDEX sb_ix ON shell_items (id)",
    "LOCK TABLES shell_items WRITE",
    "GRANT SELECT ON *.* TO root",
    "SET autocommit = 1",
    "/*!50000 COMMIT */",
    "CREATE TEMPORARY TABLE sb_tmp (x int)",
]
API_ESCAPES = [
    ("connection.commit()", "connection.commit()"),
    ("connection.rollback()", "connection.rollback()"),
    ("transaction.commit()", "connection.get_transaction().commit()"),
    ("connection.close()", "connection.close()"),
    ("engine.connect()", "engine.connect().start()"),
    ("engine.begin()", "engine.begin().__aenter__()"),
    ("new session", "type(session)(engine).execute(text('SELECT 1'))"),
]


def test_sandbox_refuses_every_way_out_before_the_server_sees_it(db_url: str) -> None:
    url = _with_table(db_url)
    statements = RAW_ESCAPES + (MYSQL_IMPLICIT_COMMITS if backend_of(url) == "mysql" else [])
    attempts = [(s, f"session.execute(text({s!r}))") for s in statements] + API_ESCAPES
    if backend_of(url) != "mysql":  # DDL is transactional here: it runs, and is rolled back
        attempts.insert(0, ("create", "session.execute(text('CREATE TABLE sb_ddl (x int)'))"))
    result = run_process("shell", "--sandbox", "--url", url, "-c", _attempts(*attempts))
    assert result.returncode == 0, result.stderr
    not_refused = _refused_lines(result.stdout, "sandbox:")
    assert not_refused == (["create RAN"] if backend_of(url) != "mysql" else [])
    assert "inside 1" in result.stdout  # the sandbox's own transaction was never ended
    assert "rolled back on the server" in result.stderr
    assert _count(url) == 0
    assert _tables(url) == {TABLE}


def test_sandbox_refusal_is_one_line_with_what_to_do_and_exit_3(db_url: str) -> None:
    url = _with_table(db_url)
    code = f"{INSERT}\nawait session.execute(text('COMMIT'))"
    result = run_process("shell", "--sandbox", "--url", url, "-c", code)
    assert result.returncode == 3
    assert "Error: sandbox: COMMIT refused" in result.stderr
    assert "--no-sandbox" in result.stderr
    assert "Traceback" not in result.stderr
    assert "unexpected" not in result.stderr
    assert _count(url) == 0


def test_a_broken_sandbox_says_so_and_exits_non_zero(db_url: str) -> None:
    url = _with_table(db_url)
    # The driver's own connection is outside what the shell can check: commit through it.
    code = f"{INSERT}\nawait connection.run_sync(lambda c: c.connection.dbapi_connection.commit())"
    result = run_process("shell", "--sandbox", "--url", url, "-c", code)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "Event loop is closed" not in result.stderr
    if backend_of(url) == "postgresql":
        # No server-side guard stops a session committing its own transaction there.
        assert "SANDBOX BROKEN" in result.stderr
        assert "nothing this shell did was kept" not in result.stderr
        assert _count(url) == 1  # the closing line told the truth
    else:
        # MariaDB's XA transaction and SQLite's authorizer refuse even the driver's commit.
        assert "XAER_RMFAIL" in result.stderr or "not authorized" in result.stderr
        assert "nothing this shell did was kept" in result.stderr
        assert _count(url) == 0


def test_mariadb_non_transactional_write_is_reported_as_kept(mysql_url: str) -> None:
    url = _with_table(mysql_url)
    _sql(url, "CREATE TABLE sb_myisam (x int) ENGINE=MyISAM")
    code = "_ = await session.execute(text('INSERT INTO sb_myisam VALUES (7)'))"
    result = run_process("shell", "--sandbox", "--url", url, "-c", code)
    assert result.returncode == 1
    assert "SANDBOX BROKEN" in result.stderr
    assert "non-transactional" in result.stderr
    assert _count(url, "sb_myisam") == 1


def test_sandbox_connection_names_itself(postgres_url: str) -> None:
    code = "await session.scalar(text('SHOW application_name'))"
    result = run_process("shell", "--sandbox", "--url", postgres_url, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "'myfy-db shell (sandbox)'"


# -- the database's record ------------------------------------------------------------------


def test_shell_on_a_database_recorded_as_production_opens_sandboxed(db_url: str) -> None:
    url = _with_table(db_url)
    _record(url, "production")
    result = run_process("shell", "--url", url, "-c", INSERT_AND_COMMIT)
    assert result.returncode == 0, result.stderr
    assert "rolled back on the server" in result.stderr
    assert _count(url) == 0


def test_no_sandbox_on_a_production_record_from_another_environment_exits_3(db_url: str) -> None:
    url = _with_table(db_url)
    _record(url, "production")
    result = run_process("shell", "--no-sandbox", "--yes", "--url", url, "-c", INSERT_AND_COMMIT)
    assert result.returncode == 3
    assert "recorded as 'production'" in result.stderr
    assert OVERRIDE in result.stderr
    assert _count(url) == 0


def test_the_override_lifts_the_record(sqlite_url: str) -> None:
    url = _with_table(sqlite_url)
    _record(url, "production")
    env = {OVERRIDE: "1"}
    result = run_process("shell", "--no-sandbox", "--url", url, "-c", INSERT_AND_COMMIT, env=env)
    assert result.returncode == 0, result.stderr
    assert _count(url) == 1


def test_no_sandbox_on_a_matching_record_without_a_terminal_exits_3(sqlite_url: str) -> None:
    url = _with_table(sqlite_url)
    _record(url, "live")
    _sql(url, "UPDATE myfy_db_meta SET environment = 'production'")
    env = {"MYFY_DATA_ENVIRONMENT": "Production "}
    result = run_process("shell", "--no-sandbox", "--url", url, "-c", INSERT_AND_COMMIT, env=env)
    assert result.returncode == 3
    assert "--yes" in result.stderr
    assert _count(url) == 0


def test_no_sandbox_on_a_matching_record_asks_for_the_name(
    sqlite_url: str, pty: Callable[..., _Pty]
) -> None:
    url = _with_table(sqlite_url)
    _record(url, "production")
    env = {"MYFY_DATA_ENVIRONMENT": "production"}
    shell = pty(["shell", "--no-sandbox", "--url", url, "-c", INSERT_AND_COMMIT], env=env)
    shell.expect("to confirm")
    shell.send("test.db")
    assert shell.wait() == 0
    assert _count(url) == 1


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE myfy_db_meta SET environment = 'development'",
        "DELETE FROM myfy_db_meta",
        "DROP TABLE myfy_db_meta",
    ],
)
def test_the_shell_cannot_lower_a_protected_record(statement: str, db_url: str) -> None:
    url = _with_table(db_url)
    _record(url, "production")
    env = {"MYFY_DATA_ENVIRONMENT": "production"}
    code = f"await session.execute(text({statement!r}))\nawait session.commit()"
    result = run_process("shell", "--no-sandbox", "--yes", "--url", url, "-c", code, env=env)
    assert result.returncode == 3
    assert "myfy_db_meta records this database as 'production'" in result.stderr
    assert _recorded(url) == "production"


def test_banner_names_the_record(sqlite_url: str, pty: Callable[..., _Pty]) -> None:
    url = _with_table(sqlite_url)
    _record(url, "production")
    shell = pty(["shell", "--url", url])
    banner = shell.expect(">>> ")
    assert "recorded as production (PROTECTED)" in banner
    assert "sandbox ON" in banner
    assert "holds one transaction open" in banner
    shell.send("exit()")
    assert shell.wait() == 0


# -- read-only stays read-only --------------------------------------------------------------

ACCESS_MODE_CHANGES = {
    "postgresql": [
        "SET TRANSACTION READ WRITE",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "SET default_transaction_read_only = off",
        "SET SESSION default_transaction_read_only TO DEFAULT",
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        "RESET ALL",
        "BEGIN READ WRITE",
    ],
    "mysql": [
        "SET SESSION TRANSACTION READ WRITE",
        "SET TRANSACTION READ WRITE",
        "SET @@SESSION.tx_read_only = 0",
        "SET SESSION transaction_read_only = OFF",
        "START TRANSACTION READ WRITE",
    ],
    "sqlite": ["PRAGMA query_only = OFF", "PRAGMA query_only(0)", "pragma QUERY_ONLY=false"],
}


def test_read_only_refuses_changing_the_access_mode_back(db_url: str) -> None:
    url = _with_table(db_url)
    attempts = [(s, f"session.execute(text({s!r}))") for s in ACCESS_MODE_CHANGES[backend_of(url)]]
    code = "\n".join(_attempts(*attempts).splitlines()[2:])  # no insert first: read-only
    code += f"\n{INSERT_AND_COMMIT}"
    result = run_process("shell", "--read-only", "--url", url, "-c", code)
    assert result.returncode == 1  # the final insert: the server still refuses it
    assert _refused_lines(result.stdout, "read-only:") == []
    assert _count(url) == 0


def test_read_only_refusal_names_the_reason(postgres_url: str) -> None:
    code = (
        "await session.execute(text('SET TRANSACTION READ WRITE'))\n"
        "await session.execute(text('create table ro_escape(x int)'))\n"
        "await session.commit()"
    )
    result = run_process("shell", "--read-only", "--url", postgres_url, "-c", code)
    assert result.returncode == 3
    assert "read-only: SET TRANSACTION refused" in result.stderr
    assert "read-write" in result.stderr
    assert "ro_escape" not in _tables(postgres_url)


# -- an idle shell holds nothing ------------------------------------------------------------


def _server_transaction(url: str, backend_id: str) -> str | None:
    """What the server says about the shell's connection: its transaction state, if any."""
    backend = backend_of(url)
    if backend == "postgresql":
        rows = _sql(url, f"SELECT state FROM pg_stat_activity WHERE pid = {int(backend_id)}")
        return str(rows[0][0])
    rows = _sql(
        url,
        "SELECT trx_state FROM information_schema.innodb_trx "
        f"WHERE trx_mysql_thread_id = {int(backend_id)}",
    )
    return str(rows[0][0]) if rows else None


def _sqlite_writable(url: str) -> bool:
    """Whether an independent connection can write now (no transaction holds the file)."""
    path = make_url(url).database
    assert path
    conn = sqlite3.connect(path, timeout=0.2)
    try:
        conn.execute(f"INSERT INTO {TABLE} (id) VALUES (99)")
        conn.execute(f"DELETE FROM {TABLE} WHERE id = 99")
        conn.commit()
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


BACKEND_ID = {
    "postgresql": "await session.scalar(text('SELECT pg_backend_pid()'))",
    "mysql": "await session.scalar(text('SELECT CONNECTION_ID()'))",
    "sqlite": "0",
}


def _idle_now(url: str, backend_id: str) -> bool:
    backend = backend_of(url)
    if backend == "sqlite":
        return _sqlite_writable(url)
    state = _server_transaction(url, backend_id)
    return state == "idle" if backend == "postgresql" else state is None


def _idle(url: str, backend_id: str, expected: bool = True) -> bool:
    """Whether the shell's connection is idle, once the server's view has settled.

    MariaDB refreshes information_schema.innodb_trx at most every 0.1 s: poll for up to 2 s.
    """
    deadline = time.monotonic() + 2
    while True:
        idle = _idle_now(url, backend_id)
        if idle is expected or time.monotonic() > deadline:
            return idle
        time.sleep(0.15)


@pytest.mark.wall_clock
def test_idle_shell_holds_no_transaction_and_the_prompt_shows_changes(
    db_url: str, pty: Callable[..., _Pty]
) -> None:
    url = _with_table(db_url)
    shell = pty(["shell", "--url", url])
    banner = shell.expect(">>> ")
    assert "uncommitted changes hold locks" in banner
    shell.send(BACKEND_ID[backend_of(url)])
    backend_id = re.findall(r"\d+", shell.expect(">>> "))[-1]
    shell.send(f"await session.scalar(text('SELECT count(*) FROM {TABLE}'))")
    shell.expect(">>> ")
    assert _idle(url, backend_id)
    shell.send(INSERT)
    shell.expect("myfy-db*> ")
    assert not _idle(url, backend_id, expected=False)
    shell.send("await session.commit()")
    shell.expect(">>> ")
    assert _idle(url, backend_id)
    shell.send("exit()")
    assert shell.wait() == 0
    assert _count(url) == 1


# -- lazy loading -----------------------------------------------------------------------------


def _people(url: str) -> str:
    from myfy_db.example import Base

    async def go() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
                await conn.execute(
                    text("INSERT INTO users (id, email, name) VALUES (1, 'ann@example.com', 'Ann')")
                )
                await conn.execute(
                    text(
                        "INSERT INTO accounts (id, owner_id, name, balance) "
                        "VALUES (1, 1, 'main', 10), (2, 1, 'savings', 20)"
                    )
                )
        finally:
            await engine.dispose()

    asyncio.run(go())
    return url


LOAD_ANN = "ann = (await session.scalars(select(User))).one()"


def test_lazy_relationship_loads_in_a_plain_expression(db_url: str) -> None:
    url = _people(db_url)
    code = f"{LOAD_ANN}\nprint(sorted(a.name for a in ann.accounts))\nann.accounts[0].owner.name"
    result = run_process("shell", "--url", url, "--metadata", "myfy_db.example:Base", "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "['main', 'savings']\n'Ann'\n"


def test_lazy_load_outside_the_bridge_names_the_fix(sqlite_url: str) -> None:
    url = _people(sqlite_url)
    code = (
        f"import asyncio\n{LOAD_ANN}\n"
        "async def count():\n    return len(ann.accounts)\n"
        "await asyncio.create_task(count())"
    )
    result = run_process("shell", "--url", url, "--metadata", "myfy_db.example:Base", "-c", code)
    assert result.returncode == 1
    assert "selectinload" in result.stderr
    assert "awaitable_attrs" in result.stderr
    assert "Traceback" not in result.stderr


def test_interactive_lazy_load_and_objects_outlive_the_read_transaction(
    db_url: str, pty: Callable[..., _Pty]
) -> None:
    url = _people(db_url)
    shell = pty(["shell", "--url", url, "--metadata", "myfy_db.example:Base"])
    shell.expect(">>> ")
    shell.send(LOAD_ANN)
    shell.expect(">>> ")
    shell.send("ann.name")  # the read transaction ended after the last input
    assert "'Ann'" in shell.expect(">>> ")
    shell.send("', '.join(sorted(a.name for a in ann.accounts))")
    assert "main, savings" in shell.expect(">>> ")
    shell.send("exit()")
    assert shell.wait() == 0


# -- reading SQL as the server would (the library) ------------------------------------------


@pytest.mark.parametrize(
    ("sql", "dialect", "refused"),
    [
        ("SELECT 'COMMIT'", "postgresql", False),
        ("SELECT $$; COMMIT$$", "postgresql", False),
        ("SELECT 1 /* ; COMMIT */", "postgresql", False),
        ("SELECT 1 -- ; COMMIT", "postgresql", False),
        ("SELECT 1;\n  commit", "postgresql", True),
        ("SELECT 1--1\n; COMMIT", "mysql", True),
        ("SELECT 1 # ; COMMIT", "mysql", False),
        ("/*M!100000 COMMIT */", "mysql", True),
        ('SELECT "x"; DROP TABLE t', "mysql", True),
        ("CREATE TABLE t (x int)", "postgresql", False),
        ("CREATE TABLE t (x int)", "sqlite", False),
        ("UPDATE t SET note = 'commit'", "mysql", False),
    ],
)
def test_sandbox_reads_statements_as_the_server_does(sql: str, dialect: str, refused: bool) -> None:
    from myfy_db.shell.sandbox import Policy, refusal

    assert (refusal(sql, dialect, Policy(sandbox=True)) is not None) is refused
