"""Typed confirmation for destructive commands (DESIGN.md, "The production guard")."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from myfy_db.cli.output import Output
from myfy_db.errors import Interrupted, Refused


def confirm_by_name(out: Output, action: str, name: str, *, yes: bool) -> None:
    """Ask the user to type ``name`` before ``action``.

    ``--yes`` skips the question. With no terminal on stdin the command refuses (exit 3)
    unless ``--yes`` was given; a wrong answer, an empty or blank one, or Ctrl-D declines
    (exit 3); Ctrl-C interrupts (exit 130). A database without a name cannot be confirmed by
    typing it: that refuses too. ``action`` and ``name`` are shown literally, never read as
    markup.
    """
    if yes:
        return
    if not sys.stdin.isatty():
        raise Refused(
            f"{action} needs confirmation and there is no terminal",
            hint="run it in a terminal, or pass --yes",
        )
    if not name.strip():
        raise Refused(
            f"{action} needs the database name typed, and the server reports none",
            hint="name the database in the URL, or pass --yes",
        )
    from rich.markup import escape

    out.err.print(f"[bold red]{escape(action)}[/]", highlight=False)
    try:
        with _ctrl_c_interrupts():
            answer = out.err.input(f"Type the database name [bold]{escape(name)}[/] to confirm: ")
    except EOFError:
        answer = ""
    except KeyboardInterrupt:
        out.err.print()
        raise Interrupted("SIGINT") from None
    if not answer.strip() or answer.strip() != name.strip():
        raise Refused("confirmation declined: nothing was changed")


@contextmanager
def _ctrl_c_interrupts() -> Iterator[None]:
    """While the prompt waits, Ctrl-C raises ``KeyboardInterrupt`` at once.

    The event loop's own SIGINT handler only runs between callbacks, so it cannot end a
    blocking ``input()``; a plain Python handler can (main thread only).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def database_name(url: str) -> str:
    """The name a user types to confirm.

    The name the server reported to this command's guard check when there was one
    (``current_database()``, ``DATABASE()``, the SQLite file's name); else the database
    named in ``url``, or the SQLite file's name.
    """
    from pathlib import PurePath

    from myfy_db.guard import reported_database_name
    from myfy_db.urls import DatabaseUrl

    reported = reported_database_name.get()
    if reported is not None:
        return reported
    parsed = DatabaseUrl.of(url)
    database = parsed.database or ""
    if parsed.backend == "sqlite":
        return PurePath(database).name if database else ":memory:"
    return database
