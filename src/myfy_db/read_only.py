"""Whether the command running now only reads: then it must never create anything.

The CLI edge (:func:`myfy_db.cli.runtime.run`) marks the commands that only read
(``check-pool``, ``profile-pool``, ``migrate status`` and the other looks, ``shell
--read-only``, ``drop-tables --dry-run``); the engine factory then refuses a SQLite file that
does not exist (exit 4) instead of letting SQLite create an empty one. This module imports
nothing heavy: the CLI loads it on every start.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_READ_ONLY: ContextVar[bool] = ContextVar("myfy_db_read_only", default=False)


@contextmanager
def only_reading(enabled: bool = True) -> Iterator[None]:
    """Engines built in this block (when ``enabled``) never create a database file."""
    token = _READ_ONLY.set(enabled)
    try:
        yield
    finally:
        _READ_ONLY.reset(token)


def reads_only() -> bool:
    """True inside :func:`only_reading`."""
    return _READ_ONLY.get()
