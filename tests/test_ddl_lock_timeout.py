"""``--ddl-lock-timeout`` and ``--retries``: a revision blocked by another session's lock
fails fast naming the holder, never queues other queries for longer than the timeout, and
finishes on a retry once the lock is released. Real PostgreSQL and MariaDB sessions.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from helpers import backend_of, invoke
from migrate_project import query, write_project

TIMEOUT = 1.0
#: from the revision's first wait for the lock to the end of the process (tear-down included)
EXIT_MARGIN = 2.5
#: how much longer than the timeout another session's query may wait
QUERY_MARGIN = 0.6

REVISIONS = [
    (
        "r1",
        "items",
        'op.create_table("items", sa.Column("id", sa.Integer, primary_key=True))\n'
        'op.execute("INSERT INTO items (id) VALUES (1)")',
        'op.drop_table("items")',
    ),
    (
        "r2",
        "items.extra",
        'op.add_column("items", sa.Column("extra", sa.Integer))',
        'op.drop_column("items", "extra")',
    ),
]


class Session:
    """A raw driver session on the test database (the holder, or the bystander)."""

    def __init__(self, url: str, name: str) -> None:
        self.url = make_url(url)
        self.backend = backend_of(url)
        self.name = name
        self.conn: Any = None
        self.pid = 0

    async def open(self) -> Session:
        u = self.url
        if self.backend == "postgresql":
            import asyncpg

            self.conn = await asyncpg.connect(
                host=u.host,
                port=u.port or 5432,
                user=u.username,
                database=u.database,
                server_settings={"application_name": self.name},
            )
            self.pid = int(await self.conn.fetchval("SELECT pg_backend_pid()"))
        else:
            import aiomysql

            self.conn = await aiomysql.connect(
                host=u.host or "127.0.0.1",
                port=u.port or 3306,
                user=u.username or "root",
                db=u.database,
                autocommit=True,
            )
            self.pid = int((await self.fetch("SELECT CONNECTION_ID()"))[0][0])
        return self

    async def fetch(self, sql: str) -> list[Any]:
        if self.backend == "postgresql":
            return list(await self.conn.fetch(sql))
        async with self.conn.cursor() as cur:
            await cur.execute(sql)
            return list(await cur.fetchall())

    async def hold_lock(self) -> None:
        """An open transaction that has read the table (as a long request would)."""
        await self.fetch("BEGIN")
        await self.fetch("SELECT * FROM items")

    async def release(self) -> None:
        await self.fetch("ROLLBACK")

    async def close(self) -> None:
        if self.backend == "postgresql":
            await self.conn.close()
        else:
            self.conn.close()


async def _bystander(session: Session, stop: asyncio.Event, waits: list[float]) -> None:
    """Query the table over and over, noting how long each query took."""
    while not stop.is_set():
        started = time.monotonic()
        await session.fetch("SELECT count(*) FROM items")
        waits.append(time.monotonic() - started)
        await asyncio.sleep(0.02)


WAITING = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
    "AND application_name LIKE 'myfy-db migrate%' AND datname = current_database()",
    "mysql": "SELECT count(*) FROM information_schema.PROCESSLIST "
    "WHERE STATE LIKE 'Waiting for table metadata lock' AND INFO LIKE 'ALTER TABLE items%' "
    "AND DB = DATABASE()",
}


async def _first_wait(observer: Session, stop: asyncio.Event) -> float | None:
    """When the migration's ALTER was first seen waiting for its lock."""
    while not stop.is_set():
        if (await observer.fetch(WAITING[observer.backend]))[0][0]:
            return time.monotonic()
        await asyncio.sleep(0.05)
    return None


