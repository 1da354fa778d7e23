"""Faults: one SIGINT (or SIGTERM) ends any command fast, even when the server stops
answering; time limits bound what they name; a server lost mid-run is exit 4.

Each test runs ``python -m myfy_db`` as a real subprocess, sends it a real signal and checks
the elapsed time (two seconds, plus slack for a loaded machine), the exit code (130 or 143),
the one line on stderr, that the migration lock is free and that the server holds no
connection of the run afterwards. A hung server is a :class:`FaultProxy` frozen in front of
the real one; the shared servers themselves are never stopped.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from fault_proxy import FaultProxy
from helpers import (
    BOUND,
    Running,
    assert_ends_on_a_fault,
    assert_quiet,
    backend_of,
    server_for,
)
from helpers import (
    invoke as invoke_cli,
)
from migrate_project import write_project
from myfy_db.migrations.lock import PG_LOCK_CLASS, PG_LOCK_OBJECT, mysql_lock_name

# -- helpers --------------------------------------------------------------------------------


def _sleep_sql(backend: str, seconds: float) -> str:
    if backend == "postgresql":
        return f"SELECT pg_sleep({seconds})"
    if backend == "mysql":
        return f"SELECT SLEEP({seconds})"
    rows = int(seconds * 1_500_000)  # SQLite has no sleep: a counting query of about that long
    return (
        f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) "
        "SELECT count(*) FROM c"
    )


def _slow_project(root: Path, backend: str, count: int = 40, seconds: float = 0.2) -> None:
    sql = _sleep_sql(backend, seconds).replace('"', '\\"')
    revisions = [(f"s{i:02d}", f"slow {i}", f'op.execute("{sql}")', "pass") for i in range(count)]
    write_project(root, revisions)


def _database(url: str) -> str:
    return make_url(url).database or ""


def _connections(url: str) -> int:
    return server_for(backend_of(url)).connection_count(_database(url))


def _assert_no_connection_left(url: str) -> None:
    assert server_for(backend_of(url)).wait_for_connections(_database(url), 0) == 0


def _lock_is_free(url: str) -> bool:
    backend = backend_of(url)
    if backend == "sqlite":
        path = Path(f"{make_url(url).database}.migrate.lock")
        if not path.exists():
            return True
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
        return True
    server = server_for(backend)
    if backend == "postgresql":
        rows = server.admin(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            f"AND classid = {PG_LOCK_CLASS} AND objid = {PG_LOCK_OBJECT} AND database = "
            f"(SELECT oid FROM pg_database WHERE datname = '{_database(url)}')"
        )
        return int(rows[0][0][0]) == 0
    rows = server.admin(f"SELECT IS_USED_LOCK('{mysql_lock_name(_database(url))}')")
    return rows[0][0][0] is None


@contextmanager
def _lock_held_elsewhere(url: str) -> Iterator[None]:
    """Hold the migration lock from another session while the block runs."""
    backend = backend_of(url)
    parsed = make_url(url)
    release = threading.Event()
    taken = threading.Event()

    async def hold() -> None:
        if backend == "postgresql":
            import asyncpg

            conn = await asyncpg.connect(
                host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database
            )
            await conn.execute(f"SELECT pg_advisory_lock({PG_LOCK_CLASS}, {PG_LOCK_OBJECT})")
            taken.set()
            await asyncio.to_thread(release.wait)
            await conn.close()
        else:
            import aiomysql

            conn = await aiomysql.connect(
                host=parsed.host, port=parsed.port, user=parsed.username, db=parsed.database
            )
            async with conn.cursor() as cur:
                await cur.execute(f"SELECT GET_LOCK('{mysql_lock_name(_database(url))}', 5)")
            taken.set()
            await asyncio.to_thread(release.wait)
            conn.close()

    thread = threading.Thread(target=asyncio.run, args=(hold(),), daemon=True)
    thread.start()
    assert taken.wait(10), "could not take the migration lock"
    try:
        yield
    finally:
        release.set()
        thread.join(10)


def _env(url: str, **extra: str) -> dict[str, str]:
    return {"MYFY_DATA_DATABASE_URL": url, **extra}


# -- migrate ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_one_signal_stops_a_long_migrate(db_url: str, tmp_path: Path, sig: signal.Signals) -> None:
    _slow_project(tmp_path, backend_of(db_url))
    run = Running("migrate", env=_env(db_url), cwd=tmp_path)
    run.wait_for_text("applied s01")
    elapsed = run.stop(sig)
    run.assert_interrupted(elapsed, sig)
    assert _lock_is_free(db_url)
    if backend_of(db_url) == "sqlite":
        with sqlite3.connect(tmp_path / "test.db") as db:  # a revision cut short rolled back
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    else:
        _assert_no_connection_left(db_url)


def test_sigint_stops_migrate_on_a_frozen_server(
    server_url: str, tmp_path: Path, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    proxy = fault_proxy(server_url)
    _slow_project(tmp_path, backend_of(server_url))
    run = Running("migrate", env=_env(proxy.url), cwd=tmp_path)
    run.wait_for_text("applied s01")
    assert_ends_on_a_fault(run, proxy, server_url, sig=signal.SIGINT, frozen_for=0.3)
    assert _lock_is_free(server_url)


def _down_waiting_for_the_lock(tmp_path: Path, url: str, lock_timeout: str) -> Running:
    write_project(tmp_path)
    run = Running(
        "migrate", "down", "base", "--yes", "--lock-timeout", lock_timeout,
        env=_env(url), cwd=tmp_path,
    )  # fmt: skip
    run.wait_for_text("waiting for the migration lock")
    return run


def test_lock_timeout_bounds_the_wait_when_the_server_freezes(
    server_url: str, tmp_path: Path, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    proxy = fault_proxy(server_url)
    with _lock_held_elsewhere(server_url):  # its session stays on the database meanwhile
        run = _down_waiting_for_the_lock(tmp_path, proxy.url, "3")
        assert_ends_on_a_fault(
            run, proxy, server_url, within=3 + 1.5, exit_code=1, others=1,
            says="timed out after 3 s waiting for the migration lock",
        )  # fmt: skip
    _assert_no_connection_left(server_url)


def test_sigint_while_waiting_for_the_lock_on_a_frozen_server(
    server_url: str, tmp_path: Path, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    proxy = fault_proxy(server_url)
    with _lock_held_elsewhere(server_url):  # its session stays on the database meanwhile
        run = _down_waiting_for_the_lock(tmp_path, proxy.url, "60")
        assert_ends_on_a_fault(run, proxy, server_url, sig=signal.SIGINT, frozen_for=0.3, others=1)
    _assert_no_connection_left(server_url)


def test_sigint_while_waiting_for_the_sqlite_lock_file(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    write_project(tmp_path)
    lock = tmp_path / "app.db.migrate.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        run = Running("migrate", "--lock-timeout", "60", env=_env(url), cwd=tmp_path)
        run.wait_for_text("waiting for the migration lock")
        elapsed = run.stop()
    finally:
        os.close(fd)
    run.assert_interrupted(elapsed)
    assert _lock_is_free(url)


# -- check-pool, profile-pool, shell, create-tables --------------------------------------------


def test_sigint_stops_check_pool_on_a_frozen_server(
    server_url: str, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    proxy = fault_proxy(server_url)
    run = Running(
        "check-pool", "--connections", "3", "--samples", "100000", "--timeout", "600",
        env=_env(proxy.url),
    )  # fmt: skip
    run.wait_until(lambda: _connections(server_url) >= 3)
    time.sleep(0.3)
    assert_ends_on_a_fault(run, proxy, server_url, sig=signal.SIGINT)
    assert len(run.err.strip().splitlines()) == 1, run.err


def test_check_pool_timeout_bounds_the_whole_check_on_a_frozen_server(
    server_url: str, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    proxy = fault_proxy(server_url)
    run = Running(
        "check-pool", "--connections", "3", "--samples", "100000", "--timeout", "4",
        env=_env(proxy.url),
    )  # fmt: skip
    run.wait_until(lambda: _connections(server_url) >= 3)
    # The check started a moment before the freeze: the bound holds from the freeze.
    assert_ends_on_a_fault(
        run, proxy, server_url, within=4 + 1.5, exit_code=4, says="did not finish within 4 s"
    )


def test_sigterm_stops_profile_pool_load_on_a_frozen_server(
    server_url: str, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    proxy = fault_proxy(server_url)
    run = Running("profile-pool", "--load", "--duration", "60", env=_env(proxy.url))
    run.wait_for_text("load: ")
    run.wait_until(lambda: _connections(server_url) >= 2)
    time.sleep(0.5)
    assert_ends_on_a_fault(run, proxy, server_url, sig=signal.SIGTERM)


def test_sigint_stops_a_long_query_in_shell_c(db_url: str) -> None:
    backend = backend_of(db_url)
    sql = _sleep_sql(backend, 30 if backend != "sqlite" else 20)
    code = "from sqlalchemy import text\nprint('started', flush=True)\n"
    code += f"await session.execute(text({sql!r}))"
    run = Running("shell", "-c", code, env=_env(db_url))
    run.wait_until(lambda: run.process.poll() is not None or _shell_started(run, db_url))
    time.sleep(0.5)
    elapsed = run.stop()
    run.assert_interrupted(elapsed)
    assert len(run.err.strip().splitlines()) == 1, run.err
    if backend != "sqlite":
        _assert_no_connection_left(db_url)


def _shell_started(run: Running, url: str) -> bool:
    if backend_of(url) == "sqlite":
        return bool(run.out)
    return _connections(url) >= 1 and bool(run.out)


def test_sigint_stops_create_tables_on_a_frozen_server(
    server_url: str, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    proxy = fault_proxy(server_url)
    proxy.freeze()  # the server stops answering before the first connection
    run = Running("create-tables", "--metadata", "myfy_db.example:Base", env=_env(proxy.url))
    run.wait_until(lambda: proxy.accepted >= 1)
    assert_ends_on_a_fault(run, proxy, server_url, sig=signal.SIGINT, frozen_for=0.3)


# -- a server that goes away in the middle ------------------------------------------------------


def _lost(run: Running, proxy: FaultProxy, url: str, during: str) -> None:
    """Kill the proxy (the server goes away); the run ends with exit 4 saying so."""
    assert_ends_on_a_fault(run, proxy, url, fault="kill", within=BOUND, exit_code=4, says=during)


def test_server_lost_during_check_pool_is_exit_4(
    server_url: str, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    proxy = fault_proxy(server_url)
    run = Running("check-pool", "--connections", "3", "--samples", "100000", env=_env(proxy.url))
    run.wait_until(lambda: _connections(server_url) >= 3)
    time.sleep(0.3)
    _lost(run, proxy, server_url, "lost during check-pool")


def test_server_lost_during_profile_pool_load_is_exit_4_and_ends_the_run(
    server_url: str, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    proxy = fault_proxy(server_url)
    run = Running("profile-pool", "--load", "--duration", "60", env=_env(proxy.url))
    run.wait_for_text("load: ")
    run.wait_until(lambda: _connections(server_url) >= 2)
    time.sleep(0.5)
    _lost(run, proxy, server_url, "the server went away during the load run")


def test_server_lost_during_migrate_is_exit_4_naming_the_revision(
    server_url: str, tmp_path: Path, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    proxy = fault_proxy(server_url)
    _slow_project(tmp_path, backend_of(server_url))
    run = Running("migrate", env=_env(proxy.url), cwd=tmp_path)
    run.wait_for_text("applied s01")
    _lost(run, proxy, server_url, "lost during revision s0")
    assert _lock_is_free(server_url)


def test_a_lost_connection_is_cannot_connect_from_the_driver_or_sqlalchemy(
    server_url: str, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    from sqlalchemy import text

    from myfy_db import DatabaseSettings
    from myfy_db.engine import open_engine, translate_errors
    from myfy_db.errors import CannotConnect

    async def query(conn: Any, raw: bool) -> None:
        if not raw:
            await conn.execute(text("SELECT 1"))
            return
        driver = (await conn.get_raw_connection()).driver_connection
        if backend_of(server_url) == "postgresql":
            await driver.fetchval("SELECT 1")
            return
        async with driver.cursor() as cursor:
            await cursor.execute("SELECT 1")

    async def lose(proxy: FaultProxy, raw: bool) -> CannotConnect:
        settings = DatabaseSettings(database_url=proxy.url)
        async with open_engine(settings) as engine, engine.connect() as conn:
            await query(conn, raw)
            proxy.kill()
            with pytest.raises(CannotConnect) as lost, translate_errors(proxy.url, "the test"):
                await query(conn, raw)
            await conn.invalidate()
        return lost.value

    for raw in (True, False):
        proxy = fault_proxy(server_url)
        error = asyncio.run(asyncio.wait_for(lose(proxy, raw), 10))
        target = f"127.0.0.1:{proxy.port}/{_database(server_url)}"
        assert error.message == f"connection to {target} lost during the test"
        assert "went away" in str(error.hint)
    _assert_no_connection_left(server_url)


def _catches_sigterm(pid: int) -> bool:
    """True once process ``pid`` has a handler for SIGTERM (Linux: /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


# -- before a command runs ---------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_start_up_is_one_line_and_the_exit_code(
    tmp_path: Path, sig: signal.Signals
) -> None:
    # Once the process has its handlers (before that, the interpreter itself is starting),
    # the imports and the parsing take a while: a signal then must not end in a traceback
    # or in Click's "Aborted!". On a fast machine the command may have finished: exit 0.
    run = Running("config", env=_env(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))
    run.wait_until(lambda: _catches_sigterm(run.process.pid))
    elapsed = run.stop(sig)
    if run.process.returncode != 0:
        run.assert_interrupted(elapsed, sig)
    assert "Aborted" not in run.err
    assert_quiet(run.err)


