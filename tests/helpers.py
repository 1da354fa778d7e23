"""Test helpers: real database servers, fresh databases, and running the CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from myfy_db.cli import app

POSTGRES_URL = os.environ.get(
    "MYFY_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("MYFY_TEST_MYSQL_URL", "mysql+aiomysql://root@127.0.0.1:3306/test")
REQUIRE_SERVERS = os.environ.get("MYFY_TEST_REQUIRE_SERVERS") == "1"
CANARY = "Canary-Pw-7f3a9e"


@dataclass(frozen=True)
class Server:
    """A database server the tests may create databases on."""

    backend: str
    url: str

    async def _admin(self, statements: Sequence[str]) -> list[Any]:
        u = make_url(self.url)
        results: list[Any] = []
        if self.backend == "postgresql":
            import asyncpg

            conn = await asyncpg.connect(
                host=u.host,
                port=u.port or 5432,
                user=u.username,
                password=u.password,
                database=u.database,
                timeout=5,
            )
            try:
                for sql in statements:
                    results.append(await conn.fetch(sql))
            finally:
                await conn.close()
        else:
            import aiomysql

            conn = await aiomysql.connect(
                host=u.host or "127.0.0.1",
                port=u.port or 3306,
                user=u.username or "root",
                password=u.password or "",
                db=u.database,
                connect_timeout=5,
                autocommit=True,
            )
            try:
                async with conn.cursor() as cur:
                    for sql in statements:
                        await cur.execute(sql)
                        results.append(await cur.fetchall())
            finally:
                conn.close()
        return results

    def admin(self, *statements: str) -> list[Any]:
        """Run statements on the server's own database (autocommit); return each's rows."""
        return asyncio.run(self._admin(statements))

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
        import time

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
        name = f"myfy_t_{uuid.uuid4().hex[:12]}"
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
    import time

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
