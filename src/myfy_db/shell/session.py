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

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from myfy_db.engine import SessionFactory, create_engine, translate_errors
from myfy_db.settings import is_protected_environment
from myfy_db.shell.sandbox import (
    Policy,
    SandboxOutcome,
    end_sandbox,
    install,
    open_sandbox,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, AsyncTransaction

    from myfy_db.guard import EnvironmentRecord
    from myfy_db.settings import DatabaseSettings

__all__ = [
    "DIRTY_PROMPT",
    "HISTORY_ENV",
    "PROMPT",
    "ShellContext",
    "build_namespace",
    "open_shell",
    "read_database_record",
    "record_is_protected",
]

HISTORY_ENV = "MYFY_DB_HISTORY_FILE"
PROMPT = ">>> "
#: The prompt while the session holds uncommitted changes (and so, on the server, locks).
DIRTY_PROMPT = "myfy-db*> "
VERBS = ("select", "insert", "update", "delete", "text", "func")
#: Where a connection keeps its change counter as its transaction began (SQLite's
#: ``total_changes()``, MariaDB's row handler counters).
_CHANGES_AT_BEGIN = "myfy_db_changes_at_begin"
#: The rows this MariaDB/MySQL session has inserted, updated and deleted, as the server counts.
_MYSQL_CHANGES = (
    "SELECT SUM(VARIABLE_VALUE) FROM information_schema.SESSION_STATUS "
    "WHERE VARIABLE_NAME IN ('HANDLER_WRITE', 'HANDLER_UPDATE', 'HANDLER_DELETE')"
)
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
    #: Uncommitted changes are held (read from the server after the last input).
    holding: bool = False
    #: The savepoint the running input falls back to when it fails.
    input_savepoint: Any = None

    async def recover(self) -> str | None:
        """After a cancelled statement: make the session usable again; say what was lost.

        Cancelling a statement in flight invalidates its connection (the server ends that
        connection's transaction). Outside a sandbox the session's transaction is rolled
        back; in a sandbox a fresh sandbox (connection, outer transaction, session) replaces
        it. Nothing is done when the connection survived the cancellation.
        """
        from sqlalchemy import exc as sa_exc

        if self.connection is not None and not self.sandbox:
            if not self.connection.invalidated:
                return None
            self.policy.sealed = False
            with self.policy.allowed():
                await self.session.close()
                with contextlib.suppress(sa_exc.SQLAlchemyError):
                    await self.connection.close()
                self.connection = await self.engine.connect()
            self.policy.sealed = True
            self.session = SessionFactory(self.engine)(bind=self.connection)
            self.namespace.update(session=self.session, connection=self.connection)
            return "the connection was lost and opened again; `session` is new"
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
    def pending(self) -> bool:
        """Objects added, changed or deleted in the session and not yet flushed."""
        session = self.session
        return bool(session.new or session.dirty or session.deleted)

    async def held_changes(self) -> int | None:
        """What the session's transaction changed, as the server reports it: None when it
        changed nothing, else the rows it changed (0 when the server says it wrote or locks
        but counts no row: DDL, ``SELECT ... FOR UPDATE``). Never guessed from the SQL.

        PostgreSQL: an assigned transaction id, rows from ``pg_stat_xact_user_tables``;
        MariaDB: the connection's own row in ``information_schema.innodb_trx``; SQLite: the
        change in ``total_changes()`` since the transaction began.
        """
        from sqlalchemy import text

        if not self.session.in_transaction():
            return None
        connection = await self.session.connection()
        backend = connection.dialect.name
        with self.policy.allowed():
            if backend == "postgresql":
                row = (
                    await connection.execute(
                        text(
                            "SELECT txid_current_if_assigned() IS NOT NULL, (SELECT "
                            "coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) "
                            "FROM pg_stat_xact_user_tables)"
                        )
                    )
                ).one()
                return int(row[1]) if row[0] else None
            if backend in ("mysql", "mariadb"):
                now = int(await connection.scalar(text(_MYSQL_CHANGES)) or 0)
                info = (await connection.get_raw_connection()).info
                began = int(info.get(_CHANGES_AT_BEGIN, now))
                if now > began:
                    return now - began
                # Locks without a changed row (SELECT ... FOR UPDATE): InnoDB's own row for
                # this transaction (its view is refreshed at most every 0.1 s).
                found = (
                    await connection.execute(
                        text(
                            "SELECT trx_lock_structs FROM information_schema.innodb_trx "
                            "WHERE trx_mysql_thread_id = CONNECTION_ID()"
                        )
                    )
                ).first()
                return 0 if found is not None and found[0] else None
            if backend == "sqlite":
                total = int(await connection.scalar(text("SELECT total_changes()")) or 0)
                start = (await connection.get_raw_connection()).info.get(_CHANGES_AT_BEGIN)
                return total - int(start) if start is not None and total > int(start) else None
        return None

    async def _usable(self) -> bool:
        """The session's transaction still runs statements (PostgreSQL aborts it on an error)."""
        from sqlalchemy import exc as sa_exc

        try:
            connection = await self.session.connection()
            with self.policy.allowed():
                await connection.exec_driver_sql("SELECT 1")
        except sa_exc.SQLAlchemyError:
            return False
        return True

    async def before_input(self) -> None:
        """Before an input that starts with changes held: a savepoint it can fall back to."""
        if self.sandbox or not self.holding:
            self.input_savepoint = None
            return
        self.input_savepoint = await self.session.begin_nested()

    async def settle(self, failed: bool = False) -> tuple[bool, str | None]:
        """Between inputs: recover from a failed input, and end a transaction that only read,
        so the shell holds nothing; say whether uncommitted changes are held.

        A failed input that left the transaction unusable (PostgreSQL aborts it) is rolled
        back to its own savepoint when changes were held before it, else the whole
        transaction is; the note says which. Whether anything is held is read from the
        server (:meth:`held_changes`). Outside a sandbox a transaction holding nothing is
        committed (with ``expire_on_commit=False`` its objects stay loaded and usable).
        """
        from sqlalchemy import exc as sa_exc

        note = None
        savepoint, self.input_savepoint = self.input_savepoint, None
        if failed and self.session.in_transaction() and not await self._usable():
            if savepoint is not None and savepoint.is_active:
                await savepoint.rollback()
                note = (
                    "the failed input was rolled back to where it began; the uncommitted "
                    "changes from before it are kept"
                )
            else:
                await self.session.rollback()
                note = "the failed input's transaction was rolled back (nothing was held before it)"
        if self.sandbox:
            self.holding = False
            return False, note
        try:
            held = await self.held_changes()
        except sa_exc.SQLAlchemyError:
            await self.session.rollback()
            held = None
        self.holding = self.pending or held is not None
        if not self.holding and self.session.in_transaction():
            try:
                await self.session.commit()
            except sa_exc.SQLAlchemyError:  # a statement failed: its transaction is void
                await self.session.rollback()
        return self.holding, note

    async def _leaving(self) -> SandboxOutcome | None:
        """Leaving with uncommitted changes: they are rolled back, and the shell says so."""
        from sqlalchemy import exc as sa_exc

        try:
            held = await self.held_changes() if self.session.in_transaction() else None
        except sa_exc.SQLAlchemyError:
            held = None
        if held is None and not self.pending:
            return None
        rows = "uncommitted changes" if not held else f"{held} uncommitted row change(s)"
        return SandboxOutcome(
            True,
            f"rolled back {rows} on leaving: nothing after the last commit was kept "
            "(await session.commit() keeps changes)",
            sandbox=False,
        )

    async def close(self) -> SandboxOutcome | None:
        """Close the session, roll the sandbox back and dispose the pool (idempotent).

        In a sandbox, returns what the server held when it was rolled back.
        """
        from sqlalchemy import exc as sa_exc

        outcome = None
        if not self.sandbox:
            outcome = await self._leaving()
        try:
            with self.policy.allowed():
                if self.connection is None:
                    await self.session.close()
                else:  # a savepoint lost here is what end_sandbox reports
                    with contextlib.suppress(sa_exc.SQLAlchemyError):
                        # A failed commit leaves the session's savepoint invalid: roll it
                        # back first, so the sandbox's own rollback can run.
                        await self.session.rollback()
                    with contextlib.suppress(sa_exc.SQLAlchemyError):
                        await self.session.close()
            if self.connection is not None and self.sandbox:
                outcome = await end_sandbox(
                    self.connection, self.transaction, self.marker, self.policy
                )
            elif self.connection is not None:
                self.policy.sealed = False
                with self.policy.allowed(), contextlib.suppress(sa_exc.SQLAlchemyError):
                    await self.connection.close()
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
                changes = connection.exec_driver_sql("SELECT total_changes()").scalar()
            connection.connection.info[_CHANGES_AT_BEGIN] = int(changes or 0)

    statement = READ_ONLY_SQL.get(backend)

    @event.listens_for(engine.sync_engine, "connect")
    def _read_only(dbapi_connection: Any, record: Any) -> None:
        if statement is not None and policy.read_only:
            _set_read_only(dbapi_connection, backend, statement)
        if backend == "sqlite":  # after the shell's own pragma
            _sqlite_authorizer(dbapi_connection, policy)

    if policy.read_only and backend in ("postgresql", "mysql", "mariadb"):
        # Every transaction the shell begins is read-only in its own right, whatever the
        # session's default became since (a function calling set_config, dynamic SQL).
        @event.listens_for(engine.sync_engine, "begin")
        def _read_only_transaction(connection: Any) -> None:
            with policy.allowed():
                connection.exec_driver_sql("SET TRANSACTION READ ONLY")

    if backend in ("mysql", "mariadb"):
        # The session's row-change counters as the transaction begins (after SET TRANSACTION
        # READ ONLY, which must come first): held_changes() compares with them.
        @event.listens_for(engine.sync_engine, "begin")
        def _mysql_counters(connection: Any) -> None:
            with policy.allowed():
                changes = connection.exec_driver_sql(_MYSQL_CHANGES).scalar()
            connection.connection.info[_CHANGES_AT_BEGIN] = int(changes or 0)

    install(engine, policy)


def _set_read_only(dbapi_connection: Any, backend: str, statement: str) -> None:
    """Put a new driver connection in its backend's read-only mode."""
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


#: SQLite authorizer action codes (sqlite3.SQLITE_*) and the pragmas a sandbox may not set.
_SQLITE_DENY = 1
_SQLITE_OK = 0
_GUARDED_PRAGMAS = frozenset(
    {
        "query_only",
        "journal_mode",
        "synchronous",
        "locking_mode",
        "writable_schema",
        "foreign_keys",
        "defer_foreign_keys",
        "schema_version",
        "user_version",
        "application_id",
        "wal_checkpoint",
        "incremental_vacuum",
        "optimize",
        "temp_store",
    }
)


def _sqlite_authorizer(dbapi_connection: Any, policy: Policy) -> None:
    """Install SQLite's authorizer on the driver's connection: it sees each statement as
    SQLite compiled it, so no spelling of ``COMMIT``, ``BEGIN``, ``ATTACH`` or a guarded
    pragma gets past it in a sandbox or read-only shell."""
    import sqlite3

    from sqlalchemy.util import await_only

    def authorize(action: int, arg1: Any, arg2: Any, _db: Any, _trigger: Any) -> int:
        if not (policy.sandbox or policy.read_only) or not policy.checking or policy.own:
            return _SQLITE_OK
        if policy.sandbox and action in (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT):
            return _SQLITE_DENY  # read-only mode has the file opened read-only instead
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            return _SQLITE_DENY
        guarded = action == sqlite3.SQLITE_PRAGMA and str(arg1).lower() in _GUARDED_PRAGMAS
        return _SQLITE_DENY if guarded and arg2 is not None else _SQLITE_OK

    driver = dbapi_connection.driver_connection  # the aiosqlite connection
    await_only(driver._execute(driver._conn.set_authorizer, authorize))


def _read_only_file(url: str) -> str | None:
    """A SQLite file's URL opened read-only by SQLite itself (``mode=ro``); None elsewhere
    (an in-memory database, a URI the user wrote, another backend)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:") or "uri" in parsed.query:
        return None
    from pathlib import Path
    from urllib.parse import quote

    if not Path(database).is_file():
        return None  # the engine factory says so, naming the path as the user gave it
    path = quote(str(Path(database).resolve()))
    query = {**parsed.query, "mode": "ro", "uri": "true"}
    return parsed.set(database=f"file:{path}", query=query).render_as_string(hide_password=False)


def build_namespace(
    engine: AsyncEngine,
    session: AsyncSession,
    models: dict[str, type[Any]],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The shell's globals: ``session``, ``engine``, the SQLAlchemy verbs, the helpers
    (``tables``, ``describe``, ``sql``, ``help``: :mod:`myfy_db.shell.helpers`) and the models."""
    import sqlalchemy

    from myfy_db.shell.helpers import make_helpers

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
    engine = create_engine(settings, _read_only_file(url) if read_only else None)
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
            elif read_only:
                # One connection, held: the pool refuses any other (see sandbox.install).
                with policy.allowed():
                    connection = await engine.connect()
                session = factory(bind=connection)
                policy.sealed = True
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
