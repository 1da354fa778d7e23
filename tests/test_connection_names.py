"""Every connection myfy-db opens names the command that opened it (issue 14).

PostgreSQL: ``application_name``, read back on the server. MariaDB keeps connection
attributes in performance_schema, which the test server may not enable, so there the
``program_name`` attribute is read off the wire of a real handshake through a local proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from helpers import invoke, run_process
from migrate_project import query, write_project
from myfy_db import DatabaseSettings, open_engine
from myfy_db.engine import command_name


def _application_name(url: str, command: str | None = None) -> str:
    async def go() -> str:
        settings = DatabaseSettings(database_url=url)
        async with (
            open_engine(settings, command=command) as engine,
            engine.connect() as conn,
        ):
            name = await conn.execute(text("SELECT current_setting('application_name')"))
            return str(name.scalar())

    return asyncio.run(go())


def test_library_engines_keep_the_applications_own_name(postgres_url: str) -> None:
    assert not _application_name(postgres_url).startswith("myfy-db")


def test_engine_factory_names_connections_after_the_command(postgres_url: str) -> None:
    assert _application_name(postgres_url, "myfy-db check-pool") == "myfy-db check-pool"
    with command_name("myfy-db shell (sandbox)"):
        assert _application_name(postgres_url) == "myfy-db shell (sandbox)"


def test_shell_connection_carries_its_command_name(postgres_url: str) -> None:
    code = "await session.scalar(text(\"SELECT current_setting('application_name')\"))"
    result = run_process("shell", "--url", postgres_url, "-c", code)
    assert result.returncode == 0, result.stderr
    assert "myfy-db shell" in result.stdout


def test_migration_statements_run_on_a_connection_named_myfy_db_migrate(
    tmp_path: Path, postgres_url: str
) -> None:
    upgrade = (
        'op.create_table("seen", sa.Column("name", sa.Text))\n'
        "op.execute(\"INSERT INTO seen SELECT current_setting('application_name')\")"
    )
    write_project(tmp_path, [("a1", "record the name", upgrade, 'op.drop_table("seen")')])
    result = invoke("migrate", "--url", postgres_url)
    assert result.exit_code == 0, result.stderr
    assert query(postgres_url, "SELECT name FROM seen") == [("myfy-db migrate",)]


@pytest.fixture
def recording_proxy(mysql_url: str) -> Iterator[tuple[str, bytearray]]:
    """A local TCP proxy to the MariaDB server that keeps what clients send."""
    target = make_url(mysql_url)
    sent = bytearray()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def pipe(src: socket.socket, dst: socket.socket, keep: bool) -> None:
        try:
            while data := src.recv(65536):
                if keep:
                    sent.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection((target.host or "127.0.0.1", target.port or 3306))
            threading.Thread(target=pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client, False), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    url = target.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    try:
        yield url, sent
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def test_mariadb_connections_send_the_command_as_program_name(
    recording_proxy: tuple[str, bytearray],
) -> None:
    url, sent = recording_proxy
    result = invoke("check-pool", "--url", url)
    assert result.exit_code == 0, result.stderr
    assert b"program_name" in sent
    assert b"myfy-db check-pool" in sent
