"""``--wait SECONDS``: every connecting command retries until the database accepts connections."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest
from sqlalchemy.engine import make_url

from helpers import CANARY, free_port, invoke, server_for, with_password


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for sock in (source, sink):
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


@contextmanager
def late_server(url: str, delay: float) -> Iterator[str]:
    """``url``'s server on a local port that refuses connections for ``delay`` seconds, then
    listens and forwards to the real server: a database that comes up late."""
    parsed = make_url(url)
    upstream = (parsed.host or "127.0.0.1", parsed.port or (5432 if "postgres" in url else 3306))
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    port = listener.getsockname()[1]
    stop = threading.Event()
    sockets: list[socket.socket] = []

    def serve() -> None:
        if stop.wait(delay):
            return
        listener.listen(16)
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(upstream)
            sockets.extend((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield parsed.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        stop.set()
        thread.join()
        listener.close()
        for sock in sockets:
            with suppress(OSError):
                sock.close()


def _waiting_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("waiting for the database")]


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_check_pool_waits_for_a_database_that_comes_up_late(backend: str) -> None:
    server = server_for(backend)
    server.require()
    with late_server(server.url, delay=3.0) as url:
        started = time.monotonic()
        result = invoke(
            "check-pool", "--url", url, "--connections", "1", "--samples", "1", "--wait", "10"
        )
        elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.stderr
    assert elapsed >= 3.0
    lines = _waiting_lines(result.stderr)
    assert len(lines) >= 2
    for line in lines:
        assert "connection refused by 127.0.0.1" in line
        assert "(attempt " in line


COMMANDS = [
    ("check-pool",),
    ("profile-pool",),
    ("shell", "-c", "1"),
    ("drop-tables", "--all", "--dry-run"),
    ("dbshell",),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_every_connecting_command_waits_then_exits_4(command: tuple[str, ...]) -> None:
    url = f"postgresql+asyncpg://u:{CANARY}@127.0.0.1:{free_port()}/db"
    started = time.monotonic()
    result = invoke(*command, "--url", url, "--wait", "1")
    elapsed = time.monotonic() - started
    assert result.exit_code == 4, result.stderr
    assert elapsed >= 1.0
    assert len(_waiting_lines(result.stderr)) >= 3
    assert "gave up after waiting 1 s" in result.stderr
    assert CANARY not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_waits_too(tmp_path: object) -> None:
    url = f"mysql+aiomysql://u@127.0.0.1:{free_port()}/db"
    assert invoke("migrate", "init").exit_code == 0
    result = invoke("migrate", "status", "--url", url, "--wait", "0.5")
    assert result.exit_code == 4, result.stderr
    assert _waiting_lines(result.stderr)
    assert "gave up after waiting 0.5 s" in result.stderr


def test_an_authentication_failure_is_not_retried() -> None:
    server = server_for("mysql")
    server.require()
    started = time.monotonic()
    result = invoke("check-pool", "--url", with_password(server.url), "--wait", "10")
    assert result.exit_code == 4
    assert time.monotonic() - started < 5
    assert "authentication failed for user 'root'" in result.stderr
    assert _waiting_lines(result.stderr) == []


def test_a_missing_database_is_not_retried() -> None:
    server = server_for("postgresql")
    server.require()
    started = time.monotonic()
    result = invoke("profile-pool", "--url", server.url_for("myfy_no_such_db"), "--wait", "10")
    assert result.exit_code == 4
    assert time.monotonic() - started < 5
    assert "database 'myfy_no_such_db' does not exist" in result.stderr
    assert _waiting_lines(result.stderr) == []


def test_without_wait_a_refused_connection_fails_at_once() -> None:
    url = f"postgresql+asyncpg://u@127.0.0.1:{free_port()}/db"
    result = invoke("check-pool", "--url", url)
    assert result.exit_code == 4
    assert _waiting_lines(result.stderr) == []
