"""The shared async engine factory, session factory and driver-error translation.

:func:`create_engine` builds an :class:`~sqlalchemy.ext.asyncio.AsyncEngine` from
:class:`~myfy_db.settings.DatabaseSettings` exactly the way every myfy-db command does, so an
application can build its engine the same way. :func:`translate_errors` turns driver
exceptions into myfy-db errors with exit codes and messages a person can act on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.pool import StaticPool

from myfy_db.connections import track as track_connections
from myfy_db.errors import CannotConnect, ConfigError, MyfyDbError, OperationFailed
from myfy_db.invocation import WaitBudget, command_name, current_command, current_wait, reads_only
from myfy_db.settings import DatabaseSettings
from myfy_db.urls import is_sqlite_memory, mask_url, redact, register_url_secret, url_problem

__all__ = [
    "SessionFactory",
    "command_name",
    "create_engine",
    "describe_target",
    "engine_options",
    "open_engine",
    "translate_errors",
    "unique_statement_name",
]


#: PostgreSQL truncates application_name to 63 bytes (NAMEDATALEN - 1).
_NAME_LIMIT = 63


def _connection_name(command: str | None) -> str | None:
    name = command if command is not None else current_command()
    if not name:
        return None
    return name.encode()[:_NAME_LIMIT].decode(errors="ignore")


def engine_options(
    settings: DatabaseSettings, url: str | None = None, *, command: str | None = None
) -> dict[str, Any]:
    """The keyword arguments :func:`create_engine` passes to SQLAlchemy for ``url``.

    Pool arguments are passed only where the pool takes them; in-memory SQLite gets a
    static pool (one shared connection); the connect timeout goes in each driver's own form.
    ``command`` (default: the one :func:`command_name` set) names the connections.
    """
    target = url or settings.database_url
    backend = make_url(target).get_backend_name()
    name = _connection_name(command)
    options: dict[str, Any] = {"echo": settings.echo}
    if backend == "sqlite":
        if is_sqlite_memory(target):
            options["poolclass"] = StaticPool
            options["connect_args"] = {"check_same_thread": False}
            return options
        # sqlite3's timeout is how long to wait on a locked database file.
        options["connect_args"] = {"timeout": settings.connect_timeout}
    elif backend == "postgresql":
        options["connect_args"] = {"timeout": settings.connect_timeout}
        if name:
            options["connect_args"]["server_settings"] = {"application_name": name}
        if _statement_cache_off(target):
            # Behind a transaction pooler (PgBouncer): the URL's
            # ?prepared_statement_cache_size=0 also turns off asyncpg's own statement cache
            # and names each prepared statement uniquely, so the application and the tool
            # build the same safe engine from the URL alone.
            options["connect_args"]["statement_cache_size"] = 0
            options["connect_args"]["prepared_statement_name_func"] = unique_statement_name
    elif backend in ("mysql", "mariadb"):
        options["connect_args"] = {"connect_timeout": int(max(1, settings.connect_timeout))}
        if name:
            options["connect_args"]["program_name"] = name
    options.update(
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_recycle=settings.pool_recycle,
        pool_pre_ping=settings.pool_pre_ping,
        pool_use_lifo=settings.pool_use_lifo,
    )
    return options


def _statement_cache_off(url: str) -> bool:
    parsed = make_url(url)
    if parsed.get_driver_name() != "asyncpg":
        return False
    return str(parsed.query.get("prepared_statement_cache_size", "")).strip() == "0"


def unique_statement_name() -> str:
    """A prepared-statement name no other client of a shared server backend uses."""
    import uuid

    return f"__myfy_db_{uuid.uuid4().hex}__"


def create_engine(
    settings: DatabaseSettings,
    url: str | None = None,
    *,
    command: str | None = None,
    **overrides: Any,
) -> AsyncEngine:
    """Build the async engine for ``settings`` (or for ``url``, e.g. a replica).

    ``overrides`` are passed to :func:`sqlalchemy.ext.asyncio.create_async_engine` on top of
    :func:`engine_options`. ``command`` names the connections (``application_name``) after
    a myfy-db command; by default the one running (:func:`command_name`), else none.
    """
    target = url or settings.database_url
    register_url_secret(target)
    problem = url_problem(target)
    if problem is not None:
        raise ConfigError(f"cannot build an engine for {mask_url(target)}: {problem}")
    if reads_only():
        _require_sqlite_file(target)
    name = _connection_name(command)
    options = engine_options(settings, target, command=name)
    options.update(overrides)
    if options.get("echo"):
        _echo_to_stderr()
    backend = make_url(target).get_backend_name()
    wait = current_wait() if backend != "sqlite" else None
    try:
        if backend in ("mysql", "mariadb"):
            options["async_creator"] = _bounded_mysql_connect(
                target, settings.connect_timeout, name, wait
            )
            options.pop("connect_args", None)
        engine = _create_async_engine(target, **options)
    except (sa_exc.ArgumentError, ImportError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"cannot build an engine for {mask_url(target)}: {redact(str(exc))}"
        ) from None
    track_connections(engine)  # an interrupt can cut them all at once (myfy_db.connections)
    if wait is not None and backend not in ("mysql", "mariadb"):
        _wait_on_connect(engine, target, wait)
    return engine


# -- --wait: retry the first connect until the database accepts connections ---------------


def _is_permanent(exc: BaseException) -> bool:
    """An authentication failure or a missing database: waiting does not fix it."""
    chain = list(_chain(exc))
    names = {type(item).__name__ for item in chain}
    codes = {code for item in chain if (code := _mysql_code(item)) is not None}
    permanent_names = {
        "InvalidPasswordError",
        "InvalidAuthorizationSpecificationError",
        "InvalidCatalogNameError",
    }
    return bool(names & permanent_names or codes & {1044, 1045, 1049, 1698})


def _attempt_failed(wait: WaitBudget, exc: BaseException, url: str) -> float | None:
    """After a failed connect under ``--wait``: the pause before the next attempt.

    None when the failure is not retried (authentication, missing database, not a
    connection problem): the caller re-raises it. Past the deadline, :class:`CannotConnect`
    (exit 4) saying how long it waited. Each retried attempt is reported in one line.
    """
    if not isinstance(exc, Exception) or _is_permanent(exc):
        return None
    classified = classify_connect_error(exc, url)
    if classified is None:
        return None
    wait.attempts += 1
    delay = wait.next_delay()
    if delay <= 0:
        raise CannotConnect(
            f"{classified.message} (gave up after waiting {wait.seconds:g} s, "
            f"{wait.attempts} attempt(s))",
            hint=classified.hint,
        ) from exc
    wait.report(
        f"waiting for the database: {classified.message} "
        f"(attempt {wait.attempts}; next in {delay:.1f} s, {wait.remaining():.1f} s left)"
    )
    return delay


def _wait_on_connect(engine: AsyncEngine, url: str, wait: WaitBudget) -> None:
    """Retry ``engine``'s connects under ``wait`` until the database first accepts one."""
    from sqlalchemy import event
    from sqlalchemy import util as sa_util

    await_: Callable[[Awaitable[Any]], Any] = getattr(sa_util, "await_", None) or (
        sa_util.await_only
    )
    target = describe_target(url)

    def do_connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        if target in wait.ready:
            return None  # the default connect
        while True:
            wait.begin()
            try:
                connection = dialect.connect(*cargs, **cparams)
            except Exception as exc:
                delay = _attempt_failed(wait, exc, url)
                if delay is None:
                    raise
                await_(asyncio.sleep(delay))
                continue
            wait.ready.add(target)
            return connection

    event.listen(engine.sync_engine, "do_connect", do_connect)


