"""Shared fixtures: isolated settings, and a fresh real database per test on each backend.

PostgreSQL and MariaDB URLs come from ``MYFY_TEST_POSTGRES_URL`` / ``MYFY_TEST_MYSQL_URL``.
An unreachable server skips its tests with the reason, unless ``MYFY_TEST_REQUIRE_SERVERS=1``
(CI), where it fails them.

The suite runs on pytest-xdist's workers (``-n auto --dist loadgroup`` in pyproject.toml).
Per worker: one admin connection per server (helpers.Server.admin), databases named with
the worker's id, and one PgBouncer per configuration. Tests that measure wall-clock time
run one after another on one worker (the ``serial`` group, below). Hypothesis's example
database (``.hypothesis/`` at the root) is shared: it writes each entry to a temporary file
and renames it into place, so workers never see each other's half-written files.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import xdist_groups
from fault_proxy import FaultProxy
from helpers import (
    REQUIRE_SERVERS,
    Server,
    close_admin_connections,
    server_for,
    server_slots,
)
from migrate_project import write_project
from pgbouncer import PgBouncer, Through
from pgbouncer import available as pgbouncer_available

BACKENDS = ("sqlite", "postgresql", "mysql")

#: Modules whose tests all measure wall-clock time: signals on a frozen server, lock waits,
#: ``--wait``, the fault proxy's stalls. Tests elsewhere say so with ``@pytest.mark.wall_clock``.
WALL_CLOCK_MODULES = frozenset(
    {
        "test_faults.py",
        "test_wait.py",
        "test_wait_option.py",
        "test_ddl_lock_timeout.py",
        "test_fault_proxy.py",
    }
)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: two workers per core. A test spends about 40% of its time waiting (on the
    servers, on the processes it starts, on clocks) and the serial group's worker most of
    its time; one worker per core would leave the cores idle. PYTEST_XDIST_AUTO_NUM_WORKERS
    still decides when set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 2 * (cores or 1)


#: Modules of single tests that take a minute or more: they start first, so that none of
#: them is still running alone at the end.
LONG_MODULES = frozenset({"test_benchmarks_quick.py"})

#: Modules whose tests open many connections at once (check-pool's 15 by default, load
#: runs) and read the servers' free slots: they run one after another on one worker, with
#: the PgBouncer tests, so that parallel workers never crowd the slots they read.
POOL_MODULES = frozenset(
    {
        "test_check_pool.py",
        "test_profile_pool.py",
        "test_poolers_and_busy_servers.py",
        "test_benchmarks_quick.py",
    }
)


def _first_the_exclusive_then_the_long(item: pytest.Item) -> tuple[bool, bool]:
    """The tests that need the servers' slots to themselves (``all_server_slots``) go first,
    each at the head of its worker's queue: they then wait only for the first short tests of
    the other workers, never for a long one. The long tests follow."""
    return item.get_closest_marker("all_server_slots") is None, item.path.name not in LONG_MODULES


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the wall-clock tests in one xdist group, ``serial``: they run one after another on
    one worker, never two at once. The connection-heavy pool tests and the PgBouncer tests
    share a group too, ``pool`` (one worker starts each PgBouncer configuration once, and no
    two of them crowd the servers' slots). The long tests go first."""
    items.sort(key=_first_the_exclusive_then_the_long)
    for item in items:
        if item.path.name in WALL_CLOCK_MODULES or item.get_closest_marker("wall_clock"):
            item.add_marker(pytest.mark.xdist_group("serial"))
        elif item.path.name in POOL_MODULES or "pgbouncer" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("pool"))
    xdist_groups.write_groups(config, items)


# pytest-xdist 3.8's loadgroup ignores the groups under pytest 9.2 (see xdist_groups.py).


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    xdist_groups.give_directory(node)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    return xdist_groups.scheduler(config, log) if config.getvalue("dist") == "loadgroup" else None


def pytest_unconfigure(config: pytest.Config) -> None:
    xdist_groups.remove_directory(config)


def pytest_sessionfinish(session: pytest.Session) -> None:
    close_admin_connections()


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No stray MYFY_* variable, .env or pyproject.toml reaches a test: run in tmp_path."""
    for name in list(os.environ):
        if name.startswith(("MYFY_DATA_", "MYFY_DB_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def shared_server_slots(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test marked ``all_server_slots`` opens nearly every free connection of a shared
    server, which would leave none to a test running beside it: it runs while no other test
    of this run does (in any worker). Every other test shares the slots, which costs nothing.
    """
    directory = xdist_groups.shared_directory(request.config)
    if directory is None:  # no xdist workers: one test at a time anyway
        yield
        return
    exclusive = request.node.get_closest_marker("all_server_slots") is not None
    with server_slots(exclusive, directory):
        yield


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
def project(tmp_path: Path) -> Path:
    """The standard Alembic project (revisions r1..r3, migrate_project.STANDARD) in tmp_path;
    its alembic.ini."""
    return write_project(tmp_path)


@pytest.fixture(scope="session")
def pgbouncers() -> Iterator[Callable[..., PgBouncer]]:
    """PgBouncer in front of the shared PostgreSQL, started once per configuration (pool mode
    and limits) for the whole session: ``pgbouncers("transaction", pool_size=4)``."""
    started: dict[tuple[str, tuple[tuple[str, int], ...]], PgBouncer] = {}

    def get(mode: str, **options: int) -> PgBouncer:
        key = (mode, tuple(sorted(options.items())))
        if key not in started:
            started[key] = PgBouncer.start(server_for("postgresql").url, mode, **options)
        return started[key]

    try:
        yield get
    finally:
        for bouncer in started.values():
            bouncer.stop()


@pytest.fixture
def pgbouncer(postgres_url: str, pgbouncers: Callable[..., PgBouncer]) -> Callable[..., Through]:
    """This test's fresh PostgreSQL database through a PgBouncer in a pool mode:
    ``pgbouncer("transaction").url``, ``pgbouncer("session", pool_size=4).url_with(...)``."""
    if not pgbouncer_available():
        if REQUIRE_SERVERS:
            pytest.fail("MYFY_TEST_REQUIRE_SERVERS=1 but pgbouncer is not installed")
        pytest.skip("pgbouncer is not installed")

    def through(mode: str, **options: int) -> Through:
        return pgbouncers(mode, **options).through(postgres_url)

    return through


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


@pytest.fixture(autouse=True)
def _secrets_of_this_test_only() -> Iterator[None]:
    """Passwords registered for masking (myfy_db.urls) stay with the test that registered
    them: a later test in the same worker must not see its output masked by them."""
    from myfy_db import urls

    saved = set(urls._secrets)
    yield
    urls._secrets.clear()
    urls._secrets.update(saved)
