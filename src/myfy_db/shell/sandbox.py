"""The shell's sandbox and read-only mode, enforced on the engine the shell hands out.

Every statement the shell's engine runs goes through one ``before_cursor_execute`` listener
(:func:`install`), which refuses, before the statement reaches the server:

- in a **sandbox**: anything that would end or escape the sandbox's transaction: raw
  ``BEGIN``/``START TRANSACTION``/``COMMIT``/``END``/``ROLLBACK``/``ABORT``/``SAVEPOINT``/
  ``RELEASE``/``PREPARE TRANSACTION``/``XA``, ``SET autocommit``, ``SET GLOBAL``, and on
  MySQL/MariaDB every statement the server commits implicitly (DDL, ``LOCK TABLES``,
  ``GRANT``, ``ANALYZE TABLE``, ``CALL``, dynamic SQL ...). SQLAlchemy's own savepoints (the
  session's ``commit()`` inside a sandbox) are compiled constructs and pass;
- in **read-only** mode: statements that change the transaction or session access mode back
  (``SET TRANSACTION READ WRITE``, ``SET SESSION CHARACTERISTICS``, ``set_config``,
  ``default_transaction_read_only``, ``tx_read_only``/``transaction_read_only``,
  ``PRAGMA query_only = ...``, ``RESET``/``DISCARD``);
- on a database **recorded as protected**: writes to the record (``myfy_db_meta``).

Beyond statements, a sealed sandbox refuses ``commit()``/``rollback()``/``close()`` of its
own connection and every new connection from the engine (``engine.connect()``,
``engine.begin()``, a new ``AsyncSession(engine)``): they would commit, end the sandbox, or
run outside it. :func:`end_sandbox` closes it and reports what the server held: a savepoint
set when the sandbox opened must still exist (so the transaction was never ended), and on
MySQL/MariaDB the rollback must not warn of changes it could not undo (non-transactional
tables).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from myfy_db.errors import Refused

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

SANDBOX_NAME = "myfy-db shell (sandbox)"
LEAVE = "leave the sandbox to make changes permanent: run the shell with --no-sandbox"
READ_ONLY_HINT = "leave out --read-only to write (a read-only database role is the real boundary)"
META = "MYFY_DB_META"


class StatementRefused(Refused):
    """The shell refused a statement or call before it reached the server (exit 3)."""


@dataclass
class Policy:
    """What the shell's engine allows; the shell updates it as the sandbox opens and closes."""

    sandbox: bool = False
    read_only: bool = False
    #: The database's record is protected: the shell may not change ``myfy_db_meta``.
    protected_record: str | None = None
    #: The sandbox's connection is checked out: any other connection would escape it.
    sealed: bool = False
    #: The shell's own bookkeeping (opening, closing, checking the sandbox) runs unchecked.
    internal: int = 0
    #: The statement running now is SQLAlchemy's own savepoint (the session's commit).
    own: bool = False
    #: MySQL/MariaDB: the id of the sandbox's XA transaction while it is open.
    xid: str | None = None

    @contextlib.contextmanager
    def allowed(self) -> Iterator[None]:
        """The shell's own statements and connections: not checked."""
        self.internal += 1
        try:
            yield
        finally:
            self.internal -= 1

    @property
    def checking(self) -> bool:
        return self.internal == 0


# -- reading SQL ----------------------------------------------------------------------------

_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_MYSQL_EXECUTABLE = re.compile(r"/\*M?!\d*")


