"""What the linter works on: captured operations, findings, rules and the range's state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Severity(IntEnum):
    """How bad a finding is; ``--fail-on`` compares against it."""

    INFO = 1
    WARNING = 2
    ERROR = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass
class CapturedOp:
    """One Alembic operation a revision ran, where it was called, and the SQL it rendered.

    ``operation`` is Alembic's own operation object (``CreateIndexOp``, ``ExecuteSQLOp``, ...);
    ``raw`` is set for ``op.execute()`` text this package could classify (:mod:`.rawsql`).
    """

    revision: str
    path: str
    line: int
    operation: Any
    dialect: str
    in_transaction: bool
    sql: list[str] = field(default_factory=list)
    raw: Any = None
    #: Run inside ``op.batch_alter_table()`` (SQLite recreates the table).
    batch: bool = False
    #: Why the dialect could not run it at all (Alembic's ``NotImplementedError``).
    unsupported: str | None = None

    @property
    def rendered(self) -> str:
        return "\n".join(self.sql)


@dataclass
class RangeState:
    """What the revisions linted so far did: a table created in the range is not "existing"."""

    created_tables: set[str] = field(default_factory=set)
    added_columns: set[tuple[str, str]] = field(default_factory=set)
    #: (table, column) pairs with a validated ``CHECK (column IS NOT NULL)``.
    not_null_checks: dict[str, tuple[str, str]] = field(default_factory=dict)
    validated_checks: set[tuple[str, str]] = field(default_factory=set)
    concurrent_indexes: set[str] = field(default_factory=set)
    #: The configured models: table name -> column names (None when no models are set).
    models: dict[str, set[str]] | None = None
    #: Column types known before an ``alter_column`` that gives no ``existing_type``:
    #: (table, column) -> the type as the database reports it (or, failing that, the
    #: models' type), kept current as the range changes them. Types are SQLAlchemy types.
    known_types: dict[tuple[str, str], Any] = field(default_factory=dict)

    def existing(self, table: str | None) -> bool:
        return bool(table) and _norm(table) not in self.created_tables

    def new_column(self, table: str | None, column: str | None) -> bool:
        return (_norm(table), _norm(column)) in self.added_columns


def _norm(name: str | None) -> str:
    return (name or "").strip('"`').lower()


norm = _norm


Check = Callable[[CapturedOp, RangeState], str | None]


@dataclass(frozen=True)
class Rule:
    """One lint rule: its id, the dialects it applies to, how it detects, and the safe form.

    ``check`` returns the finding's detail (what this operation does) or None. ``breaks`` says
    what goes wrong in production; ``safe`` how to write it instead.
    """

    id: str
    name: str
    severity: Severity
    dialects: tuple[str, ...]
    summary: str
    breaks: str
    safe: str
    check: Check

    def applies_to(self, dialect: str) -> bool:
        return not self.dialects or dialect in self.dialects


@dataclass
class Finding:
    """A rule's verdict on one operation of one revision."""

    rule: str
    name: str
    severity: Severity
    revision: str
    path: str
    line: int
    detail: str
    breaks: str
    safe: str
    accepted: bool = False
    reason: str | None = None
    #: ``migrate --safe`` runs this operation in its safe form (``lint --safe`` marks it).
    made_safe: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "name": self.name,
            "severity": self.severity.label,
            "revision": self.revision,
            "file": self.path,
            "line": self.line,
            "detail": self.detail,
            "breaks": self.breaks,
            "safe": self.safe,
            "accepted": self.accepted,
            "reason": self.reason,
            "made_safe": self.made_safe,
        }
