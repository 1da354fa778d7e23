"""The interactive console: the event loop runs in a worker thread, the console in the main
thread, so Ctrl-C at the prompt discards the line and Ctrl-C during a statement cancels it.
IPython and ptpython are offered when installed.
"""

from __future__ import annotations

import ast
import asyncio
import code
import concurrent.futures
import contextlib
import os
import sys
import threading
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from myfy_db.errors import ConfigError, system_exit_status
from myfy_db.shell.errors import (
    SNIPPET_FILENAME,
    format_full_traceback,
    input_filename,
    remember_source,
)
from myfy_db.shell.running import describe_error, format_traceback_brief, run_bridged
from myfy_db.shell.sandbox import (
    SandboxOutcome,
    StatementRefused,
)
from myfy_db.shell.session import DIRTY_PROMPT, HISTORY_ENV, PROMPT, ShellContext
from myfy_db.urls import redact

if TYPE_CHECKING:
    pass

# -- the interactive console ------------------------------------------------------------


def history_path() -> Path:
    """Where the console keeps its history: ``$MYFY_DB_HISTORY_FILE`` or ``~/.myfy_db_history``."""
    configured = os.environ.get(HISTORY_ENV)
    return Path(configured) if configured else Path.home() / ".myfy_db_history"


@dataclass
class _Exit:
    """``exit()`` called by the code, carried out of its task."""

    request: SystemExit


class LoopThread:
    """An event loop running in a worker thread; code is submitted from the main thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="myfy-db-shell-loop", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        while True:
            try:
                self.loop.run_forever()
            except KeyboardInterrupt:  # an interrupt delivered to a statement's task
                continue
            break

    def call(self, coroutine: Any) -> Any:
        """Run ``coroutine`` on the loop and wait for its result (Ctrl-C cancels it)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        while True:
            try:
                return future.result()
            except KeyboardInterrupt:
                future.cancel()

    def run_code(self, compiled: types.CodeType, namespace: dict[str, Any]) -> Any:
        """Run compiled console input on the loop; Ctrl-C cancels it, not the shell.

        Ctrl-C cancels the statement's task; when plain Python code is still running 0.3 s
        later (it never reached an ``await``), it is interrupted where it stands.
        """
        result: concurrent.futures.Future[Any] = concurrent.futures.Future()
        state: dict[str, Any] = {"task": None}

        def settle(task: asyncio.Task[Any]) -> None:
            if task.cancelled():
                result.set_exception(KeyboardInterrupt())
            elif task.exception() is not None:
                result.set_exception(task.exception())
            elif isinstance(task.result(), _Exit):
                result.set_exception(task.result().request)
            else:
                result.set_result(task.result())

        async def contained(function: Callable[[], Any]) -> Any:
            # exit() must not escape the task: asyncio re-raises SystemExit out of the loop.
            try:
                return await run_bridged(function)
            except SystemExit as request:
                return _Exit(request)

        def start() -> None:
            function = types.FunctionType(compiled, namespace)
            task = self.loop.create_task(contained(function))
            state["task"] = task
            task.add_done_callback(settle)

        self.loop.call_soon_threadsafe(start)
        interrupts = 0
        try:
            while True:
                try:
                    return result.result()
                except KeyboardInterrupt:
                    if result.done():
                        raise
                    interrupts += 1
                    task = state["task"]
                    if task is not None:
                        self.loop.call_soon_threadsafe(task.cancel)
                        with contextlib.suppress(concurrent.futures.TimeoutError):
                            result.exception(timeout=0.3)  # the task reached an await
                    if not result.done():
                        self._interrupt_worker()  # plain Python code: interrupt it
        finally:
            if interrupts:
                self._clear_interrupt()

    def _interrupt_worker(self) -> None:
        import ctypes

        ident = self._thread.ident
        if ident is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt)
            )

    def _clear_interrupt(self) -> None:
        import ctypes

        ident = self._thread.ident
        if ident is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)

    def stop(self) -> None:
        """Stop the loop and wait for the thread; then close the loop."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class ShellConsole(code.InteractiveConsole):
    """``code.InteractiveConsole`` with top-level ``await``; code runs on a :class:`LoopThread`.

    Before each input ``before_input()`` sets the savepoint a failed input falls back to;
    after it ``after_input(failed)`` recovers from a failure, ends a transaction that only
    read and says whether uncommitted changes are held (and a note); the prompt shows them
    (:data:`DIRTY_PROMPT`).
    """

    def __init__(
        self,
        namespace: dict[str, Any],
        loop: LoopThread,
        after_cancel: Callable[[], str | None] | None = None,
        after_input: Callable[[bool], tuple[bool, str | None]] | None = None,
        *,
        before_input: Callable[[], None] | None = None,
        full_traceback: bool = False,
    ) -> None:
        super().__init__(namespace, filename=SNIPPET_FILENAME)
        self.after_cancel = after_cancel
        self.after_input = after_input
        self.before_input = before_input
        self.failed = False
        self.full_traceback = full_traceback
        self.source: str | None = None
        self.inputs = 0
        self.compile.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        self.runner = loop
        self.namespace = namespace

    def raw_input(self, prompt: str = "") -> str:
        """A line of input. Code piped in (stdin not a terminal) is read without prompts:
        stdout carries what the code prints, never ``>>> ``."""
        if sys.stdin is not None and not sys.stdin.isatty():
            line = sys.stdin.readline()
            if not line:
                raise EOFError
            return line.rstrip("\n")
        return super().raw_input(prompt)

    def runsource(self, source: str, filename: str = "<input>", symbol: str = "single") -> bool:
        # Each input is its own "file", kept for tracebacks: a function defined in an earlier
        # input still shows its own lines.
        self.source = source
        filename = input_filename(self.inputs + 1)
        remember_source(source, filename)
        more = super().runsource(source, filename, symbol)
        if not more:
            self.inputs += 1
        return more

    def runcode(self, code: types.CodeType) -> None:
        self.failed = False
        try:
            if self.before_input is not None:
                self.before_input()
            self._run(code)
        finally:
            self.prompt()

    def prompt(self) -> None:
        """Set the prompt from the session's state (uncommitted changes or not)."""
        if self.after_input is None:
            return
        try:
            dirty, note = self.after_input(self.failed)
        except Exception as exc:
            self.write(f"note: could not end the read transaction: {describe_error(exc)[0]}\n")
            dirty, note = True, None
        if note:
            self.write(f"note: {note}\n")
        sys.ps1 = DIRTY_PROMPT if dirty else PROMPT

    def _run(self, code: types.CodeType) -> None:
        try:
            self.runner.run_code(code, self.namespace)
        except SystemExit:
            raise
        except KeyboardInterrupt:
            self.failed = True
            self.write("\nKeyboardInterrupt: the statement was cancelled\n")
            if self.after_cancel is not None:
                try:
                    note = self.after_cancel()
                except Exception as exc:
                    note = f"could not recover the session: {describe_error(exc)[0]}"
                if note:
                    self.write(f"note: {note}\n")
        except StatementRefused as refused:
            self.failed = True
            self.write(f"{refused}\n")
        except BaseException as exc:
            self.failed = True
            if self.full_traceback:
                self.write(format_full_traceback(exc))
            else:
                self.write(format_traceback_brief(exc, self.source))

    def showsyntaxerror(self, filename: str | None = None, **kwargs: Any) -> None:
        _, value, _ = sys.exc_info()
        if value is not None:
            self.write(redact("".join(traceback.format_exception_only(type(value), value))))


