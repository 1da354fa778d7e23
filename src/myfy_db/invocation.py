"""The invocation's context: what the command running now is, and what it allows.

The CLI edge (:func:`myfy_db.cli.runtime.run`) opens these blocks around each command; the
engine factory (:mod:`myfy_db.engine`) reads them when it builds an engine:

- **the command's name** (``myfy-db migrate``, ``myfy-db check-pool``) goes into PostgreSQL's
  ``application_name`` and MySQL / MariaDB's ``program_name`` connection attribute;
- **reading only**: a command that only reads (``check-pool``, ``profile-pool``, ``migrate
  status`` and the other looks, ``shell --read-only``, ``drop-tables --dry-run``) never
  creates anything, so the engine refuses a SQLite file that does not exist (exit 4) instead
  of letting SQLite create an empty one;
- **``--wait SECONDS``**: each engine's first connect is retried with backoff until the
  database accepts connections or the time is up, one line per failed attempt; each
  attempt's connect timeout is cut to what is left, so the whole wait ends with the time.
  Authentication failures and missing databases are not retried.

This module imports nothing heavy: the CLI loads it on every start.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

__all__ = [
    "WaitBudget",
    "command_name",
    "current_command",
    "current_wait",
    "only_reading",
    "reads_only",
    "waiting_for_database",
    "warn_once",
    "warnings_to",
]

# -- the command's name ----------------------------------------------------------------

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


# -- reading only ----------------------------------------------------------------------

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


# -- waiting for the database ----------------------------------------------------------

#: The first pause between attempts, doubled after each up to :data:`MAX_DELAY`.
FIRST_DELAY = 0.1
MAX_DELAY = 2.0
#: The least time a connect attempt is given, even one made at the deadline.
MIN_ATTEMPT = 0.1
#: Less than this left of the budget counts as none (timers fire a little early or late).
_NONE_LEFT = 0.01


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

    def attempt_timeout(self, connect_timeout: float) -> float:
        """How long the next connect attempt may take: ``connect_timeout`` cut to what is
        left of the budget (at least :data:`MIN_ATTEMPT`), so that the whole wait, every
        attempt included, ends with the budget."""
        return min(connect_timeout, max(MIN_ATTEMPT, self.remaining()))

    def next_delay(self) -> float:
        """The pause before the next attempt: backoff, never past the deadline; 0 when the
        budget is spent (give up)."""
        left = self.remaining()
        if left < _NONE_LEFT:
            return 0.0
        delay = min(MAX_DELAY, FIRST_DELAY * 2.0 ** max(0, self.attempts - 1))
        return min(delay, left)


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


# -- warnings the library gives once ---------------------------------------------------

_WARN: ContextVar[Callable[[str], None] | None] = ContextVar("myfy_db_warn", default=None)
_WARNED: set[str] = set()


@contextmanager
def warnings_to(report: Callable[[str], None]) -> Iterator[None]:
    """Library warnings in this block go to ``report`` (the CLI's stderr line)."""
    token = _WARN.set(report)
    try:
        yield
    finally:
        _WARN.reset(token)


def warn_once(message: str) -> None:
    """Say ``message`` once per process: to the command's reporter, or to stderr."""
    if message in _WARNED:
        return
    _WARNED.add(message)
    report = _WARN.get()
    if report is not None:
        report(message)
    else:
        import sys

        sys.stderr.write(f"warning: {message}\n")


# -- what a command leaves on a server until its cleanup runs -----------------------------

#: Notes on what exists only for this run (a scratch database), by key, until its cleanup
#: removes it: said when the process must end before that cleanup could run.
_LEFT: dict[str, str] = {}


def leaves(key: str, note: str) -> None:
    """The run has made something (``key``) it will remove; ``note`` says how to remove it
    by hand should the process end first (a hard stop on a server that stopped answering)."""
    _LEFT[key] = note


def removed(key: str) -> None:
    """What ``key`` named is gone, or its note was said: nothing more to tell."""
    _LEFT.pop(key, None)


def still_left() -> list[str]:
    """The notes of what this run made and has not removed."""
    return list(_LEFT.values())
