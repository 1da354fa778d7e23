"""``--wait SECONDS``: retry connecting until the database accepts connections.

The CLI edge (:func:`myfy_db.cli.runtime.run`) opens a :func:`waiting_for_database` block
for a command given ``--wait``; the engine factory (:func:`myfy_db.engine.create_engine`)
reads it and retries each engine's first connect with backoff until it succeeds or the time
is up, reporting one line per failed attempt. Authentication failures and missing databases
are not retried. This module imports nothing heavy: the CLI loads it on every start.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

__all__ = ["WaitBudget", "current_wait", "waiting_for_database"]

#: The first pause between attempts, doubled after each up to :data:`MAX_DELAY`.
FIRST_DELAY = 0.1
MAX_DELAY = 2.0


@dataclass
class WaitBudget:
    """How long a command may wait for its database, and where to say it is waiting."""

    seconds: float
    report: Callable[[str], None]
    #: Set by the first connect attempt: the time counts from there, not from start-up.
    deadline: float | None = None
    attempts: int = 0
    #: Targets (host:port/database) that have accepted a connection: no more waiting there.
    ready: set[str] = field(default_factory=set)

    def begin(self) -> None:
        """A connect attempt starts: the first one starts the clock."""
        if self.deadline is None:
            self.deadline = time.monotonic() + self.seconds

    def remaining(self) -> float:
        self.begin()
        assert self.deadline is not None
        return max(0.0, self.deadline - time.monotonic())

    def next_delay(self) -> float:
        """The pause before the next attempt: backoff, never past the deadline."""
        delay = min(MAX_DELAY, FIRST_DELAY * 2.0 ** max(0, self.attempts - 1))
        return min(delay, self.remaining())


_WAIT: ContextVar[WaitBudget | None] = ContextVar("myfy_db_wait", default=None)


@contextmanager
def waiting_for_database(
    seconds: float | None, report: Callable[[str], None]
) -> Iterator[WaitBudget | None]:
    """Engines built in this block wait up to ``seconds`` for their database (None: not)."""
    budget = None if seconds is None else WaitBudget(seconds, report)
    token = _WAIT.set(budget)
    try:
        yield budget
    finally:
        _WAIT.reset(token)


def current_wait() -> WaitBudget | None:
    """The budget :func:`waiting_for_database` set for this context, if any."""
    return _WAIT.get()
