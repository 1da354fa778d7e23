"""Differential fuzzing of the sandbox (issue 21): hypothesis wraps statements that would end
the sandbox's transaction, commit on their own or switch the session (COMMIT, BEGIN, DDL,
SET) in comments of every form, odd whitespace, quoting, executable comments and several
statements in one string. Each is run through a real sandboxed shell on PostgreSQL and
MariaDB after a write; then a connection of the test's own asks the server whether anything
persisted. Nothing may: whatever the shell let through, the server's rollback must undo.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import backend_of
from test_shell_sandbox import TABLE, _count, _sql, _tables, _with_table

CORES = {
    "postgresql": [
        "COMMIT",
        "commit work",
        "END",
        "BEGIN",
        "START TRANSACTION",
        "ROLLBACK",
        "ABORT",
        "SAVEPOINT fz",
        "RELEASE SAVEPOINT sa_savepoint_1",
        "PREPARE TRANSACTION 'fz'",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "SET default_transaction_read_only = off",
        "select setval('fz_seq', 500)",
        "CREATE TABLE fz_made (i int)",
    ],
    "mysql": [
        "COMMIT",
        "commit work",
        "BEGIN",
        "START TRANSACTION",
        "ROLLBACK",
        "CREATE TABLE fz_made (i int)",
        f"DROP TABLE {TABLE}",
        f"TRUNCATE TABLE {TABLE}",
        f"ALTER TABLE {TABLE} ADD COLUMN fz int",
        f"LOCK TABLES {TABLE} WRITE",
        "SET autocommit = 1",
        "SELECT SETVAL(fz_seq, 500)",
        "XA END 'x'",
    ],
}
SPACES = [" ", "\t", "\n", "\r", "\r\n", "\f", "\v", ""]
PREFIXES = {
    "postgresql": [
        "-- x\r",
        "-- x\n",
        "/* c */",
        "/* a /* nested */ b */",
        "SELECT 1;",
        "SELECT 'a;b';",
        "SELECT $$;COMMIT$$;",
        "",
    ],
    "mysql": [
        "-- x\n",
        "--\x01 hi\n",
        "# x\n",
        "/* c */",
        "/*M!999999 SELECT */",
        "/*!99999 SELECT */",
        "SELECT 1;",
        "SELECT 'a;b';",
        "",
    ],
}
SUFFIXES = ["", ";", "; SELECT 1", " -- tail", " /* tail */"]


@st.composite
def wrapped(draw: st.DrawFn, backend: str) -> str:
    core = draw(st.sampled_from(CORES[backend]))
    if draw(st.booleans()):  # the server reads keywords in any case
        core = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in core)
    if backend == "mysql" and draw(st.booleans()):
        core = f"/*!{draw(st.sampled_from(['', '50000', '100000']))} {core} */"
    before = draw(st.sampled_from(PREFIXES[backend]))
    gap = draw(st.sampled_from(SPACES))
    after = draw(st.sampled_from(SUFFIXES))
    return f"{before}{gap}{core}{after}"


def _run_in_sandbox(url: str, sql: str) -> None:
    from sqlalchemy import text

    from myfy_db.settings import load_settings
    from myfy_db.shell.session import open_shell

    async def go() -> None:
        context = await open_shell(load_settings({"database_url": url}).settings, sandbox=True)
        try:
            await context.session.execute(text(f"INSERT INTO {TABLE} (id) VALUES (1)"))
            for attempt in (lambda: context.session.execute(text(sql)), context.session.commit):
                try:
                    await attempt()
                except Exception:  # refused by the shell or by the server: either is fine
                    await context.recover()
        finally:
            await context.close()

    asyncio.run(go())


@pytest.mark.parametrize("server", ["postgresql", "mysql"])
def test_nothing_the_sandbox_runs_persists(server: str, request: pytest.FixtureRequest) -> None:
    url = _with_table(
        request.getfixturevalue("postgres_url" if server == "postgresql" else "mysql_url")
    )
    backend = backend_of(url)
    _sql(url, "CREATE SEQUENCE fz_seq")
    first = int(
        _sql(
            url, "SELECT nextval('fz_seq')" if backend == "postgresql" else "SELECT NEXTVAL(fz_seq)"
        )[0][0]
    )

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(sql=wrapped(backend))
    def check(sql: str) -> None:
        _run_in_sandbox(url, sql)
        assert _count(url) == 0, sql
        assert "fz_made" not in _tables(url), sql
        assert TABLE in _tables(url), sql
        query = "SELECT nextval('fz_seq')" if backend == "postgresql" else "SELECT NEXTVAL(fz_seq)"
        now = int(_sql(url, query)[0][0])
        assert now < 500, sql  # the sequence was never moved to 500

    check()
    assert first == 1
