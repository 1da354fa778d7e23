"""Limits mean what they say (issue 22).

- ``--lock-timeout 0`` does not wait: it takes a free migration lock, and fails at once
  naming the holder of a taken one.
- ``--wait N`` against a server that accepts TCP and never answers ends within N (plus the
  process's own tear-down): every attempt's connect timeout is cut to what is left.
- ``--ddl-lock-timeout``: a positive value below the server's unit is rounded up (never to
  0, which the server reads as "no limit"); a value above what the server accepts is a
  configuration error (exit 2) naming the flag and the setting, before anything runs; 0
  still means "no limit".
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fault_proxy import FaultProxy
from helpers import backend_of, invoke
from migrate_project import query, tables, write_project
from myfy_db.errors import ConfigError
from myfy_db.migrations.ddl_lock import DdlLock
from myfy_db.migrations.lock import LockTimeout, _wait_for

# -- --lock-timeout 0 ------------------------------------------------------------------------

HOLD_LOCK = """
import asyncio, sys
from myfy_db import DatabaseSettings, open_engine
from myfy_db.migrations.writing import _engine_overrides
from myfy_db.migrations.lock import migration_lock

async def main():
    url = sys.argv[1]
    settings = DatabaseSettings(database_url=url)
    async with open_engine(settings, url, **_engine_overrides(settings, url)) as engine:
        async with migration_lock(engine, url, 10, print):
            print("locked", flush=True)
            await asyncio.sleep(60)