def _setup_readline(namespace: dict[str, Any], history: Path) -> Callable[[], None]:
    """History from ``history`` and tab completion over ``namespace``; returns the saver."""
    try:
        import readline
        import rlcompleter
    except ImportError:
        return lambda: None
    readline.set_completer(rlcompleter.Completer(namespace).complete)
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")
    try:
        if history.exists():
            readline.read_history_file(history)
    except OSError:
        pass
    readline.set_history_length(10_000)

    def save() -> None:
        try:
            history.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(history)
        except OSError:
            pass

    return save


def interact(
    start: Callable[[], Any],
    banner: Callable[[ShellContext], None],
    *,
    history: Path | None = None,
    full_traceback: bool = False,
    closed: Callable[[SandboxOutcome | None], None] | None = None,
) -> int:
    """Run the interactive shell until ``exit()`` or Ctrl-D; returns the exit status.

    ``start()`` makes the coroutine that opens the :class:`ShellContext` (run on the shell's
    loop); ``banner`` prints the banner. On exit the session is closed, the sandbox rolled
    back and the engine disposed; ``closed`` is told what the server held.
    """
    loop = LoopThread()
    try:
        context: ShellContext = loop.call(start())
        try:
            banner(context)
            save_history = _setup_readline(context.namespace, history or history_path())
            console = ShellConsole(
                context.namespace,
                loop,
                lambda: loop.call(context.recover()),
                lambda failed: loop.call(context.settle(failed)),
                before_input=lambda: loop.call(context.before_input()),
                full_traceback=full_traceback,
            )
            status = 0
            from myfy_db.shell.display import displayhook

            previous_hook, sys.displayhook = sys.displayhook, displayhook
            console.prompt()
            try:
                console.interact(banner="", exitmsg="")
            except SystemExit as exit_request:
                status = system_exit_status(exit_request.code)
            finally:
                sys.displayhook = previous_hook
                save_history()
                sys.ps1 = PROMPT
        finally:
            outcome = loop.call(context.close())
        if closed is not None:
            closed(outcome)
    finally:
        loop.stop()
    return status


def require_module(name: str, flag: str) -> Any:
    """Import an optional REPL (IPython, ptpython) or fail with exit 2 naming the package."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        package = {"IPython": "ipython", "ptpython": "ptpython"}.get(name, name)
        raise ConfigError(
            f"{flag} needs the {package} package, which is not installed",
            hint=f"pip install {package}, or leave out {flag} to use the standard shell",
        ) from None


def interact_ipython(
    start: Callable[[], Any],
    banner: Callable[[ShellContext], None],
    closed: Callable[[SandboxOutcome | None], None] | None = None,
) -> int:
    """The shell in IPython (``--ipython``): its own autoawait runs on the loop we open on."""
    ipython = require_module("IPython", "--ipython")
    from IPython.core.async_helpers import get_asyncio_loop

    loop = get_asyncio_loop()
    context: ShellContext = loop.run_until_complete(start())
    try:
        banner(context)
        ipython.start_ipython(argv=[], user_ns=context.namespace, display_banner=False)
    finally:
        outcome = loop.run_until_complete(context.close())
    if closed is not None:
        closed(outcome)
    return 0


def interact_ptpython(
    start: Callable[[], Any],
    banner: Callable[[ShellContext], None],
    history: Path | None = None,
    closed: Callable[[SandboxOutcome | None], None] | None = None,
) -> int:
    """The shell in ptpython (``--ptpython``), embedded in our event loop."""
    require_module("ptpython", "--ptpython")
    from ptpython.repl import embed

    async def main() -> None:
        context: ShellContext = await start()
        try:
            banner(context)
            await embed(
                globals=context.namespace,
                return_asyncio_coroutine=True,
                patch_stdout=True,
                history_filename=str(history or history_path()),
            )
        finally:
            outcome = await context.close()
        if closed is not None:
            closed(outcome)

    asyncio.run(main())
    return 0
