"""Test helpers: real database servers, fresh databases, and running the CLI."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from myfy_db.cli import app

if TYPE_CHECKING:
    from fault_proxy import FaultProxy

POSTGRES_URL = os.environ.get(
    "MYFY_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("MYFY_TEST_MYSQL_URL", "mysql+aiomysql://root@127.0.0.1:3306/test")
REQUIRE_SERVERS = os.environ.get("MYFY_TEST_REQUIRE_SERVERS") == "1"
CANARY = "Canary-Pw-7f3a9e"


#: This process's name among pytest-xdist's workers ("gw0", ...), or "main" without xdist.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


class _AdminConnections:
    """One admin connection per server for the whole test process, on an event loop of its
    own thread, so that sync tests, threads and ``asyncio.to_thread`` callers all share it.

    Statements run one call at a time; a connection found closed is opened again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connections: dict[str, Any] = {}

    def run(self, server: Server, statements: Sequence[str]) -> list[Any]:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="test-admin", daemon=True
                )
                self._thread.start()
            future = asyncio.run_coroutine_threadsafe(self._run(server, statements), self._loop)
            return future.result()

    async def _run(self, server: Server, statements: Sequence[str]) -> list[Any]:
        conn = self._connections.get(server.url)
        if conn is None or _is_closed(conn):
            conn = self._connections[server.url] = await _connect(server)
        results: list[Any] = []
        if server.backend == "postgresql":
            for sql in statements:
                results.append(await conn.fetch(sql))
        else:
            async with conn.cursor() as cur:
                for sql in statements:
                    await cur.execute(sql)
                    results.append(await cur.fetchall())
        return results

    def close(self) -> None:
        """Close every admin connection and stop the loop (the end of the test session)."""
        with self._lock:
            loop, self._loop = self._loop, None
            if loop is None:
                return

            async def close_all() -> None:
                for conn in self._connections.values():
                    with suppress(Exception):
                        if hasattr(conn, "ensure_closed"):
                            await conn.ensure_closed()
                        else:
                            await conn.close(timeout=5)
                self._connections.clear()

            asyncio.run_coroutine_threadsafe(close_all(), loop).result(timeout=15)
            loop.call_soon_threadsafe(loop.stop)
            assert self._thread is not None
            self._thread.join(5)
            loop.close()


async def _connect(server: Server) -> Any:
    u = make_url(server.url)
    if server.backend == "postgresql":
        import asyncpg

        return await asyncpg.connect(
            host=u.host,
            port=u.port or 5432,
            user=u.username,
            password=u.password,
            database=u.database,
            timeout=5,
        )
    import aiomysql

    return await aiomysql.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 3306,
        user=u.username or "root",
        password=u.password or "",
        db=u.database,
        connect_timeout=5,
        autocommit=True,
    )


def _is_closed(conn: Any) -> bool:
    closed = conn.is_closed() if hasattr(conn, "is_closed") else conn.closed
    return bool(closed)


_ADMIN = _AdminConnections()


def close_admin_connections() -> None:
    _ADMIN.close()


@dataclass(frozen=True)
class Server:
    """A database server the tests may create databases on."""

    backend: str
    url: str

    def admin(self, *statements: str) -> list[Any]:
        """Run statements on the server's own database (autocommit); return each's rows.

        They go through this process's one admin connection to the server.
        """
        return _ADMIN.run(self, statements)

    @cache  # noqa: B019 - one probe per server per test session
    def unreachable_reason(self) -> str | None:
        try:
            self.admin("SELECT 1")
        except Exception as exc:
            return f"{self.backend} at {make_url(self.url).render_as_string()} unreachable: {exc}"
        return None

    def require(self) -> None:
        reason = self.unreachable_reason()
        if reason is not None:
            if REQUIRE_SERVERS:
                pytest.fail(f"MYFY_TEST_REQUIRE_SERVERS=1 but {reason}")
            pytest.skip(reason)

    def connection_count(self, database: str) -> int:
        """How many sessions the server holds on ``database`` (the admin's own excluded)."""
        if self.backend == "postgresql":
            sql = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}'"
        else:
            sql = f"SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = '{database}'"
        return int(self.admin(sql)[0][0][0])

    def wait_for_connections(self, database: str, count: int = 0, within: float = 5.0) -> int:
        """Poll until the server holds ``count`` sessions on ``database``; return the last count.

        A server notices a closed client socket a moment later, never at once.
        """
        deadline = time.monotonic() + within
        while True:
            seen = self.connection_count(database)
            if seen == count or time.monotonic() >= deadline:
                return seen
            time.sleep(0.05)

    def url_for(self, database: str) -> str:
        return make_url(self.url).set(database=database).render_as_string(hide_password=False)

    @contextmanager
    def fresh_database(self) -> Iterator[str]:
        """A new empty database, dropped (connections and all) afterwards."""
        name = f"myfy_t_{WORKER}_{uuid.uuid4().hex[:12]}"
        if self.backend == "postgresql":
            self.admin(f'CREATE DATABASE "{name}"')
        else:
            self.admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        try:
            yield self.url_for(name)
        finally:
            if self.backend == "postgresql":
                self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            else:
                self.admin(f"DROP DATABASE IF EXISTS `{name}`")


