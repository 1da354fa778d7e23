"""How the shell reports an error: the user's own line and the server's message, not a library's.

An exception raised by code typed in the shell (``-c`` or at the prompt) is reduced to:

- what failed: the driver's own exception and message (the server's refusal), not
  SQLAlchemy's wrapper with its SQL and parameters;
- the server's ``DETAIL`` and ``HINT`` when it sent them (PostgreSQL);
- where: the last line of the user's code on the traceback. Only frames of code compiled
  from the user's input count (their file name is the shell's own, ``<shell>``); frames of
  code that libraries generate at run time (``<string>``, ``<generated>``) never do.

This module imports nothing heavy.
"""

from __future__ import annotations

import linecache
import traceback
from typing import Any

from myfy_db.driver_errors import driver_exception, own_mysql_code
from myfy_db.urls import redact

__all__ = [
    "SNIPPET_FILENAME",
    "ErrorReport",
    "describe",
    "format_full_traceback",
    "input_filename",
    "is_user_code",
    "remember_source",
    "user_frames",
]

SNIPPET_FILENAME = "<shell>"
_INPUT_PREFIX = "<shell-input-"


class ErrorReport:
    """What the shell says about an error: ``message``, server ``details``, ``where``.

    (A plain class: the module loads with every shell, and a dataclass costs start-up time.)
    """

    def __init__(
        self, message: str, details: tuple[str, ...] = (), where: str | None = None
    ) -> None:
        self.message = message
        self.details = details
        self.where = where

    def lines(self) -> list[str]:
        """The report as lines: the message, then the details, then where."""
        return [self.message, *self.details, *([self.where] if self.where else [])]


def remember_source(source: str, filename: str = SNIPPET_FILENAME) -> None:
    """Make ``source`` the text of ``filename`` for tracebacks (linecache)."""
    lines = [line if line.endswith("\n") else line + "\n" for line in source.splitlines()]
    linecache.cache[filename] = (len(source), None, lines, filename)


def _message_of(exc: BaseException) -> str:
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    # PyMySQL/aiomysql: args are (code, message).
    code = own_mysql_code(exc)
    if code is not None and len(args) == 2 and isinstance(args[1], str):
        return f"({code}) {args[1]}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _server_details(exc: BaseException) -> tuple[str, ...]:
    details: list[str] = []
    for label in ("detail", "hint"):
        value = getattr(exc, label, None)
        if isinstance(value, str) and value.strip():
            details.append(f"{label.upper()}: {value.strip()}")
    return tuple(details)


def input_filename(number: int) -> str:
    """The file name of the interactive shell's ``number``-th input."""
    return f"{_INPUT_PREFIX}{number}>"


def is_user_code(filename: str) -> bool:
    """True for code compiled from what the user typed (``-c`` or an interactive input)."""
    return filename == SNIPPET_FILENAME or (
        filename.startswith(_INPUT_PREFIX) and filename[len(_INPUT_PREFIX) : -1].isdigit()
    )


def user_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    """The frames of ``exc``'s traceback that ran the user's own code."""
    return [f for f in traceback.extract_tb(exc.__traceback__) if is_user_code(f.filename)]


def describe(
    exc: BaseException,
    source: str | None = None,
    *,
    place: str = "the code",
) -> ErrorReport:
    """An :class:`ErrorReport` for ``exc`` raised by the user's ``source``."""
    shown = driver_exception(exc)
    first = _message_of(shown)
    message = f"{type(shown).__name__}: {first}" if first else type(shown).__name__
    where = None
    frames = user_frames(exc)
    if frames:
        frame = frames[-1]
        line = (frame.line or "").strip()
        if not line and source is not None and frame.lineno:
            lines = source.splitlines()
            line = lines[frame.lineno - 1].strip() if frame.lineno <= len(lines) else ""
        where = f"at line {frame.lineno} of {place}" + (f": {line}" if line else "")
    return ErrorReport(
        redact(message),
        tuple(redact(d) for d in _server_details(shown)),
        redact(where) if where else None,
    )


def format_full_traceback(exc: BaseException) -> str:
    """The whole traceback (``--traceback``), passwords removed."""
    return redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