def statements(sql: str, dialect: str) -> list[tuple[str, str]]:
    """Split ``sql`` into statements as the server would read them.

    Returns, for each statement, ``(code, full)``: both upper-cased with whitespace collapsed
    and comments removed; ``code`` has string literals emptied, ``full`` keeps them. MySQL's
    executable comments (``/*! ... */``, ``/*M! ... */``) count as code, as the server runs them.
    """
    mysql = dialect in ("mysql", "mariadb")
    found: list[tuple[str, str]] = []
    code: list[str] = []
    full: list[str] = []
    i, n = 0, len(sql)
    executable_depth = 0

    def flush() -> None:
        c = " ".join("".join(code).split()).upper()
        f = " ".join("".join(full).split()).upper()
        if c:
            found.append((c, f))
        code.clear()
        full.clear()

    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\" and mysql and ch != "`":
                    j += 2
                    continue
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            literal = sql[i : j + 1]
            full.append(literal)
            code.append(" '' " if ch == "'" else " " + literal[1:-1] + " ")
            i = j + 1
            continue
        if ch == "$" and not mysql and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_")):
            match = _DOLLAR.match(sql, i)
            if match:
                tag = match.group(0)
                end = sql.find(tag, match.end())
                end = n if end < 0 else end + len(tag)
                full.append(sql[i:end])
                code.append(" '' ")
                i = end
                continue
        if ch == "-" and sql.startswith("--", i):
            after = sql[i + 2 : i + 3]
            if not mysql or after == "" or after.isspace():
                end = sql.find("\n", i)
                i = n if end < 0 else end
                continue
        if ch == "#" and mysql:
            end = sql.find("\n", i)
            i = n if end < 0 else end
            continue
        if ch == "/" and sql.startswith("/*", i):
            if mysql:
                match = _MYSQL_EXECUTABLE.match(sql, i)
                if match:
                    executable_depth += 1
                    code.append(" ")
                    full.append(" ")
                    i = match.end()
                    continue
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("*/", j):
                    depth -= 1
                    j += 2
                elif not mysql and sql.startswith("/*", j):
                    depth += 1
                    j += 2
                else:
                    j += 1
            code.append(" ")
            full.append(" ")
            i = j
            continue
        if ch == "*" and executable_depth and sql.startswith("*/", i):
            executable_depth -= 1
            code.append(" ")
            full.append(" ")
            i += 2
            continue
        if ch == ";":
            flush()
            i += 1
            continue
        code.append(ch)
        full.append(ch)
        i += 1
    flush()
    return found


# -- what is refused ------------------------------------------------------------------------

_TRANSACTION_CONTROL = {
    "BEGIN",
    "START",
    "COMMIT",
    "END",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT",
    "RELEASE",
    "XA",
}
#: MySQL/MariaDB statements that commit the transaction implicitly (MySQL manual, "Statements
#: That Cause an Implicit Commit"), plus dynamic SQL and procedures, which may.
_MYSQL_IMPLICIT_COMMIT = {
    "CREATE",
    "ALTER",
    "DROP",
    "RENAME",
    "TRUNCATE",
    "GRANT",
    "REVOKE",
    "LOCK",
    "UNLOCK",
    "ANALYZE",
    "OPTIMIZE",
    "REPAIR",
    "CHECK",
    "FLUSH",
    "RESET",
    "INSTALL",
    "UNINSTALL",
    "CACHE",
    "CHANGE",
    "STOP",
    "PURGE",
    "BACKUP",
    "CALL",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
}
_WRITES = {"INSERT", "UPDATE", "DELETE", "REPLACE", "MERGE", "UPSERT", "COPY", "LOAD"}
_DDL = {"CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE", "COMMENT", "GRANT", "REVOKE"}
_READS = {"SELECT", "SHOW", "EXPLAIN", "DESCRIBE", "DESC", "VALUES", "TABLE", "SET", "PRAGMA"}
_LOCKING = (" FOR UPDATE", " FOR SHARE", " FOR NO KEY UPDATE", " FOR KEY SHARE", " LOCK IN SHARE")


def _words(code: str) -> list[str]:
    return code.lstrip("( ").split(" ")


def _sandbox_refusal(code: str, dialect: str) -> str | None:
    words = _words(code)
    first = words[0]
    second = words[1] if len(words) > 1 else ""
    mysql = dialect in ("mysql", "mariadb")
    if first in _TRANSACTION_CONTROL or (first == "PREPARE" and second == "TRANSACTION"):
        return "it would end the sandbox's transaction and keep what it did"
    if first == "SET" and "AUTOCOMMIT" in code:
        return "it would commit the sandbox's transaction"
    if first == "SET" and (second in ("GLOBAL", "PERSIST", "PERSIST_ONLY") or "@@GLOBAL." in code):
        return "SET GLOBAL changes the server for good, outside any transaction"
    if first == "SET" and second == "PASSWORD":
        return "SET PASSWORD is kept at once, outside any transaction"
    if mysql and re.search(r"\bSETVAL\s*\(", code):
        return "SETVAL() moves the sequence for good: a rollback does not undo it"
    if mysql and first in _MYSQL_IMPLICIT_COMMIT:
        return f"{dialect_label(dialect)} commits the sandbox's transaction before running it"
    return None


def dialect_label(dialect: str) -> str:
    return {"mysql": "MySQL/MariaDB", "mariadb": "MariaDB"}.get(dialect, dialect)


def _read_only_refusal(code: str, full: str) -> str | None:
    words = _words(code)
    first = words[0]
    if "READ WRITE" in full or "SESSION CHARACTERISTICS" in full:
        return "it would switch the transaction or session to read-write"
    if "SET_CONFIG" in full:
        return "set_config() can switch the session to read-write"
    if first in ("SET", "RESET", "ALTER") and (
        "READ_ONLY" in full or "QUERY_ONLY" in full or "READ ONLY" in full
    ):
        return "it changes the access mode"
    if first in ("PREPARE", "EXECUTE", "DEALLOCATE"):
        return "dynamic SQL is not read here, so it is not run"
    if first in ("RESET", "DISCARD"):
        return f"{first} would restore the read-write default"
    if first == "PRAGMA" and re.search(r"QUERY_ONLY\s*(=|\()", full):
        return "PRAGMA query_only would switch SQLite to read-write"
    return None


def _meta_refusal(code: str, full: str) -> bool:
    if META not in full:
        return False
    first = _words(code)[0]
    return first in _WRITES | _DDL or (first == "WITH" and _has_write(code))


def _has_write(code: str) -> bool:
    return re.search(r"\b(INSERT|UPDATE|DELETE|MERGE)\b", code) is not None


def refusal(sql: str, dialect: str, policy: Policy) -> StatementRefused | None:
    """The error refusing ``sql`` under ``policy``, or None when it may run.

    On PostgreSQL the server's own parser decides (:mod:`.pg_statements`); elsewhere the
    statement is read as the server would read it, and the server itself is the boundary
    (MariaDB's XA transaction, SQLite's authorizer and read-only file).
    """
    if dialect == "postgresql":
        return _pg_refusal(sql, policy)
    for code, full in statements(sql, dialect):
        if policy.protected_record is not None and _meta_refusal(code, full):
            return _record_refusal(policy)
        if policy.sandbox:
            reason = _sandbox_refusal(code, dialect)
            if reason:
                return StatementRefused(f"sandbox: {_head(code)} refused: {reason}", hint=LEAVE)
        if policy.read_only:
            reason = _read_only_refusal(code, full)
            if reason:
                return StatementRefused(
                    f"read-only: {_head(code)} refused: {reason}", hint=READ_ONLY_HINT
                )
    return None


def _pg_refusal(sql: str, policy: Policy) -> StatementRefused | None:
    from myfy_db.shell.pg_statements import judge

    verdict = judge(
        sql,
        sandbox=policy.sandbox,
        read_only=policy.read_only,
        protected_record=policy.protected_record is not None,
    )
    if verdict is None:
        return None
    if verdict.record:
        return _record_refusal(policy)
    if policy.sandbox:
        return StatementRefused(f"sandbox: {verdict.what} refused: {verdict.reason}", hint=LEAVE)
    return StatementRefused(
        f"read-only: {verdict.what} refused: {verdict.reason}", hint=READ_ONLY_HINT
    )


def _record_refusal(policy: Policy) -> StatementRefused:
    return StatementRefused(
        f"refused: {META.lower()} records this database as "
        f"{policy.protected_record!r} (protected); the shell cannot change that record",
        hint="only MYFY_DB_DISABLE_ENVIRONMENT_CHECK=1 lifts the guard",
    )


def _head(code: str) -> str:
    words = _words(code)
    second = re.match(r"[A-Z_]*", words[1]).group(0) if len(words) > 1 else ""  # type: ignore[union-attr]
    return f"{words[0]} {second}".strip()


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