# -- create-database and set-environment on a server that stops answering ----------------------


def test_sigint_stops_create_database_on_a_frozen_server(
    server_url: str, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    proxy = fault_proxy(server_url)
    proxy.freeze()  # the server stops answering before the first connection
    missing = make_url(proxy.url).set(database=f"{make_url(server_url).database}_never")
    run = Running("create-database", env=_env(missing.render_as_string(hide_password=False)))
    run.wait_until(lambda: proxy.accepted >= 1)
    assert_ends_on_a_fault(run, proxy, server_url, sig=signal.SIGINT, frozen_for=0.3)
    # Nothing was created: the server never saw the CREATE DATABASE.
    server = server_for(backend_of(server_url))
    if server.backend == "postgresql":
        sql = f"SELECT count(*) FROM pg_database WHERE datname = '{missing.database}'"
    else:
        sql = (
            "SELECT count(*) FROM information_schema.SCHEMATA "
            f"WHERE SCHEMA_NAME = '{missing.database}'"
        )
    assert int(server.admin(sql)[0][0][0]) == 0


def test_sigint_stops_set_environment_on_a_frozen_server(
    server_url: str, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    proxy = fault_proxy(server_url)
    proxy.freeze()
    run = Running("set-environment", "staging", "--yes", env=_env(proxy.url))
    run.wait_until(lambda: proxy.accepted >= 1)
    assert_ends_on_a_fault(run, proxy, server_url, sig=signal.SIGINT, frozen_for=0.3)


# -- migrate --safe while its CONCURRENTLY build runs on a server that stops answering ----------


@pytest.mark.wall_clock
def test_sigint_stops_migrate_safe_mid_concurrent_build_on_a_frozen_server(
    postgres_url: str, tmp_path: Path, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    """The slow index of the --safe tests builds CONCURRENTLY for about 2 s; the server
    freezes in the middle: one SIGINT ends the run in time, the lock is free, nothing is
    left connected, and the re-run (the server back) drops the INVALID index the cut build
    left and converges."""
    from migrate_project import query
    from test_safe_postgres import CASES, _project

    case = next(c for c in CASES if c.name == "create_index")
    ini = _project(tmp_path / "p", case)
    args = ("--config", str(ini))
    assert invoke_cli("migrate", "up", "r1", "--url", postgres_url, *args).exit_code == 0
    proxy = fault_proxy(postgres_url)
    run = Running("migrate", "--safe", *args, env=_env(proxy.url))
    run.wait_for_text(case.line)
    time.sleep(0.3)  # the build is running
    assert_ends_on_a_fault(run, proxy, postgres_url, sig=signal.SIGINT, frozen_for=0.3)
    assert _lock_is_free(postgres_url)

    again = invoke_cli("migrate", "--safe", "--url", postgres_url, *args)
    assert again.exit_code == 0, again.stderr
    valid = query(
        postgres_url,
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = 'ix_orders_slow'",
    )
    assert valid == [(True,)]


# -- lint --dev-url while the dev server stops answering ----------------------------------------


def _scratch_databases(running: str = "") -> set[str]:
    """Scratch databases on the server; with ``running``, those where that query runs."""
    sql = "SELECT datname FROM pg_database WHERE datname LIKE 'myfy_scratch_%'"
    if running:
        sql = (
            "SELECT DISTINCT datname FROM pg_stat_activity WHERE datname LIKE "
            f"'myfy_scratch_%' AND query LIKE '%{running}%' AND pid <> pg_backend_pid()"
        )
    return {str(row[0]) for row in server_for("postgresql").admin(sql)[0]}


@pytest.mark.wall_clock
def test_sigint_stops_lint_dev_url_replaying_on_a_frozen_dev_server(
    postgres_url: str, tmp_path: Path, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    """The replay on the scratch database is under way when the dev server freezes: one
    SIGINT ends lint in time, no connection is left, and the scratch database does not
    outlive the run unnoticed: it is dropped, or the run names it with the statement that
    drops it."""
    ini = write_project(
        tmp_path,
        [
            ("r1", "items", 'op.create_table("items", sa.Column("id", sa.Integer))', "pass"),
            ("r2", "slow", 'op.execute("SELECT pg_sleep(5)")', "pass"),
        ],
    )
    proxy = fault_proxy(postgres_url)
    run = Running(
        "migrate", "lint", "--offline", "--config", str(ini), "--url", postgres_url,
        "--dev-url", proxy.url, env={},
    )  # fmt: skip
    # This run's scratch database: the one where r2 sleeps (other workers make their own).
    run.wait_until(lambda: bool(_scratch_databases(running="pg_sleep(5)")))
    made = _scratch_databases(running="pg_sleep(5)")
    assert_ends_on_a_fault(run, proxy, postgres_url, sig=signal.SIGINT, frozen_for=0.3)
    for name in made:
        deadline = time.monotonic() + 5
        while name in _scratch_databases() and time.monotonic() < deadline:
            time.sleep(0.1)
        if name in _scratch_databases():
            assert f"DROP DATABASE {name}" in run.err or f'DROP DATABASE "{name}"' in run.err
            server_for("postgresql").admin(f'DROP DATABASE "{name}" WITH (FORCE)')
