"""``migrate --safe`` on MySQL/MariaDB: online DDL, and never a silent table copy.

Every ``ALTER TABLE`` a revision issues (Alembic's ``add_column``, ``drop_column``,
``alter_column``, ``create_foreign_key``, ``create_unique_constraint``, ...; ``create_index``
as ``CREATE INDEX``; ``drop_index`` as ``ALTER TABLE ... DROP INDEX``, the form that takes an
algorithm) is run online, and the server says which way:

1. with ``ALGORITHM=INSTANT`` (a change of metadata only);
2. refused (MySQL/MariaDB errors 1845, 1846; 1800 where the server has no INSTANT), with
   ``ALGORITHM=INPLACE, LOCK=NONE`` (rebuilt in place while reads and writes go on);
3. refused again, the change needs a table copy that blocks writes. A foreign key is the
   exception: the server refuses it only because ``foreign_key_checks`` is on, so it is
   added ``INPLACE, LOCK=NONE`` with the checks off for that statement, and the existing
   rows are checked right after (the foreign key is dropped again, exit 1, when a row
   points at nothing); every row written from then on is checked by the server. Any other
   copy is run by pt-online-schema-change with ``--online-ddl pt-osc`` (:mod:`.pt_osc`),
   and otherwise refused: exit 1, naming the revision and the operation, with the ways
   forward. The server never falls back to a copy on its own.

A refusal is the server's answer before it changes anything (the statement fails as a whole:
a multi-clause ALTER keeps none of its clauses), so trying INSTANT first costs one round
trip. Each statement prints one line through the run's reporter::

    r0005: alter_column orders.total -> ALGORITHM=INSTANT

MySQL and MariaDB commit each DDL statement as it runs, and the open transaction with it
(the refused attempt too, as the plain ALTER would). A revision refused half-way therefore
keeps what it ran before the refused statement, and is not recorded as applied: the error
says how many of its statements ran. Most copies are refused earlier, before anything runs,
by the lint rules (:func:`fixes` says which findings the rewrites make safe).

Left as written: statements on a table created in the same revision (it is empty); an
``ALTER`` that names its own ``ALGORITHM`` or ``LOCK``; raw SQL of several statements.
``op.execute("ALTER TABLE ...")`` with one statement is run online like the operations, as
is SQL run through ``op.get_bind()``: the rewrites watch the statements the MySQL dialect
sends, not the Python calls that made them.

Offline (``--sql --safe``), nothing can ask the server, so each statement is rendered with
``LOCK=NONE``: the server picks INSTANT or INPLACE when the script runs and refuses a copy
that would block writes (a foreign key between ``SET foreign_key_checks`` lines).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from myfy_db.driver_errors import driver_exception, mysql_code
from myfy_db.errors import OperationFailed
from myfy_db.migrations.hooks import replaced
from myfy_db.migrations.safe import pt_osc
from myfy_db.migrations.safe.mysql_statements import OnlineStatement, online_statement
from myfy_db.migrations.safe.pt_osc import quote

if TYPE_CHECKING:
    from myfy_db.migrations.lint.model import CapturedOp
    from myfy_db.migrations.safe import SafeRun

__all__ = [
    "INPLACE",
    "INSTANT",
    "OFFLINE",
    "REFUSED",
    "OnlineDdl",
    "OnlineStatement",
    "describe",
    "execution",
    "fixes",
    "online_statement",
]

#: The server's "not with this algorithm/lock" errors: ER_ALTER_OPERATION_NOT_SUPPORTED,
#: ER_ALTER_OPERATION_NOT_SUPPORTED_REASON, and ER_UNKNOWN_ALTER_ALGORITHM (no INSTANT).
REFUSED = frozenset({1845, 1846, 1800})
INSTANT = "ALGORITHM=INSTANT"
INPLACE = "ALGORITHM=INPLACE, LOCK=NONE"
#: Offline: the server picks INSTANT or INPLACE when the script runs, never a blocking copy.
OFFLINE = "LOCK=NONE"

#: The lint findings these rewrites make safe: MY005 always (foreign keys with the checks off
#: and the rows checked after); the copies only through pt-osc.
_FIXED = frozenset({"MY005"})
_FIXED_BY_PT_OSC = frozenset({"MY001", "MY003", "MY004"})

_WRITES = re.compile(
    r"^\s*(?:INSERT|UPDATE|DELETE|REPLACE|ALTER|CREATE|DROP|RENAME|TRUNCATE)\b", re.I
)
_REASON = re.compile(r"Reason:\s*(?P<reason>.*?)\.?\s*(?:Try [A-Z=,\s]+\.?)?$", re.S)


def _reason(exc: BaseException) -> str:
    """The server's reason for refusing an algorithm: ``Cannot change column type``."""
    found = driver_exception(exc)
    args: tuple[Any, ...] = tuple(getattr(found, "args", ()))
    message = str(args[1] if len(args) > 1 else found).strip()
    match = _REASON.search(message)
    return match["reason"].strip() if match and match["reason"].strip() else message


