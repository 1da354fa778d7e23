"""``myfy-db shell``: -c snippets, the sandbox, read-only mode and a real interactive session.

Every test runs against a real database (SQLite file, PostgreSQL, MariaDB) and a real
``python -m myfy_db`` process; the interactive tests drive it through a pseudo-terminal.
"""

from __future__ import annotations

import asyncio
import fcntl
import importlib.util
import os
import pty
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from helpers import backend_of, invoke, run_process

TABLE = "shell_items"
INSERT_AND_COMMIT = (
    f"await session.execute(text('INSERT INTO {TABLE} (id) VALUES (1)'))\n"
    "await session.commit()\n"
    f"print('inside', await session.scalar(text('SELECT count(*) FROM {TABLE}')))"
)
REFUSAL = {
    "sqlite": "attempt to write a readonly database",
    "postgresql": "cannot execute INSERT in a read-only transaction",
    "mysql": "Cannot execute statement in a READ ONLY transaction",
}


def _sql(url: str, *statements: str) -> object:
    """Run statements on a fresh engine (committed); return the last one's scalar."""

    async def go() -> object:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                result: object = None
                for statement in statements:
                    cursor = await conn.execute(text(statement))
                    result = cursor.scalar() if cursor.returns_rows else None
                return result
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _with_table(url: str) -> str:
    _sql(url, f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY)")
    return url


def _count(url: str) -> int:
    return int(_sql(url, f"SELECT count(*) FROM {TABLE}"))  # type: ignore[call-overload]


# -- -c -----------------------------------------------------------------------------------


def test_c_prints_the_value_of_a_trailing_await_expression(db_url: str) -> None:
    result = run_process("shell", "--url", db_url, "-c", "await session.scalar(text('SELECT 6*7'))")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "42\n"