def _require_sqlite_file(url: str) -> None:
    """Refuse a SQLite file that does not exist: a command that only reads creates nothing."""
    if is_sqlite_memory(url):
        return
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return
    database = parsed.database
    if database.startswith("file:"):
        database = database.removeprefix("file:").split("?", 1)[0]
    if not Path(database).exists():
        raise CannotConnect(
            f"no such database file: {database}",
            hint="check the path in the database URL; a command that only reads creates none",
        )


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time, with secrets redacted."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _echo_to_stderr() -> None:
    """Send echoed SQL to stderr, redacted: SQLAlchemy's default handler writes to stdout,
    which must carry nothing but the one JSON document under ``--json``."""
    logger = logging.getLogger("sqlalchemy.engine.Engine")
    if not logger.handlers:
        logger.addHandler(_StderrHandler())


def _bounded_mysql_connect(
    url: str, timeout: float, program_name: str | None = None, wait: WaitBudget | None = None
) -> Callable[[], Awaitable[Any]]:
    """A connect function for aiomysql bounded as a whole by ``timeout``.

    aiomysql's own ``connect_timeout`` covers only the TCP connect; a server that accepts and
    never answers the handshake would hang it, so the whole connect is bounded here. Under
    ``wait`` (``--wait``) it retries until the server first accepts a connection.
    """
    parsed = make_url(url)
    args, kwargs = parsed.get_dialect()().create_connect_args(parsed)
    kwargs["connect_timeout"] = int(max(1, timeout))
    if program_name:
        kwargs["program_name"] = program_name

    target = describe_target(url)

    async def connect_once() -> Any:
        import aiomysql

        return await asyncio.wait_for(aiomysql.connect(*args, **kwargs), timeout)

    async def connect() -> Any:
        if wait is None or target in wait.ready:
            return await connect_once()
        while True:
            wait.begin()
            try:
                connection = await connect_once()
            except Exception as exc:
                delay = _attempt_failed(wait, exc, url)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
                continue
            wait.ready.add(target)
            return connection

    return connect


