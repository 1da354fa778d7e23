"""The shell's sandbox and read-only mode, enforced on the engine the shell hands out.

The server, or the database engine's own parser, is the boundary (README, "The shell"):

- **One connection.** Once the shell holds its connection, the pool refuses every other
  checkout (:func:`install`), whatever asks: ``engine.connect()``, ``execution_options()``,
  ``sync_engine``, ``raw_connection()``, a new session.
- **Statements.** One ``before_cursor_execute`` listener asks :func:`.refusals.refusal`: on
  PostgreSQL pglast's parse tree decides (:mod:`.pg_statements`); on MySQL/MariaDB and SQLite
  the statement is read as the server reads it for what needs no server help.
- **The server's own refusals.** The sandbox on MySQL/MariaDB is an XA transaction, so the
  server refuses COMMIT, BEGIN and every implicitly-committing statement (``XAER_RMFAIL``);
  on SQLite the authorizer (:mod:`.session`) refuses transaction control, ATTACH and guarded
  pragmas. Both come back as the shell's one-line refusal (``handle_error``).
- **The sandbox's own connection** refuses ``commit()``, ``rollback()`` and ``close()``.

:func:`end_sandbox` closes it and reports what the server held: the savepoint set when the
sandbox opened must still exist, the XA transaction must still be active, and on
MySQL/MariaDB the rollback must not warn of changes it could not undo (non-transactional
tables).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from myfy_db.shell.policy import (
    LEAVE,
    READ_ONLY_HINT,
    SANDBOX_NAME,
    Policy,
    StatementRefused,
)
from myfy_db.shell.refusals import refusal, statements

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

__all__ = [
    "SANDBOX_NAME",
    "Policy",
    "SandboxOutcome",
    "StatementRefused",
    "end_sandbox",
    "install",
    "refusal",
    "statements",
]

# -- the engine -----------------------------------------------------------------------------


def install(engine: AsyncEngine, policy: Policy) -> None:
    """Enforce ``policy`` on every statement and connection of ``engine``."""
    from sqlalchemy import event
    from sqlalchemy.engine import Connection, RootTransaction
    from sqlalchemy.sql.elements import (
        ReleaseSavepointClause,
        RollbackToSavepointClause,
        SavepointClause,
    )

    sync_engine = engine.sync_engine
    dialect = sync_engine.dialect.name
    own = (SavepointClause, RollbackToSavepointClause, ReleaseSavepointClause)

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _check(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        compiled = getattr(context, "compiled", None)
        policy.own = compiled is not None and isinstance(compiled.statement, own)
        if policy.own:
            return  # SQLAlchemy's own savepoints: the session's commit inside the sandbox
        if not policy.checking:
            return  # the shell's own bookkeeping (the sandbox, SQLite's BEGIN)
        if policy.sandbox or policy.read_only or policy.protected_record:
            refused = refusal(statement, dialect, policy)
            if refused is not None:
                raise refused

    @event.listens_for(sync_engine, "after_cursor_execute")
    def _done(*_args: Any) -> None:
        policy.own = False

    @event.listens_for(sync_engine, "handle_error")
    def _failed(context: Any) -> None:
        policy.own = False
        refused = _server_refusal(context.original_exception, dialect, policy)
        if refused is not None:
            raise refused

    @event.listens_for(sync_engine, "commit")
    def _committed(conn: Any) -> None:
        if policy.sandbox and policy.sealed and policy.checking:
            raise _connection_refusal("commit()")

    class SandboxTransaction(RootTransaction):
        def commit(self) -> None:
            if policy.sandbox and policy.sealed and policy.checking:
                raise _connection_refusal("commit()")
            super().commit()

        def rollback(self) -> None:
            if policy.sandbox and policy.sealed and policy.checking:
                raise _connection_refusal("rollback()")
            super().rollback()

    class SandboxConnection(Connection):
        def begin(self) -> RootTransaction:
            if self._transaction is None:
                self._transaction = SandboxTransaction(self)
                return self._transaction
            return super().begin()

        def close(self) -> None:
            if policy.sealed and policy.checking:
                raise _connection_refusal("close()", policy)
            super().close()

    sync_engine._connection_cls = SandboxConnection

    # One connection: once the shell holds its own, the pool refuses every other checkout,
    # whatever asks for it (engine.connect(), execution_options(), sync_engine,
    # raw_connection(), a new session or sessionmaker): they all share this pool.
    @event.listens_for(sync_engine.pool, "checkout")
    def _one_connection(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if policy.sealed and policy.checking:
            raise _connection_refusal("a new connection", policy)


def _server_refusal(error: BaseException, dialect: str, policy: Policy) -> StatementRefused | None:
    """The server's (or SQLite's authorizer's) own refusal, said as the shell's: MariaDB's
    XAER_RMFAIL inside the sandbox's XA transaction, SQLite's "not authorized"."""
    if not (policy.sandbox or policy.read_only) or not policy.checking:
        return None
    prefix, hint = ("sandbox", LEAVE) if policy.sandbox else ("read-only", READ_ONLY_HINT)
    code = error.args[0] if error.args else None
    if dialect in ("mysql", "mariadb") and code == 1399 and policy.sandbox:
        return StatementRefused(
            f"{prefix}: refused by the server: the statement would commit the sandbox's "
            "XA transaction (XAER_RMFAIL)",
            hint=hint,
        )
    if dialect == "sqlite" and "not authorized" in str(error):
        what = (
            "it would end the sandbox's transaction, attach a database or change a guarded pragma"
            if policy.sandbox
            else "it would attach a database or change a guarded pragma"
        )
        return StatementRefused(f"{prefix}: refused by SQLite's authorizer: {what}", hint=hint)
    return None


def _connection_refusal(what: str, policy: Policy | None = None) -> StatementRefused:
    reasons = {
        "commit()": "it would commit the sandbox's transaction",
        "rollback()": "it would end the sandbox's transaction (the sandbox rolls back on exit)",
        "close()": "it would end the shell's own connection",
        "a new connection": (
            "the shell holds exactly one connection, and anything else would run outside "
            "its rules; use `session` or `connection` (an engine of your own is yours)"
        ),
    }
    if policy is not None and not policy.sandbox:
        return StatementRefused(f"read-only: {what} refused: {reasons[what]}", hint=READ_ONLY_HINT)
    return StatementRefused(f"sandbox: {what} refused: {reasons[what]}", hint=LEAVE)


# -- opening and closing the sandbox --------------------------------------------------------


@dataclass
class SandboxOutcome:
    """What the server held when the sandbox closed (or, outside a sandbox, what leaving
    rolled back)."""

    intact: bool
    detail: str
    sandbox: bool = True


async def open_sandbox(
    engine: AsyncEngine, policy: Policy
) -> tuple[AsyncConnection, AsyncTransaction, AsyncTransaction]:
    """The sandbox's connection, its outer transaction and the marker savepoint."""
    from sqlalchemy import text

    with policy.allowed():
        connection = await engine.connect()
        try:
            transaction = await connection.begin()
            if engine.dialect.name in ("mysql", "mariadb"):
                # An XA transaction: the server itself then refuses COMMIT, BEGIN and every
                # statement that would commit implicitly (XAER_RMFAIL), however it is spelt.
                import uuid

                policy.xid = f"myfy-db-sandbox-{uuid.uuid4().hex[:16]}"
                await connection.exec_driver_sql(f"XA START '{policy.xid}'")
            if engine.dialect.name == "postgresql":
                await connection.execute(
                    text("SELECT set_config('application_name', :name, false)"),
                    {"name": SANDBOX_NAME},
                )
            marker = await connection.begin_nested()
        except BaseException:
            await connection.close()
            raise
    policy.sandbox = True
    policy.sealed = True
    return connection, transaction, marker


