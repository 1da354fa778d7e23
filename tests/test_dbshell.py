"""``myfy-db dbshell``: the real psql, mariadb and sqlite3 clients on real databases.

The password check looks where another user of the machine would: the running client's
``/proc/PID/cmdline`` (through a pseudo-terminal), and, for the MariaDB client (which blanks
a ``--password`` argument in its own argv once started), the argv a recording wrapper on
PATH received; the client then signs in with the canary password, so it was delivered.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from helpers import CANARY, backend_of, run_process, server_for, with_password
from myfy_db.guard import record_environment
from myfy_db.shell.dbshell import client_command
from test_shell import _Pty

QUERY = {
    "sqlite": ["SELECT 'db:' || (6 * 7);"],
    "postgresql": ["-c", "SELECT 'db:' || current_database()"],
    "mysql": ["-e", "SELECT CONCAT('db:', DATABASE())"],
}
PROMPT = {"postgresql": "=#", "mysql": "]>", "sqlite": "sqlite>"}
QUIT = {"postgresql": "\\q", "mysql": "quit", "sqlite": ".quit"}


def _existing(url: str) -> str:
    """``url``, with its SQLite file created (dbshell never creates one)."""
    if backend_of(url) == "sqlite":
        Path(make_url(url).database or "").touch()
    return url


def _record(url: str, environment: str) -> None:
    async def go() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:

                def write(sync: Connection) -> None:
                    record_environment(sync, environment)

                await conn.run_sync(write)
        finally:
            await engine.dispose()

    asyncio.run(go())


def _expected_name(url: str) -> str:
    return "42" if backend_of(url) == "sqlite" else make_url(url).database or ""


def _read_proc(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


@pytest.fixture
def mariadb_user(mysql_url: str) -> Iterator[str]:
    """``mysql_url`` signed in as a new user whose password is the canary."""
    server = server_for("mysql")
    user = f"myfy_u_{uuid.uuid4().hex[:8]}"
    database = make_url(mysql_url).database
    server.admin(
        f"CREATE USER '{user}'@'%' IDENTIFIED BY '{CANARY}'",
        f"GRANT ALL ON `{database}`.* TO '{user}'@'%'",
    )
    try:
        yield (
            make_url(mysql_url)
            .set(username=user, password=CANARY)
            .render_as_string(hide_password=False)
        )
    finally:
        server.admin(f"DROP USER IF EXISTS '{user}'@'%'")


# -- the client on the configured database ----------------------------------------------


def test_client_opens_the_configured_database_with_arguments_after_dashdash(db_url: str) -> None:
    url = _existing(db_url)
    result = run_process("dbshell", "--url", url, "--", *QUERY[backend_of(url)])
    assert result.returncode == 0, result.stderr
    assert f"db:{_expected_name(url)}" in result.stdout


def test_the_clients_exit_status_is_dbshells(db_url: str) -> None:
    url = _existing(db_url)
    failing = {
        "sqlite": ["-bail", "SELECT * FROM nowhere_t;"],
        "postgresql": ["-v", "ON_ERROR_STOP=1", "-c", "SELECT * FROM nowhere_t"],
        "mysql": ["-e", "SELECT * FROM nowhere_t"],
    }
    result = run_process("dbshell", "--url", url, "--", *failing[backend_of(url)])
    assert result.returncode == 1
    assert "nowhere_t" in result.stderr


def test_missing_client_exits_2_naming_its_package(db_url: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = run_process("dbshell", "--url", db_url, env={"PATH": str(empty)})
    package = {"sqlite": "sqlite3", "postgresql": "postgresql-client", "mysql": "mariadb-client"}
    assert result.returncode == 2
    assert f"apt-get install {package[backend_of(db_url)]}" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_server_exits_4_before_any_client_starts() -> None:
    result = run_process("dbshell", "--url", "postgresql+asyncpg://u@127.0.0.1:1/db", timeout=60)
    assert result.returncode == 4


def test_missing_sqlite_file_exits_4_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    result = run_process("dbshell", "--url", f"sqlite+aiosqlite:///{path}")
    assert result.returncode == 4
    assert not path.exists()


# -- the password -----------------------------------------------------------------------


def test_postgres_password_is_in_the_clients_environment_not_its_cmdline(
    postgres_url: str, tmp_path: Path
) -> None:
    client = _Pty(["dbshell", "--url", with_password(postgres_url)])
    client.expect(PROMPT["postgresql"])
    cmdline = _read_proc(client.process.pid, "cmdline")
    environ = _read_proc(client.process.pid, "environ")
    assert b"psql" in cmdline
    assert make_url(postgres_url).database.encode() in cmdline  # type: ignore[union-attr]
    assert CANARY.encode() not in cmdline
    assert f"PGPASSWORD={CANARY}".encode() in environ.split(b"\0")
    client.send(QUIT["postgresql"])
    assert client.wait() == 0


def test_mariadb_password_is_never_on_the_clients_command_line(
    mariadb_user: str, tmp_path: Path
) -> None:
    real = shutil.which("mariadb") or shutil.which("mysql")
    assert real is not None
    shim = tmp_path / "bin"
    shim.mkdir()
    seen = tmp_path / "argv"
    for name in ("mariadb", "mysql"):
        wrapper = shim / name
        wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$0" "$@" > {seen}\nexec {real} "$@"\n')
        wrapper.chmod(0o755)
    env = {"PATH": f"{shim}:{os.environ['PATH']}"}
    client = _Pty(["dbshell", "--url", mariadb_user], env=env)
    client.expect(PROMPT["mysql"])
    cmdline = _read_proc(client.process.pid, "cmdline")
    argv = seen.read_text()
    assert CANARY not in argv
    assert CANARY.encode() not in cmdline
    assert f"--user={make_url(mariadb_user).username}" in argv.splitlines()
    client.send("SELECT CONCAT('me:', CURRENT_USER());")
    assert f"me:{make_url(mariadb_user).username}@%" in client.expect("@%")
    client.send(QUIT["mysql"])
    assert client.wait() == 0


def test_library_keeps_the_password_out_of_argv() -> None:
    for url, variable in [
        (f"postgresql+asyncpg://app:{CANARY}@db.example:6543/shop", "PGPASSWORD"),
        (f"mysql+aiomysql://app:{CANARY}@db.example:3307/shop", "MYSQL_PWD"),
    ]:
        command = client_command(url, ["-x"], which=lambda name: f"/usr/bin/{name}")
        assert CANARY not in " ".join(command.argv)
        assert command.env[variable] == CANARY
        assert "shop" in " ".join(command.argv)
        assert "6543" in " ".join(command.argv) or "3307" in " ".join(command.argv)
        assert command.argv[-1] == "-x"


# -- the guard --------------------------------------------------------------------------


def test_protected_postgres_opens_read_only(postgres_url: str) -> None:
    _record(postgres_url, "production")
    result = run_process(
        "dbshell", "--url", postgres_url, "--", "-c", "CREATE TABLE written (id int)"
    )
    assert result.returncode == 1
    assert "cannot execute CREATE TABLE in a read-only transaction" in result.stderr
    assert "opens read-only" in result.stderr
    check = run_process(
        "dbshell", "--url", postgres_url, "--", "-tAc", "SELECT to_regclass('written')::text"
    )
    assert check.stdout.strip() == ""


def test_protected_environment_setting_opens_sqlite_read_only(sqlite_url: str) -> None:
    url = _existing(sqlite_url)
    env = {"MYFY_DATA_ENVIRONMENT": "production"}
    result = run_process("dbshell", "--url", url, "--", "CREATE TABLE written (id int);", env=env)
    assert "attempt to write a readonly database" in result.stderr
    assert run_process("dbshell", "--url", url, "--", ".tables").stdout.strip() == ""


def test_unprotected_database_is_writable(postgres_url: str) -> None:
    _record(postgres_url, "staging")
    result = run_process(
        "dbshell", "--url", postgres_url, "--", "-c", "CREATE TABLE written (id int)"
    )
    assert result.returncode == 0, result.stderr
    assert "read-only" not in result.stderr


def test_protected_mariadb_without_a_terminal_refuses(mysql_url: str) -> None:
    _record(mysql_url, "production")
    result = run_process("dbshell", "--url", mysql_url, "--", "-e", "CREATE TABLE w (id int)")
    assert result.returncode == 3
    assert "--safe-updates" in result.stderr
    assert "not enough" in result.stderr
    assert "--yes" in result.stderr
    tables = run_process("dbshell", "--yes", "--url", mysql_url, "--", "-e", "SHOW TABLES")
    assert tables.returncode == 0, tables.stderr
    assert "\nw\n" not in tables.stdout


def test_protected_mariadb_opens_when_the_name_is_typed(mysql_url: str) -> None:
    _record(mysql_url, "production")
    database = make_url(mysql_url).database or ""
    client = _Pty(["dbshell", "--url", mysql_url, "--", "-e", "SELECT CONCAT('ok:', 1+1)"])
    client.expect("to confirm")
    client.send(database)
    assert "ok:2" in client.expect("ok:2")
    assert client.wait() == 0


def test_protected_mariadb_declined_exits_3(mysql_url: str) -> None:
    _record(mysql_url, "production")
    client = _Pty(["dbshell", "--url", mysql_url, "--", "-e", "SELECT 1"])
    client.expect("to confirm")
    client.send("wrong-name")
    assert client.wait() == 3