async def _migrate(project: Path, url: str, *args: str) -> tuple[int, str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "myfy_db",
        "migrate",
        "--url",
        url,
        "--config",
        str(project),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(child.communicate(), 60)
    return int(child.returncode or 0), stderr.decode(), time.monotonic()


@pytest.fixture
def project_at_r1(tmp_path: Path, server_url: str) -> Path:
    """This file's two-revision project, migrated to r1 on the server; its alembic.ini."""
    ini = write_project(tmp_path, REVISIONS)
    result = invoke("migrate", "up", "r1", "--url", server_url, "--config", str(ini))
    assert result.exit_code == 0, result.stderr
    return ini


def _columns(url: str) -> set[str]:
    if backend_of(url) == "postgresql":
        sql = "SELECT column_name FROM information_schema.columns WHERE table_name = 'items'"
    else:
        sql = "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_NAME = 'items' "
        sql += "AND TABLE_SCHEMA = DATABASE()"
    return {str(row[0]).lower() for row in query(url, sql)}


def test_blocked_revision_fails_fast_naming_the_holder(
    project_at_r1: Path, server_url: str
) -> None:
    async def scenario() -> tuple[int, str, float, list[float], Session]:
        holder = await Session(server_url, "lock-holder-test").open()
        bystander = await Session(server_url, "bystander").open()
        observer = await Session(server_url, "observer").open()
        await holder.hold_lock()
        stop = asyncio.Event()
        waits: list[float] = []
        watcher = asyncio.create_task(_bystander(bystander, stop, waits))
        first_wait = asyncio.create_task(_first_wait(observer, stop))
        try:
            code, stderr, ended = await _migrate(
                project_at_r1, server_url, "--ddl-lock-timeout", str(TIMEOUT)
            )
        finally:
            stop.set()
            await watcher
            began = await first_wait
            await holder.release()
            for session in (holder, bystander, observer):
                await session.close()
        assert began is not None, stderr
        return code, stderr, ended - began, waits, holder

    code, stderr, elapsed, waits, holder = asyncio.run(scenario())
    assert code == 1, stderr
    assert elapsed < TIMEOUT + EXIT_MARGIN
    assert "revision r2 (items.extra) failed: could not lock" in stderr
    assert "--ddl-lock-timeout" in stderr
    if holder.backend == "postgresql":
        assert "table items" in stderr
        assert f"held by pid {holder.pid}" in stderr
        assert "application 'lock-holder-test'" in stderr
        assert "idle in transaction" in stderr
        assert "the database stays at revision r1" in stderr
    else:
        assert "could not lock table items ('ALTER TABLE items" in stderr
        assert f"held by connection {holder.pid}" in stderr
        assert "user 'root'" in stderr
    assert "end the blocking transaction, or run again with --retries N" in stderr
    assert "Traceback" not in stderr
    # the queue behind the waiting ALTER lasted no longer than the timeout
    assert waits
    assert max(waits) < TIMEOUT + QUERY_MARGIN
    assert query(server_url, "SELECT version_num FROM alembic_version") == [("r1",)]
    assert "extra" not in _columns(server_url)


def test_retries_finish_once_the_lock_is_released(project_at_r1: Path, server_url: str) -> None:
    async def scenario() -> tuple[int, str, bool]:
        holder = await Session(server_url, "lock-holder-test").open()
        await holder.hold_lock()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))}
        child = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "myfy_db", "migrate", "--url", server_url),
            *("--config", str(project_at_r1), "--ddl-lock-timeout", str(TIMEOUT), "--retries", "3"),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert child.stderr is not None
        lines: list[str] = []
        released = False
        try:
            while line := (await asyncio.wait_for(child.stderr.readline(), 60)).decode():
                lines.append(line)
                if "retry 1 of 3" in line and not released:
                    await holder.release()  # midway: the first attempt has timed out
                    released = True
            await asyncio.wait_for(child.wait(), 60)
        finally:
            if not released:
                await holder.release()
            await holder.close()
        return int(child.returncode or 0), "".join(lines), released

    code, stderr, released = asyncio.run(scenario())
    assert code == 0, stderr
    assert released
    assert "could not lock" in stderr
    assert "retry 2 of 3" not in stderr
    assert query(server_url, "SELECT version_num FROM alembic_version") == [("r2",)]
    assert "extra" in _columns(server_url)


def test_retries_do_not_retry_other_failures(tmp_path: Path, postgres_url: str) -> None:
    failing = [
        REVISIONS[0],
        ("r2", "broken", 'op.execute("SELECT * FROM no_such_table")', "pass"),
    ]
    ini = write_project(tmp_path, failing)
    result = invoke("migrate", "--url", postgres_url, "--config", str(ini), "--retries", "3")
    assert result.exit_code == 1
    assert "retry" not in result.stderr
    assert "no_such_table" in result.stderr


def test_setting_supplies_the_default_and_zero_turns_it_off(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade = (
        'op.create_table("seen", sa.Column("value", sa.Text))\n'
        "op.execute(\"INSERT INTO seen SELECT current_setting('lock_timeout')\")"
    )
    ini = write_project(tmp_path, [("a1", "record lock_timeout", upgrade, 'op.drop_table("seen")')])
    monkeypatch.setenv("MYFY_DATA_DDL_LOCK_TIMEOUT", "2.5")
    assert invoke("migrate", "--url", postgres_url, "--config", str(ini)).exit_code == 0
    assert query(postgres_url, "SELECT value FROM seen") == [("2500ms",)]
    assert invoke("migrate", "down", "base", "--url", postgres_url, "--config", str(ini), "--yes")
    assert (
        invoke(
            "migrate", "--url", postgres_url, "--config", str(ini), "--ddl-lock-timeout", "0"
        ).exit_code
        == 0
    )
    assert query(postgres_url, "SELECT value FROM seen") == [("0",)]


def test_env_py_with_a_connection_of_its_own_gets_the_timeout_too(
    tmp_path: Path, postgres_url: str
) -> None:
    from migrate_project import _ENV_HEAD, _ENV_TAIL, ENV_SHAPES

    upgrade = (
        'op.create_table("seen", sa.Column("value", sa.Text))\n'
        "op.execute(\"INSERT INTO seen SELECT current_setting('lock_timeout')\")"
    )
    ini = write_project(tmp_path, [("a1", "record lock_timeout", upgrade, 'op.drop_table("seen")')])
    env_py = tmp_path / "migrations" / "env.py"
    env_py.write_text(_ENV_HEAD + ENV_SHAPES["engine"] + _ENV_TAIL)
    result = invoke(
        "migrate", "--url", postgres_url, "--config", str(ini), "--ddl-lock-timeout", "3"
    )
    assert result.exit_code == 0, result.stderr
    assert query(postgres_url, "SELECT value FROM seen") == [("3s",)]
