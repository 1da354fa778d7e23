"""The server is the boundary (issue 21): each way past the sandbox, read-only mode and the
record that once got through, tried again. PostgreSQL's own parser (pglast) reads every
statement, MariaDB's sandbox is an XA transaction, SQLite's authorizer and a read-only file
guard SQLite, and the pool refuses every connection but the shell's own. Every case runs a
real ``python -m myfy_db shell`` and checks the server afterwards from a connection of its own.
"""

from __future__ import annotations

import pytest

from helpers import backend_of, run_process
from test_shell_sandbox import (
    INSERT,
    TABLE,
    _count,
    _record,
    _recorded,
    _sql,
    _tables,
    _with_table,
)

ROW = f"INSERT INTO {TABLE} (id) VALUES (7)"


def _tries(*attempts: tuple[str, str]) -> str:
    """A snippet that runs each (label, statement) in the shell and prints what happened.

    The statement is plain Python run through the shell's greenlet bridge, so synchronous
    SQLAlchemy calls (``engine.sync_engine.connect()``) run as they would in a program.
    """
    lines = [
        "from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker",
        f"await session.execute(text('INSERT INTO {TABLE} (id) VALUES (1)'))",
    ]
    for label, statement in attempts:
        lines += [
            "try:",
            *(f"    {line}" for line in statement.splitlines()),
            f"    print({label!r}, 'RAN')",
            "except Exception as exc:",
            f"    print({label!r}, type(exc).__name__, str(exc).splitlines()[0])",
        ]
    return "\n".join(lines)


def _not_refused(stdout: str, prefix: str) -> list[str]:
    return [line for line in stdout.splitlines() if f"StatementRefused {prefix}" not in line]


SECOND_CONNECTIONS = [
    (
        "execution_options",
        "async with engine.execution_options(isolation_level='AUTOCOMMIT').connect() as c:\n"
        f"    await c.execute(text({ROW!r}))",
    ),
    ("sync_engine", f"engine.sync_engine.connect().exec_driver_sql({ROW!r})"),
    ("raw_connection", "engine.sync_engine.raw_connection()"),
    ("engine.connect", "await engine.connect().start()"),
    ("engine.begin", "await engine.begin().__aenter__()"),
    ("new session", f"await AsyncSession(engine).execute(text({ROW!r}))"),
    ("sessionmaker", f"await async_sessionmaker(engine)().execute(text({ROW!r}))"),
    (
        "option engine session",
        "await AsyncSession(engine.execution_options()).scalar(text('SELECT 1'))",
    ),
]


@pytest.mark.parametrize("mode", ["--sandbox", "--read-only"])
def test_every_second_connection_is_refused_at_the_pool(db_url: str, mode: str) -> None:
    url = _with_table(db_url)
    code = _tries(*SECOND_CONNECTIONS)
    if mode == "--read-only":
        code = code.replace(
            f"await session.execute(text('INSERT INTO {TABLE} (id) VALUES (1)'))", ""
        )
    result = run_process("shell", mode, "--url", url, "-c", code)
    prefix = "sandbox:" if mode == "--sandbox" else "read-only:"
    assert result.returncode == 0, result.stderr
    assert _not_refused(result.stdout, prefix) == []
    assert len(result.stdout.splitlines()) == len(SECOND_CONNECTIONS)
    assert _count(url) == 0


PG_SANDBOX_ESCAPES = [
    "-- x\rCOMMIT",
    "-- x\r\nCOMMIT",
    "/* a /* nested */ b */ COMMIT",
    "\fCOMMIT",
    "\vEND",
    "SELECT 1; COMMIT",
    "select setval('boundary_seq', 1000, false)",
    "select pg_catalog.setval('boundary_seq'::regclass, 1000)",
    "COPY (select 1) TO PROGRAM 'true'",
    "COPY shell_items FROM '/etc/hostname'",
    "select pg_create_physical_replication_slot('boundary_slot')",
    "select dblink_exec('dbname=test', 'insert into shell_items values (9)')",
    "select pg_advisory_lock(42)",
    "SET SESSION AUTHORIZATION DEFAULT",
    "SET ROLE NONE",
    "select set_config('default_transaction_read_only', 'off', false)",
    'SET U&"default\\005ftransaction\\005fread\\005fonly" = off',
    "PREPARE TRANSACTION 'boundary'",
    "select pg_terminate_backend(pg_backend_pid())",
]


