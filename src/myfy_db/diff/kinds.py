"""The vocabulary of a diff: each difference's ``kind``, and the plan that removes them.

The kinds are stable: scripts read them from ``--json``. Each says what TO lacks or holds
beyond FROM (``*_missing``: FROM has it, TO has not; ``*_extra``: TO has it, FROM has not)
or how one object differs (``column_type``, ``index_changed``...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Every kind, with what it means (the README's list is generated from this).
KINDS: dict[str, str] = {
    "table_missing": "a table FROM has and TO has not",
    "table_extra": "a table TO has and FROM has not",
    "view_missing": "a view FROM has and TO has not (views are compared by name)",
    "view_extra": "a view TO has and FROM has not",
    "column_missing": "a column FROM's table has and TO's has not",
    "column_extra": "a column TO's table has and FROM's has not",
    "column_type": "a column's type differs (Alembic's type comparison decides)",
    "column_nullable": "a column is nullable on one side only",
    "column_default": "a column's server default differs (Alembic's comparison decides)",
    "column_identity": "identity or autoincrement differs",
    "column_computed": "a computed (generated) column's expression differs",
    "column_collation": "a column's collation differs",
    "primary_key": "the primary key's columns differ",
    "index_missing": "an index FROM has and TO has not",
    "index_extra": "an index TO has and FROM has not",
    "index_changed": "an index of the same name differs: columns or expressions, uniqueness, "
    "partial predicate or method",
    "unique_missing": "a unique constraint FROM has and TO has not",
    "unique_extra": "a unique constraint TO has and FROM has not",
    "unique_changed": "a unique constraint of the same name covers other columns",
    "foreign_key_missing": "a foreign key FROM has and TO has not",
    "foreign_key_extra": "a foreign key TO has and FROM has not",
    "foreign_key_changed": "a foreign key of the same name differs: columns, target, "
    "ON DELETE/ON UPDATE, deferrability",
    "check_missing": "a check constraint FROM has and TO has not",
    "check_extra": "a check constraint TO has and FROM has not",
    "check_changed": "a check constraint of the same name has another expression",
    "enum_missing": "a PostgreSQL enum type FROM has and TO has not",
    "enum_extra": "a PostgreSQL enum type TO has and FROM has not",
    "enum_values": "a PostgreSQL enum's values, or their order, differ",
    "sequence_missing": "a sequence (not owned by a column) FROM has and TO has not",
    "sequence_extra": "a sequence TO has and FROM has not",
}


@dataclass(frozen=True)
class Difference:
    """One difference: its kind, the table it is in (None for a schema-level object), the
    object's name, what FROM has and what TO has (None: nothing)."""

    kind: str
    table: str | None
    name: str
    from_side: str | None
    to_side: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "table": self.table,
            "name": self.name,
            "from": self.from_side,
            "to": self.to_side,
        }


#: The order steps run in: what depends on nothing first, what others depend on last.
PHASES = (
    "drop_views",
    "types",
    "create_tables",
    "drop_constraints",
    "columns",
    "primary_keys",
    "indexes",
    "constraints",
    "foreign_keys",
    "drop_columns",
    "drop_tables",
    "drop_types",
    "create_views",
)


@dataclass
class Step:
    """One Alembic operation (or a note where no operation can do it) in the plan.

    ``destructive`` says what the step destroys (a dropped table, a narrowed type); such a
    step is marked in the SQL. ``safe`` names the PostgreSQL non-blocking form that applies
    (``index``, ``constraint``), if any. ``manual`` replaces the operation with a comment.
    """

    phase: str
    op: Any = None
    destructive: str | None = None
    safe: str | None = None
    manual: str | None = None


@dataclass
class Plan:
    """What differs, and the steps that make TO equal FROM."""

    differences: list[Difference] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    def add(self, difference: Difference, *steps: Step) -> None:
        self.differences.append(difference)
        self.steps.extend(steps)

    def ordered_steps(self) -> list[Step]:
        rank = {phase: i for i, phase in enumerate(PHASES)}
        return sorted(self.steps, key=lambda s: rank[s.phase])
