"""The error hierarchy of myfy-db.

Every failure the library can report is a :class:`MyfyDbError` carrying the exit code from
the product contract (DESIGN.md, "Exit codes"). The command-line layer turns one into a short
message on stderr and that exit code, in exactly one place (``myfy_db.cli.runtime``).

This module imports nothing heavy: the CLI loads it on every start.
"""

from __future__ import annotations

import sys
from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes, as documented in DESIGN.md."""

    OK = 0
    FAILED = 1
    USAGE = 2
    REFUSED = 3
    CANNOT_CONNECT = 4
    CHECK_FAILED = 5
    INTERRUPTED = 130
    TERMINATED = 143


class MyfyDbError(Exception):
    """Base of every error myfy-db reports.

    ``message`` is one line saying what failed; ``hint`` is an optional second line saying
    what to do about it.
    """

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n{self.hint}"


class OperationFailed(MyfyDbError):
    """The operation itself failed: a statement or a migration raised (exit 1)."""

    exit_code = ExitCode.FAILED


class ConfigError(MyfyDbError):
    """Usage or configuration error: bad flag, bad URL, invalid setting (exit 2)."""

    exit_code = ExitCode.USAGE


class Refused(MyfyDbError):
    """Refused: production guard, confirmation declined, no terminal (exit 3)."""

    exit_code = ExitCode.REFUSED


class CannotConnect(MyfyDbError):
    """The database cannot be reached or would not let us in (exit 4)."""

    exit_code = ExitCode.CANNOT_CONNECT


class CheckFailed(MyfyDbError):
    """A check found something: pending migrations, drift, shortfall, latency (exit 5).

    Commands render their report first, then raise this so the process exits 5.
    """

    exit_code = ExitCode.CHECK_FAILED


class Interrupted(MyfyDbError):
    """The run was stopped by a signal: SIGINT (exit 130) or SIGTERM (exit 143)."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, signal_name: str = "SIGINT") -> None:
        terminated = signal_name == "SIGTERM"
        super().__init__(f"{'terminated' if terminated else 'interrupted'} ({signal_name})")
        self.signal_name = signal_name
        self.exit_code = ExitCode.TERMINATED if terminated else ExitCode.INTERRUPTED


def system_exit_status(code: object) -> int:
    """The exit status the interpreter gives ``SystemExit(code)``.

    None is 0 and an int is itself; anything else is printed to stderr (passwords removed)
    and is 1.
    """
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    from myfy_db.urls import redact

    print(redact(str(code)), file=sys.stderr)
    return 1