def test_c_runs_statements_and_shows_their_print_output(db_url: str) -> None:
    code = "x = await session.scalar(text('SELECT 2'))\nprint('got', x + 1)\ny = x"
    result = run_process("shell", "--url", db_url, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "got 3\n"


def test_c_raising_exits_1_with_a_brief_error(db_url: str) -> None:
    result = run_process("shell", "--url", db_url, "-c", "x = 1\n1 / 0")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "ZeroDivisionError: division by zero" in result.stderr
    assert "line 2" in result.stderr
    assert "Traceback" not in result.stderr


def test_c_failing_statement_shows_the_servers_message(db_url: str) -> None:
    result = run_process(
        "shell", "--url", db_url, "-c", "await session.execute(text('SELECT * FROM nowhere_t'))"
    )
    assert result.returncode == 1
    assert "nowhere_t" in result.stderr
    assert "Traceback" not in result.stderr


def test_models_of_the_configured_metadata_are_preloaded(sqlite_url: str) -> None:
    code = "(User.__tablename__, Account.__tablename__, metadata is User.metadata)"
    result = run_process(
        "shell", "--url", sqlite_url, "--metadata", "myfy_db.example:Base", "-c", code
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "('users', 'accounts', True)\n"


def test_unreachable_database_exits_4() -> None:
    result = run_process(
        "shell", "--url", "postgresql+asyncpg://u@127.0.0.1:1/db", "-c", "1", timeout=60
    )
    assert result.returncode == 4
    assert "Traceback" not in result.stderr


# -- sandbox ------------------------------------------------------------------------------


def test_sandbox_rolls_back_a_committed_insert(db_url: str) -> None:
    url = _with_table(db_url)
    result = run_process("shell", "--sandbox", "--url", url, "-c", INSERT_AND_COMMIT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "inside 1\n"
    assert "rolled back" in result.stderr
    assert _count(url) == 0


def test_without_sandbox_a_commit_is_kept(db_url: str) -> None:
    url = _with_table(db_url)
    result = run_process("shell", "--url", url, "-c", INSERT_AND_COMMIT)
    assert result.returncode == 0, result.stderr
    assert _count(url) == 1


def test_production_defaults_to_the_sandbox(db_url: str) -> None:
    url = _with_table(db_url)
    env = {"MYFY_DATA_ENVIRONMENT": "production"}
    result = run_process("shell", "--url", url, "-c", INSERT_AND_COMMIT, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "inside 1\n"
    assert _count(url) == 0


def test_sandbox_refuses_other_connections_of_the_engine(db_url: str) -> None:
    url = _with_table(db_url)
    code = (
        "async with engine.begin() as other:\n"
        f"    await other.execute(text('INSERT INTO {TABLE} (id) VALUES (2)'))"
    )
    result = run_process("shell", "--sandbox", "--url", url, "-c", code)
    assert result.returncode == 3
    assert "sandbox: a new connection refused" in result.stderr
    assert _count(url) == 0


def test_no_sandbox_in_production_without_a_terminal_refuses(sqlite_url: str) -> None:
    url = _with_table(sqlite_url)
    env = {"MYFY_DATA_ENVIRONMENT": "production"}
    result = run_process("shell", "--no-sandbox", "--url", url, "-c", INSERT_AND_COMMIT, env=env)
    assert result.returncode == 3
    assert "--yes" in result.stderr
    assert _count(url) == 0


def test_no_sandbox_in_production_with_yes_keeps_the_commit(sqlite_url: str) -> None:
    url = _with_table(sqlite_url)
    env = {"MYFY_DATA_ENVIRONMENT": "production"}
    result = run_process(
        "shell", "--no-sandbox", "--yes", "--url", url, "-c", INSERT_AND_COMMIT, env=env
    )
    assert result.returncode == 0, result.stderr
    assert _count(url) == 1


def test_no_sandbox_in_production_confirmed_by_typing_the_name(sqlite_url: str) -> None:
    url = _with_table(sqlite_url)
    env = {"MYFY_DATA_ENVIRONMENT": "production"}
    shell = _Pty(["shell", "--no-sandbox", "--url", url, "-c", INSERT_AND_COMMIT], env=env)
    shell.expect("to confirm")
    shell.send("test.db")
    assert shell.wait() == 0
    assert _count(url) == 1


# -- read-only ----------------------------------------------------------------------------


def test_read_only_refuses_a_write(db_url: str) -> None:
    url = _with_table(db_url)
    code = f"await session.execute(text('INSERT INTO {TABLE} (id) VALUES (1)'))"
    result = run_process("shell", "--read-only", "--url", url, "-c", code)
    assert result.returncode == 1
    assert REFUSAL[backend_of(url)] in result.stderr
    assert _count(url) == 0


def test_read_only_still_reads(db_url: str) -> None:
    url = _with_table(db_url)
    code = f"await session.scalar(text('SELECT count(*) FROM {TABLE}'))"
    result = run_process("shell", "--read-only", "--url", url, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "0\n"


# -- optional REPLs -----------------------------------------------------------------------


@pytest.mark.parametrize(("flag", "module"), [("--ipython", "IPython"), ("--ptpython", "ptpython")])
def test_missing_optional_repl_exits_2_naming_the_package(
    flag: str, module: str, sqlite_url: str
) -> None:
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed")
    result = invoke("shell", flag, "--url", sqlite_url)
    assert result.exit_code == 2
    assert module.lower() in result.stderr


def test_ipython_and_ptpython_together_is_a_usage_error(sqlite_url: str) -> None:
    result = invoke("shell", "--ipython", "--ptpython", "--url", sqlite_url)
    assert result.exit_code == 2


# -- the interactive shell through a pseudo-terminal -------------------------------------


class _Pty:
    """``python -m myfy_db ARGS`` on a pseudo-terminal that is its controlling terminal."""

    def __init__(
        self, args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        full_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))
        }
        full_env.update({"TERM": "dumb", **(env or {})})
        master, slave = pty.openpty()

        def controlling_terminal() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.process = subprocess.Popen(
            [sys.executable, "-m", "myfy_db", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=full_env,
            cwd=cwd,
            preexec_fn=controlling_terminal,
        )
        os.close(slave)
        self.master = master
        self.buffer = b""

    def expect(self, needle: str, timeout: float = 30) -> str:
        """Read until ``needle`` appears; return everything up to and including it."""
        deadline = time.monotonic() + timeout
        wanted = needle.encode()
        while wanted not in self.buffer:
            ready, _, _ = select.select([self.master], [], [], max(0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no {needle!r} within {timeout}s; got {self.buffer!r}")
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"output ended before {needle!r}; got {self.buffer!r}")
            self.buffer += chunk
        end = self.buffer.index(wanted) + len(wanted)
        seen, self.buffer = self.buffer[:end], self.buffer[end:]
        return seen.decode(errors="replace")

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def interrupt(self) -> None:
        os.write(self.master, b"\x03")

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            os.close(self.master)


@pytest.fixture
def history(tmp_path: Path) -> Path:
    return tmp_path / "history"


def test_interactive_session_awaits_survives_an_error_and_exits_0(
    db_url: str, history: Path
) -> None:
    shell = _Pty(["shell", "--url", db_url], env={"MYFY_DB_HISTORY_FILE": str(history)})
    banner = shell.expect(">>> ")
    assert "myfy-db shell" in banner
    assert "preloaded: session, engine" in banner
    shell.send("await session.scalar(text('SELECT 6*7'))")
    assert "42" in shell.expect(">>> ")
    shell.send("1 / 0")
    assert "ZeroDivisionError" in shell.expect(">>> ")
    shell.send("await session.scalar(text('SELECT 40+3'))")
    assert "43" in shell.expect(">>> ")
    shell.send("exit()")
    assert shell.wait() == 0
    assert "SELECT 6*7" in history.read_text()


@pytest.mark.wall_clock
def test_ctrl_c_cancels_the_running_statement_not_the_shell(sqlite_url: str, history: Path) -> None:
    shell = _Pty(["shell", "--url", sqlite_url], env={"MYFY_DB_HISTORY_FILE": str(history)})
    shell.expect(">>> ")
    shell.send("import asyncio")
    shell.expect(">>> ")
    shell.send("await asyncio.sleep(60)")
    time.sleep(0.5)
    shell.interrupt()
    assert "cancelled" in shell.expect(">>> ")
    shell.send("await session.scalar(text('SELECT 6*7'))")
    assert "42" in shell.expect(">>> ")
    shell.send("exit()")
    assert shell.wait() == 0


@pytest.mark.wall_clock
@pytest.mark.parametrize(
    ("mode", "note"),
    [("--no-sandbox", "transaction was rolled back"), ("--sandbox", "sandbox was reset")],
)
def test_ctrl_c_in_a_server_query_leaves_a_usable_session(
    mode: str, note: str, server_url: str, history: Path
) -> None:
    sleep = "pg_sleep(60)" if backend_of(server_url) == "postgresql" else "SLEEP(60)"
    env = {"MYFY_DB_HISTORY_FILE": str(history)}
    shell = _Pty(["shell", mode, "--url", server_url], env=env)
    shell.expect(">>> ")
    shell.send(f"await session.execute(text('SELECT {sleep}'))")
    time.sleep(1)
    shell.interrupt()
    cancelled = shell.expect(">>> ")
    assert "cancelled" in cancelled
    assert note in cancelled
    shell.send("await session.scalar(text('SELECT 6*7'))")
    assert "42" in shell.expect(">>> ")
    shell.send("exit()")
    assert shell.wait() == 0


def test_ctrl_d_leaves_and_the_sandbox_is_rolled_back(db_url: str, history: Path) -> None:
    url = _with_table(db_url)
    shell = _Pty(["shell", "--sandbox", "--url", url], env={"MYFY_DB_HISTORY_FILE": str(history)})
    assert "sandbox ON" in shell.expect(">>> ")
    shell.send(f"await session.execute(text('INSERT INTO {TABLE} (id) VALUES (5)'))")
    shell.expect(">>> ")
    shell.send("await session.commit()")
    shell.expect(">>> ")
    os.write(shell.master, b"\x04")
    assert "rolled back" in shell.expect("rolled back")
    assert shell.wait() == 0
    assert _count(url) == 0


def test_protected_environment_banner_is_loud(sqlite_url: str, history: Path) -> None:
    env = {"MYFY_DB_HISTORY_FILE": str(history), "MYFY_DATA_ENVIRONMENT": "production"}
    shell = _Pty(["shell", "--url", sqlite_url], env=env)
    banner = shell.expect(">>> ")
    assert "production (PROTECTED)" in banner
    assert "sandbox ON" in banner
    shell.send("exit()")
    assert shell.wait() == 0


# -- the library --------------------------------------------------------------------------


def test_run_snippet_returns_the_trailing_expression_only() -> None:
    from myfy_db.shell.running import run_snippet

    namespace: dict[str, object] = {}

    async def go() -> tuple[object, object]:
        first = await run_snippet("import asyncio\nawait asyncio.sleep(0)\nx = 5\nx * 2", namespace)
        second = await run_snippet("y = x + 1", namespace)
        return first, second

    assert asyncio.run(go()) == (10, None)
    assert namespace["y"] == 6