_SERVERS = {"postgresql": Server("postgresql", POSTGRES_URL), "mysql": Server("mysql", MYSQL_URL)}


def server_for(backend: str) -> Server:
    return _SERVERS[backend]


#: How long a test waits for the servers' connection slots before it fails saying so.
SLOTS_WITHIN = 600.0


def _flock(fd: int, operation: int, deadline: float) -> None:
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                pytest.fail(f"waited {SLOTS_WITHIN:.0f} s for the servers' connection slots")
            time.sleep(0.02)


@contextmanager
def server_slots(exclusive: bool, directory: Path) -> Iterator[None]:
    """Hold the servers' connection slots, among the processes of one test run (its xdist
    workers) that share ``directory``: shared (any number of tests at once), or exclusive
    (no other test runs meanwhile), for a test that opens nearly every free slot.

    Two files there make a gate and a readers-writer lock: a test waiting for exclusive use
    holds the gate, so that no new test starts meanwhile; the tests running finish, and it
    goes.
    """
    deadline = time.monotonic() + SLOTS_WITHIN
    gate = os.open(directory / "slots.gate", os.O_RDWR | os.O_CREAT, 0o600)
    slots = os.open(directory / "slots.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _flock(gate, fcntl.LOCK_EX, deadline)
        try:
            _flock(slots, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, deadline)
        finally:
            if not exclusive:
                fcntl.flock(gate, fcntl.LOCK_UN)
        yield
    finally:
        os.close(slots)  # closing releases the locks
        os.close(gate)


def free_port() -> int:
    """A local TCP port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def backend_of(url: str) -> str:
    name = make_url(url).get_backend_name()
    return "mysql" if name == "mariadb" else name


def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    """Run the CLI in-process through Typer's runner (stdout and stderr kept apart)."""
    return CliRunner().invoke(app, list(args), env=env, input=input, catch_exceptions=False)


def run_process(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float = 120,
    python_flags: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``python [PYTHON_FLAGS] -m myfy_db ARGS`` as a real subprocess."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "myfy_db", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_process(
    *args: str, env: dict[str, str] | None = None, cwd: str | None = None
) -> subprocess.Popen[str]:
    """Start ``python -m myfy_db`` as a real subprocess, to signal it or watch it end."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))}
    full_env.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "myfy_db", *args],
        env=full_env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def with_password(url: str, password: str = CANARY) -> str:
    """``url`` with its password replaced by ``password``."""
    return make_url(url).set(password=password).render_as_string(hide_password=False)


def on_a_terminal(
    args: Sequence[str], answer: str | None, cwd: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run ``python -m myfy_db ARGS`` on a pseudo-terminal and type ``answer`` at the prompt
    (None: press Ctrl-C there instead).

    Returns the exit code and everything the terminal showed.
    """
    import pty
    import select

    master, slave = pty.openpty()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))}
    full_env.update({"COLUMNS": "120", "TERM": "dumb", **(env or {})})
    child = subprocess.Popen(
        [sys.executable, "-m", "myfy_db", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env=full_env,
        close_fds=True,
        start_new_session=True,
    )
    os.close(slave)
    seen = b""
    answered = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            if not answered and b"to confirm:" in seen:
                time.sleep(0.2)
                if answer is None:
                    os.killpg(child.pid, signal.SIGINT)  # what Ctrl-C on the terminal does
                else:
                    os.write(master, answer.encode() + b"\r")
                answered = True
            if child.poll() is not None and not ready:
                break
        code = child.wait(timeout=30)
    finally:
        os.close(master)
        if child.poll() is None:
            child.kill()
    return code, seen.decode(errors="replace")


# -- a run interrupted by a signal or a fault ---------------------------------------------

#: The contract's two seconds for a run to end on a signal or a fault, plus slack for a
#: loaded CI machine.
BOUND = 2.0 + 1.5
#: How long a test waits for a run to reach the state it wants to interrupt.
READY_WITHIN = 30.0
NOISE = ("Traceback", "Event loop is closed", "garbage collector", "Warning", "unexpected")


def assert_quiet(err: str) -> None:
    assert not [noise for noise in NOISE if noise in err], err


class Running:
    """``python -m myfy_db ...`` running, its stderr read as it comes."""

    def __init__(self, *args: str, env: dict[str, str], cwd: Path | None = None) -> None:
        self.process = start_process(*args, env=env, cwd=str(cwd) if cwd else None)
        self.lines: list[str] = []
        self.out: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(stream, sink), daemon=True)
            for stream, sink in ((self.process.stderr, self.lines), (self.process.stdout, self.out))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str] | None, sink: list[str]) -> None:
        assert stream is not None
        for line in stream:
            sink.append(line)

    @property
    def err(self) -> str:
        return "".join(self.lines)

    def wait_until(self, ready: Callable[[], bool]) -> None:
        """Wait until ``ready()``; fail when the run ends first."""
        deadline = time.monotonic() + READY_WITHIN
        while not ready():
            if self.process.poll() is not None:
                self.finish()
                pytest.fail(f"the run ended (exit {self.process.returncode}) early: {self.err}")
            assert time.monotonic() < deadline, f"the run never got there: {self.err}"
            time.sleep(0.05)

    def wait_for_text(self, text: str) -> None:
        self.wait_until(lambda: text in self.err)

    def finish(self, timeout: float = 20) -> float:
        """Wait for the end (killing the run past ``timeout``); return the seconds waited."""
        started = time.monotonic()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for reader in self._readers:
            reader.join(5)
        return time.monotonic() - started

    def stop(self, sig: int = signal.SIGINT) -> float:
        """Send ``sig``; return how long the process took to end."""
        self.process.send_signal(sig)
        return self.finish()

    def assert_interrupted(self, elapsed: float, sig: int = signal.SIGINT) -> None:
        """Ended within :data:`BOUND` of ``sig``, exit 128 + signal, one quiet error line."""
        name = signal.Signals(sig).name
        expected = f"Error: {'terminated' if name == 'SIGTERM' else 'interrupted'} ({name})"
        err = self.err
        lines = [line for line in err.splitlines() if line.strip()]
        assert elapsed < BOUND, f"took {elapsed:.2f} s to end: {err}"
        assert self.process.returncode == (143 if name == "SIGTERM" else 130), err
        assert lines[-1:] == [expected], err
        assert sum(line.startswith("Error") for line in lines) == 1, err
        assert_quiet(err)


