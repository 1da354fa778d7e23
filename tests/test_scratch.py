"""The scratch database (myfy_db.migrations.scratch): created empty on the dev server, always
dropped (success, error, cancellation, Ctrl-C), never the target; and replaying a chain on it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from helpers import CANARY, free_port, server_for, with_password
from migrate_project import FAILING, STANDARD, write_env_shape, write_project
from myfy_db import DatabaseSettings, open_engine
from myfy_db.errors import CannotConnect, ConfigError, OperationFailed
from myfy_db.migrations.project import find_project
from myfy_db.migrations.scratch import PREFIX, replay, same_database, scratch_database
from myfy_db.urls import DatabaseUrl


def exists(url: DatabaseUrl) -> bool:
    """Whether the server (or the disk) still holds the scratch database ``url`` names."""
    if url.backend == "sqlite":
        assert url.sqlite_file is not None
        return Path(url.sqlite_file).exists() or Path(url.sqlite_file).parent.exists()
    server = server_for(url.backend)
    name = url.database
    if url.backend == "postgresql":
        rows = server.admin(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")[0]
    else:
        rows = server.admin(
            f"SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{name}'"
        )[0]
    return bool(rows)


async def table_names(url: DatabaseUrl) -> set[str]:
    text_url = url.sqlalchemy_url.render_as_string(hide_password=False)
    async with (
        open_engine(DatabaseSettings(database_url=text_url), url) as engine,
        engine.connect() as connection,
    ):
        return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))


def settings_for(url: str) -> DatabaseSettings:
    return DatabaseSettings(database_url=url)


def test_scratch_database_is_new_empty_and_dropped_afterwards(db_url: str) -> None:
    """The dev URL's server gets a new empty database (same credentials and driver); it is
    gone once the block ends."""
    dev = DatabaseUrl.parse(db_url)

    async def go() -> DatabaseUrl:
        async with scratch_database(settings_for(db_url), dev, protect=[], command="test") as url:
            assert exists(url)
            assert await table_names(url) == set()
            assert url.sqlalchemy_url.drivername == dev.sqlalchemy_url.drivername
            assert url.sqlalchemy_url.username == dev.sqlalchemy_url.username
            if url.backend == "sqlite":
                assert Path(url.sqlite_file or "").name == "scratch.db"
                assert Path(url.sqlite_file or "").parent.name.startswith(PREFIX)
            else:
                assert (url.database or "").startswith(PREFIX)
                assert url.database != dev.database
                assert url.sqlalchemy_url.host == dev.sqlalchemy_url.host
            return url

    url = asyncio.run(go())
    assert not exists(url)


def test_two_scratch_databases_are_two(server_url: str) -> None:
    dev = DatabaseUrl.parse(server_url)

    async def go() -> tuple[DatabaseUrl, DatabaseUrl]:
        settings = settings_for(server_url)
        async with (
            scratch_database(settings, dev, protect=[], command="test") as first,
            scratch_database(settings, dev, protect=[], command="test") as second,
        ):
            assert first.database != second.database
            return first, second

    for url in asyncio.run(go()):
        assert not exists(url)


def test_dropped_when_the_block_raises(db_url: str) -> None:
    """An error inside the block propagates unchanged; the database is dropped all the same,
    also while a connection to it is still open."""
    dev = DatabaseUrl.parse(db_url)
    seen: list[DatabaseUrl] = []

    async def go() -> None:
        from myfy_db.engine import create_engine

        engine = create_engine(settings_for(db_url))
        connection = None
        try:
            async with scratch_database(
                settings_for(db_url), dev, protect=[], command="test"
            ) as url:
                seen.append(url)
                if url.backend != "sqlite":
                    engine = create_engine(settings_for(db_url), url)
                    connection = await engine.connect()
                    # Left open, inside a transaction, when the error ends the block.
                    await connection.execute(text("CREATE TABLE held (id INTEGER)"))
                raise RuntimeError("boom")
        finally:
            if connection is not None:
                with suppress(Exception):
                    await connection.close()
            with suppress(Exception):
                await engine.dispose()

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(go())
    assert not exists(seen[0])


def test_dropped_when_the_task_is_cancelled_mid_query(server_url: str) -> None:
    """Cancelled while a statement runs on the scratch database (what Ctrl-C does to a
    command): the session on it is ended and the database dropped."""
    dev = DatabaseUrl.parse(server_url)
    seen: list[DatabaseUrl] = []
    sleep = "SELECT pg_sleep(30)" if dev.backend == "postgresql" else "SELECT SLEEP(30)"

    async def body() -> None:
        async with scratch_database(settings_for(server_url), dev, protect=[], command="t") as url:
            seen.append(url)
            async with open_engine(settings_for(server_url), url) as engine, engine.connect() as c:
                await c.execute(text(sleep))

    async def go() -> None:
        task = asyncio.create_task(body())
        while not seen:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert not exists(seen[0])


CTRL_C_SCRIPT = """
import asyncio, sys
from sqlalchemy import text
from myfy_db import DatabaseSettings, open_engine
from myfy_db.migrations.scratch import scratch_database
from myfy_db.urls import DatabaseUrl

