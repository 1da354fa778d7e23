"""``myfy-db diff FROM TO``: what differs between two schemas, and what makes TO equal FROM.

- :mod:`~myfy_db.diff.sides`: what a side spec names, and reading a database read-only;
- :mod:`~myfy_db.diff.reflect`: a side's :class:`~myfy_db.diff.reflect.Snapshot` (bulk
  reflection, views, enums, sequences);
- :mod:`~myfy_db.diff.compare` and :mod:`~myfy_db.diff.constraints`: the differences, with
  Alembic's own equality decisions, and the Alembic operations that remove them;
- :mod:`~myfy_db.diff.render`: those operations as SQL (Alembic offline) or a revision;
- :mod:`~myfy_db.diff.report`: the human report and the JSON document;
- :mod:`~myfy_db.diff.kinds`: the stable ``kind`` of each difference.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from myfy_db.diff.kinds import KINDS, Difference, Plan
from myfy_db.diff.sides import Side
from myfy_db.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect

    from myfy_db.migrations.project import MigrationProject
    from myfy_db.settings import DatabaseSettings
    from myfy_db.urls import DatabaseUrl


@dataclass
class Outcome:
    """A finished comparison: the plan, the sides' labels, TO's dialect (to render in)."""

    plan: Plan
    from_label: str
    to_label: str
    dialect: Dialect
    to_is_database: bool


async def diff(
    settings: DatabaseSettings,
    from_side: Side,
    to_side: Side,
    *,
    schemas: Sequence[str] = (),
    metadata: str | None = None,
    project: MigrationProject | None = None,
    dev_url: DatabaseUrl | None = None,
) -> Outcome:
    """Compare FROM with TO, reading each database once, read-only.

    A revision side (``head``, an id) is the project's chain replayed up to it on a scratch
    database that diff creates on ``dev_url``'s server and drops at the end; nothing is
    created anywhere else.
    """
    if "revision" not in (from_side.kind, to_side.kind):
        return await _diff(settings, from_side, to_side, schemas, metadata)
    from myfy_db.migrations.scratch import replay, scratch_database
    from myfy_db.urls import DatabaseUrl

    if dev_url is None:
        raise ConfigError(
            "a revision side is the chain replayed on a scratch database: pass --dev-url URL",
            hint="--dev-url names a server diff may create (and drop) a database on",
        )
    if project is None:
        raise ConfigError("a revision side needs the project's alembic.ini (--config PATH)")
    protect = [s.url for s in (from_side, to_side) if s.url is not None]
    protect.append(DatabaseUrl.of(settings.database_url))
    async with AsyncExitStack() as stack:
        sides = []
        for side in (from_side, to_side):
            if side.kind == "revision":
                url = await stack.enter_async_context(
                    scratch_database(settings, dev_url, protect=protect, command=COMMAND)
                )
                await replay(project, settings, url, str(side.revision), command=COMMAND)
                side = Side("url", url=url, name=f"revision {side.revision}")
            sides.append(side)
        return await _diff(settings, sides[0], sides[1], schemas, metadata)


#: The name diff's connections carry (``application_name``).
COMMAND = "myfy-db diff"


async def _diff(
    settings: DatabaseSettings,
    from_side: Side,
    to_side: Side,
    schemas: Sequence[str],
    metadata: str | None,
) -> Outcome:
    from myfy_db.diff.compare import compare
    from myfy_db.diff.reflect import dialect_for, reflect_database, snapshot_of_models
    from myfy_db.diff.sides import (
        alembic_impl,
        read_database,
        read_only_connection,
        schemas_of,
    )

    wanted = schemas_of(schemas)

    def models_snapshot(dialect: Any) -> Any:
        from myfy_db.metadata import load_metadata

        loaded = load_metadata(metadata)
        return snapshot_of_models(loaded.metadata, dialect, f"models {loaded.spec}")

    if to_side.url is not None:
        async with read_only_connection(settings, to_side.url) as to_connection:
            if from_side.url is None:
                from_snap = models_snapshot(dialect_for(to_side.url.sqlalchemy_url))
                to_snap = await to_connection.run_sync(
                    lambda c: reflect_database(c, wanted, to_side.label)
                )
            else:  # both read at once: one side's queries run while the other's rows are read
                from_url = from_side.url
                from_task = asyncio.ensure_future(
                    read_database(
                        settings, from_url, lambda c: reflect_database(c, wanted, from_side.label)
                    )
                )
                try:
                    to_snap = await to_connection.run_sync(
                        lambda c: reflect_database(c, wanted, to_side.label)
                    )
                finally:
                    from_snap = await from_task
            plan = await to_connection.run_sync(
                lambda c: compare(from_snap, to_snap, alembic_impl(c))
            )
            dialect = to_connection.dialect
        return Outcome(plan, from_snap.label, to_side.label, dialect, True)
    assert from_side.url is not None  # both models is refused before

    def against_from(connection: Any) -> tuple[Plan, Any, str]:
        from_snap = reflect_database(connection, wanted, from_side.label)
        to_snap = models_snapshot(connection.dialect)
        plan = compare(from_snap, to_snap, alembic_impl(connection))
        return plan, connection.dialect, to_snap.label

    plan, dialect, to_label = await read_database(settings, from_side.url, against_from)
    return Outcome(plan, from_side.label, to_label, dialect, False)


__all__ = ["KINDS", "Difference", "Outcome", "Plan", "diff"]