async def end_sandbox(
    connection: AsyncConnection,
    transaction: AsyncTransaction | None,
    marker: AsyncTransaction | None,
    policy: Policy,
) -> SandboxOutcome:
    """Roll the sandbox back and say what the server held (never assumed)."""
    from sqlalchemy import exc as sa_exc

    mysql = connection.dialect.name in ("mysql", "mariadb")
    policy.sealed = False
    with policy.allowed():
        if connection.closed or connection.invalidated:
            with contextlib.suppress(sa_exc.SQLAlchemyError):
                await connection.close()
            return SandboxOutcome(
                False, "the sandbox's connection was lost; the server rolled its transaction back"
            )
        intact, detail = True, ""
        try:
            if marker is not None and marker.is_active:
                await marker.rollback()
            else:
                intact, detail = False, "the sandbox's savepoint was released before the end"
        except sa_exc.DBAPIError as exc:
            intact = False
            detail = "the server had already ended the sandbox's transaction: " + _first(exc)
        except sa_exc.InvalidRequestError as exc:  # an inner transaction left invalid
            intact = False
            detail = "the sandbox's savepoint could not be checked: " + _first(exc)
        warnings: list[str] = []
        try:
            if mysql and intact:
                warnings = await _nontransactional(connection)
            if policy.xid is not None:
                try:
                    await connection.exec_driver_sql(f"XA END '{policy.xid}'")
                    await connection.exec_driver_sql(f"XA ROLLBACK '{policy.xid}'")
                    warnings += await _nontransactional(connection)
                except sa_exc.DBAPIError as exc:
                    intact = False
                    detail = "the sandbox's XA transaction had already ended: " + _first(exc)
                policy.xid = None
            if transaction is not None and transaction.is_active:
                await transaction.rollback()
            else:
                await connection.rollback()
            if mysql:
                warnings += await _nontransactional(connection)
        finally:
            with contextlib.suppress(sa_exc.SQLAlchemyError):
                await connection.close()
        if warnings:
            intact = False
            detail = "the server could not undo changes to non-transactional tables: " + warnings[0]
    if intact:
        detail = (
            "rolled back on the server, which still held the sandbox's transaction: "
            "nothing this shell did was kept"
        )
    return SandboxOutcome(intact, detail)


async def _nontransactional(connection: AsyncConnection) -> list[str]:
    from sqlalchemy import text

    rows = (await connection.execute(text("SHOW WARNINGS"))).all()
    return [str(row[2]) for row in rows if int(row[1]) == 1196]


def _first(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__