@asynccontextmanager
async def open_engine(
    settings: DatabaseSettings,
    url: str | None = None,
    *,
    command: str | None = None,
    **overrides: Any,
) -> AsyncIterator[AsyncEngine]:
    """An engine that is disposed (every pooled connection closed) when the block ends."""
    engine = create_engine(settings, url, command=command, **overrides)
    try:
        yield engine
    finally:
        await asyncio.shield(engine.dispose())


class SessionFactory:
    """Makes :class:`AsyncSession` objects bound to one engine, as the myfy DataModule does."""

    def __init__(self, engine: AsyncEngine, **options: Any) -> None:
        options.setdefault("expire_on_commit", False)
        options.setdefault("autoflush", False)
        self.engine = engine
        self._maker = async_sessionmaker(engine, class_=AsyncSession, **options)

    def __call__(self, **overrides: Any) -> AsyncSession:
        """A new session; the caller closes it. ``overrides`` replace the factory's options
        for this one session (e.g. ``bind=connection``)."""
        return self._maker(**overrides)

    @asynccontextmanager
    async def session_context(self) -> AsyncIterator[AsyncSession]:
        """A session that commits on success, rolls back on error and is always closed."""
        session = self._maker()
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        finally:
            await session.close()


def describe_target(url: str) -> str:
    """``host:port/database`` (or the SQLite path) for messages; never the password."""
    try:
        parsed: URL = make_url(url)
    except sa_exc.ArgumentError:
        return mask_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite database {parsed.database or ':memory:'}"
    host = parsed.host or "localhost"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{host}{port}/{parsed.database or ''}"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop(0)
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo.extend([getattr(item, "orig", None), item.__cause__, item.__context__])


def _mysql_code(exc: BaseException) -> int | None:
    if type(exc).__module__.startswith("pymysql") and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


#: Driver errors that mean an open connection was lost (the server went away or cut it).
_LOST_NAMES = frozenset(
    {
        "ConnectionDoesNotExistError",
        "ConnectionResetError",
        "BrokenPipeError",
        "IncompleteReadError",
    }
)
#: MySQL client errors for the same: lost during a query, gone away, lost at reading.
_LOST_CODES = frozenset({2013, 2006, 2055})


def _connection_lost(chain: list[BaseException], codes: set[int]) -> bool:
    for item in chain:
        if isinstance(item, sa_exc.DBAPIError) and item.connection_invalidated:
            return True
        name = type(item).__name__
        if name in _LOST_NAMES:
            return True
        # asyncpg, when the socket closes under a protocol step in progress
        if name == "InternalClientError" and "cannot switch to state" in str(item):
            return True
    return bool(codes & _LOST_CODES) and not any("timed out" in str(i) for i in chain)


