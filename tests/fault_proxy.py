"""A local TCP proxy in front of a real database server that a test can freeze or kill.

It stands in for a server that stops answering (``freeze``: nothing is forwarded any more,
every socket stays open, as with a server stopped by SIGSTOP) or goes away (``kill``: every
connection is closed and new ones are refused, as with a server that crashed). The shared
servers themselves are never touched.

    with FaultProxy.for_url(postgres_url) as proxy:
        url = proxy.url            # the same database, through the proxy
        ...
        proxy.freeze()             # the server stops answering
        proxy.thaw()               # ... and resumes (it sees what the client did meanwhile)
        proxy.kill()               # the server goes away

A client that closes its connection while the proxy is frozen is seen only after ``thaw``,
as a stopped server would see it once resumed.
"""

from __future__ import annotations

import select
import socket
import threading
from contextlib import suppress
from types import TracebackType

from sqlalchemy.engine import make_url

_POLL = 0.02
_CHUNK = 65536


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream``; freezable and killable."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._running = threading.Event()  # set: forwarding; clear: frozen
        self._running.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.accepted = 0
        self.url_template: str | None = None
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepter.start()

    @classmethod
    def for_url(cls, url: str) -> FaultProxy:
        """A proxy in front of ``url``'s server; ``proxy.url`` is ``url`` through it."""
        parsed = make_url(url)
        default = 5432 if parsed.get_backend_name() == "postgresql" else 3306
        proxy = cls(parsed.host or "127.0.0.1", parsed.port or default)
        proxy.url_template = url
        return proxy

    @property
    def url(self) -> str:
        """The URL given to :meth:`for_url`, with host and port pointing at the proxy."""
        assert self.url_template is not None, "build the proxy with FaultProxy.for_url"
        parsed = make_url(self.url_template).set(host="127.0.0.1", port=self.port)
        return parsed.render_as_string(hide_password=False)

    # -- faults -------------------------------------------------------------------------

    def freeze(self) -> None:
        """Stop forwarding in both directions; keep every socket open; accept but stall."""
        self._running.clear()

    def thaw(self) -> None:
        """Resume forwarding (closes the proxy sees on resuming are passed on)."""
        self._running.set()

    @property
    def frozen(self) -> bool:
        return not self._running.is_set()

    def kill(self) -> None:
        """Close every connection and refuse new ones: the server went away."""
        self._closed.set()
        self._running.set()
        _close(self._listener)
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            _close(sock)

    def close(self) -> None:
        """Stop the proxy (thaw first, so clients' closes reach the server), then kill."""
        self.thaw()
        self.kill()
        for thread in [self._accepter, *self._threads]:
            thread.join(timeout=2)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- forwarding ---------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._closed.is_set():
                _close(client)
                return
            self.accepted += 1
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._closed.is_set():
                return False
            self._sockets.add(sock)
            return True

    def _serve(self, client: socket.socket) -> None:
        if not self._track(client):
            _close(client)
            return
        # A frozen server accepts (the kernel's backlog does) but never answers.
        while not self._running.wait(_POLL):
            if self._closed.is_set():
                return
        if self._closed.is_set():
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _close(client)
            return
        if not self._track(upstream):
            _close(upstream)
            return
        self._pump(client, upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while not self._closed.is_set():
                if not self._running.wait(_POLL):
                    continue
                readable, _, _ = select.select(list(peers), [], [], _POLL)
                for sock in readable:
                    if not self._running.is_set():
                        break
                    data = sock.recv(_CHUNK)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):  # ValueError: a socket closed by kill() meanwhile
            return
        finally:
            with self._lock:
                self._sockets.discard(client)
                self._sockets.discard(upstream)
            _close(client)
            _close(upstream)


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        sock.close()