def _op_name(operation: Any) -> str:
    name = type(operation).__name__
    if name == "ExecuteSQLOp":
        return "execute"
    name = name.removesuffix("Op")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def describe(operation: Any, statement: OnlineStatement) -> str:
    """``alter_column orders.total``: the operation and what it works on."""
    if operation is None:
        return statement.describe()
    name = _op_name(operation)
    if name == "execute":
        return f"execute {statement.describe()}"
    table = getattr(operation, "table_name", None) or getattr(operation, "source_table", None)
    column = getattr(operation, "column_name", None)
    if column is None and getattr(operation, "column", None) is not None:
        column = getattr(operation.column, "name", None)
    if table and column:
        return f"{name} {table}.{column}"
    for attr in ("index_name", "constraint_name"):
        named = getattr(operation, attr, None)
        if named:
            return f"{name} {named}"
    return f"{name} {table or statement.table_name}"


def _revision_in_stack() -> str | None:
    """The revision whose ``upgrade()`` (or ``downgrade()``) is running: the innermost frame
    of a module with ``revision`` and ``down_revision``, as Alembic's revision files have."""
    frame: Any = sys._getframe(1)
    while frame is not None:
        found = frame.f_globals
        if "down_revision" in found and isinstance(found.get("revision"), str):
            return str(found["revision"])
        frame = frame.f_back
    return None


class _Session:
    """The migration connection as the rewrites use it: the statement's own DBAPI cursor
    for the ALTER, a second cursor for what they read."""

    def __init__(self, cursor: Any, dbapi_connection: Any) -> None:
        self.cursor = cursor
        self.dbapi = dbapi_connection

    def execute(self, sql: str) -> None:
        self.cursor.execute(sql)

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(sql, params or None)
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def run(self, sql: str) -> None:
        """A statement of the rewrites' own, on the second cursor."""
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(sql)
        finally:
            cursor.close()