def test_postgres_sandbox_reads_each_statement_with_the_servers_parser(postgres_url: str) -> None:
    url = _with_table(postgres_url)
    _sql(url, "CREATE SEQUENCE boundary_seq")
    attempts = [(repr(s), f"await session.execute(text({s!r}))") for s in PG_SANDBOX_ESCAPES]
    result = run_process("shell", "--sandbox", "--url", url, "-c", _tries(*attempts))
    assert result.returncode == 0, result.stderr
    assert _not_refused(result.stdout, "sandbox:") == []
    assert "nothing this shell did was kept" in result.stderr
    assert _count(url) == 0
    assert _sql(url, "SELECT nextval('boundary_seq')")[0][0] == 1
    assert _sql(url, "SELECT count(*) FROM pg_replication_slots")[0][0] == 0


def test_postgres_comment_ended_by_carriage_return_cannot_commit_a_write(
    postgres_url: str,
) -> None:
    url = _with_table(postgres_url)
    code = f"{INSERT}\nawait session.execute(text('-- x\\rCOMMIT'))"
    result = run_process("shell", "--sandbox", "--url", url, "-c", code)
    assert result.returncode == 3
    assert "sandbox: COMMIT refused" in result.stderr
    assert _count(url) == 0


MARIADB_SANDBOX_ESCAPES = [
    "/*M!999999 SELECT */ CREATE TABLE boundary_a (i int)",
    "--\x01 hi\nCREATE TABLE boundary_b (i int)",
    "/*!99999 SELECT */ COMMIT",
    "SELECT SETVAL(boundary_seq, 500)",
    "EXECUTE IMMEDIATE 'COMMIT'",
]


def test_mariadb_sandbox_is_an_xa_transaction_the_server_keeps(mysql_url: str) -> None:
    url = _with_table(mysql_url)
    _sql(url, "CREATE SEQUENCE boundary_seq")
    attempts = [(repr(s), f"await session.execute(text({s!r}))") for s in MARIADB_SANDBOX_ESCAPES]
    result = run_process("shell", "--sandbox", "--url", url, "-c", _tries(*attempts))
    assert result.returncode == 0, result.stderr
    assert _not_refused(result.stdout, "sandbox:") == []
    assert "nothing this shell did was kept" in result.stderr
    assert _count(url) == 0
    assert {"boundary_a", "boundary_b"} & _tables(url) == set()
    assert _sql(url, "SELECT NEXTVAL(boundary_seq)")[0][0] == 1


def test_sqlite_sandbox_authorizer_refuses_what_sqlite_compiled(sqlite_url: str) -> None:
    url = _with_table(sqlite_url)
    escapes = [
        "COMMIT",
        "END TRANSACTION",
        "ATTACH ':memory:' AS other",
        "PRAGMA journal_mode = OFF",
    ]
    attempts = [(repr(s), f"await session.execute(text({s!r}))") for s in escapes]
    # the driver's own commit is compiled by SQLite too, and refused there
    attempts.append(
        (
            "driver commit",
            "await connection.run_sync(lambda c: c.connection.dbapi_connection.commit())",
        )
    )
    result = run_process("shell", "--sandbox", "--url", url, "-c", _tries(*attempts))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.endswith(" RAN")], lines
    assert _count(url) == 0


READ_ONLY_ESCAPES = {
    "postgresql": [
        "-- x\rSET default_transaction_read_only = off",
        'SET U&"default\\005ftransaction\\005fread\\005fonly" = off',
        "select dblink_exec('dbname=test', 'insert into shell_items values (9)')",
        "COMMIT",
    ],
    "mysql": [
        "EXECUTE IMMEDIATE CONCAT('SET SESSION TRANSACTION READ',' WRITE')",
        "PREPARE s FROM 'SET SESSION TRANSACTION READ WRITE'",
        "SET SESSION TRANSACTION READ WRITE",
    ],
    "sqlite": ['PRAGMA "query_only" = 0', "ATTACH 'boundary.db' AS other"],
}