asyncio.run(main())
"""


def _migrate(ini: Path, url: str, *args: str) -> tuple[int, str, float]:
    started = time.monotonic()
    result = invoke("migrate", "--url", url, "--config", str(ini), *args)
    return result.exit_code, result.stderr, time.monotonic() - started


@pytest.mark.wall_clock
def test_lock_timeout_zero_takes_a_free_lock(tmp_path: Path, db_url: str) -> None:
    ini = write_project(tmp_path)
    code, stderr, _ = _migrate(ini, db_url, "--lock-timeout", "0")
    assert code == 0, stderr
    assert "timed out" not in stderr
    assert "items" in tables(db_url)


@pytest.mark.wall_clock
def test_lock_timeout_zero_fails_at_once_naming_the_holder(tmp_path: Path, db_url: str) -> None:
    ini = write_project(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, db_url], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        code, stderr, elapsed = _migrate(ini, db_url, "--lock-timeout", "0")
    finally:
        holder.kill()
        holder.wait()
    assert code == 1, stderr
    assert elapsed < 3.0  # the run's own start-up included; no waiting
    expected = {
        "sqlite": f"pid {holder.pid}",
        "postgresql": "application 'myfy-db migrate'",
        "mysql": "held by connection",
    }[backend_of(db_url)]
    assert expected in stderr
    assert "another migration is running" in stderr
    assert "timed out after 0 s" not in stderr
    assert "items" not in tables(db_url)


def test_lock_timeout_zero_still_ends_when_the_server_never_answers() -> None:
    async def scenario() -> float:
        gone = asyncio.Event()  # set by the cut: the connection is dropped

        async def unanswered() -> None:
            await gone.wait()
            raise ConnectionResetError("cut")

        async def attempt() -> bool:
            await unanswered()
            return True

        async def holder() -> str | None:
            await unanswered()
            return None

        started = time.monotonic()
        with pytest.raises(LockTimeout, match="did not answer"):
            await _wait_for(
                attempt, holder, target="db", timeout=0, report=lambda _: None, cut=gone.set
            )
        assert gone.is_set()
        return time.monotonic() - started

    assert asyncio.run(scenario()) <= 1.5


# -- --wait against a server that never answers ----------------------------------------------

WAIT_COMMANDS = [
    ("check-pool", "--connections", "1", "--samples", "1"),
    ("migrate", "status"),
    ("shell", "-c", "1"),
]


@pytest.mark.wall_clock
@pytest.mark.parametrize("command", WAIT_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_wait_ends_within_its_limit_on_a_frozen_server(
    command: tuple[str, ...], server_url: str, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    if command[0] == "migrate":
        assert invoke("migrate", "init").exit_code == 0
    proxy = fault_proxy(server_url)
    proxy.freeze()
    started = time.monotonic()
    result = invoke(*command, "--url", proxy.url, "--wait", "1")
    elapsed = time.monotonic() - started
    assert result.exit_code == 4, result.stderr
    assert elapsed <= 1 + 1.5, (elapsed, result.stderr)
    assert "timed out connecting to" in result.stderr
    assert "gave up after waiting 1 s" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.wall_clock
def test_wait_counts_every_attempt_on_a_frozen_server(
    postgres_url: str, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    proxy = fault_proxy(postgres_url)
    proxy.freeze()
    started = time.monotonic()
    result = invoke(
        "shell", "-c", "1", "--url", proxy.url, "--wait", "2.5",
        env={"MYFY_DATA_CONNECT_TIMEOUT": "1"},
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.exit_code == 4, result.stderr
    assert elapsed <= 2.5 + 1.5, (elapsed, result.stderr)
    assert re.search(r"gave up after waiting 2.5 s, [23] attempt\(s\)", result.stderr)


# -- --ddl-lock-timeout ----------------------------------------------------------------------

RECORD = {
    "postgresql": "op.execute(\"INSERT INTO seen SELECT current_setting('lock_timeout')\")",
    "mysql": 'op.execute("INSERT INTO seen SELECT @@SESSION.lock_wait_timeout")',
}


def _recording_project(tmp_path: Path, url: str) -> Path:
    upgrade = (
        'op.create_table("seen", sa.Column("value", sa.String(40)))\n' + RECORD[backend_of(url)]
    )
    return write_project(tmp_path, [("a1", "record the lock timeout", upgrade, "pass")])


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        ("0.0001", {"postgresql": "1ms", "mysql": "1"}),
        ("0.0015", {"postgresql": "2ms", "mysql": "1"}),
        ("2147483.647", {"postgresql": "2147483647ms", "mysql": "2147484"}),
    ],
)
def test_ddl_lock_timeout_reaches_the_server_never_as_no_limit(
    tmp_path: Path, server_url: str, seconds: str, expected: dict[str, str]
) -> None:
    ini = _recording_project(tmp_path, server_url)
    code, stderr, _ = _migrate(ini, server_url, "--ddl-lock-timeout", seconds)
    assert code == 0, stderr
    assert query(server_url, "SELECT value FROM seen") == [(expected[backend_of(server_url)],)]


LIMITS = {"postgresql": "2147483.648", "mysql": "31536001"}


@pytest.mark.parametrize("given", ["flag", "setting", "huge"])
def test_ddl_lock_timeout_over_the_server_maximum_is_exit_2(
    tmp_path: Path, server_url: str, given: str
) -> None:
    ini = write_project(tmp_path)
    value = "1e12" if given == "huge" else LIMITS[backend_of(server_url)]
    args = ("--ddl-lock-timeout", value) if given != "setting" else ()
    env = {"MYFY_DATA_DDL_LOCK_TIMEOUT": value} if given == "setting" else None
    result = invoke("migrate", "--url", server_url, "--config", str(ini), *args, env=env)
    assert result.exit_code == 2, result.stderr
    assert "--ddl-lock-timeout" in result.stderr
    assert "MYFY_DATA_DDL_LOCK_TIMEOUT" in result.stderr
    assert "Traceback" not in result.stderr
    assert not tables(server_url)  # nothing ran, not even the version table


@pytest.mark.parametrize("backend", ["postgresql", "mysql", "sqlite"])
def test_ddl_lock_timeout_bounds(backend: str) -> None:
    top = {"postgresql": 2147483.647, "mysql": 31536000.0, "sqlite": 1e300}[backend]
    for seconds in (0.0, 0.0001, 1.0, top):
        DdlLock(seconds).check(backend)
    assert not DdlLock(0.0).enabled  # 0: no limit
    if backend != "sqlite":
        with pytest.raises(ConfigError, match="--ddl-lock-timeout"):
            DdlLock(top * 1.0001).check(backend)


def test_ddl_lock_timeout_statements() -> None:
    assert DdlLock(0.0001).statement("postgresql") == "SET lock_timeout = 1"
    assert DdlLock(2.5).statement("postgresql") == "SET lock_timeout = 2500"
    assert DdlLock(2147483.647).statement("postgresql") == "SET lock_timeout = 2147483647"
    assert DdlLock(0.0001).statement("mysql") == "SET SESSION lock_wait_timeout = 1"
    assert DdlLock(1.2).statement("mariadb") == "SET SESSION lock_wait_timeout = 2"
    assert DdlLock(5).statement("sqlite") is None