def assert_ends_on_a_fault(
    run: Running,
    proxy: FaultProxy,
    url: str,
    *,
    fault: Literal["freeze", "kill"] = "freeze",
    sig: int | None = None,
    frozen_for: float = 0.0,
    within: float = BOUND,
    exit_code: int | None = None,
    says: str = "",
    others: int = 0,
) -> None:
    """The server behind ``proxy`` stops answering (``freeze``) or goes away (``kill``); the
    run must end in time, saying so quietly, and leave no connection on the server.

    With ``sig``, the signal is sent ``frozen_for`` seconds after the freeze and the run must
    end within ``within`` seconds of it, interrupted (exit 130 or 143, one error line).
    Without, the run must end by itself within ``within`` seconds of the fault, with
    ``exit_code`` and ``says`` in its stderr. Then the server resumes (it sees the closed
    sockets) and must hold no connection on ``url``'s database but the ``others`` that
    someone else holds there.
    """
    started = time.monotonic()
    if fault == "kill":
        proxy.kill()
    else:
        proxy.freeze()
    if sig is not None:
        time.sleep(frozen_for)
        elapsed = run.stop(sig)
        run.assert_interrupted(elapsed, sig)
    else:
        run.finish()
        elapsed = time.monotonic() - started
        assert elapsed < within, f"took {elapsed:.2f} s: {run.err}"
        assert run.process.returncode == exit_code, run.err
        assert says in run.err, run.err
        assert_quiet(run.err)
    if fault == "freeze":
        proxy.thaw()
    database = make_url(url).database or ""
    assert server_for(backend_of(url)).wait_for_connections(database, others) == others