def test_read_only_stays_read_only(db_url: str) -> None:
    url = _with_table(db_url)
    backend = backend_of(url)
    attempts = [
        (repr(s), f"await session.execute(text({s!r}))") for s in READ_ONLY_ESCAPES[backend]
    ]
    code = _tries(*attempts).replace(
        f"await session.execute(text('INSERT INTO {TABLE} (id) VALUES (1)'))", ""
    )
    code += f"\nawait session.execute(text({ROW!r}))\nawait session.commit()"
    result = run_process("shell", "--read-only", "--url", url, "-c", code)
    assert result.returncode == 1, result.stderr  # the final write: the server refuses it
    assert _not_refused(result.stdout, "read-only:") == []
    assert _count(url) == 0


def test_read_only_postgres_function_that_flips_the_default_cannot_open_a_writable_transaction(
    postgres_url: str,
) -> None:
    url = _with_table(postgres_url)
    _sql(
        url,
        "CREATE FUNCTION flip() RETURNS text LANGUAGE sql AS "
        "$$ SELECT set_config('default_transaction_read_only', 'off', false) $$",
    )
    code = (
        "await session.execute(text('SELECT flip()'))\n"
        "await session.commit()\n"
        f"await session.execute(text({ROW!r}))\n"
        "await session.commit()"
    )
    result = run_process("shell", "--read-only", "--url", url, "-c", code)
    assert result.returncode == 1, result.stderr
    assert "read-only transaction" in result.stderr
    assert _count(url) == 0


def test_the_record_cannot_be_deleted_under_another_spelling(postgres_url: str) -> None:
    url = _with_table(postgres_url)
    _record(url, "production")
    env = {"MYFY_DATA_ENVIRONMENT": "production"}
    statement = 'DELETE FROM U&"myfy\\005fdb\\005fmeta"'
    code = f"await session.execute(text({statement!r}))\nawait session.commit()"
    result = run_process("shell", "--no-sandbox", "--yes", "--url", url, "-c", code, env=env)
    assert result.returncode == 3, result.stderr
    assert "myfy_db_meta records this database as 'production'" in result.stderr
    assert _recorded(url) == "production"


# -- whether an input wrote is read from the server -------------------------------------------

SETUP = {
    "postgresql": [
        "CREATE TABLE accounts (id int primary key, note text)",
        "INSERT INTO accounts VALUES (1, 'a'), (2, 'b')",
        "CREATE FUNCTION wipe_two() RETURNS int LANGUAGE sql AS "
        "$$ DELETE FROM accounts WHERE id = 2 RETURNING 1 $$",
    ],
    "mysql": [
        "CREATE TABLE accounts (id int primary key, note text) ENGINE=InnoDB",
        "INSERT INTO accounts VALUES (1, 'a'), (2, 'b')",
        "CREATE FUNCTION wipe_two() RETURNS int MODIFIES SQL DATA "
        "BEGIN DELETE FROM accounts WHERE id = 2; RETURN 1; END",
    ],
    "sqlite": [
        "CREATE TABLE accounts (id int primary key, note text)",
        "INSERT INTO accounts VALUES (1, 'a'), (2, 'b')",
    ],
}
WROTE = {
    "postgresql": [
        ("EXPLAIN ANALYZE DELETE FROM accounts WHERE id = 2", True),
        ("SELECT wipe_two()", True),
        ("SELECT * INTO accounts_copy FROM accounts", True),
        ("SELECT * FROM accounts FOR UPDATE", True),
        ("SELECT * FROM accounts", False),
        ("SET search_path TO public", False),
    ],
    "mysql": [
        # (SELECT ... FOR UPDATE shows in InnoDB's view of the transaction, which the server
        # refreshes at most every 0.1 s: not asserted here, to keep the test exact.)
        ("SELECT wipe_two()", True),
        ("UPDATE accounts SET note = 'x' WHERE id = 1", True),
        ("SELECT * FROM accounts", False),
    ],
    "sqlite": [
        ("UPDATE accounts SET note = 'x' WHERE id = 1", True),
        ("WITH x AS (SELECT 1) DELETE FROM accounts WHERE id = 2", True),
        ("SELECT * FROM accounts", False),
        ("PRAGMA table_info(accounts)", False),
    ],
}


