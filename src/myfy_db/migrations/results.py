"""What the ``migrate`` operations return: plain values, rendered by the CLI."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from myfy_db.migrations.revisions import RevisionInfo

__all__ = ["AppliedRevision", "CurrentRevision", "MigrationRun", "MigrationStatus"]


@dataclass(frozen=True)
class AppliedRevision:
    """A revision a run applied (or undid, or stamped), and how long it took."""

    revision: str
    message: str | None
    direction: str
    duration_ms: float


@dataclass
class MigrationRun:
    """The result of ``upgrade``, ``downgrade`` or ``stamp``."""

    command: str
    database: str
    from_revision: str | None
    to_revision: str | None
    applied: list[AppliedRevision] = field(default_factory=list)
    lock: str = ""
    lock_wait_ms: float = 0.0
    duration_ms: float = 0.0
    #: What the run was to undo, in order (``downgrade``), decided once the lock was held.
    planned: list[RevisionInfo] | None = None
    dry_run: bool = False
    #: The tables ``reset`` dropped before re-applying every revision.
    dropped: list[str] | None = None
    atomic: bool = False

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "command": self.command,
            "database": self.database,
            "from": self.from_revision,
            "to": self.to_revision,
            "applied": [asdict(a) for a in self.applied],
            "lock": self.lock,
            "lock_wait_ms": round(self.lock_wait_ms, 3),
            "duration_ms": round(self.duration_ms, 3),
        }
        document["atomic"] = self.atomic
        if self.dropped is not None:
            document["dropped"] = self.dropped
        if self.planned is not None:
            document["dry_run"] = self.dry_run
            document["would_undo" if self.dry_run else "planned"] = [
                p.to_dict() for p in self.planned
            ]
        return document


@dataclass
class MigrationStatus:
    """Where the database is against the project's revisions."""

    database: str
    current: list[str]
    heads: list[str]
    pending: list[RevisionInfo]

    @property
    def at_head(self) -> bool:
        return sorted(self.current) == sorted(self.heads)

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "current": self.current,
            "heads": self.heads,
            "at_head": self.at_head,
            "pending": [asdict(p) for p in self.pending],
        }


@dataclass
class CurrentRevision:
    """``current``: the revision(s) the database is at."""

    database: str
    current: list[RevisionInfo]

    def to_dict(self) -> dict[str, Any]:
        return {"database": self.database, "current": [c.to_dict() for c in self.current]}
