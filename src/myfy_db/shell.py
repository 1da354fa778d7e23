"""``myfy-db shell``: a live async session with top-level ``await``, safe to open on production.

:func:`open_shell` builds the engine, the ``session`` and the namespace (``session``,
``engine``, the SQLAlchemy verbs and every mapped class of the configured metadata).

- **Sandbox** (:attr:`ShellContext.sandbox`): the session is bound to one connection holding an
  outer transaction that is rolled back when the shell closes. The session joins it with
  ``join_transaction_mode="create_savepoint"``, so ``await session.commit()`` only releases a
  savepoint. Every other connection the engine opens meanwhile (``engine.connect()``) is made
  read-only, so nothing can escape the sandbox by going around the session.
- **Read-only**: every connection is put in each backend's own read-only mode, so the server
  refuses writes: PostgreSQL ``SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY``,
  MySQL/MariaDB ``SET SESSION TRANSACTION READ ONLY``, SQLite ``PRAGMA query_only = ON``.

:func:`run_snippet` runs code with top-level ``await`` (``-c``); :func:`interact` runs the
interactive console: the event loop runs in a worker thread, the console in the main thread,
so Ctrl-C at the prompt discards the line and Ctrl-C during a statement cancels it.
"""

from __future__ import annotations

import ast
import asyncio
import code
import concurrent.futures
import contextlib
import inspect
import os
import sys
import threading
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from myfy_db.engine import SessionFactory, create_engine, translate_errors
from myfy_db.errors import ConfigError, system_exit_status
from myfy_db.shell_errors import (
    SNIPPET_FILENAME,
    format_full_traceback,
    input_filename,
    remember_source,
)
from myfy_db.urls import redact

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, AsyncTransaction

    from myfy_db.settings import DatabaseSettings

__all__ = [
    "HISTORY_ENV",
    "ShellContext",
    "build_namespace",
    "describe_error",
    "history_path",
    "interact",
    "open_shell",
    "run_snippet",
]

HISTORY_ENV = "MYFY_DB_HISTORY_FILE"
VERBS = ("select", "insert", "update", "delete", "text", "func")
READ_ONLY_SQL = {
    "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
    "mariadb": "SET SESSION TRANSACTION READ ONLY",
    "sqlite": "PRAGMA query_only = ON",
}


@dataclass
class _ReadOnlyPolicy:
    """Which new connections are made read-only (a sandbox turns ``others`` on)."""

    all: bool = False
    others: bool = False


@dataclass
class ShellContext:
    """An open shell: engine, session, namespace; :meth:`close` ends it all."""

    engine: AsyncEngine
    session: AsyncSession
    namespace: dict[str, Any]
    sandbox: bool
    read_only: bool
    models: list[str] = field(default_factory=list)
    connection: AsyncConnection | None = None
    transaction: AsyncTransaction | None = None

    async def recover(self) -> str | None:
        """After a cancelled statement: make the session usable again; say what was lost.

        Cancelling a statement in flight invalidates its connection (the server ends that
        connection's transaction). Outside a sandbox the session's transaction is rolled
        back; in a sandbox a fresh sandbox (connection, outer transaction, session) replaces
        it. Nothing is done when the connection survived the cancellation.
        """
        from sqlalchemy import exc as sa_exc

        if self.connection is not None:
            if not self.connection.invalidated:
                return None
            await self.session.close()
            with contextlib.suppress(sa_exc.SQLAlchemyError):
                await self.connection.close()
            self.connection = await self.engine.connect()
            self.transaction = await self.connection.begin()
            self.session = SessionFactory(self.engine)(
                bind=self.connection, join_transaction_mode="create_savepoint"
            )
            self.namespace.update(session=self.session, connection=self.connection)
            return "the sandbox was reset (its earlier changes are gone); `session` is new"
        if not self.session.in_transaction():
            return None
        try:
            invalid = (await self.session.connection()).invalidated
        except sa_exc.InvalidRequestError:
            invalid = True
        if not invalid:
            return None
        await self.session.rollback()
        return "the session's transaction was rolled back (its connection was lost)"

    async def close(self) -> None:
        """Close the session, roll the sandbox back and dispose the pool (idempotent)."""
        try:
            await self.session.close()
            if self.transaction is not None and self.transaction.is_active:
                await self.transaction.rollback()
            if self.connection is not None:
                await self.connection.close()
        finally:
            self.transaction = None
            self.connection = None
            await self.engine.dispose()


def _backend(engine: AsyncEngine) -> str:
    return engine.dialect.name


