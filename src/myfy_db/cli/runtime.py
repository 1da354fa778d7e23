"""The edge between Typer and the library: settings, one ``asyncio.run``, error translation.

Every command calls :func:`run`; library errors become one or two lines on stderr and the
exit code from DESIGN.md here, and nowhere else.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from myfy_db.errors import ExitCode, MyfyDbError

if TYPE_CHECKING:
    from myfy_db.cli.output import Output
    from myfy_db.settings import LoadedSettings

T = TypeVar("T")


_state = {"traceback": False, "warned_url_password": False, "warned_replica_password": False}

URL_PASSWORD_WARNING = (
    "warning: a password in --url is visible to every local user in the process list; "
    "use MYFY_DATA_DATABASE_URL or --env-file instead"
)
REPLICA_PASSWORD_WARNING = (
    "warning: a password in --replica is visible to every local user in the process list; "
    "use MYFY_DATA_REPLICA_URLS or --env-file instead"
)
_invoked: dict[str, str | None] = {"command": None}


def set_traceback(enabled: bool) -> None:
    """Record the top-level ``--traceback`` flag for this invocation (which starts here)."""
    _state["traceback"] = enabled
    _state["warned_url_password"] = False
    _state["warned_replica_password"] = False


def wants_traceback() -> bool:
    """True when ``--traceback`` was given to the top-level command."""
    return _state["traceback"]


def set_invoked_command(name: str | None) -> None:
    """Record the command this invocation runs (``migrate``), to name its connections."""
    _invoked["command"] = f"myfy-db {name}" if name else None


def load(
    url: str | None = None,
    env_file: Path | None = None,
    *,
    warn_unknown: bool = True,
    replicas: list[str] | None = None,
    **flags: Any,
) -> LoadedSettings:
    """Effective settings: command-line flags over environment, ``.env`` and pyproject.

    A ``MYFY_DATA_*`` name that is no setting (a typo) is warned about on stderr, once per
    process (``config`` reports them as errors instead: ``warn_unknown=False``). A password
    in ``--url`` or in a ``--replica`` (``replicas``, given for this warning only) is warned
    about once: the command line is visible to every local user.

    Loading them ends the start-up of a ``myfy-db`` process (see :mod:`myfy_db.cli.process`):
    a command imports what it needs first, and what runs after this (the user's modules, the
    work itself) runs with the cyclic garbage collector on.
    """
    from myfy_db.cli.lifecycle import resume_gc
    from myfy_db.settings import load_settings
    from myfy_db.urls import redact

    if url is not None and not _state["warned_url_password"]:
        from myfy_db.urls import url_has_password

        if url_has_password(url):
            _state["warned_url_password"] = True
            print(URL_PASSWORD_WARNING, file=sys.stderr, flush=True)
    if replicas and not _state["warned_replica_password"]:
        from myfy_db.urls import url_has_password

        if any(url_has_password(replica) for replica in replicas):
            _state["warned_replica_password"] = True
            print(REPLICA_PASSWORD_WARNING, file=sys.stderr, flush=True)

    overrides: Mapping[str, Any] = {"database_url": url, **flags}
    try:
        loaded = load_settings(overrides, env_file)
    finally:
        resume_gc()
    for unknown in loaded.unknown if warn_unknown else ():
        if unknown.name not in _warned:
            _warned.add(unknown.name)
            print(f"warning: {redact(str(unknown))}", file=sys.stderr)
    return loaded


_warned: set[str] = set()


def run(
    action: Callable[[Output], Awaitable[None] | None],
    *,
    json_mode: bool = False,
    command: str | None = None,
    read_only: bool = False,
) -> None:
    """Run one command's ``action`` and translate whatever it raises, once, at the edge.

    The connections the action opens are named after ``command`` (default: the command
    invoked, e.g. ``myfy-db check-pool``; see :func:`set_invoked_command`). A command that
    only reads says ``read_only``: its engines never create a SQLite file (exit 4 instead).
    """
    import inspect
    import traceback

    from myfy_db.cli.output import Output
    from myfy_db.cli.signals import Terminate, run_coroutine, signals_unwind
    from myfy_db.errors import Interrupted
    from myfy_db.invocation import command_name, only_reading, waiting_for_database, warnings_to
    from myfy_db.urls import redact

    show_trace = wants_traceback()
    _no_pool_tracebacks()

    def hard_stop(error: MyfyDbError) -> None:
        # The interrupted run would not end in time: report it, and what its cleanup could
        # not remove (a scratch database), and end the process here.
        from myfy_db.cli.lifecycle import exit_now
        from myfy_db.invocation import still_left

        for note in still_left():
            out.warn(note)
        out.error(error)
        exit_now(int(error.exit_code))

    stdout = sys.stdout
    sys.stdout = _ReaderMayLeave(stdout)
    out = Output(json_mode=json_mode)
    try:
        with (
            signals_unwind(),
            command_name(command or _invoked["command"]),
            only_reading(read_only),
            waiting_for_database(_wait_option(), out.info),
            warnings_to(out.warn),
        ):
            try:
                result = action(out)
                if inspect.isawaitable(result):
                    run_coroutine(_as_coroutine(result), hard_stop)
            except KeyboardInterrupt:  # SIGINT outside the event loop
                raise Interrupted("SIGINT") from None
            except Terminate:  # SIGTERM outside the event loop
                raise Interrupted("SIGTERM") from None
    except MyfyDbError as error:
        if show_trace and not isinstance(error, Interrupted):
            sys.stderr.write(redact(traceback.format_exc()))
        out.error(error)
        raise typer.Exit(int(error.exit_code)) from None
    except BrokenPipeError:
        # A closed pipe the wrapper did not see (another stream): the rule below still holds.
        _silence_stdout()
        raise typer.Exit(int(ExitCode.OK)) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        if show_trace:
            sys.stderr.write(redact(traceback.format_exc()))
        detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        message = f"unexpected {type(exc).__name__}" + (f": {detail}" if detail else "")
        out.error(MyfyDbError(message, hint="run again with --traceback for the details"))
        raise typer.Exit(int(ExitCode.FAILED)) from None
    finally:
        if sys.stdout.__class__ is _ReaderMayLeave:
            sys.stdout = stdout


class _ReaderMayLeave:
    """stdout for one command, after the rule for a reader that goes away (``| head -1``):
    the output it no longer reads is dropped, and the command finishes its work and exits
    with its own exit code, saying nothing about the lost output (README, "Exit codes")."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return int(self._stream.write(text))
            except BrokenPipeError:
                self._reader_left()
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._reader_left()

    def _reader_left(self) -> None:
        self._gone = True
        _silence_stdout()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _wait_option() -> float | None:
    """``--wait SECONDS`` of the command running (or of a group it belongs to), if given.

    Declared once (:class:`myfy_db.cli.options.ConnectingCommand`) on every command that
    connects; read here, so every command's connections wait the same way, through the
    engine factory.
    """
    import importlib

    from myfy_db.cli.options import WAIT_KEY

    try:  # Typer vendors Click; older Typers depend on Click itself
        globals_module = importlib.import_module("typer._click.globals")
    except ImportError:
        globals_module = importlib.import_module("click.globals")
    ctx: Any = globals_module.get_current_context(silent=True)
    value = None if ctx is None else ctx.meta.get(WAIT_KEY)
    return None if value is None else float(value)


def _no_pool_tracebacks() -> None:
    """Keep SQLAlchemy's pool from printing tracebacks on stderr.

    It logs a failed reset or close of a connection (``Exception during reset or similar``)
    with a traceback, which Python's last-resort handler prints when no logging is set up.
    Such a connection is already broken, and the error that broke it is what the command
    reports, in one line.
    """
    import logging

    pool_log = logging.getLogger("sqlalchemy.pool")
    if not pool_log.handlers:
        pool_log.addHandler(logging.NullHandler())


def _silence_stdout() -> None:
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


def fail_usage(message: str) -> None:
    """Stop with a usage error (exit 2)."""
    from myfy_db.urls import redact

    print(f"Error: {redact(message)}", file=sys.stderr)
    raise typer.Exit(int(ExitCode.USAGE))
