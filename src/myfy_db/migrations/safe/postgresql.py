"""``migrate --safe`` on PostgreSQL: Alembic's operations, run in their non-blocking forms.

While the run is active, ``Operations.invoke`` is wrapped (and put back afterwards), so the
revisions' own calls are rewritten as they run:

=========================================  ==============================================
operation (on a table that already exists)  run as
=========================================  ==============================================
``create_index``                            ``CREATE INDEX CONCURRENTLY IF NOT EXISTS``; an
                                            INVALID index of the name (an earlier failed
                                            build) is dropped first
``drop_index``                              ``DROP INDEX CONCURRENTLY IF EXISTS``
``create_foreign_key``, ``sa.ForeignKey``   ``ADD CONSTRAINT ... NOT VALID``, then
in ``add_column``                           ``VALIDATE CONSTRAINT``
``create_check_constraint``                 the same two steps
``alter_column(nullable=False)``            ``CHECK (col IS NOT NULL) NOT VALID``,
                                            ``VALIDATE``, ``SET NOT NULL`` (no scan on
                                            PostgreSQL 12+), then the check is dropped
``create_unique_constraint``                ``CREATE UNIQUE INDEX CONCURRENTLY``, then
                                            ``ADD CONSTRAINT ... UNIQUE USING INDEX``
=========================================  ==============================================

A table created in the same revision is empty: its operations run as written.

The steps run in Alembic's ``autocommit_block()``, each statement its own transaction. The
block commits what the revision did before it (Alembic's documented behaviour); the
revision's version row is still written only after the whole revision ran, in the
transaction that follows. Every step is safe to run again, so a revision that failed half-way
converges on its re-run: ``IF NOT EXISTS`` / ``IF EXISTS``, an INVALID index is dropped and
rebuilt, a constraint that exists (NOT VALID after a lock timeout in ``VALIDATE``) is only
validated. The session's ``lock_timeout`` (``--ddl-lock-timeout``) is a session setting, so
it bounds every step, and ``--retries`` retries the revision.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from myfy_db.migrations.hooks import each_revision_step, replaced
from myfy_db.migrations.safe import pg_progress as progress
from myfy_db.migrations.safe.pg_names import (
    check_column,
    describe,
    object_name,
    short,
)

if TYPE_CHECKING:
    from myfy_db.migrations.lint.model import CapturedOp
    from myfy_db.migrations.safe import SafeRun

__all__ = ["execution", "fixes"]

_INDEX_VALID = """
SELECT i.indisvalid FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = :name AND n.nspname = COALESCE(:schema, current_schema())
"""
#: The table (or '' for a domain) of a constraint of the name in the schema.
_NAME_TAKEN = """
SELECT COALESCE(c.relname, '') FROM pg_constraint con
JOIN pg_namespace n ON n.oid = con.connamespace
LEFT JOIN pg_class c ON c.oid = con.conrelid
WHERE con.conname = :name AND n.nspname = COALESCE(:schema, current_schema())
LIMIT 1
"""
_CONSTRAINT = """
SELECT con.convalidated FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE con.conname = :name AND c.relname = :table
  AND n.nspname = COALESCE(:schema, current_schema())
"""


#: The lint rules whose findings the rewrites below make safe, on Alembic's own operations
#: (never on ``op.execute()`` text, nor inside ``batch_alter_table``).
_FIXED: dict[str, frozenset[str]] = {
    "PG001": frozenset({"CreateIndexOp"}),
    "PG002": frozenset({"DropIndexOp"}),
    "PG007": frozenset({"AlterColumnOp"}),
    "PG008": frozenset({"CreateForeignKeyOp", "CreateCheckConstraintOp", "AddColumnOp"}),
    "PG009": frozenset({"CreateUniqueConstraintOp"}),
    "PG010": frozenset({"CreateIndexOp", "DropIndexOp"}),
    "PG013": frozenset({"CreateIndexOp"}),
}


def fixes(rule: str, captured: CapturedOp) -> bool:
    """True when ``migrate --safe`` runs the operation of ``rule``'s finding in its safe form."""
    if captured.raw is not None or getattr(captured, "batch", False):
        return False
    kinds = _FIXED.get(rule)
    operation = captured.operation
    if kinds is None or type(operation).__name__ not in kinds:
        return False
    if rule == "PG008" and type(operation).__name__ == "AddColumnOp":
        return bool(operation.column.foreign_keys)  # not the enum's CHECK of an alter_column
    return True