async def main(dev):
    settings = DatabaseSettings(database_url=dev)
    async with scratch_database(settings, DatabaseUrl.parse(dev), protect=[], command="t") as url:
        print(url.database or url.sqlite_file, flush=True)
        async with open_engine(settings, url) as engine, engine.connect() as c:
            if url.backend == "postgresql":
                await c.execute(text("SELECT pg_sleep(30)"))
            elif url.backend == "mysql":
                await c.execute(text("SELECT SLEEP(30)"))
            else:
                await asyncio.sleep(30)

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.wall_clock
def test_dropped_on_ctrl_c(db_url: str, tmp_path: Path) -> None:
    """SIGINT (KeyboardInterrupt under asyncio.run) while the scratch database is in use:
    the process ends and leaves no database behind."""
    script = tmp_path / "hold.py"
    script.write_text(CTRL_C_SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script), db_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        name = process.stdout.readline().strip()
        assert name, process.stderr.read() if process.stderr else ""
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    dev = DatabaseUrl.parse(db_url)
    if dev.backend == "sqlite":
        assert not Path(name).exists()
        assert not Path(name).parent.exists()
    else:
        url = DatabaseUrl.of(dev.sqlalchemy_url._replace(database=name))
        assert not exists(url)


@pytest.mark.parametrize(
    ("dev", "target"),
    [
        (
            "postgresql+asyncpg://u:p@localhost/app",
            "postgresql+asyncpg://other:x@127.0.0.1:5432/app",
        ),
        ("mysql+aiomysql://root@127.0.0.1/app", "mysql+aiomysql://root@localhost:3306/app"),
        ("mariadb+aiomysql://root@DB.example/app", "mysql+aiomysql://root@db.example/app"),
    ],
)
def test_refused_when_the_dev_url_names_the_target(dev: str, target: str) -> None:
    """Refused (exit 2) before anything connects: the URLs point nowhere reachable, and the
    error is ConfigError, never CannotConnect."""
    dev_url = DatabaseUrl.parse(dev)

    async def go() -> None:
        async with scratch_database(
            settings_for(dev), dev_url, protect=[DatabaseUrl.parse(target)], command="t"
        ):
            raise AssertionError("must not get here")

    with pytest.raises(ConfigError, match="names the target database") as caught:
        asyncio.run(go())
    assert caught.value.exit_code == 2


