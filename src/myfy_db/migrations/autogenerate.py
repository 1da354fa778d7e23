"""Models against the database: ``migrate check`` (drift) and ``migrate new --autogenerate``.

Autogenerate says what it found: each operation Alembic detects, one line each (its own log
lines); with nothing detected it writes nothing unless an empty revision is asked for; a
database that is not at head is refused naming the pending revisions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from myfy_db.engine import describe_target, open_engine, translate_errors
from myfy_db.errors import ConfigError
from myfy_db.migrations.revisions import alembic_errors
from myfy_db.urls import redact

if TYPE_CHECKING:
    from sqlalchemy import Connection, MetaData

    from myfy_db.migrations.project import MigrationProject
    from myfy_db.settings import LoadedSettings


@dataclass(frozen=True)
class Difference:
    """One difference between the models and the database."""

    kind: str
    detail: str


@dataclass
class DriftReport:
    """The result of ``check``: models against the database."""

    database: str
    metadata: str
    differences: list[Difference]

    @property
    def drift(self) -> bool:
        return bool(self.differences)

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "metadata": self.metadata,
            "drift": self.drift,
            "differences": [asdict(d) for d in self.differences],
        }


@dataclass
class NewRevision:
    """What ``new`` wrote: the revision and its file (None when nothing was written)."""

    revision: str | None
    path: Path | None
    autogenerate: bool
    operations: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "path": None if self.path is None else str(self.path),
            "created": [] if self.path is None else [str(self.path)],
            "autogenerate": self.autogenerate,
            "operations": self.operations,
        }


class _Detected(logging.Handler):
    """Collects Alembic's "Detected ..." lines while it compares."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Detected"):
            self.lines.append(redact(message))


@contextmanager
def _detecting() -> Iterator[_Detected]:
    logger = logging.getLogger("alembic.autogenerate")
    handler = _Detected()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _refuse_unless_at_head(connection: Connection, project: MigrationProject) -> None:
    from myfy_db.migrations.revisions import pending_revisions
    from myfy_db.migrations.writing import _current_heads

    script = project.script()
    heads = tuple(script.get_heads())
    current = _current_heads(connection)
    if sorted(current) == sorted(heads):
        return
    pending = pending_revisions(script, current, heads)
    names = ", ".join(p.revision for p in pending)
    raise ConfigError(
        f"the database is not at head: {len(pending)} pending revision(s) ({names}); "
        "autogenerate compares the models with a database at head",
        hint="run `myfy-db migrate` first, then autogenerate again",
    )


async def new_revision(
    project: MigrationProject,
    loaded: LoadedSettings,
    message: str,
    *,
    autogenerate: bool = False,
    metadata: MetaData | None = None,
    empty: bool = False,
) -> NewRevision:
    """Write a new revision file (compared against the database with ``autogenerate``).

    With ``autogenerate`` and nothing detected, nothing is written unless ``empty``.
    """
    from alembic import command

    settings = loaded.settings
    url = settings.database_url
    project.require_template()
    if autogenerate and metadata is None:
        raise ConfigError(
            "--autogenerate needs the models' metadata",
            hint="pass --metadata module:attr or set MYFY_DATA_METADATA",
        )

    def keep_or_drop(context: Any, revision: Any, directives: list[Any]) -> None:
        if not autogenerate or empty or not directives:
            return
        if all(ops.is_empty() for ops in directives[0].upgrade_ops_list):
            directives[:] = []  # Alembic's documented way to write nothing

    def write(connection: Connection | None) -> NewRevision:
        if connection is not None:
            _refuse_unless_at_head(connection, project)
        config = project.config(settings, url, metadata=metadata, connection=connection)
        from myfy_db.migrations.driving import logging_kept

        with alembic_errors(), _detecting() as detected, logging_kept():
            result = command.revision(
                config,
                message=message,
                autogenerate=autogenerate,
                process_revision_directives=keep_or_drop,
            )
        scripts = [s for s in (result if isinstance(result, list) else [result]) if s is not None]
        if not scripts:
            return NewRevision(None, None, autogenerate, detected.lines)
        return NewRevision(scripts[0].revision, Path(scripts[0].path), autogenerate, detected.lines)

    if not autogenerate:
        return write(None)
    with translate_errors(url, "migrate new --autogenerate"):
        async with open_engine(settings, url) as engine, engine.connect() as connection:
            return await connection.run_sync(write)


def _describe_difference(diff: Any) -> Difference:
    if isinstance(diff, list):  # modify_* operations come grouped per column
        parts = [_describe_difference(d) for d in diff]
        return Difference(parts[0].kind, "; ".join(p.detail for p in parts))
    kind = str(diff[0])
    if kind in ("add_table", "remove_table"):
        return Difference(kind, f"table {diff[1].name}")
    if kind in ("add_column", "remove_column"):
        return Difference(kind, f"column {diff[2]}.{diff[3].name} ({diff[3].type})")
    if kind.startswith("modify_"):
        _, _, table, column, _, old, new = diff
        return Difference(kind, f"{table}.{column}: database {old!r}, models {new!r}")
    if kind in ("add_index", "remove_index", "add_constraint", "remove_constraint") or kind in (
        "add_fk",
        "remove_fk",
    ):
        item = diff[1]
        table = getattr(getattr(item, "table", None), "name", None)
        name = getattr(item, "name", None) or "(unnamed)"
        return Difference(kind, f"{name}" + (f" on {table}" if table else ""))
    return Difference(kind, redact(repr(diff[1:])))


async def check(loaded: LoadedSettings, metadata: MetaData, spec: str) -> DriftReport:
    """Compare the models' ``metadata`` with the database; nothing is written."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from myfy_db.migrations.environment import include_name

    settings = loaded.settings
    url = settings.database_url

    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={"compare_type": True, "include_name": include_name, "target_metadata": metadata},
        )
        return list(compare_metadata(context, metadata))

    with translate_errors(url, "migrate check"):
        async with open_engine(settings, url) as engine, engine.connect() as connection:
            diffs = await connection.run_sync(compare)
    return DriftReport(describe_target(url), spec, [_describe_difference(d) for d in diffs])
