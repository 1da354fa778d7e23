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
from myfy_db.sandbox import (
    Policy,
    SandboxOutcome,
    StatementRefused,
    end_sandbox,
    install,
    open_sandbox,
)
from myfy_db.settings import is_protected_environment
from myfy_db.shell_errors import (
    SNIPPET_FILENAME,
    format_full_traceback,
    input_filename,
    remember_source,
)
from myfy_db.urls import redact

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, AsyncTransaction

    from myfy_db.guard import EnvironmentRecord
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
PROMPT = ">>> "
#: The prompt while the session holds uncommitted changes (and so, on the server, locks).
DIRTY_PROMPT = "myfy-db*> "
VERBS = ("select", "insert", "update", "delete", "text", "func")
READ_ONLY_SQL = {
    "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
    "mariadb": "SET SESSION TRANSACTION READ ONLY",
    "sqlite": "PRAGMA query_only = ON",
}


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
    marker: AsyncTransaction | None = None
    policy: Policy = field(default_factory=Policy)
    #: The database's own record (``myfy_db_meta``), when it has one.
    record: EnvironmentRecord | None = None
    #: The record is a protected environment (and the override is not set).
    record_protected: bool = False

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
            with self.policy.allowed():
                await self.session.close()
                with contextlib.suppress(sa_exc.SQLAlchemyError):
                    await self.connection.close()
            self.policy.sealed = False
            self.connection, self.transaction, self.marker = await open_sandbox(
                self.engine, self.policy
            )
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

    @property
    def dirty(self) -> bool:
        """Changes not yet committed: pending objects, or statements that wrote or lock."""
        session = self.session
        return bool(session.new or session.dirty or session.deleted) or (
            self.policy.wrote and session.in_transaction()
        )

    async def settle(self) -> bool:
        """Between inputs: end a transaction that only read, so the shell holds nothing.

        Outside a sandbox, a session whose transaction wrote nothing is committed (with
        ``expire_on_commit=False`` its objects stay loaded and usable); one holding changes
        is left alone. Returns True when uncommitted changes are held (the prompt shows it).
        """
        if self.sandbox:
            return False
        from sqlalchemy import exc as sa_exc

        if self.dirty:
            return True
        if self.session.in_transaction():
            try:
                await self.session.commit()
            except sa_exc.SQLAlchemyError:  # a statement failed: its transaction is void
                await self.session.rollback()
        return False

    async def close(self) -> SandboxOutcome | None:
        """Close the session, roll the sandbox back and dispose the pool (idempotent).

        In a sandbox, returns what the server held when it was rolled back.
        """
        from sqlalchemy import exc as sa_exc

        outcome = None
        try:
            with self.policy.allowed():
                if self.connection is None:
                    await self.session.close()
                else:  # a savepoint lost here is what end_sandbox reports
                    with contextlib.suppress(sa_exc.SQLAlchemyError):
                        await self.session.close()
            if self.connection is not None:
                outcome = await end_sandbox(
                    self.connection, self.transaction, self.marker, self.policy
                )
        finally:
            self.transaction = None
            self.connection = None
            self.marker = None
            await self.engine.dispose()
        return outcome


def _backend(engine: AsyncEngine) -> str:
    return engine.dialect.name


def _install_listeners(engine: AsyncEngine, policy: Policy) -> None:
    """SQLite savepoint recipe, the read-only connect hook and the statement checks."""
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
            with policy.allowed():
                connection.exec_driver_sql("BEGIN")

    statement = READ_ONLY_SQL.get(backend)

    @event.listens_for(engine.sync_engine, "connect")
    def _read_only(dbapi_connection: Any, record: Any) -> None:
        if statement is None or not policy.read_only:
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

    install(engine, policy)


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


def record_is_protected(record: EnvironmentRecord | None, settings: DatabaseSettings) -> bool:
    """True when the database's record names a protected environment."""
    if record is None:
        return False
    if getattr(record, "protected", False) is True:
        return True
    return is_protected_environment(record.environment, settings.protected_environments)


async def read_database_record(
    settings: DatabaseSettings,
) -> tuple[EnvironmentRecord | None, str]:
    """The database's record (``myfy_db_meta``) and its name as the server reports it, read
    on a connection of its own."""
    from sqlalchemy import Connection

    from myfy_db.guard import read_record, server_database_name

    def read(connection: Connection) -> tuple[EnvironmentRecord | None, str]:
        return read_record(connection), server_database_name(connection)

    engine = create_engine(settings)
    try:
        with translate_errors(settings.database_url, "opening the shell"):
            async with engine.connect() as connection:
                return await connection.run_sync(read)
    finally:
        await asyncio.shield(engine.dispose())


async def open_shell(
    settings: DatabaseSettings,
    *,
    sandbox: bool = False,
    read_only: bool = False,
    choose: Callable[[EnvironmentRecord | None], bool] | None = None,
) -> ShellContext:
    """Connect and build the shell: session, engine, namespace (models of ``settings.metadata``).

    Reads the database's record (``myfy_db_meta``) first; ``choose(record)``, when given,
    decides whether the shell is sandboxed (the CLI's guard rule), else ``sandbox`` does.
    The connection that read the record proves the database reachable, so an unreachable
    one fails here (exit 4) rather than in the first statement. Raises
    :class:`~myfy_db.errors.ConfigError` when the metadata cannot be imported.
    """
    from myfy_db.guard import override_enabled, read_record

    models: dict[str, type[Any]] = {}
    extra: dict[str, Any] = {}
    if settings.metadata:
        from myfy_db.metadata import load_metadata

        loaded = load_metadata(settings.metadata)
        models = loaded.models
        extra["metadata"] = loaded.metadata
    url = settings.database_url
    engine = create_engine(settings)
    policy = Policy(read_only=read_only)
    _install_listeners(engine, policy)
    factory = SessionFactory(engine)
    connection: AsyncConnection | None = None
    transaction: AsyncTransaction | None = None
    marker: AsyncTransaction | None = None
    session: AsyncSession | None = None
    try:
        with translate_errors(url, "opening the shell"):
            with policy.allowed():
                async with engine.connect() as probe:
                    record = await probe.run_sync(read_record)
            protected = record_is_protected(record, settings) and not override_enabled()
            if protected and record is not None:
                policy.protected_record = record.environment
            if choose is not None:
                sandbox = choose(record)
            if sandbox:
                connection, transaction, marker = await open_sandbox(engine, policy)
                session = factory(bind=connection, join_transaction_mode="create_savepoint")
                extra["connection"] = connection
            else:
                session = factory()
    except BaseException:
        policy.sealed = False
        with policy.allowed():
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
        marker=marker,
        policy=policy,
        record=record,
        record_protected=protected,
    )


