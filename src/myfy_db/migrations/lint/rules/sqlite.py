"""SQLite rules: operations SQLite cannot run at all, so the revision fails on a real file.

SQLite's ``ALTER TABLE`` adds, renames and drops columns and renames tables; nothing else.
Its ``ADD COLUMN`` refuses, once the table has a row, a ``NOT NULL`` column whose default
is NULL, a non-constant default and a ``STORED`` generated column; it always refuses a
``UNIQUE`` or ``PRIMARY KEY`` column. Everything else (a type, nullability or default
change, any constraint) needs Alembic's batch mode, which rebuilds the table.
"""

from __future__ import annotations

from typing import Any

from myfy_db.migrations.lint.model import CapturedOp, RangeState, Severity
from myfy_db.migrations.lint.registry import rule
from myfy_db.migrations.lint.rules._ops import kind, table_of

SQLITE = ("sqlite",)

BATCH = (
    "run it in Alembic's batch mode, which copies the table into its new shape: "
    "`with op.batch_alter_table('TABLE') as batch: batch.alter_column(...)` "
    "(env.py's context.configure(render_as_batch=True) makes autogenerate write it so)"
)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite_refusal(captured: CapturedOp) -> str | None:
    """SQLite's own answer to the revision's rendered ``ADD COLUMN``, run on an in-memory
    table of the same name holding a row: its refusal ("Cannot add a NOT NULL column with
    default value NULL", "Cannot add a column with non-constant default", "cannot add a
    STORED column"), or None when it runs. SQLite decides, not a reading of the text."""
    import sqlite3
    from contextlib import closing

    statements = [s.strip().rstrip(";") for s in captured.sql if s.strip()]
    if not statements:
        return None
    operation = captured.operation
    table = _quoted(operation.table_name)
    with closing(sqlite3.connect(":memory:")) as db:
        if operation.schema:
            db.execute(f"ATTACH ':memory:' AS {_quoted(operation.schema)}")
            table = f"{_quoted(operation.schema)}.{table}"
        db.execute(f"CREATE TABLE {table} (probe)")
        db.execute(f"INSERT INTO {table} VALUES (1)")
        for statement in statements:
            try:
                db.execute(statement)
            except sqlite3.Error as exc:
                # Only ADD COLUMN's refusals count: the probe table lacks the real columns
                # a generated column may name ("no such column"), which proves nothing.
                message = str(exc)
                return message if message.lower().startswith("cannot add") else None
    return None


@rule(
    "SQ001",
    "add-column-sqlite-refuses",
    severity=Severity.ERROR,
    dialects=SQLITE,
    summary="ADD COLUMN that SQLite refuses: NOT NULL without a default, a non-constant "
    "default, a STORED generated column, or a UNIQUE / PRIMARY KEY column",
    breaks="SQLite refuses the ALTER as soon as the table has a row (UNIQUE and PRIMARY KEY "
    "always): the revision fails on every database that holds data, though it passed on an "
    "empty test database",
    safe="add the column nullable or with a constant server_default, then backfill; for a "
    "UNIQUE column add it plain and create a unique index (op.create_index(..., unique=True)); "
    "or rebuild the table in batch mode (op.batch_alter_table)",
)
def add_column_refused(captured: CapturedOp, state: RangeState) -> str | None:
    if kind(captured) != "AddColumnOp" or captured.batch:
        return None
    column = captured.operation.column
    table = table_of(captured)
    if column.primary_key or column.unique:
        what = "PRIMARY KEY" if column.primary_key else "UNIQUE"
        return f"adds {what} column {table}.{column.name} (SQLite: Cannot add a {what} column)"
    if not state.existing(table):
        return None
    refusal = _sqlite_refusal(captured)
    if refusal is None:
        return None
    return f"adds {table}.{column.name}, which SQLite refuses once the table has a row: {refusal}"


_CONSTRAINT_OPS = {
    "CreateForeignKeyOp": "adds a foreign key",
    "CreateUniqueConstraintOp": "adds a unique constraint",
    "CreateCheckConstraintOp": "adds a check constraint",
    "CreatePrimaryKeyOp": "adds a primary key",
    "DropConstraintOp": "drops a constraint",
}


def _column_change(operation: Any) -> list[str]:
    """What an ``alter_column`` changes besides the name, which SQLite cannot ALTER."""
    changes = []
    if operation.modify_type is not None:
        changes.append("its type")
    if operation.modify_nullable is not None:
        changes.append("NOT NULL" if operation.modify_nullable is False else "nullability")
    if operation.modify_server_default is not False:
        changes.append("its server default")
    if getattr(operation, "modify_comment", False) is not False:
        changes.append("its comment")
    return changes


@rule(
    "SQ002",
    "alter-needs-batch-mode",
    severity=Severity.ERROR,
    dialects=SQLITE,
    summary="an ALTER SQLite has no statement for (a column's type, nullability or default; "
    "any constraint) outside batch mode",
    breaks="SQLite has no ALTER COLUMN and no ALTER of constraints: the revision fails "
    "(Alembic raises NotImplementedError, or SQLite a syntax error) and stops the deploy",
    safe=BATCH,
)
def alter_needs_batch(captured: CapturedOp, state: RangeState) -> str | None:
    if captured.batch:
        return None
    current = kind(captured)
    table = table_of(captured)
    if current == "AlterColumnOp":
        changes = _column_change(captured.operation)
        if not changes:  # a rename alone: SQLite 3.25+ renames columns
            return None
        return f"changes {', '.join(changes)} of {table}.{captured.operation.column_name}"
    if current in _CONSTRAINT_OPS:
        name = getattr(captured.operation, "constraint_name", None)
        return f"{_CONSTRAINT_OPS[current]}{f' {name}' if name else ''} on {table}"
    if current == "AddColumnOp" and captured.unsupported is not None:
        column = captured.operation.column
        if column.unique or column.primary_key:
            return None  # SQ001 reports it: SQLite cannot add such a column at all
        return f"adds {table}.{column.name} with a constraint ({captured.unsupported})"
    return None
