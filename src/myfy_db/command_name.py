"""The myfy-db command running now, so the connections it opens can carry its name.

The CLI edge (:func:`myfy_db.cli.runtime.run`) names each command (``myfy-db migrate``,
``myfy-db check-pool``); the engine factory puts that name in PostgreSQL's
``application_name`` and MySQL / MariaDB's ``program_name`` connection attribute. This module
imports nothing heavy: the CLI loads it on every start.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_COMMAND: ContextVar[str | None] = ContextVar("myfy_db_command", default=None)


@contextmanager
def command_name(name: str | None) -> Iterator[None]:
    """Name the connections engines open in this block after ``name`` (a myfy-db command)."""
    token = _COMMAND.set(name)
    try:
        yield
    finally:
        _COMMAND.reset(token)


def current_command() -> str | None:
    """The name :func:`command_name` set for this context, if any."""
    return _COMMAND.get()
