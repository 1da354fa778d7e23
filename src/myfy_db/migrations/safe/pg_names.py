"""``migrate --safe`` on PostgreSQL: names as the server makes them, and operations described.

A constraint the revision leaves unnamed is named as PostgreSQL names it (its
``makeObjectName``: ``orders_qty_check``, ``orders_user_id_fkey``), so the rewritten
operation leaves the plain operation's schema; an operation is described in one line
(``add_column note``) for the run's report and the progress of a half-done revision.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["MAX_NAME", "check_column", "describe", "object_name", "short"]

#: PostgreSQL truncates names to NAMEDATALEN - 1 bytes.
MAX_NAME = 63


def short(name: str) -> str:
    """``name`` cut to 63 bytes, as the server would, at a character boundary."""
    raw = name.encode()[:MAX_NAME]
    return raw.decode(errors="ignore")


def object_name(table: str, middle: str, label: str) -> str:
    """PostgreSQL's makeObjectName: ``table_middle_label``, the longer of the two names cut
    until it fits in 63 bytes."""
    overhead = len(label) + 1 + (1 if middle else 0)
    first, second = len(table), len(middle)
    while first + second > MAX_NAME - overhead:
        if first > second:
            first -= 1
        else:
            second -= 1
    return "_".join(part for part in (table[:first], middle[:second], label) if part)


def check_column(condition: Any) -> str:
    """The one column a CHECK condition names (PostgreSQL names the constraint after it),
    else ''."""
    import json

    from pglast.parser import ParseError, parse_sql_json

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if "ColumnRef" in node:
                fields = node["ColumnRef"].get("fields", [])
                if fields and "String" in fields[-1]:
                    yield fields[-1]["String"]["sval"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    if not isinstance(condition, str):  # a SQL expression: as the server would get it
        from sqlalchemy.dialects.postgresql.base import PGDialect

        try:
            condition = str(
                condition.compile(
                    dialect=PGDialect(),  # type: ignore[no-untyped-call]
                    compile_kwargs={"literal_binds": True},
                )
            )
        except Exception:  # an expression that cannot be rendered alone: named generally
            return ""
    try:
        tree = json.loads(parse_sql_json(f"SELECT ({condition})"))
    except ParseError:
        return ""
    columns = set(walk(tree))
    return columns.pop() if len(columns) == 1 else ""


def describe(operation: Any) -> str:
    """``add_column note``: an operation as the revision wrote it."""
    import re

    kind = re.sub(r"(?<!^)(?=[A-Z])", "_", type(operation).__name__.removesuffix("Op")).lower()
    column = getattr(operation, "column", None)
    name = (
        getattr(operation, "index_name", None)
        or getattr(operation, "constraint_name", None)
        or getattr(column, "name", None)
        or getattr(operation, "column_name", None)
        or getattr(operation, "table_name", None)
    )
    return f"{kind} {name}" if name else kind
