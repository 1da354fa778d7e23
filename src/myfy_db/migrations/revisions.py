"""The project's revisions, as Alembic's read-only verbs see them: history, heads, branches,
show, and ``merge`` (which writes a file, never touches a database).

Everything here works from the script directory alone; where a database is reachable the
caller passes its current heads, and each revision says whether it is applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from myfy_db.errors import ConfigError
from myfy_db.urls import redact

if TYPE_CHECKING:
    from alembic.script import Script, ScriptDirectory

    from myfy_db.migrations.project import MigrationProject
    from myfy_db.settings import DatabaseSettings


#: The two ways forward from several heads.
SEVERAL_HEADS_HINT = (
    "merge them with `myfy-db migrate merge heads`, "
    "or apply every branch with `myfy-db migrate up heads`"
)


def several_heads(heads: Iterable[str]) -> str:
    """One line naming the project's heads."""
    names = sorted(heads)
    return f"the project has {len(names)} heads: {', '.join(names)}"


def _joined(value: Any) -> str | None:
    if isinstance(value, (tuple, list)):
        return ", ".join(value) if value else None
    return str(value) if value else None


@dataclass(frozen=True)
class RevisionInfo:
    """One revision of the project.

    ``current`` and ``applied`` are None when no database was read; otherwise ``current``
    says the database is at this revision and ``applied`` that it holds it.
    """

    revision: str
    message: str | None
    down_revision: str | None
    is_head: bool = False
    current: bool | None = None
    applied: bool | None = None

    @classmethod
    def of(
        cls,
        script: Script,
        *,
        heads: Iterable[str] = (),
        current: Iterable[str] | None = None,
        applied: Iterable[str] | None = None,
    ) -> RevisionInfo:
        return cls(
            script.revision,
            script.doc or None,
            _joined(script.down_revision),
            script.revision in set(heads),
            None if current is None else script.revision in set(current),
            None if applied is None else script.revision in set(applied),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RevisionDetail:
    """Everything ``show`` tells about one revision."""

    revision: str
    message: str | None
    down_revision: str | None
    next_revisions: list[str]
    branch_labels: list[str]
    depends_on: str | None
    is_head: bool
    is_branch_point: bool
    is_merge_point: bool
    path: str
    doc: str = field(default="")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BranchPoint:
    """A revision more than one revision revises: where the history forks."""

    revision: str
    message: str | None
    branches: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def alembic_errors() -> Iterator[None]:
    """Alembic's own errors (unknown revision, bad target) are usage errors (exit 2)."""
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    try:
        yield
    except (CommandError, RevisionError) as exc:
        raise ConfigError(redact(str(exc).strip().splitlines()[0])) from None
    except SystemExit as exc:  # a revision's sys.exit() is a failed revision, not success
        raise RevisionExited(f"the revision called sys.exit({exc.code!r})") from None


@contextmanager
def known_to_project(current: Iterable[str]) -> Iterator[None]:
    """The database's ``current`` revisions, which the project must know: a revision it
    does not know is a usage error (exit 2), as an unknown revision on the command line is."""
    from alembic.script.revision import ResolutionError
    from alembic.util import CommandError

    try:
        yield
    except (CommandError, ResolutionError) as exc:
        raise ConfigError(
            f"the database is at revision {', '.join(current) or 'base'}, which the project "
            f"does not know: {redact(str(exc).strip().splitlines()[0])}",
            hint="is this the right project for this database?",
        ) from None


def pending_revisions(
    script: ScriptDirectory, current: tuple[str, ...], heads: tuple[str, ...]
) -> list[RevisionInfo]:
    """The revisions from ``current`` up to ``heads``, oldest first."""
    with known_to_project(current):
        revisions = list(script.iterate_revisions(heads, current or "base"))
    return [RevisionInfo.of(r, heads=heads) for r in reversed(revisions)]


class RevisionExited(Exception):
    """A revision called ``sys.exit()``: it failed (exit 1), whatever code it gave."""


def applied_revisions(script: ScriptDirectory, current: Iterable[str]) -> set[str]:
    """Every revision the database holds when it is at ``current`` (its heads)."""
    heads = tuple(current)
    if not heads:
        return set()
    with known_to_project(heads):
        return {r.revision for r in script.revision_map.iterate_revisions(heads, "base")}


def history(project: MigrationProject, current: Iterable[str] | None = None) -> list[RevisionInfo]:
    """Every revision, newest first; marked current/applied when ``current`` is given."""
    script = project.script()
    heads = tuple(script.get_heads())
    applied = None if current is None else applied_revisions(script, current)
    with alembic_errors():
        return [
            RevisionInfo.of(r, heads=heads, current=current, applied=applied)
            for r in script.walk_revisions()
        ]


def heads(project: MigrationProject) -> list[RevisionInfo]:
    """The project's head revisions."""
    script = project.script()
    names = tuple(script.get_heads())
    with alembic_errors():
        return [RevisionInfo.of(script.get_revision(h), heads=names) for h in names if h]


def branches(project: MigrationProject) -> list[BranchPoint]:
    """The revisions where the history forks, each with the revisions that fork from it."""
    script = project.script()
    with alembic_errors():
        return [
            BranchPoint(r.revision, r.doc or None, sorted(r.nextrev))
            for r in script.walk_revisions()
            if r.is_branch_point
        ]


def show(project: MigrationProject, revision: str) -> list[RevisionDetail]:
    """The revision(s) ``revision`` names (an id, a prefix, head, heads, base...)."""
    script = project.script()
    with alembic_errors():
        found = [r for r in script.get_revisions(revision) if r is not None]
    if not found:
        raise ConfigError(f"no revision matches {revision!r}")
    return [
        RevisionDetail(
            revision=r.revision,
            message=r.doc or None,
            down_revision=_joined(r.down_revision),
            next_revisions=sorted(r.nextrev),
            branch_labels=sorted(r.branch_labels),
            depends_on=_joined(r.dependencies),
            is_head=r.is_head,
            is_branch_point=r.is_branch_point,
            is_merge_point=r.is_merge_point,
            path=str(r.path),
            doc=(r.longdoc or "").strip(),
        )
        for r in found
    ]


def merge(
    project: MigrationProject,
    settings: DatabaseSettings,
    revisions: list[str],
    message: str | None,
) -> tuple[str, Path]:
    """Write a revision merging ``revisions`` (e.g. ``["heads"]``); returns its id and path."""
    from alembic import command

    script = project.script()
    with alembic_errors():
        named = {r.revision for r in script.get_revisions(tuple(revisions)) if r is not None}
    if len(named) < 2:
        raise ConfigError(
            f"nothing to merge: {', '.join(revisions)} names {len(named)} revision(s)",
            hint="merge needs two or more heads (see myfy-db migrate heads)",
        )
    project.require_template()
    config = project.config(settings)
    with alembic_errors():
        created = command.merge(config, revisions, message=message)
    if created is None:  # pragma: no cover - merge always writes a script
        raise ConfigError("Alembic wrote no merge revision")
    return created.revision, Path(created.path)
