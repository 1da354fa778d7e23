"""Typed confirmation for destructive commands (DESIGN.md, "The production guard")."""

from __future__ import annotations

import sys

from myfy_db.errors import Refused
from myfy_db.output import Output


def confirm_by_name(out: Output, action: str, name: str, *, yes: bool) -> None:
    """Ask the user to type ``name`` before ``action``.

    ``--yes`` skips the question. With no terminal on stdin the command refuses (exit 3)
    unless ``--yes`` was given; a wrong answer, an empty one or Ctrl-D declines (exit 3).
    """
    if yes:
        return
    if not sys.stdin.isatty():
        raise Refused(
            f"{action} needs confirmation and there is no terminal",
            hint="run it in a terminal, or pass --yes",
        )
    out.err.print(f"[bold red]{action}[/]", highlight=False)
    try:
        answer = out.err.input(f"Type the database name [bold]{name}[/] to confirm: ")
    except (EOFError, KeyboardInterrupt):
        answer = ""
    if answer.strip() != name:
        raise Refused("confirmation declined: nothing was changed")


def database_name(url: str) -> str:
    """The name a user types to confirm: the database, or the SQLite file's name."""
    from pathlib import PurePath

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite":
        return PurePath(database).name if database else ":memory:"
    return database