def classify_connect_error(
    exc: BaseException, url: str, action: str | None = None
) -> CannotConnect | None:
    """A :class:`CannotConnect` for ``exc`` when it means the database cannot be reached,
    or that a connection to it was lost (during ``action``, when given)."""
    parsed = make_url(url)
    target = describe_target(url)
    user = parsed.username or "(default user)"
    database = parsed.database or ""
    chain = list(_chain(exc))
    names = {type(item).__name__ for item in chain}
    codes = {code for item in chain if (code := _mysql_code(item)) is not None}
    if names & {"InvalidPasswordError", "InvalidAuthorizationSpecificationError"} or codes & {
        1045,
        1698,
    }:
        return CannotConnect(
            f"authentication failed for user {user!r} at {target}",
            hint="check the user name and password in the database URL",
        )
    if "InvalidCatalogNameError" in names or 1049 in codes:
        return CannotConnect(
            f"database {database!r} does not exist at {target}",
            hint="create it, or fix the database name in the URL",
        )
    if 1044 in codes:
        return CannotConnect(f"user {user!r} may not use database {database!r} at {target}")
    if any(isinstance(item, socket.gaierror) for item in chain):
        return CannotConnect(
            f"cannot resolve host {parsed.host!r} ({target})",
            hint="check the host name in the database URL",
        )
    if any(isinstance(item, ConnectionRefusedError) for item in chain):
        return CannotConnect(
            f"connection refused by {target}",
            hint="is the database server running and listening on that host and port?",
        )
    if _connection_lost(chain, codes):
        during = f" during {action}" if action else ""
        return CannotConnect(
            f"connection to {target} lost{during}",
            hint="the server closed the connection or went away; check that it is running",
        )
    if (
        any(isinstance(item, TimeoutError) for item in chain)
        or "TimeoutError" in names
        or codes & {2013, 2006}
    ):
        return CannotConnect(
            f"timed out connecting to {target}",
            hint="the server did not answer in time; check the host, port and firewall",
        )
    for item in chain:
        if _is_sqlite(item) and "unable to open database file" in str(item):
            return CannotConnect(
                f"cannot open {target}", hint="check that the directory exists and is writable"
            )
        if _mysql_code(item) == 2003 or (isinstance(item, OSError) and not _is_sqlite(item)):
            return CannotConnect(f"cannot connect to {target}: {redact(_first_line(item))}")
    return None


def _is_sqlite(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("sqlite3")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


@contextmanager
def translate_errors(url: str, action: str = "query") -> Iterator[None]:
    """Turn driver and SQLAlchemy errors raised in the block into myfy-db errors.

    Connection failures become :class:`CannotConnect` (exit 4); other database errors become
    :class:`OperationFailed` (exit 1) naming ``action``. Messages never hold a password.
    """
    try:
        yield
    except MyfyDbError:
        raise
    except (sa_exc.SQLAlchemyError, OSError, TimeoutError) as exc:
        connect = classify_connect_error(exc, url, action)
        if connect is not None:
            raise connect from exc
        message, detail = describe_server_error(exc)
        raise OperationFailed(
            redact(f"{action} failed: {message}"), hint=redact(detail) if detail else None
        ) from exc

    except Exception as exc:  # a driver's own error, from code that talks to it directly
        lost = classify_connect_error(exc, url, action)
        if lost is None:
            raise
        raise lost from exc


def describe_server_error(exc: BaseException) -> tuple[str, str | None]:
    """The database's own account of ``exc``: a line naming the error by its class and code
    (``dependent objects still exist (2BP01): cannot drop table a ...``, ``MySQL error 1051:
    Unknown table ...``) and the server's DETAIL and HINT as a second line, when it sent any.
    """
    found = server_error(exc)
    return found if found is not None else (_first_line(getattr(exc, "orig", None) or exc), None)


def server_error(exc: BaseException) -> tuple[str, str | None] | None:
    """:func:`describe_server_error` when ``exc`` came from the database driver, else None."""
    for item in _chain(exc):
        sqlstate = getattr(item, "sqlstate", None)
        if isinstance(sqlstate, str) and type(item).__module__.startswith("asyncpg"):
            message = getattr(item, "message", None) or _first_line(item)
            extra = [
                f"{label}: {' '.join(str(text).split())}"
                for label, text in (
                    ("DETAIL", getattr(item, "detail", None)),
                    ("HINT", getattr(item, "hint", None)),
                )
                if text
            ]
            return f"{_error_words(type(item).__name__)} ({sqlstate}): {message}", (
                "; ".join(extra) or None
            )
        code = _mysql_code(item)
        if code is not None:
            text = str(item.args[1]) if len(item.args) > 1 else _first_line(item)
            return f"MySQL error {code}: {' '.join(text.split())}", None
        if _is_sqlite(item):
            name = getattr(item, "sqlite_errorname", None)
            return (f"{_first_line(item)} ({name})" if name else _first_line(item)), None
    return None


def _error_words(class_name: str) -> str:
    """``DependentObjectsStillExistError`` -> ``dependent objects still exist``."""
    import re

    name = class_name.removesuffix("Error") or "server"
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).lower()
    return "server error" if words in ("postgres", "server") else words
