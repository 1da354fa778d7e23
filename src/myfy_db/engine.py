"""The shared async engine factory and session factory.

:func:`create_engine` builds an :class:`~sqlalchemy.ext.asyncio.AsyncEngine` from
:class:`~myfy_db.settings.DatabaseSettings` exactly the way every myfy-db command does, so an
application can build its engine the same way. Turning driver exceptions into myfy-db errors
(:func:`translate_errors` and the rest) lives in :mod:`myfy_db.driver_errors`; it is
re-exported here for the callers that import it from this module.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.pool import StaticPool

from myfy_db.connections import track as track_connections
from myfy_db.driver_errors import (
    classify_connect_error,
    describe_server_error,
    is_permanent,
    server_error,
    translate_errors,
)
from myfy_db.errors import CannotConnect, ConfigError
from myfy_db.invocation import WaitBudget, command_name, current_command, current_wait, reads_only
from myfy_db.settings import DatabaseSettings
from myfy_db.url_checks import url_problem
from myfy_db.urls import DatabaseUrl, describe_target, mask_url, redact

__all__ = [
    "SessionFactory",
    "classify_connect_error",
    "command_name",
    "create_engine",
    "describe_server_error",
    "describe_target",
    "engine_options",
    "open_engine",
    "server_error",
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
    settings: DatabaseSettings,
    url: str | DatabaseUrl | None = None,
    *,
    command: str | None = None,
) -> dict[str, Any]:
    """The keyword arguments :func:`create_engine` passes to SQLAlchemy for ``url``.

    Pool arguments are passed only where the pool takes them; in-memory SQLite gets a
    static pool (one shared connection); the connect timeout goes in each driver's own form.
    ``command`` (default: the one :func:`command_name` set) names the connections.
    """
    target = settings.url if not url else DatabaseUrl.of(url)
    backend = target.backend
    name = _connection_name(command)
    options: dict[str, Any] = {"echo": settings.echo}
    if backend == "sqlite":
        if target.memory:
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
    elif backend == "mysql":
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


def _statement_cache_off(url: DatabaseUrl) -> bool:
    if url.driver != "asyncpg":
        return False
    query = url.sqlalchemy_url.query
    return str(query.get("prepared_statement_cache_size", "")).strip() == "0"


def unique_statement_name() -> str:
    """A prepared-statement name no other client of a shared server backend uses."""
    import uuid

    return f"__myfy_db_{uuid.uuid4().hex}__"


def _engine_target(settings: DatabaseSettings, url: str | DatabaseUrl | None) -> DatabaseUrl:
    """``url`` (default: the settings' own) parsed; :class:`ConfigError` (exit 2) when it is
    wrong in a way no driver should see."""
    if isinstance(url, DatabaseUrl):
        if url.problem is not None:
            raise ConfigError(f"cannot build an engine for {url.masked}: {url.problem}")
        return url
    text = url or settings.database_url
    problem = url_problem(text)
    if problem is not None:
        raise ConfigError(f"cannot build an engine for {mask_url(text)}: {problem}")
    return DatabaseUrl.parse(text)


def create_engine(
    settings: DatabaseSettings,
    url: str | DatabaseUrl | None = None,
    *,
    command: str | None = None,
    **overrides: Any,
) -> AsyncEngine:
    """Build the async engine for ``settings`` (or for ``url``, e.g. a replica).

    ``url`` is best given parsed (``settings.url``, a :class:`~myfy_db.urls.DatabaseUrl`);
    a string is parsed here. ``overrides`` are passed to
    :func:`sqlalchemy.ext.asyncio.create_async_engine` on top of :func:`engine_options`.
    ``command`` names the connections (``application_name``) after a myfy-db command; by
    default the one running (:func:`command_name`), else none.
    """
    target = _engine_target(settings, url)
    if reads_only():
        _require_sqlite_file(target)
    name = _connection_name(command)
    options = engine_options(settings, target, command=name)
    options.update(overrides)
    if options.get("echo"):
        _echo_to_stderr()
    backend = target.backend
    wait = current_wait() if backend != "sqlite" else None
    try:
        if backend == "mysql":
            options["async_creator"] = _bounded_mysql_connect(
                target, settings.connect_timeout, name, wait
            )
            options.pop("connect_args", None)
        engine = _create_async_engine(target.sqlalchemy_url, **options)
    except (sa_exc.ArgumentError, ImportError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"cannot build an engine for {target.masked}: {redact(str(exc))}"
        ) from None
    track_connections(engine)  # an interrupt can cut them all at once (myfy_db.connections)
    if wait is not None and backend != "mysql":
        _wait_on_connect(engine, target, wait, settings.connect_timeout)
    return engine


# -- --wait: retry the first connect until the database accepts connections ---------------


def _attempt_failed(wait: WaitBudget, exc: BaseException, url: DatabaseUrl) -> float | None:
    """After a failed connect under ``--wait``: the pause before the next attempt.

    None when the failure is not retried (authentication, missing database, not a
    connection problem): the caller re-raises it. Past the deadline, :class:`CannotConnect`
    (exit 4) saying how long it waited. Each retried attempt is reported in one line.
    """
    if not isinstance(exc, Exception) or is_permanent(exc):
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


def _wait_on_connect(
    engine: AsyncEngine, url: DatabaseUrl, wait: WaitBudget, connect_timeout: float
) -> None:
    """Retry ``engine``'s connects under ``wait`` until the database first accepts one.

    Each attempt's connect timeout (asyncpg's ``timeout``, which bounds the whole connect,
    handshake included) is cut to what is left of the wait.
    """
    from sqlalchemy import event
    from sqlalchemy import util as sa_util

    await_: Callable[[Awaitable[Any]], Any] = getattr(sa_util, "await_", None) or (
        sa_util.await_only
    )
    target = url.target

    def do_connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        if target in wait.ready:
            return None  # the default connect
        while True:
            wait.begin()
            params = dict(cparams)
            params["timeout"] = wait.attempt_timeout(float(params.get("timeout", connect_timeout)))
            try:
                connection = dialect.connect(*cargs, **params)
            except Exception as exc:
                delay = _attempt_failed(wait, exc, url)
                if delay is None:
                    raise
                await_(asyncio.sleep(delay))
                continue
            wait.ready.add(target)
            return connection

    event.listen(engine.sync_engine, "do_connect", do_connect)


def _require_sqlite_file(url: DatabaseUrl) -> None:
    """Refuse a SQLite file that does not exist: a command that only reads creates nothing."""
    database = url.sqlite_file
    if database is None:
        return
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
    url: DatabaseUrl,
    timeout: float,
    program_name: str | None = None,
    wait: WaitBudget | None = None,
) -> Callable[[], Awaitable[Any]]:
    """A connect function for aiomysql bounded as a whole by ``timeout``.

    aiomysql's own ``connect_timeout`` covers only the TCP connect; a server that accepts and
    never answers the handshake would hang it, so the whole connect is bounded here. Under
    ``wait`` (``--wait``) it retries until the server first accepts a connection, each
    attempt bounded by what is left of the wait as well.
    """
    parsed = url.sqlalchemy_url
    args, kwargs = parsed.get_dialect()().create_connect_args(parsed)
    kwargs["connect_timeout"] = int(max(1, timeout))
    if program_name:
        kwargs["program_name"] = program_name

    target = url.target

    async def connect_once(limit: float) -> Any:
        import aiomysql

        return await asyncio.wait_for(aiomysql.connect(*args, **kwargs), limit)

    async def connect() -> Any:
        if wait is None or target in wait.ready:
            return await connect_once(timeout)
        while True:
            wait.begin()
            try:
                connection = await connect_once(wait.attempt_timeout(timeout))
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
    url: str | DatabaseUrl | None = None,
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
