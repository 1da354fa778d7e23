"""The one output layer: rich for people, one JSON document for machines.

With ``--json`` stdout carries exactly one JSON document and nothing else; progress, prose
and errors go to stderr. Without it, reports go to stdout as rich tables. Everything written
passes through :func:`myfy_db.urls.redact`, so no registered password can reach the screen.
Rich is imported on first use, keeping the CLI's start-up light.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import IO, TYPE_CHECKING, Any

from myfy_db.errors import MyfyDbError
from myfy_db.urls import redact

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


class _RedactingStream:
    """A text stream that removes registered secrets from everything written to it."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(redact(text))

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", "utf-8") or "utf-8"


def _plain(console: Console | None, stream: IO[str]) -> bool:
    """True when text for ``stream`` goes out as it is: not a terminal, and no rich console
    made for it yet (whose output it would then interleave with)."""
    return console is None and not stream.isatty()


#: The width a report is laid out for when stdout is not a terminal (a pipe, a CI log): wide
#: enough that no cell is ever cut with an ellipsis; a table still takes only what it needs.
PIPE_WIDTH = 100_000


def to_json(document: Any) -> str:
    """Serialise ``document`` the way every ``--json`` output is serialised."""
    return json.dumps(document, indent=2, default=str, ensure_ascii=False)


class Output:
    """Where a command's results, progress and errors go."""

    def __init__(self, json_mode: bool = False) -> None:
        self.json_mode = json_mode
        self.emitted = False
        self._out: Console | None = None
        self._err: Console | None = None

    @property
    def out(self) -> Console:
        """The console for human reports (stdout)."""
        if self._out is None:
            from rich.console import Console

            # Off a terminal nothing is cut to fit: a CI step that pipes a report must
            # see every value whole (COLUMNS and the 80-column default are for terminals).
            width = None if sys.stdout.isatty() else PIPE_WIDTH
            self._out = Console(
                file=_RedactingStream(sys.stdout),  # type: ignore[arg-type]
                highlight=False,
                width=width,
            )
        return self._out

    @property
    def err(self) -> Console:
        """The console for progress, warnings and errors (stderr)."""
        if self._err is None:
            from rich.console import Console

            self._err = Console(file=_RedactingStream(sys.stderr), highlight=False)  # type: ignore[arg-type]
        return self._err

    def emit(self, document: Mapping[str, Any], human: Callable[[Console], None]) -> None:
        """Render a command's result: ``document`` as JSON, or ``human`` onto stdout."""
        if self.json_mode:
            if self.emitted:
                raise RuntimeError("a command may emit only one JSON document")
            sys.stdout.write(redact(to_json(document)) + "\n")
            sys.stdout.flush()
        else:
            human(self.out)
        self.emitted = True

    def emit_text(self, document: Mapping[str, Any], lines: Sequence[str | Table]) -> None:
        """Render a result that reads as lines of text (and tables): ``document`` as JSON,
        else ``lines`` on stdout, taken literally (no markup).

        Off a terminal, text alone needs no rich: each line is written as it is, which keeps
        a scripted or CI run (``myfy-db migrate`` in a deploy job) from importing rich just
        to print its summary. A table, or a terminal, goes through rich.
        """
        texts = [line for line in lines if isinstance(line, str)]
        if not self.json_mode and len(texts) == len(lines) and _plain(self._out, sys.stdout):
            sys.stdout.write("".join(redact(line) + "\n" for line in texts))
            sys.stdout.flush()
            self.emitted = True
            return

        def human(console: Console) -> None:
            for line in lines:
                if isinstance(line, str):
                    console.print(line, soft_wrap=True, markup=False, emoji=False)
                else:
                    console.print(line)

        self.emit(document, human)

    def emit_line(self, document: Mapping[str, Any], line: str) -> None:
        """One record of a stream (``--watch``): a compact JSON object on its own line under
        ``--json`` (JSON Lines), else ``line`` as plain text; stdout, flushed at once."""
        if self.json_mode:
            text = json.dumps(document, default=str, ensure_ascii=False, separators=(",", ":"))
        else:
            text = line
        sys.stdout.write(redact(text) + "\n")
        sys.stdout.flush()
        self.emitted = True

    def _say(self, message: str, style: str | None = None) -> None:
        """One line on stderr: styled by rich on a terminal, plain text otherwise.

        Plain text needs no rich, which keeps CI and scripted runs from importing it just
        to print a progress line.
        """
        if _plain(self._err, sys.stderr):
            sys.stderr.write(redact(message) + "\n")
            sys.stderr.flush()
            return
        self.err.print(message, style=style, markup=False, highlight=False, soft_wrap=True)

    def info(self, message: str) -> None:
        """A line of prose or progress on stderr."""
        self._say(message)

    def warn(self, message: str) -> None:
        """A warning on stderr."""
        self._say(f"warning: {message}", "yellow")

    def error(self, error: MyfyDbError) -> None:
        """Report ``error``: a line (and an optional hint) on stderr; a JSON document too."""
        if self.json_mode and not self.emitted:
            document = {
                "error": {
                    "type": type(error).__name__,
                    "message": error.message,
                    "hint": error.hint,
                    "exit_code": int(error.exit_code),
                }
            }
            with suppress(OSError):  # stdout itself may be what failed (a full disk)
                sys.stdout.write(redact(to_json(document)) + "\n")
            self.emitted = True
        self._say(f"Error: {error.message}", "bold red")
        if error.hint:
            self._say(error.hint)

    @contextmanager
    def status(self, message: str) -> Iterator[None]:
        """A spinner on stderr while the block runs (only on a terminal)."""
        if not sys.stderr.isatty():
            yield
            return
        with self.err.status(message):
            yield


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A rich table in the house style."""
    from rich.table import Table

    result = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        result.add_column(column)
    for row in rows:
        result.add_row(*("" if cell is None else str(cell) for cell in row))
    return result