# -- running code -----------------------------------------------------------------------

_FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
#: Where a lazy load still cannot run (a task or callback of the code's own): the fix.
LAZY_LOAD_FIX = (
    "a lazy load ran outside the shell's own code path (in a task or callback); load it "
    "up front with .options(selectinload(Model.relation)), or use "
    "await obj.awaitable_attrs.relation"
)
_LAZY_LOAD_MESSAGE = f"MissingGreenlet: {LAZY_LOAD_FIX}"


async def run_bridged(function: Callable[[], Any]) -> Any:
    """Call ``function`` (and await the coroutine it returns) inside SQLAlchemy's greenlet bridge.

    Code run this way can do what synchronous SQLAlchemy does: a lazy relationship or an
    expired attribute loads on plain attribute access (``author.books``), because every step
    of the user's coroutine runs in a greenlet that can hand the driver's I/O to the event loop.
    """
    from sqlalchemy.util.concurrency import greenlet_spawn

    return await greenlet_spawn(_call_and_drive, function)


def _call_and_drive(function: Callable[[], Any]) -> Any:
    value = function()
    if inspect.iscoroutine(value):
        return _drive(value)
    return value


def _drive(coroutine: Any) -> Any:
    """Step ``coroutine`` in this greenlet; what it waits on is awaited by the event loop."""
    from sqlalchemy.util.concurrency import await_

    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            yielded = coroutine.throw(error) if error is not None else coroutine.send(send)
        except StopIteration as stop:
            return stop.value
        send, error = None, None
        try:
            send = await_(_wait(yielded))
        except BaseException as exc:  # the awaited future's error, or a cancellation
            error = exc


async def _wait(yielded: Any) -> Any:
    if yielded is None:  # a bare yield (asyncio.sleep(0)): give the loop one turn
        await asyncio.sleep(0)
        return None
    yielded._asyncio_future_blocking = False  # taken over from the code's own await, as a Task does
    return await yielded


async def run_snippet(
    source: str, namespace: dict[str, Any], filename: str = SNIPPET_FILENAME
) -> Any:
    """Run ``source`` (top-level ``await`` allowed) in ``namespace``, through the greenlet bridge.

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
        await run_bridged(lambda: eval(body, namespace))
    if last is None:
        return None
    expression = compile(ast.Expression(last), filename, "eval", flags=_FLAGS, dont_inherit=True)
    return await run_bridged(lambda: eval(expression, namespace))


def describe_error(exc: BaseException, source: str | None = None) -> tuple[str, str | None]:
    """A brief account of ``exc``: one line ``Type: message``, then the server's DETAIL and
    HINT and where in the user's code (see :mod:`myfy_db.shell_errors`), or None.
    """
    from myfy_db.shell_errors import describe

    report = describe(exc, source)
    rest = [*report.details, *([report.where] if report.where else [])]
    message = _LAZY_LOAD_MESSAGE if _missing_greenlet(exc) else report.message
    return message, "\n".join(rest) if rest else None


def format_traceback_brief(exc: BaseException, source: str | None = None) -> str:
    """An error at the prompt: what failed, the server's details, the line of the input."""
    from myfy_db.shell_errors import describe

    report = describe(exc, source, place="the input")
    lines = report.lines()
    if _missing_greenlet(exc) and lines:
        lines[0] = _LAZY_LOAD_MESSAGE
    return "".join(line + "\n" for line in lines)


def _missing_greenlet(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ == "MissingGreenlet":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


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

    After each input ``after_input()`` ends a transaction that only read and says whether
    uncommitted changes are held; the prompt shows them (:data:`DIRTY_PROMPT`).
    """

    def __init__(
        self,
        namespace: dict[str, Any],
        loop: LoopThread,
        after_cancel: Callable[[], str | None] | None = None,
        after_input: Callable[[], bool] | None = None,
        *,
        full_traceback: bool = False,
    ) -> None:
        super().__init__(namespace, filename=SNIPPET_FILENAME)
        self.after_cancel = after_cancel
        self.after_input = after_input
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
            self._run(code)
        finally:
            self.prompt()

    def prompt(self) -> None:
        """Set the prompt from the session's state (uncommitted changes or not)."""
        if self.after_input is None:
            return
        try:
            dirty = self.after_input()
        except Exception as exc:
            self.write(f"note: could not end the read transaction: {describe_error(exc)[0]}\n")
            dirty = True
        sys.ps1 = DIRTY_PROMPT if dirty else PROMPT

    def _run(self, code: types.CodeType) -> None:
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
        except StatementRefused as refused:
            self.write(f"{refused}\n")
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
                lambda: bool(loop.call(context.settle())),
                full_traceback=full_traceback,
            )
            status = 0
            from myfy_db.shell_display import displayhook

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