def test_what_an_input_wrote_is_read_from_the_server(db_url: str) -> None:
    import asyncio

    from sqlalchemy import text

    from myfy_db.settings import load_settings
    from myfy_db.shell.session import open_shell

    backend = backend_of(db_url)
    _sql(db_url, *SETUP[backend])
    settings = load_settings({"database_url": db_url}).settings

    async def held_after(sql: str) -> tuple[bool, str | None]:
        context = await open_shell(settings)
        try:
            await context.session.execute(text(sql))
            held, _ = await context.settle()
            outcome = await context.close()
            return held, None if outcome is None else outcome.detail
        except BaseException:
            await context.close()
            raise

    for sql, wrote in WROTE[backend]:
        held, leaving = asyncio.run(held_after(sql))
        assert held is wrote, sql
        assert (leaving is not None) is wrote, sql  # leaving says what it rolled back
        if wrote:
            assert "rolled back" in str(leaving)
    assert _sql(db_url, "SELECT count(*) FROM accounts")[0][0] == 2  # nothing was kept


def test_a_failed_input_never_leaves_the_session_aborted(postgres_url: str) -> None:
    import asyncio

    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from myfy_db.settings import load_settings
    from myfy_db.shell.session import open_shell

    url = _with_table(postgres_url)
    settings = load_settings({"database_url": url}).settings

    async def go() -> list[object]:
        context = await open_shell(settings)
        seen: list[object] = []
        try:
            # a typo with nothing held: the whole (empty) transaction goes
            await context.before_input()
            with pytest.raises(DBAPIError, match="syntax"):
                await context.session.execute(text("SELEC 1"))
            seen.append(await context.settle(failed=True))
            seen.append(await context.session.scalar(text("SELECT 1")))
            await context.settle()
            # a write held, then a failing input: rolled back to where that input began
            await context.before_input()
            await context.session.execute(text(ROW))
            seen.append(await context.settle())
            await context.before_input()
            with pytest.raises(DBAPIError, match="duplicate key"):
                await context.session.execute(text(ROW))
            seen.append(await context.settle(failed=True))
            await context.session.commit()
        finally:
            await context.close()
        return seen

    typo, after_typo, held, after_failure = asyncio.run(go())
    assert typo == (
        False,
        "the failed input's transaction was rolled back (nothing was held before it)",
    )
    assert after_typo == 1
    assert held == (True, None)
    assert after_failure[0] is True
    assert "the uncommitted changes from before it are kept" in str(after_failure[1])
    assert _count(url) == 1  # the write from before the failure was kept and committed


def test_sandbox_banner_names_its_boundary_and_the_sequences_it_cannot_return(
    db_url: str, tmp_path: object
) -> None:
    from test_shell import _Pty

    url = _with_table(db_url)
    shell = _Pty(["shell", "--sandbox", "--url", url], env={"MYFY_DB_HISTORY_FILE": "/dev/null"})
    banner = " ".join(shell.expect(">>> ").split())
    boundary = {
        "postgresql": "PostgreSQL's own parser",
        "mysql": "it is an XA transaction",
        "sqlite": "SQLite's authorizer",
    }[backend_of(url)]
    assert boundary in banner
    assert "refuses any other" in banner
    assert ("not given back" in banner) is (backend_of(url) != "sqlite")
    shell.send("exit()")
    assert shell.wait() == 0


def test_leaving_with_uncommitted_writes_says_what_was_rolled_back(db_url: str) -> None:
    url = _with_table(db_url)
    result = run_process("shell", "--no-sandbox", "--url", url, "-c", INSERT)
    assert result.returncode == 0, result.stderr
    assert "rolled back 1 uncommitted row change(s) on leaving" in result.stderr
    assert _count(url) == 0


def test_a_failed_commit_inside_the_sandbox_still_closes_it_cleanly(db_url: str) -> None:
    url = _with_table(db_url)
    code = (
        f"{INSERT}\n"
        "for step in (lambda: session.execute(text('SELECT 1/0')), session.commit):\n"
        "    try:\n"
        "        await step()\n"
        "    except Exception as exc:\n"
        "        print('failed', type(exc).__name__)\n"
    )
    result = run_process("shell", "--sandbox", "--url", url, "-c", code)
    assert result.returncode == 0, result.stderr
    assert "nothing this shell did was kept" in result.stderr
    assert "SANDBOX BROKEN" not in result.stderr
    assert _count(url) == 0