class OnlineDdl:
    """The MySQL/MariaDB rewrites of one ``--safe`` run."""

    def __init__(self, run: SafeRun) -> None:
        self.run = run
        self.report = run.report
        self.tool = run.options.online_ddl
        #: Tables each revision created: their statements run as written.
        self.created: dict[str | None, set[str]] = {}
        #: How many writing statements each revision has run (for a refusal's hint).
        self.ran: dict[str | None, int] = {}
        #: The Alembic operation being invoked, if any.
        self.operation: Any = None
        #: pt-online-schema-change, found before anything runs (``--online-ddl pt-osc``).
        self.executable: str | None = None

    # -- what runs ---------------------------------------------------------------------

    def invoked(self, operation: Any) -> None:
        """Alembic is about to run ``operation``: note a table it creates."""
        from alembic.operations import ops

        if isinstance(operation, ops.CreateTableOp):
            revision = _revision_in_stack()
            self.created.setdefault(revision, set()).add(operation.table_name.lower())

    def _prefix(self, revision: str | None, label: str) -> str:
        return f"{revision}: {label}" if revision else label

    def intercept(self, cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        """The dialect's ``do_execute``: run ``statement`` online; True when it ran here."""
        if parameters:
            return False
        revision = _revision_in_stack()
        found = online_statement(statement)
        if found is None:
            if _WRITES.match(statement):
                self.ran[revision] = self.ran.get(revision, 0) + 1
            return False
        label = describe(self.operation, found)
        prefix = self._prefix(revision, label)
        if found.table_name.lower() in self.created.get(revision, set()):
            self.ran[revision] = self.ran.get(revision, 0) + 1
            return False  # a table of this revision: empty, run as written
        session = _Session(cursor, context.root_connection.connection.dbapi_connection)
        if found.given:
            session.execute(found.text)
            self.report(f"{prefix} -> as written (it names its own ALGORITHM or LOCK)")
        else:
            self.online(session, found, prefix, revision)
        self.ran[revision] = self.ran.get(revision, 0) + 1
        return True

    def online(
        self, session: _Session, found: OnlineStatement, prefix: str, revision: str | None
    ) -> None:
        """INSTANT, else INPLACE with LOCK=NONE; else a foreign key with the checks off,
        pt-osc, or the refusal."""
        reason = ""
        for algorithm in (INSTANT, INPLACE):
            try:
                session.execute(found.form(algorithm))
            except Exception as exc:
                if mysql_code(exc) not in REFUSED:
                    raise
                reason = _reason(exc)
                continue
            self.report(f"{prefix} -> {algorithm}")
            return
        if "foreign_key_checks" in reason:  # the server's own reason: a key, and only it
            self._foreign_key(session, found, prefix, revision)
            return
        if self.tool == "pt-osc":
            self._pt_osc(session, found, prefix, revision, reason)
            return
        raise self._needs_copy(prefix, revision, reason)

    def _state(self, revision: str | None) -> str:
        if revision is None:
            return "MySQL/MariaDB commit each DDL statement as it runs"
        ran = self.ran.get(revision, 0)
        if not ran:
            return f"nothing of {revision} ran before it, and {revision} is not recorded as applied"
        return (
            f"{ran} statement(s) of {revision} ran before it and stay (MySQL/MariaDB commit "
            f"each DDL statement, and the transaction before it); {revision} is not "
            "recorded as applied, so a re-run starts it from the beginning"
        )

    def _needs_copy(self, prefix: str, revision: str | None, reason: str) -> OperationFailed:
        return OperationFailed(
            f"{prefix} needs a table copy that blocks writes: the server refuses "
            f"{INSTANT} and {INPLACE} for it ({reason})",
            hint="run it with --online-ddl pt-osc (pt-online-schema-change copies the table "
            "while writes go on), or without --safe in a maintenance window; "
            + self._state(revision),
        )

    # -- foreign keys ------------------------------------------------------------------

    def _schema(self, session: _Session, found: OnlineStatement) -> str:
        if found.schema_name:
            return found.schema_name
        return str(session.rows("SELECT DATABASE()")[0][0])

    def _names(self, session: _Session, schema: str, table: str) -> tuple[set[str], set[str]]:
        """The foreign keys and the indexes of ``schema.table``."""
        indexes = session.rows(
            "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS WHERE "
            "TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            (schema, table),
        )
        return pt_osc.foreign_keys(session, schema, table), {str(r[0]) for r in indexes}

    def _foreign_key(
        self, session: _Session, found: OnlineStatement, prefix: str, revision: str | None
    ) -> None:
        """Add the foreign key INPLACE with the checks off, then check the existing rows."""
        schema, table = self._schema(session, found), found.table_name
        keys_before, indexes_before = self._names(session, schema, table)
        checks = int(session.rows("SELECT @@SESSION.foreign_key_checks")[0][0])
        session.run("SET SESSION foreign_key_checks = 0")
        try:
            session.execute(found.form(INPLACE))
        except Exception as exc:
            if mysql_code(exc) not in REFUSED:
                raise
            raise self._needs_copy(prefix, revision, _reason(exc)) from None
        finally:
            session.run(f"SET SESSION foreign_key_checks = {checks}")
        keys_after, indexes_after = self._names(session, schema, table)
        for key in sorted(keys_after - keys_before):
            orphan = self._orphan(session, schema, table, key)
            if orphan is None:
                continue
            for name in sorted(keys_after - keys_before):
                session.run(
                    f"ALTER TABLE {quote(schema)}.{quote(table)} DROP FOREIGN KEY {quote(name)}"
                )
            for name in sorted(indexes_after - indexes_before):
                with suppress(Exception):
                    session.run(
                        f"ALTER TABLE {quote(schema)}.{quote(table)} DROP INDEX {quote(name)}"
                    )
            columns, values, parent = orphan
            shown = ", ".join(f"{c}={v!r}" for c, v in zip(columns, values, strict=True))
            raise OperationFailed(
                f"{prefix}: rows of {table} point at no row of {parent} (the first: {shown}); "
                f"the foreign key {key} was dropped again",
                hint="delete or fix those rows, then run again; " + self._state(revision),
            )
        session.run("COMMIT")  # what the checks read: no snapshot held across the revision
        self.report(
            f"{prefix} -> {INPLACE} with foreign_key_checks=0, then the existing rows checked"
        )

    def _orphan(
        self, session: _Session, schema: str, table: str, key: str
    ) -> tuple[list[str], tuple[Any, ...], str] | None:
        """The first row of ``table`` that foreign key ``key`` finds no parent for."""
        parts = session.rows(
            "SELECT COLUMN_NAME, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME, "
            "REFERENCED_COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE "
            "CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s AND CONSTRAINT_NAME = %s AND "
            "REFERENCED_TABLE_NAME IS NOT NULL ORDER BY ORDINAL_POSITION",
            (schema, table, key),
        )
        if not parts:
            return None
        columns = [str(p[0]) for p in parts]
        parent = f"{quote(str(parts[0][1]))}.{quote(str(parts[0][2]))}"
        present = " AND ".join(f"c.{quote(c)} IS NOT NULL" for c in columns)
        match = " AND ".join(f"p.{quote(str(p[3]))} = c.{quote(str(p[0]))}" for p in parts)
        rows = session.rows(
            f"SELECT {', '.join('c.' + quote(c) for c in columns)} "
            f"FROM {quote(schema)}.{quote(table)} AS c WHERE {present} "
            f"AND NOT EXISTS (SELECT 1 FROM {parent} AS p WHERE {match}) LIMIT 1"
        )
        return (columns, rows[0], str(parts[0][2])) if rows else None

    # -- pt-online-schema-change -------------------------------------------------------

    def _pt_osc(
        self,
        session: _Session,
        found: OnlineStatement,
        prefix: str,
        revision: str | None,
        reason: str,
    ) -> None:
        """Run the ALTER through pt-online-schema-change (:func:`.pt_osc.alter`)."""
        settings, given = self.run.settings, self.run.options.pt_osc
        schema, table = self._schema(session, found), found.table_name
        chunk = pt_osc.chunk_time(session, schema, table, given.chunk_time)
        why = f"the server refuses {INSTANT} and {INPLACE}: {reason}"
        if chunk is not None and given.chunk_time is None:
            why += (
                f"; --chunk-time {chunk:g}: each chunk holds the AUTO-INC lock inserts wait "
                "for (innodb_autoinc_lock_mode < 2)"
            )
        job = pt_osc.PtOscJob(
            url=settings.url.sqlalchemy_url,
            database=schema,
            table=table,
            alter=found.clauses,
            options=dataclasses.replace(given, chunk_time=chunk),
            lock_wait_timeout=float(settings.ddl_lock_timeout) or None,
        )
        pt_osc.alter(
            session,
            job,
            prefix=prefix,
            why=why,
            state=self._state(revision),
            report=self.report,
            executable=self.executable,
        )

    # -- offline -----------------------------------------------------------------------

    def offline(self, text: str) -> str:
        """A statement of ``--sql`` output, rendered online (see the module)."""
        found = online_statement(text)
        if found is None or found.given or found.rename_only:
            return text
        revision = _revision_in_stack()
        if found.table_name.lower() in self.created.get(revision, set()):
            return text
        prefix = self._prefix(revision, describe(self.operation, found))
        self.report(f"{prefix} -> {OFFLINE}")
        lines = [
            f"-- myfy-db --safe {prefix}: {OFFLINE} (INSTANT or INPLACE, never a blocking copy)"
        ]
        if found.adds_foreign_key:
            lines += [
                "-- the existing rows are not checked with foreign_key_checks=0: check them",
                "SET SESSION foreign_key_checks = 0;",
                f"{found.form(INPLACE)};",
                "SET SESSION foreign_key_checks = 1;",
            ]
        else:
            lines.append(f"{found.form(OFFLINE)};")
        if self.tool == "pt-osc" and not found.adds_foreign_key:
            database = found.schema_name or self.run.settings.url.database or "<database>"
            lines.append(
                f"-- if it is refused (a copy): {pt_osc.PT_OSC} --alter "
                f"{shlex.quote(found.clauses)} D={database},t={found.table_name} --execute"
            )
        return "\n".join(lines)


# -- installing the rewrites ---------------------------------------------------------------


@contextmanager
def _operations_watched(ddl: OnlineDdl) -> Iterator[None]:
    """Note the Alembic operation each statement comes from (its name in the lines)."""
    from alembic.operations.base import AbstractOperations

    original = AbstractOperations.invoke

    def invoke(self: Any, operation: Any) -> Any:
        if ddl.operation is not None:  # an operation that runs others: the outer one names
            return original(self, operation)
        ddl.invoked(operation)
        ddl.operation = operation
        try:
            return original(self, operation)
        finally:
            ddl.operation = None

    with replaced(AbstractOperations, "invoke", invoke):
        yield


@contextmanager
def _statements_intercepted(ddl: OnlineDdl) -> Iterator[None]:
    """Every statement a MySQL dialect sends, this run's and its env.py's engines' alike."""
    from sqlalchemy import event
    from sqlalchemy.dialects.mysql.base import MySQLDialect

    def do_execute(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        return ddl.intercept(cursor, statement, parameters, context)

    def do_execute_no_params(cursor: Any, statement: str, context: Any) -> bool:
        return ddl.intercept(cursor, statement, None, context)

    event.listen(MySQLDialect, "do_execute", do_execute)
    event.listen(MySQLDialect, "do_execute_no_params", do_execute_no_params)
    try:
        yield
    finally:
        event.remove(MySQLDialect, "do_execute", do_execute)
        event.remove(MySQLDialect, "do_execute_no_params", do_execute_no_params)


@contextmanager
def _offline_rendered(ddl: OnlineDdl) -> Iterator[None]:
    """``--sql``: each statement Alembic writes, rendered online."""
    from alembic.ddl.impl import DefaultImpl

    original = DefaultImpl.static_output

    def static_output(self: Any, text: str) -> None:
        original(self, ddl.offline(text))

    with replaced(DefaultImpl, "static_output", static_output):
        yield


@contextmanager
def execution(run: SafeRun) -> Iterator[None]:
    """The rewrites, active for the block (see the module)."""
    ddl = OnlineDdl(run)
    if run.options.online_ddl == "pt-osc" and run.connection is not None:
        ddl.executable = pt_osc.locate()  # exit 2 before any revision runs
    with _operations_watched(ddl):
        if run.connection is None:
            with _offline_rendered(ddl):
                yield
        else:
            with _statements_intercepted(ddl):
                yield


def fixes(rule: str, captured: CapturedOp, online_ddl: str | None = None) -> bool:
    """Whether ``--safe`` (with ``online_ddl``) runs the finding ``rule`` on ``captured`` in
    a form that does not block writes."""
    if rule in _FIXED:
        return True
    return rule in _FIXED_BY_PT_OSC and online_ddl == "pt-osc"
