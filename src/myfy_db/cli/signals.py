"""One SIGINT or SIGTERM ends any command within two seconds, even on a hung server.

:func:`run_coroutine` is the ``asyncio.run`` of :func:`myfy_db.cli.runtime.run`. On the first
SIGINT or SIGTERM:

1. the command's task is cancelled: ``finally`` blocks and context managers run (a lock is
   released, a transaction rolled back, a pool disposed) while the server still answers;
2. after :data:`GRACE_SECONDS` every connection still open is cut without a word to the
   server (:func:`myfy_db.connections.abort`): whatever cleanup still waits on a server
   that stopped answering fails at once; the server rolls back and releases session locks
   (the migration lock among them) when it sees the socket close;
3. the run ends with :class:`~myfy_db.errors.Interrupted` (exit 130, or 143 for SIGTERM) and
   its one line; should anything still run after :data:`HARD_SECONDS` (or on a second
   signal), the line is written and the process ends there.

From the signal on, nothing else reaches stderr: no warnings about connections the pool
could not return, no log records of failed resets, no "Event loop is closed" from objects
collected late. Outside the event loop (settings, plain synchronous work) SIGINT is
Python's ``KeyboardInterrupt`` and SIGTERM is :class:`Terminate`, which
:func:`myfy_db.cli.runtime.run` turns into the same error; before a command runs at all
(start-up, parsing), :func:`myfy_db.cli.process.run_console_script` ends the process at once.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any, TypeVar

from myfy_db.errors import Interrupted

T = TypeVar("T")

#: How long cancelled work may spend on its own cleanup before its connections are cut.
GRACE_SECONDS = 0.5
#: How long after the signal the process ends, whatever still runs.
HARD_SECONDS = 1.5
#: How long the loop's own shutdown (leftover tasks, the thread pool) may take afterwards.
SHUTDOWN_SECONDS = 0.5

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminate(SystemExit):
    """SIGTERM outside the event loop: unwinds like ``sys.exit(143)``.

    A ``SystemExit``, so that code which handles Ctrl-C (the shell's console cancels the
    statement and carries on) lets it through; :func:`myfy_db.cli.runtime.run` reports it.
    """

    def __init__(self) -> None:
        super().__init__(143)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def signals_unwind() -> Iterator[None]:
    """While the block runs, SIGINT raises ``KeyboardInterrupt`` and SIGTERM
    :class:`Terminate` (main thread only); the previous handlers come back afterwards."""
    if not _in_main_thread():
        yield
        return

    def raise_terminate(_signum: int, _frame: FrameType | None) -> None:
        raise Terminate

    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_terminate)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_coroutine(
    coroutine: Coroutine[Any, Any, T], on_hard_stop: Callable[[Interrupted], None]
) -> T:
    """Run ``coroutine`` to its end, or until SIGINT/SIGTERM stops it (see the module).

    ``on_hard_stop`` reports the error and ends the process when the run would not stop in
    time; it must not return.
    """
    if not _in_main_thread():  # signals are delivered to the main thread only
        return asyncio.run(coroutine)
    loop = asyncio.new_event_loop()
    task = loop.create_task(coroutine)
    stopped: list[Interrupted] = []

    def hard_stop() -> None:
        on_hard_stop(stopped[0])

    def on_signal(signum: int) -> None:
        if stopped:  # a second signal: the user does not want to wait
            hard_stop()
            return
        stopped.append(Interrupted(signal.Signals(signum).name))
        _quiet(loop)
        task.cancel()
        loop.call_later(GRACE_SECONDS, _abort_connections)
        loop.call_later(HARD_SECONDS, hard_stop)

    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    for sig in _SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        try:
            result = loop.run_until_complete(task)
        except BaseException:
            if stopped:
                raise stopped[0] from None
            raise
        if stopped:
            raise stopped[0]
        return result
    finally:
        try:
            _shut_down(loop, bounded=bool(stopped))
        finally:
            for sig in _SIGNALS:
                with suppress(Exception):
                    loop.remove_signal_handler(sig)
                signal.signal(sig, previous[sig])
            loop.close()


def _abort_connections() -> None:
    from myfy_db.connections import abort

    abort()


def _shut_down(loop: asyncio.AbstractEventLoop, *, bounded: bool) -> None:
    """What ``asyncio.run`` does after the main task: cancel leftovers, close the executor.

    After an interrupt each step is bounded: a leftover task stuck on a dead connection or a
    thread stuck in a resolver must not hold the exit.
    """
    limit = SHUTDOWN_SECONDS if bounded else None
    leftovers = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for leftover in leftovers:
        leftover.cancel()
    if leftovers:
        with suppress(BaseException):
            loop.run_until_complete(asyncio.wait(leftovers, timeout=limit))
    with suppress(BaseException):
        loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), limit))
    with suppress(BaseException):
        loop.run_until_complete(asyncio.wait_for(loop.shutdown_default_executor(), limit))


def _quiet(loop: asyncio.AbstractEventLoop) -> None:
    """From here on the run's one line is all stderr carries (see the module)."""
    import logging
    import sys
    import warnings

    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    sys.unraisablehook = lambda _unraisable: None
    loop.set_exception_handler(lambda _loop, _context: None)