def _install_listeners(engine: AsyncEngine, policy: _ReadOnlyPolicy) -> None:
    """SQLite savepoint recipe and the read-only connect hook, on ``engine``."""
    from sqlalchemy import event

    backend = _backend(engine)
    if backend == "sqlite":
        # pysqlite/aiosqlite begin transactions implicitly and break SAVEPOINT; SQLAlchemy's
        # documented recipe: let the driver emit nothing and emit our own BEGIN.
        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_no_implicit_begin(dbapi_connection: Any, record: Any) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN")

    statement = READ_ONLY_SQL.get(backend)

    @event.listens_for(engine.sync_engine, "connect")
    def _read_only(dbapi_connection: Any, record: Any) -> None:
        if statement is None or not (policy.all or policy.others):
            return
        if backend == "postgresql":
            # asyncpg's adapter would open a transaction around a plain cursor execute.
            previous = dbapi_connection.autocommit
            dbapi_connection.autocommit = True
            cursor = dbapi_connection.cursor()
            cursor.execute(statement)
            cursor.close()
            dbapi_connection.autocommit = previous
        else:
            cursor = dbapi_connection.cursor()
            cursor.execute(statement)
            cursor.close()


def build_namespace(
    engine: AsyncEngine,
    session: AsyncSession,
    models: dict[str, type[Any]],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The shell's globals: ``session``, ``engine``, the SQLAlchemy verbs, the helpers
    (``tables``, ``describe``, ``sql``, ``help``: :mod:`myfy_db.shell_helpers`) and the models."""
    import sqlalchemy

    from myfy_db.shell_helpers import make_helpers

    namespace: dict[str, Any] = {"__name__": "__shell__", "__builtins__": __builtins__}
    namespace.update({name: getattr(sqlalchemy, name) for name in VERBS})
    namespace.update(make_helpers(namespace))
    namespace.update(models)
    namespace.update(extra or {})
    namespace["engine"] = engine
    namespace["session"] = session
    return namespace


async def open_shell(
    settings: DatabaseSettings, *, sandbox: bool = False, read_only: bool = False
) -> ShellContext:
    """Connect and build the shell: session, engine, namespace (models of ``settings.metadata``).

    Checks the session's connection out up front, so an unreachable database fails here
    (exit 4) rather than in the first statement. Raises
    :class:`~myfy_db.errors.ConfigError` when the metadata cannot be imported.
    """
    models: dict[str, type[Any]] = {}
    extra: dict[str, Any] = {}
    if settings.metadata:
        from myfy_db.metadata import load_metadata

        loaded = load_metadata(settings.metadata)
        models = loaded.models
        extra["metadata"] = loaded.metadata
    url = settings.database_url
    engine = create_engine(settings)
    policy = _ReadOnlyPolicy(all=read_only)
    _install_listeners(engine, policy)
    factory = SessionFactory(engine)
    connection: AsyncConnection | None = None
    transaction: AsyncTransaction | None = None
    session: AsyncSession | None = None
    try:
        with translate_errors(url, "opening the shell"):
            if sandbox:
                connection = await engine.connect()
                transaction = await connection.begin()
                policy.others = True
                session = factory(bind=connection, join_transaction_mode="create_savepoint")
                extra["connection"] = connection
            else:
                session = factory()
                # The session's own connection, checked out now: proves the database is
                # reachable and is the connection the first statement uses.
                await session.connection()
    except BaseException:
        if session is not None:
            await asyncio.shield(session.close())
        if connection is not None:
            await asyncio.shield(connection.close())
        await asyncio.shield(engine.dispose())
        raise
    namespace = build_namespace(engine, session, models, extra)
    return ShellContext(
        engine=engine,
        session=session,
        namespace=namespace,
        sandbox=sandbox,
        read_only=read_only,
        models=list(models),
        connection=connection,
        transaction=transaction,
    )


# -- running code -----------------------------------------------------------------------

_FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


async def run_snippet(
    source: str, namespace: dict[str, Any], filename: str = SNIPPET_FILENAME
) -> Any:
    """Run ``source`` (top-level ``await`` allowed) in ``namespace``.

    Returns the value of a trailing expression, as the REPL would show it (None otherwise).
    A syntax error or whatever the code raises propagates.
    """
    remember_source(source, filename)
    tree = ast.parse(source, filename=filename, mode="exec")
    last: ast.expr | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1].value
        tree.body.pop()
    if tree.body:
        body = compile(tree, filename, "exec", flags=_FLAGS, dont_inherit=True)
        result = eval(body, namespace)
        if inspect.iscoroutine(result):
            await result
    if last is None:
        return None
    expression = compile(ast.Expression(last), filename, "eval", flags=_FLAGS, dont_inherit=True)
    value = eval(expression, namespace)
    if inspect.iscoroutine(value):
        value = await value
    return value


def describe_error(exc: BaseException, source: str | None = None) -> tuple[str, str | None]:
    """A brief account of ``exc``: one line ``Type: message``, then the server's DETAIL and
    HINT and where in the user's code (see :mod:`myfy_db.shell_errors`), or None.
    """
    from myfy_db.shell_errors import describe

    report = describe(exc, source)
    rest = [*report.details, *([report.where] if report.where else [])]
    return report.message, "\n".join(rest) if rest else None


def format_traceback_brief(exc: BaseException, source: str | None = None) -> str:
    """An error at the prompt: what failed, the server's details, the line of the input."""
    from myfy_db.shell_errors import describe

    report = describe(exc, source, place="the input")
    return "".join(line + "\n" for line in report.lines())


# -- the interactive console ------------------------------------------------------------


def history_path() -> Path:
    """Where the console keeps its history: ``$MYFY_DB_HISTORY_FILE`` or ``~/.myfy_db_history``."""
    configured = os.environ.get(HISTORY_ENV)
    return Path(configured) if configured else Path.home() / ".myfy_db_history"


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

        The first Ctrl-C cancels the statement's task; a second one (or one during plain
        synchronous code) interrupts the code where it stands.
        """
        result: concurrent.futures.Future[Any] = concurrent.futures.Future()
        state: dict[str, Any] = {"task": None}

        def settle(task: asyncio.Task[Any]) -> None:
            if task.cancelled():
                result.set_exception(KeyboardInterrupt())
            elif task.exception() is not None:
                result.set_exception(task.exception())
            else:
                result.set_result(task.result())

        def start() -> None:
            function = types.FunctionType(compiled, namespace)
            try:
                value = function()
            except BaseException as exc:
                result.set_exception(exc)
                return
            if inspect.iscoroutine(value):
                task = self.loop.create_task(value)
                state["task"] = task
                task.add_done_callback(settle)
            else:
                result.set_result(value)

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
                    if task is None or interrupts > 1:
                        self._interrupt_worker()
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
    """``code.InteractiveConsole`` with top-level ``await``; code runs on a :class:`LoopThread`."""

    def __init__(
        self,
        namespace: dict[str, Any],
        loop: LoopThread,
        after_cancel: Callable[[], str | None] | None = None,
        *,
        full_traceback: bool = False,
    ) -> None:
        super().__init__(namespace, filename=SNIPPET_FILENAME)
        self.after_cancel = after_cancel
        self.full_traceback = full_traceback
        self.source: str | None = None
        self.inputs = 0
        self.compile.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        self.runner = loop
        self.namespace = namespace

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
        try:
            self.runner.run_code(code, self.namespace)
        except SystemExit:
            raise
        except KeyboardInterrupt:
            self.write("\nKeyboardInterrupt: the statement was cancelled\n")
            if self.after_cancel is not None:
                try:
                    note = self.after_cancel()
                except Exception as exc:
                    note = f"could not recover the session: {describe_error(exc)[0]}"
                if note:
                    self.write(f"note: {note}\n")
        except BaseException as exc:
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
) -> int:
    """Run the interactive shell until ``exit()`` or Ctrl-D; returns the exit status.

    ``start()`` makes the coroutine that opens the :class:`ShellContext` (run on the shell's
    loop); ``banner`` prints the banner. On exit the session is closed, the sandbox rolled
    back and the engine disposed.
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
                full_traceback=full_traceback,
            )
            status = 0
            from myfy_db.shell_display import displayhook

            previous_hook, sys.displayhook = sys.displayhook, displayhook
            try:
                console.interact(banner="", exitmsg="")
            except SystemExit as exit_request:
                status = system_exit_status(exit_request.code)
            finally:
                sys.displayhook = previous_hook
                save_history()
        finally:
            loop.call(context.close())
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


def interact_ipython(start: Callable[[], Any], banner: Callable[[ShellContext], None]) -> int:
    """The shell in IPython (``--ipython``): its own autoawait runs on the loop we open on."""
    ipython = require_module("IPython", "--ipython")
    from IPython.core.async_helpers import get_asyncio_loop

    loop = get_asyncio_loop()
    context: ShellContext = loop.run_until_complete(start())
    try:
        banner(context)
        ipython.start_ipython(argv=[], user_ns=context.namespace, display_banner=False)
    finally:
        loop.run_until_complete(context.close())
    return 0


def interact_ptpython(
    start: Callable[[], Any], banner: Callable[[ShellContext], None], history: Path | None = None
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
            await context.close()

    asyncio.run(main())
    return 0
