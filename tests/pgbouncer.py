"""A real PgBouncer (the Debian ``pgbouncer`` package) in front of the shared PostgreSQL.

Each one runs on a free port from a temporary ini and userlist (``auth_type = trust``: the
test server trusts local connections), in the pool mode asked for, and is stopped by its pid:

    with PgBouncer.start(postgres_url, mode="transaction") as bouncer:
        url = bouncer.url          # the same database, through PgBouncer

It serves every database of the server (``* =``), so one PgBouncer per configuration can
serve a whole test session, each test reaching its own fresh database through it:

    bouncer.through(postgres_url).url
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest
from sqlalchemy.engine import make_url

from helpers import free_port

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def available() -> bool:
    return os.access(BINARY, os.X_OK)


def _with_query(url: str, **query: str) -> str:
    parsed = make_url(url)
    return parsed.set(query={**parsed.query, **query}).render_as_string(hide_password=False)


@dataclass(frozen=True)
class Through:
    """One database of the server, reached through a running PgBouncer."""

    url: str

    def url_with(self, **query: str) -> str:
        return _with_query(self.url, **query)


class PgBouncer:
    """One PgBouncer process on 127.0.0.1:``port``."""

    def __init__(self, upstream_url: str, mode: str, max_client_conn: int, pool_size: int) -> None:
        self.upstream = make_url(upstream_url)
        self.mode = mode
        self.max_client_conn = max_client_conn
        self.pool_size = pool_size
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="myfy-pgbouncer-"))
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(
        cls,
        upstream_url: str,
        mode: str = "transaction",
        *,
        max_client_conn: int = 100,
        pool_size: int = 20,
    ) -> PgBouncer:
        bouncer = cls(upstream_url, mode, max_client_conn, pool_size)
        bouncer._start()
        return bouncer

    @property
    def url(self) -> str:
        """The upstream URL, through this PgBouncer."""
        return self.upstream.set(host="127.0.0.1", port=self.port).render_as_string(
            hide_password=False
        )

    def url_with(self, **query: str) -> str:
        return _with_query(self.url, **query)

    def through(self, database_url: str) -> Through:
        """``database_url`` (a database on the upstream server) through this PgBouncer."""
        parsed = make_url(database_url).set(host="127.0.0.1", port=self.port)
        return Through(parsed.render_as_string(hide_password=False))

    def _start(self) -> None:
        user = self.upstream.username or "postgres"
        ini = self.directory / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host={self.upstream.host or '127.0.0.1'} port={self.upstream.port or 5432}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.directory / 'userlist.txt'}\n"
            f"pool_mode = {self.mode}\n"
            f"max_client_conn = {self.max_client_conn}\n"
            f"default_pool_size = {self.pool_size}\n"
            # A bouncer lives for the whole session: idle server connections go back to
            # PostgreSQL within a second, so they never crowd the slots other tests read.
            "server_idle_timeout = 1\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.directory / 'pgbouncer.log'}\n"
        )
        (self.directory / "userlist.txt").write_text(f'"{user}" ""\n')
        argv = [BINARY, str(ini)]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            shutil.chown(self.directory, "postgres")
            for path in self.directory.iterdir():
                shutil.chown(path, "postgres")
            argv = [BINARY, "-u", "postgres", str(ini)]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        log = self.directory / "pgbouncer.log"
        detail = log.read_text() if log.exists() else ""
        self.stop()
        pytest.fail(f"PgBouncer did not start on port {self.port}: {detail[-500:]}")

    def stop(self) -> None:
        """Stop this PgBouncer by its pid, and remove its files."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
