"""Shared fixtures: isolated settings, and a fresh real database per test on each backend.

PostgreSQL and MariaDB URLs come from ``MYFY_TEST_POSTGRES_URL`` / ``MYFY_TEST_MYSQL_URL``.
An unreachable server skips its tests with the reason, unless ``MYFY_TEST_REQUIRE_SERVERS=1``
(CI), where it fails them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fault_proxy import FaultProxy
from helpers import Server, server_for

BACKENDS = ("sqlite", "postgresql", "mysql")


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No stray MYFY_* variable, .env or pyproject.toml reaches a test: run in tmp_path."""
    for name in list(os.environ):
        if name.startswith(("MYFY_DATA_", "MYFY_DB_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh, empty SQLite database (the file exists, as a fresh server database does:
    commands that only read refuse a missing file)."""
    (tmp_path / "test.db").touch()
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


def _server_database(backend: str) -> Iterator[str]:
    server: Server = server_for(backend)
    server.require()
    with server.fresh_database() as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _server_database("postgresql")


@pytest.fixture
def mysql_url() -> Iterator[str]:
    yield from _server_database("mysql")


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on each backend in turn."""
    name = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mysql": "mysql_url"}
    return str(request.getfixturevalue(name[request.param]))


@pytest.fixture(params=("postgresql", "mysql"))
def server_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on each server backend (PostgreSQL, MariaDB) in turn."""
    return str(request.getfixturevalue(f"{request.param.replace('postgresql', 'postgres')}_url"))


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local socket that accepts connections and never answers (a hung server)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


@pytest.fixture
def fault_proxy() -> Iterator[Callable[[str], FaultProxy]]:
    """Make a freezable, killable proxy in front of a server URL: ``fault_proxy(url).url``.

    Every proxy made is thawed and closed when the test ends.
    """
    made: list[FaultProxy] = []

    def make(url: str) -> FaultProxy:
        proxy = FaultProxy.for_url(url)
        made.append(proxy)
        return proxy

    try:
        yield make
    finally:
        for proxy in made:
            proxy.close()