def test_same_database_reads_urls_as_the_server_does(tmp_path: Path) -> None:
    parse = DatabaseUrl.parse
    assert not same_database(parse("postgresql+asyncpg://h/a"), parse("postgresql+asyncpg://h/b"))
    assert not same_database(
        parse("postgresql+asyncpg://h:5433/a"), parse("postgresql+asyncpg://h/a")
    )
    assert not same_database(parse("postgresql+asyncpg://h/a"), parse("mysql+aiomysql://h/a"))
    (tmp_path / "app.db").touch()
    absolute = parse(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    relative = parse("sqlite+aiosqlite:///./app.db")  # the tests run in tmp_path
    assert same_database(absolute, relative)
    assert not same_database(parse("sqlite+aiosqlite://"), parse("sqlite+aiosqlite://"))


@pytest.mark.parametrize(
    "host", ["127.0.0.2", "0.0.0.0", "[::1]", "localhost.", "LocalHost", "this-machine"]
)
def test_every_spelling_of_this_machine_is_the_same_host(host: str) -> None:
    """A loopback address, the unspecified one, a trailing dot, this host's own name: all
    reach the server on 127.0.0.1, so a dev URL spelled so names the target."""
    import socket

    host = socket.gethostname() if host == "this-machine" else host
    target = DatabaseUrl.parse("postgresql+asyncpg://u@127.0.0.1:5432/app")
    assert same_database(DatabaseUrl.parse(f"postgresql+asyncpg://u@{host}/app"), target)
    assert not same_database(DatabaseUrl.parse(f"postgresql+asyncpg://u@{host}/dev"), target)
    assert not same_database(DatabaseUrl.parse("postgresql+asyncpg://u@10.9.8.7/app"), target)


def test_a_resolver_that_hangs_holds_the_check_up_one_second_at_most(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """getaddrinfo blocks (and a Ctrl-C with it): a name that does not resolve within the
    bound reads as unresolved, and the names are then compared as written."""
    import socket

    def hangs(*_args: Any, **_kw: Any) -> Any:
        time.sleep(5)
        raise OSError("no answer")

    monkeypatch.setattr(socket, "getaddrinfo", hangs)
    started = time.monotonic()
    assert not same_database(
        DatabaseUrl.parse("postgresql+asyncpg://u@db-a.example/app"),
        DatabaseUrl.parse("postgresql+asyncpg://u@db-b.example/app"),
    )
    assert time.monotonic() - started < 2.5


def test_a_hard_link_to_the_sqlite_target_is_the_same_database(tmp_path: Path) -> None:
    (tmp_path / "app.db").touch()
    os.link(tmp_path / "app.db", tmp_path / "other.db")
    (tmp_path / "link.db").symlink_to(tmp_path / "app.db")
    target = DatabaseUrl.parse(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    for name in ("other.db", "link.db"):
        assert same_database(DatabaseUrl.parse(f"sqlite+aiosqlite:///{tmp_path / name}"), target)
    (tmp_path / "else.db").touch()
    assert not same_database(DatabaseUrl.parse(f"sqlite+aiosqlite:///{tmp_path}/else.db"), target)


def test_sqlite_dev_url_naming_the_target_file_is_refused(sqlite_url: str) -> None:
    relative = "sqlite+aiosqlite:///./test.db"

    async def go() -> None:
        async with scratch_database(
            settings_for(sqlite_url),
            DatabaseUrl.parse(relative),
            protect=[DatabaseUrl.parse(sqlite_url)],
            command="t",
        ):
            raise AssertionError("must not get here")

    with pytest.raises(ConfigError, match="names the target database"):
        asyncio.run(go())


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_unreachable_dev_server_is_exit_4_without_the_password(backend: str) -> None:
    scheme = "postgresql+asyncpg" if backend == "postgresql" else "mysql+aiomysql"
    dev = f"{scheme}://u:{CANARY}@127.0.0.1:{free_port()}/dev"

    async def go() -> None:
        async with scratch_database(
            settings_for(dev), DatabaseUrl.parse(dev), protect=[], command="t"
        ):
            raise AssertionError("must not get here")

    with pytest.raises(CannotConnect) as caught:
        asyncio.run(go())
    assert caught.value.exit_code == 4
    assert CANARY not in str(caught.value)


def test_postgresql_dev_url_naming_a_missing_database_uses_the_maintenance_one(
    postgres_url: str,
) -> None:
    dev = DatabaseUrl.of(make_url(postgres_url).set(database="myfy_no_such_dev_database"))
    seen: list[DatabaseUrl] = []

    async def go() -> None:
        async with scratch_database(
            settings_for(postgres_url), dev, protect=[], command="t"
        ) as url:
            seen.append(url)
            assert exists(url)

    asyncio.run(go())
    assert not exists(seen[0])


def test_the_password_is_kept_for_the_scratch_database_and_never_shown(postgres_url: str) -> None:
    dev_text = with_password(postgres_url)
    dev = DatabaseUrl.parse(dev_text)

    async def go() -> None:
        async with scratch_database(settings_for(dev_text), dev, protect=[], command="t") as url:
            assert url.sqlalchemy_url.password == CANARY
            assert CANARY not in str(url)
            assert CANARY not in repr(url)
            assert CANARY not in url.target

    asyncio.run(go())


# -- replay ------------------------------------------------------------------------------


def test_replay_upgrades_the_scratch_database_to_a_revision(db_url: str, tmp_path: Path) -> None:
    project = find_project(write_project(tmp_path))
    settings = settings_for(db_url)
    dev = DatabaseUrl.parse(db_url)

    async def go() -> tuple[set[str], set[str]]:
        async with scratch_database(settings, dev, protect=[], command="t") as url:
            await replay(project, settings, url, "r2", command="t")
            at_r2 = await table_names(url)
            await replay(project, settings, url, "heads", command="t")
            return at_r2, await table_names(url)

    at_r2, at_head = asyncio.run(go())
    assert at_r2 == {"alembic_version", "runs", "items"}
    assert at_head == {"alembic_version", "runs", "items", "tags"}
    assert (tmp_path / "migrations").is_dir()
    # The target database was never touched.
    assert asyncio.run(table_names(dev)) == set()


@pytest.mark.parametrize("shape", ["generic", "async", "engine", "scaffold"])
def test_replay_drives_every_env_shape(shape: str, sqlite_url: str, tmp_path: Path) -> None:
    project = find_project(write_env_shape(tmp_path, shape))
    settings = settings_for(sqlite_url)

    async def go() -> set[str]:
        async with scratch_database(
            settings, DatabaseUrl.parse(sqlite_url), protect=[], command="t"
        ) as url:
            await replay(project, settings, url, "heads", command="t")
            return await table_names(url)

    assert asyncio.run(go()) == {"alembic_version", "runs", "items", "tags"}


def test_replay_failure_names_the_revision_and_still_drops(db_url: str, tmp_path: Path) -> None:
    project = find_project(write_project(tmp_path, [*STANDARD, FAILING]))
    settings = settings_for(db_url)
    seen: list[DatabaseUrl] = []

    async def go() -> None:
        async with scratch_database(
            settings, DatabaseUrl.parse(db_url), protect=[], command="t"
        ) as url:
            seen.append(url)
            await replay(project, settings, url, "heads", command="t")

    with pytest.raises(OperationFailed, match=r"revision r4 .*failed") as caught:
        asyncio.run(go())
    assert "scratch database" in str(caught.value)
    assert not exists(seen[0])


def test_replay_ignores_the_production_guard(db_url: str, tmp_path: Path) -> None:
    """The settings may say production: the scratch database is this run's own."""
    project = find_project(write_project(tmp_path))
    settings = DatabaseSettings(database_url=db_url, environment="production")

    async def go() -> set[str]:
        async with scratch_database(
            settings, DatabaseUrl.parse(db_url), protect=[], command="t"
        ) as url:
            await replay(project, settings, url, "heads", command="t")
            return await table_names(url)

    assert "tags" in asyncio.run(go())


def test_a_scratch_database_that_cannot_be_dropped_is_named_for_dropping_by_hand(
    server_url: str, fault_proxy: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server goes away before the drop (both the admin connection and a new one fail):
    a warning names the database and the statement that drops it; nothing is hidden."""
    proxy = fault_proxy(with_password(server_url) if "postgresql" in server_url else server_url)
    dev = DatabaseUrl.parse(proxy.url)
    seen: list[DatabaseUrl] = []

    async def go() -> None:
        async with scratch_database(settings_for(proxy.url), dev, protect=[], command="t") as url:
            seen.append(url)
            proxy.kill()

    try:
        asyncio.run(go())
        err = capsys.readouterr().err
        name = seen[0].database or ""
        assert f"could not drop the scratch database {name}" in err
        assert "DROP DATABASE" in err
        assert CANARY not in err
        assert exists(DatabaseUrl.of(make_url(server_url).set(database=name)))
    finally:
        for url in seen:
            server = server_for(url.backend)
            quote = '"' if url.backend == "postgresql" else "`"
            force = " WITH (FORCE)" if url.backend == "postgresql" else ""
            server.admin(f"DROP DATABASE IF EXISTS {quote}{url.database}{quote}{force}")


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_a_dev_user_that_may_not_create_databases_is_told_so(backend: str) -> None:
    """Exit 1 in the server's words, with the privilege to ask for; nothing is created and
    the password (with URL-quoted characters) is never shown."""
    import uuid

    server = server_for(backend)
    server.require()
    role = f"myfy_nocreate_{uuid.uuid4().hex[:8]}"
    password = f"{CANARY}/@%:"
    quoted = password.replace("%", "%25").replace("/", "%2F").replace("@", "%40")
    quoted = quoted.replace(":", "%3A")
    if backend == "postgresql":
        server.admin(f"CREATE ROLE {role} LOGIN NOCREATEDB PASSWORD '{password}'")
        dev = make_url(server.url).set(username=role, password=password)
        drop = f"DROP ROLE {role}"
    else:
        server.admin(
            f"CREATE USER '{role}'@'%' IDENTIFIED BY '{password}'",
            f"GRANT SELECT ON mysql.db TO '{role}'@'%'",
        )
        dev = make_url(server.url).set(username=role, password=password)._replace(database=None)
        drop = f"DROP USER '{role}'@'%'"
    dev_text = dev.render_as_string(hide_password=False)
    assert quoted in dev_text
    before = _scratch_names(server)
    try:

        async def go() -> None:
            async with scratch_database(
                settings_for(dev_text), DatabaseUrl.parse(dev_text), protect=[], command="t"
            ):
                raise AssertionError("must not get here")

        with pytest.raises(OperationFailed) as caught:
            asyncio.run(go())
    finally:
        server.admin(drop)
    assert caught.value.exit_code == 1
    shown = str(caught.value)
    assert f"{role} may not create a database" in caught.value.message, shown
    assert "may create and drop databases" in (caught.value.hint or ""), shown
    assert CANARY not in shown
    assert _none_left_beside(server, before)


def _none_left_beside(server: Any, before: set[str]) -> bool:
    """No scratch database stays that was not there before. Other workers' runs make and
    drop their own meanwhile: a new one counts only if it outlives theirs (5 s)."""
    deadline = time.monotonic() + 5
    while _scratch_names(server) - before:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _scratch_names(server: Any) -> set[str]:
    if server.backend == "postgresql":
        sql = f"SELECT datname FROM pg_database WHERE datname LIKE '{PREFIX}%'"
    else:
        sql = (
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA "
            f"WHERE SCHEMA_NAME LIKE '{PREFIX}%'"
        )
    return {row[0] for row in server.admin(sql)[0]}
