"""Small readers over Alembic's operation objects shared by the rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from myfy_db.migrations.lint.model import CapturedOp, RangeState, norm


def kind(captured: CapturedOp) -> str:
    """The operation's class name (``CreateIndexOp``), or ``raw:<kind>`` for raw SQL."""
    if captured.raw is not None:
        return f"raw:{captured.raw.kind}"
    return type(captured.operation).__name__


def table_of(captured: CapturedOp) -> str | None:
    if captured.raw is not None:
        table: str | None = captured.raw.table
        return table
    operation = captured.operation
    for attr in ("table_name", "source_table"):
        value = getattr(operation, attr, None)
        if value:
            return str(value)
    return None


def dialect_kw(captured: CapturedOp, name: str) -> Any:
    kw = getattr(captured.operation, "kw", None) or {}
    return kw.get(name)


def compiled_type(type_: Any, dialect: str) -> str | None:
    """``type_`` rendered for ``dialect`` (``VARCHAR(50)``), or None when unknown."""
    if type_ is None:
        return None
    from sqlalchemy.engine import URL
    from sqlalchemy.types import TypeEngine

    if isinstance(type_, type):
        type_ = type_()
    if not isinstance(type_, TypeEngine):
        return None
    backend = dialect if dialect in ("postgresql", "mysql", "sqlite") else "postgresql"
    try:
        target = URL.create(backend).get_dialect()()
        return str(type_.compile(dialect=target)).upper()
    except Exception:
        return None


_SIZED = re.compile(r"^(?P<base>[^(]+?)\s*(?:\((?P<args>[^)]*)\)(?P<rest>.*))?$", re.S)


def split_type(compiled: str) -> tuple[str, list[int], str]:
    """``NUMERIC(12, 2)`` -> (``NUMERIC``, [12, 2], ``""``)."""
    match = _SIZED.match(compiled.strip())
    if match is None:
        return compiled, [], ""
    args = [int(a) for a in re.findall(r"\d+", match.group("args") or "")]
    return match.group("base").strip(), args, (match.group("rest") or "").strip()


def describe(captured: CapturedOp) -> str:
    """The operation in words: ``create_index ix_a on accounts``."""
    if captured.raw is not None:
        text = captured.raw.text
        return f"op.execute({text[:80] + ('...' if len(text) > 80 else '')!r})"
    operation = captured.operation
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(operation).__name__.removesuffix("Op")).lower()
    target = table_of(captured)
    return f"{name} on {target}" if target else name


@dataclass(frozen=True)
class TypeChange:
    """An ``alter_column(type_=...)`` on a column that existed before the range."""

    table: str | None
    column: str
    old: str | None
    new: str | None

    def describe(self) -> str:
        was = self.old or (
            "an unknown type (no existing_type=, and neither the database nor the models name it)"
        )
        return f"changes {self.table}.{self.column} from {was} to {self.new}"


def existing_type_change(
    captured: CapturedOp, state: RangeState, dialect: str
) -> TypeChange | None:
    """The type change ``captured`` makes to an existing column, types rendered for
    ``dialect``; None for any other operation, or a table or column new in the range."""
    operation = captured.operation
    if kind(captured) != "AlterColumnOp" or operation.modify_type is None:
        return None
    table = table_of(captured)
    if not state.existing(table) or state.new_column(table, operation.column_name):
        return None
    old = operation.existing_type
    if old is None:  # not given: as the database (or the models) has it
        old = state.known_types.get((norm(table), norm(operation.column_name)))
    return TypeChange(
        table,
        operation.column_name,
        compiled_type(old, dialect),
        compiled_type(operation.modify_type, dialect),
    )
