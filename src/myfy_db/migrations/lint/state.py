"""How each operation changes what the rest of the range sees (:class:`RangeState`)."""

from __future__ import annotations

import re

from myfy_db.migrations.lint.model import CapturedOp, RangeState, norm
from myfy_db.migrations.lint.rules._ops import dialect_kw, kind, table_of

_IS_NOT_NULL = re.compile(
    r"^\s*\(?\s*[\"`]?(?P<column>\w+)[\"`]?\s+IS\s+NOT\s+NULL\s*\)?\s*$", re.I
)


def advance(captured: CapturedOp, state: RangeState) -> None:
    """Apply ``captured`` to ``state`` after the rules have judged it."""
    operation = captured.operation
    current = kind(captured)
    table = norm(table_of(captured))
    if current == "CreateTableOp":
        state.created_tables.add(table)
        for column in getattr(operation, "columns", ()):
            if getattr(column, "name", None) is not None and hasattr(column, "type"):
                state.known_types[(table, norm(column.name))] = column.type
    elif current == "DropTableOp":
        state.created_tables.discard(table)
    elif current == "RenameTableOp" and table in state.created_tables:
        state.created_tables.discard(table)
        state.created_tables.add(norm(operation.new_table_name))
    elif current == "AddColumnOp":
        state.added_columns.add((table, norm(operation.column.name)))
        state.known_types[(table, norm(operation.column.name))] = operation.column.type
    elif current == "AlterColumnOp" and operation.modify_type is not None:
        state.known_types[(table, norm(operation.column_name))] = operation.modify_type
    elif current == "CreateCheckConstraintOp":
        match = _IS_NOT_NULL.match(str(operation.condition))
        if match is not None and operation.constraint_name:
            state.not_null_checks[norm(operation.constraint_name)] = (
                table,
                norm(match.group("column")),
            )
    elif current == "raw:validate":
        checked = state.not_null_checks.get(norm(captured.raw.name))
        if checked is not None:
            state.validated_checks.add(checked)
    elif current == "CreateIndexOp" and dialect_kw(captured, "postgresql_concurrently"):
        state.concurrent_indexes.add(norm(operation.index_name))
    elif current == "raw:create_index" and captured.raw.concurrently:
        state.concurrent_indexes.add(norm(captured.raw.name))