def _norm(name: str | None) -> str:
    return (name or "").strip('"').lower()


@dataclass
class _Revision:
    """What the running revision did so far: a table it created is new, not "existing"."""

    id: str = "?"
    created_tables: set[tuple[str, str]] = field(default_factory=set)
    added_columns: set[tuple[str, str, str]] = field(default_factory=set)
    #: Operations of the revision completed so far, in the order it invokes them.
    count: int = 0
    #: Operations an interrupted run of this revision committed (None: not read yet).
    skip: int | None = None
    #: Each completed operation, described (``add_column note``).
    done: list[str] = field(default_factory=list)
    #: The operations the interrupted run recorded as done (None: it did not say).
    recorded: list[str] | None = None
    #: A progress row of the revision was found (used, or stale).
    found: bool = False
    #: The operation the interrupted run was on (its steps may have left a constraint).
    resume_at: int = -1
    #: This run recorded its progress (a step left the transaction).
    marked: bool = False
    #: The migration context of the revision's first operation.
    context: Any = None


class _Rewriter:
    def __init__(self, run: SafeRun, original: Callable[[Any, Any], Any]) -> None:
        self.run = run
        self.original = original
        self.revision = _Revision()
        self.depth = 0

    # -- what the revision did -------------------------------------------------------------

    def begin(self, revision: str) -> None:
        self.revision = _Revision(revision)

    # -- progress: what an interrupted run of the revision committed -----------------------

    def read_progress(self, operations: Any) -> int:
        context = operations.get_context()
        revision = self.revision
        revision.context = context
        if context.as_sql:
            return 0
        found = progress.read(context, revision.id)
        if found is None:
            return 0
        revision.found = True
        done, recorded, stale = found
        if stale:
            self.run.report(
                f"{revision.id}: the progress an interrupted run left is stale (the version "
                "table moved since): every operation runs"
            )
            return 0
        revision.recorded = recorded
        revision.resume_at = done
        return done

    def mark(self, operations: Any) -> None:
        """Record, in the transaction the next step commits, how many of the revision's
        operations are done: a re-run skips those (they are committed, the version row is
        not)."""
        context = operations.get_context()
        if context.as_sql:
            return
        progress.write(context, self.revision.id, self.revision.done)
        self.revision.marked = True

    def finish(self) -> None:
        """The revision ran to its end: its progress goes, with its version row."""
        revision = self.revision
        context = revision.context
        if context is None or context.as_sql or not (revision.marked or revision.found):
            return
        progress.clear(context, revision.id)

    def existing(self, table: str | None, schema: str | None) -> bool:
        return bool(table) and (_norm(schema), _norm(table)) not in self.revision.created_tables

    def say(self, what: str, how: str) -> None:
        self.run.report(f"{self.revision.id}: {what} -> {how}")

    # -- the dispatch ----------------------------------------------------------------------

    def invoke(self, operations: Any, operation: Any) -> Any:
        from alembic.operations import ops
        from alembic.operations.base import BatchOperations

        if self.depth or isinstance(operations, BatchOperations):
            return self.original(operations, operation)
        revision = self.revision
        if revision.skip is None:
            revision.skip = self.read_progress(operations)
        self.depth += 1
        try:
            described = describe(operation)
            recorded = revision.recorded
            if (
                revision.count < revision.skip
                and recorded is not None
                and recorded[revision.count : revision.count + 1] != [described]
            ):
                self.say(
                    described,
                    "not what the interrupted run did here (the revision changed since): "
                    "it and the rest run",
                )
                revision.skip = revision.count
            if revision.count < revision.skip:
                self._noted(operation, ops)
                self.say(described, "done by an interrupted run: skipped")
                result = None
            else:
                result = self._dispatch(operations, operation, ops)
            revision.count += 1
            revision.done.append(described)
            return result
        finally:
            self.depth -= 1

    def _noted(self, operation: Any, ops: Any) -> None:
        """What a skipped operation did still counts: a table it created is new."""
        schema = getattr(operation, "schema", None)
        if isinstance(operation, ops.CreateTableOp):
            self.revision.created_tables.add((_norm(schema), _norm(operation.table_name)))
        elif isinstance(operation, ops.AddColumnOp):
            column = operation.column.name
            self.revision.added_columns.add(
                (_norm(schema), _norm(operation.table_name), _norm(column))
            )

    def _dispatch(self, operations: Any, operation: Any, ops: Any) -> Any:
        schema = getattr(operation, "schema", None)
        if isinstance(operation, ops.CreateTableOp):
            self.revision.created_tables.add((_norm(schema), _norm(operation.table_name)))
        elif isinstance(operation, ops.AddColumnOp):
            column = operation.column
            key = (_norm(schema), _norm(operation.table_name), _norm(column.name))
            self.revision.added_columns.add(key)
            if column.foreign_keys and self.existing(operation.table_name, schema):
                return self.add_column_with_foreign_key(operations, operation)
        elif isinstance(operation, ops.CreateIndexOp):
            if self.existing(operation.table_name, schema):
                return self.create_index(operations, operation)
        elif isinstance(operation, ops.DropIndexOp):
            table = operation.table_name
            if table is None or self.existing(table, schema):
                return self.drop_index(operations, operation)
        elif isinstance(operation, ops.CreateForeignKeyOp):
            if self.existing(operation.source_table, operation.kw.get("source_schema")):
                return self.not_valid_then_validate(operations, operation, "create_foreign_key")
        elif isinstance(operation, ops.CreateCheckConstraintOp):
            if self.existing(operation.table_name, schema):
                return self.not_valid_then_validate(
                    operations, operation, "create_check_constraint"
                )
        elif isinstance(operation, ops.AlterColumnOp):
            column = (_norm(schema), _norm(operation.table_name), _norm(operation.column_name))
            if (
                operation.modify_nullable is False
                and self.existing(operation.table_name, schema)
                and column not in self.revision.added_columns
            ):
                return self.set_not_null(operations, operation)
        elif isinstance(operation, ops.CreateUniqueConstraintOp) and self.existing(
            operation.table_name, schema
        ):
            return self.unique_using_index(operations, operation)
        return self.original(operations, operation)

    # -- helpers ---------------------------------------------------------------------------

    def online(self, operations: Any) -> bool:
        return not operations.get_context().as_sql

    def query(self, operations: Any, sql: str, **params: Any) -> Any:
        """One value read on the migration's connection (None offline, or when no row)."""
        from sqlalchemy import text

        context = operations.get_context()
        if context.as_sql:
            return None
        return context.connection.execute(text(sql), params).scalar()

    def execute(self, operations: Any, statement: str) -> None:
        self.original(operations, _execute_op(statement))

    def quote(self, operations: Any, name: str) -> str:
        preparer = operations.get_context().impl.dialect.identifier_preparer
        return str(preparer.quote(name))

    def table(self, operations: Any, table: str, schema: str | None) -> str:
        quoted = self.quote(operations, table)
        return f"{self.quote(operations, schema)}.{quoted}" if schema else quoted

    def drop_invalid_index(self, operations: Any, name: str, schema: str | None) -> None:
        """An INVALID index of ``name`` (a concurrent build that failed) is dropped, so the
        build runs again instead of ``IF NOT EXISTS`` keeping the broken one."""
        valid = self.query(operations, _INDEX_VALID, name=name, schema=schema)
        if valid is False:
            self.say(f"index {name}", "DROP INDEX CONCURRENTLY (INVALID, left by a failed build)")
            qualified = self.table(operations, name, schema)
            self.execute(operations, f"DROP INDEX CONCURRENTLY IF EXISTS {qualified}")

    def constraint_state(
        self, operations: Any, name: str, table: str, schema: str | None
    ) -> bool | None:
        """None: no such constraint; else whether it is validated."""
        found = self.query(operations, _CONSTRAINT, name=name, table=table, schema=schema)
        return None if found is None else bool(found)

    def final_name(self, operations: Any, operation: Any) -> str | None:
        """The name the server gets for ``operation``'s constraint or index, as the plain
        operation renders it: the target metadata's naming convention applied (Alembic's
        operations follow it), truncated as the dialect does; None when it names none."""
        context = operations.get_context()
        build = getattr(operation, "to_index", None) or operation.to_constraint
        made = build(context)
        if made.name is None:
            return None  # the server names it
        preparer = context.impl.dialect.identifier_preparer
        name = preparer.format_constraint(made, _alembic_quote=False)
        return None if name is None else str(name)

    def validate(self, operations: Any, table: str, schema: str | None, name: str) -> None:
        qualified = self.table(operations, table, schema)
        quoted = self.quote(operations, name)
        self.execute(operations, f"ALTER TABLE {qualified} VALIDATE CONSTRAINT {quoted}")

    # -- the rewrites ----------------------------------------------------------------------

    def create_index(self, operations: Any, operation: Any) -> Any:
        from alembic.operations import ops
        from sqlalchemy.sql.naming import conv

        name = self.final_name(operations, operation) or operation.index_name
        unique = bool(operation.unique)
        how = "CREATE UNIQUE INDEX CONCURRENTLY" if unique else "CREATE INDEX CONCURRENTLY"
        self.say(f"create_index {name}", how)
        kw = {**operation.kw, "postgresql_concurrently": True}
        rewritten = ops.CreateIndexOp(
            conv(name) if name is not None else None,
            operation.table_name,
            operation.columns,
            schema=operation.schema,
            unique=unique,
            if_not_exists=True,
            **kw,
        )
        self.mark(operations)
        with _outside_transaction(operations):
            if name is not None:
                self.drop_invalid_index(operations, str(name), operation.schema)
            return self.original(operations, rewritten)

    def drop_index(self, operations: Any, operation: Any) -> Any:
        from alembic.operations import ops

        self.say(f"drop_index {operation.index_name}", "DROP INDEX CONCURRENTLY")
        kw = {**operation.kw, "postgresql_concurrently": True}
        rewritten = ops.DropIndexOp(
            operation.index_name,
            table_name=operation.table_name,
            schema=operation.schema,
            if_exists=True,
            **kw,
        )
        self.mark(operations)
        with _outside_transaction(operations):
            return self.original(operations, rewritten)

    def not_valid_then_validate(self, operations: Any, operation: Any, what: str) -> Any:
        from alembic.operations import ops
        from sqlalchemy.sql.naming import conv

        if isinstance(operation, ops.CreateForeignKeyOp):
            table, schema = operation.source_table, operation.kw.get("source_schema")
            middle, label = "_".join(operation.local_cols), "fkey"
        else:
            table, schema = operation.table_name, operation.schema
            middle, label = check_column(operation.condition), "check"
        name = self.final_name(operations, operation)
        add = True
        if name is None:  # the server would choose it: as it would, never one in use
            name, add = self.server_name(operations, table, schema, middle, label)
        self.say(f"{what} {name}", "ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT")
        rewritten = copy.copy(operation)
        rewritten.constraint_name = conv(name)  # the convention is applied already
        rewritten.kw = {**operation.kw, "postgresql_not_valid": True}
        self.mark(operations)
        with _outside_transaction(operations):
            if add and self.constraint_state(operations, name, table, schema) is None:
                self.original(operations, rewritten)
            self.validate(operations, table, schema, name)

    def server_name(
        self, operations: Any, table: str, schema: str | None, middle: str, label: str
    ) -> tuple[str, bool]:
        """PostgreSQL's own choice of an unnamed constraint's name (``orders_qty_check``,
        then ``orders_qty_check1`` ... while the name is in use in the schema), and whether
        it is still to be added: not when the operation the interrupted run was on left it
        NOT VALID under the last name in use."""
        previous: tuple[str, str] | None = None
        for number in range(1000):  # pragma: no branch - the server's limit is the same
            candidate = object_name(table, middle, f"{label}{number or ''}")
            owner = self.query(operations, _NAME_TAKEN, name=candidate, schema=schema)
            if owner is None:
                break
            previous = (candidate, str(owner))
        revision = self.revision
        if (
            revision.found
            and revision.count == revision.resume_at
            and previous is not None
            and previous[1] == table
            and self.constraint_state(operations, previous[0], table, schema) is False
        ):
            return previous[0], False
        return candidate, True

    def add_column_with_foreign_key(self, operations: Any, operation: Any) -> Any:
        """The column on its own (in the revision's transaction), then each foreign key NOT
        VALID and validated."""
        from alembic.operations import ops

        column = operation.column
        keys = column.foreign_keys
        column.foreign_keys = set()  # copied without them: they attach when the copy does
        try:
            bare = column._copy()
        finally:
            column.foreign_keys = keys
        self.original(
            operations, ops.AddColumnOp(operation.table_name, bare, schema=operation.schema)
        )
        for key in sorted(column.foreign_keys, key=lambda k: str(k.target_fullname)):
            target = key._column_tokens
            kw: dict[str, Any] = {
                "source_schema": operation.schema,
                "referent_schema": target[0],
                "ondelete": key.ondelete,
                "onupdate": key.onupdate,
                "deferrable": key.deferrable,
                "initially": key.initially,
                "match": key.match,
            }
            foreign = ops.CreateForeignKeyOp(
                key.name,
                operation.table_name,
                target[1],
                [column.name],
                [target[2]],
                **{k: v for k, v in kw.items() if v is not None},
            )
            self.not_valid_then_validate(
                operations, foreign, f"add_column {column.name}: foreign key"
            )

    def set_not_null(self, operations: Any, operation: Any) -> Any:
        table, schema = operation.table_name, operation.schema
        column = operation.modify_name or operation.column_name
        others = copy.copy(operation)
        others.modify_nullable = None
        if (
            others.modify_type is not None
            or others.modify_name is not None
            or others.modify_server_default is not False
            or others.modify_comment is not False
        ):
            self.original(operations, others)  # what else it changes, as written
        # Its own name: a revision's check (PG007's recipe) is never taken nor dropped.
        check = short(f"myfy_nn_{table}_{column}")
        self.say(
            f"alter_column {table}.{column} nullable=False",
            "CHECK (... IS NOT NULL) NOT VALID, VALIDATE, SET NOT NULL, drop the check",
        )
        qualified = self.table(operations, table, schema)
        quoted_check = self.quote(operations, check)
        quoted_column = self.quote(operations, column)
        self.mark(operations)
        with _outside_transaction(operations):
            if self.constraint_state(operations, check, table, schema) is None:
                self.execute(
                    operations,
                    f"ALTER TABLE {qualified} ADD CONSTRAINT {quoted_check} "
                    f"CHECK ({quoted_column} IS NOT NULL) NOT VALID",
                )
            self.validate(operations, table, schema, check)
            self.execute(
                operations, f"ALTER TABLE {qualified} ALTER COLUMN {quoted_column} SET NOT NULL"
            )
            self.execute(
                operations, f"ALTER TABLE {qualified} DROP CONSTRAINT IF EXISTS {quoted_check}"
            )

    def unique_using_index(self, operations: Any, operation: Any) -> Any:
        from alembic.operations import ops
        from sqlalchemy.sql.naming import conv

        table, schema = operation.table_name, operation.schema
        columns = [str(c) for c in operation.columns]
        default = short(f"{table}_{'_'.join(columns)}_key")
        name = self.final_name(operations, operation) or default
        self.say(
            f"create_unique_constraint {name}",
            "CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... UNIQUE USING INDEX",
        )
        index = ops.CreateIndexOp(
            conv(name),
            table,
            columns,
            schema=schema,
            unique=True,
            if_not_exists=True,
            postgresql_concurrently=True,
        )
        qualified = self.table(operations, table, schema)
        quoted = self.quote(operations, name)
        tail = ""
        if operation.kw.get("deferrable") is not None:
            tail += " DEFERRABLE" if operation.kw["deferrable"] else " NOT DEFERRABLE"
        if operation.kw.get("initially"):
            tail += f" INITIALLY {str(operation.kw['initially']).upper()}"
        self.mark(operations)
        with _outside_transaction(operations):
            if self.constraint_state(operations, name, table, schema) is not None:
                return  # a re-run after it was added: nothing left to do
            self.drop_invalid_index(operations, name, schema)
            self.original(operations, index)
            self.execute(
                operations,
                f"ALTER TABLE {qualified} ADD CONSTRAINT {quoted} "
                f"UNIQUE USING INDEX {quoted}{tail}",
            )


def _outside_transaction(operations: Any) -> Any:
    """Alembic's ``autocommit_block()``; nothing more when the revision is in one already."""
    from contextlib import nullcontext

    context = operations.get_context()
    if not context.as_sql and context.connection is not None:
        level = context.connection.get_execution_options().get("isolation_level")
        if level == "AUTOCOMMIT":
            return nullcontext()
    return context.autocommit_block()


def _execute_op(statement: str) -> Any:
    from alembic.operations import ops

    return ops.ExecuteSQLOp(statement)


@contextmanager
def execution(run: SafeRun) -> Iterator[None]:
    """The rewrites, installed for the block and taken out afterwards."""
    from alembic.operations.base import AbstractOperations

    rewriter = _Rewriter(run, AbstractOperations.invoke)

    def invoke(self: Any, operation: Any) -> Any:
        return rewriter.invoke(self, operation)

    def track(step: Any, upgrade: Callable[..., Any]) -> Callable[..., Any]:
        revision = str(getattr(step.revision, "revision", "?"))

        def tracked(**kwargs: Any) -> Any:
            rewriter.begin(revision)
            result = upgrade(**kwargs)
            rewriter.finish()
            return result

        return tracked

    with replaced(AbstractOperations, "invoke", invoke), each_revision_step(track):
        yield
