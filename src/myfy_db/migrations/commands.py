"""The ``migrate`` operations: plain async functions over a project and the settings.

The writing ones (:func:`upgrade`, :func:`downgrade`, :func:`reset`, :func:`stamp`) take one
frozen :class:`~.options.RunOptions` and run through :func:`.writing.run_writing`; the
reading ones (:func:`status`, :func:`current`, :func:`history`) open the database only to
read its revision; :func:`render_sql` touches no database.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from alembic import command

from myfy_db.engine import open_engine, translate_errors
from myfy_db.errors import ConfigError, MyfyDbError
from myfy_db.guard import Change, ProductionGuard
from myfy_db.migrations import driving
from myfy_db.migrations import environment as env
from myfy_db.migrations.options import DEFAULT_OPTIONS, Reporter, RunOptions
from myfy_db.migrations.project import MigrationProject
from myfy_db.migrations.results import (
    AppliedRevision,
    CurrentRevision,
    MigrationRun,
    MigrationStatus,
)
from myfy_db.migrations.revisions import (
    SEVERAL_HEADS_HINT,
    RevisionInfo,
    alembic_errors,
    pending_revisions,
    several_heads,
)
from myfy_db.migrations.writing import (
    Operation,
    _current_heads,
    _failure_detail,
    _tracking_steps,
    run_writing,
)

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy import Connection

    from myfy_db.migrations.driving import Driver
    from myfy_db.schema import DropPlan
    from myfy_db.settings import DatabaseSettings, LoadedSettings
    from myfy_db.urls import DatabaseUrl

__all__ = [
    "AppliedRevision",
    "CurrentRevision",
    "MigrationRun",
    "MigrationStatus",
    "RunOptions",
    "current",
    "downgrade",
    "history",
    "read_current",
    "redo",
    "render_sql",
    "reset",
    "stamp",
    "status",
    "upgrade",
]


async def upgrade(
    project: MigrationProject,
    loaded: LoadedSettings,
    revision: str = "head",
    options: RunOptions = DEFAULT_OPTIONS,
) -> MigrationRun:
    """Upgrade the database to ``revision`` (default: head) under the migration lock.

    ``head`` on a project with several heads is a usage error naming them and the two ways
    forward (merge them, or ``heads`` to apply every branch).
    """
    if revision == "head":
        _one_head(project)
    operation = Operation(
        "upgrade",
        "migrate",
        Change.SCHEMA,
        lambda config, driver: driving.upgrade(config, revision, driver, project.script()),
        scripts=lambda script, current: _scripts(script._upgrade_revs(revision, _heads(current))),
    )
    return await run_writing(project, loaded, operation, options)


def downgrade_plan(
    script: ScriptDirectory, current: tuple[str, ...], revision: str
) -> list[RevisionInfo]:
    """The revisions a downgrade from ``current`` to ``revision`` undoes, in order."""
    from alembic.script import Script

    if not current:
        return []
    heads = tuple(script.get_heads())
    with alembic_errors():
        steps = list(
            script.revision_map.iterate_revisions(current, revision, select_for_downgrade=True)
        )
    return [
        RevisionInfo.of(s, heads=heads, current=current, applied=())
        for s in steps
        if isinstance(s, Script)
    ]


async def downgrade(
    project: MigrationProject,
    loaded: LoadedSettings,
    revision: str,
    options: RunOptions = DEFAULT_OPTIONS,
    *,
    confirm: Callable[[list[RevisionInfo]], None] | None = None,
) -> MigrationRun:
    """Downgrade the database to ``revision``; guarded as destructive.

    Once the lock is held, the revisions to undo are listed and passed to ``confirm``
    (which raises to decline); ``options.dry_run`` stops there and changes nothing.
    """
    operation = Operation(
        "downgrade",
        "migrate down",
        Change.DESTRUCTIVE,
        lambda config, driver: driving.downgrade(config, revision, driver, project.script()),
        plan=lambda script, current: downgrade_plan(script, current, revision),
        confirm=confirm,
        scripts=lambda script, current: _scripts(script._downgrade_revs(revision, _heads(current))),
    )
    return await run_writing(project, loaded, operation, options)


async def redo(
    project: MigrationProject,
    loaded: LoadedSettings,
    options: RunOptions = DEFAULT_OPTIONS,
    *,
    confirm: Callable[[list[RevisionInfo]], None] | None = None,
) -> MigrationRun:
    """Undo the database's latest revision, then apply it again (Rails' ``db:migrate:redo``).

    Guarded like :func:`downgrade`: ``confirm`` sees the revision to undo first. A database
    with several heads is refused (the revision to redo would be ambiguous); one at base has
    nothing to redo.
    """

    def down_and_up(config: Config, driver: Driver) -> None:
        script = project.script()
        driving.downgrade(config, "-1", driver, script)
        driving.upgrade(config, "+1", driver, script)

    def plan(script: ScriptDirectory, current: tuple[str, ...]) -> list[RevisionInfo]:
        if len(current) > 1:
            raise ConfigError(
                f"redo needs one current revision; the database is at {', '.join(current)}",
                hint="migrate down to one of them first, or merge the heads",
            )
        if not current:
            raise ConfigError(
                "the database is at base: there is no revision to redo",
                hint="run myfy-db migrate first",
            )
        return downgrade_plan(script, current, "-1")

    operation = Operation(
        "redo",
        "migrate redo",
        Change.DESTRUCTIVE,
        down_and_up,
        plan=plan,
        confirm=confirm,
    )
    return await run_writing(project, loaded, operation, options)


async def reset(
    project: MigrationProject,
    loaded: LoadedSettings,
    options: RunOptions = DEFAULT_OPTIONS,
    *,
    confirm: Callable[[DropPlan], None] | None = None,
) -> MigrationRun:
    """Drop every table, then re-apply every revision to head, under the migration lock.

    Guarded exactly like ``drop-tables --all`` (it is the same code): refused in a protected
    environment and against a differing record; ``confirm`` sees the tables before any goes.
    """
    from myfy_db.schema import drop_tables_sync

    _one_head(project)
    guard = ProductionGuard(loaded)

    def ask(connection: Connection) -> None:
        listed = drop_tables_sync(connection, None, guard, dry_run=True, command="migrate reset")
        if confirm is not None and listed.plan.tables:
            confirm(listed.plan)

    def drop_everything(connection: Connection) -> list[str]:
        return drop_tables_sync(connection, None, guard, command="migrate reset").dropped

    operation = Operation(
        "reset",
        "migrate reset",
        Change.DESTRUCTIVE,
        lambda config, driver: driving.upgrade(config, "head", driver, project.script()),
        before_alembic=drop_everything,
        ask=ask if confirm is not None else None,
    )
    return await run_writing(project, loaded, operation, options)


async def stamp(
    project: MigrationProject,
    loaded: LoadedSettings,
    revision: str,
    options: RunOptions = DEFAULT_OPTIONS,
) -> MigrationRun:
    """Record ``revision`` as the database's current one without running anything."""
    operation = Operation(
        "stamp",
        "migrate stamp",
        Change.SCHEMA,
        lambda config, driver: driving.stamp(config, revision, driver, project.script()),
    )
    return await run_writing(project, loaded, operation, options)


def _heads(current: tuple[str, ...]) -> Any:
    """The current heads as Alembic's step planners take them (as its context passes them)."""
    return current


def _scripts(steps: list[Any]) -> list[Any]:
    """The revision scripts of Alembic's migration steps."""
    with alembic_errors():
        return [step.revision for step in steps]


def _one_head(project: MigrationProject) -> None:
    heads = project.script().get_heads()
    if len(heads) > 1:
        raise ConfigError(several_heads(heads), hint=SEVERAL_HEADS_HINT)


def render_sql(
    project: MigrationProject,
    settings: DatabaseSettings,
    revision: str = "head",
    *,
    downgrade: bool = False,
    output: TextIO | None = None,
    statement_timeout: float | None = None,
    options: RunOptions = DEFAULT_OPTIONS,
) -> None:
    """Write the SQL of an upgrade (or downgrade) to ``output``; no database is touched.

    ``revision`` may be a range ``FROM:TO``; a downgrade needs one (e.g. ``head:base``).
    The script opens with the session's timeouts, as a live run would set them: the
    ``ddl_lock_timeout`` setting (PostgreSQL ``lock_timeout``, MySQL/MariaDB
    ``lock_wait_timeout``) and ``statement_timeout`` (PostgreSQL ``statement_timeout``,
    MariaDB ``max_statement_time``), so a DBA who applies the file gets the same bounds.

    ``options.safe`` (``--sql --safe``) renders the upgrade's operations in their safe forms,
    after refusing what ``--safe`` cannot make safe, as a live run would.
    """
    from myfy_db.migrations.safe import check_options, refuse_unsafe, safe_execution

    project.script()
    safe = not downgrade and check_options(options, settings, atomic=False)
    if safe:
        refuse_unsafe(project, settings, revision, online_ddl=options.online_ddl)
    sink = output or sys.stdout
    for line in timeout_preamble(
        settings.url.dialect, float(settings.ddl_lock_timeout), statement_timeout
    ):
        sink.write(line + "\n")
    config = project.config(settings, output_buffer=sink)
    config.attributes[env.METADATA] = None
    rewrites = safe_execution(options, settings, None, options.report)
    with _tracking_steps() as tracker, driving.logging_kept(), rewrites if safe else nullcontext():
        try:
            with alembic_errors():
                if downgrade:
                    command.downgrade(config, revision, sql=True)
                else:
                    command.upgrade(config, revision, sql=True)
        except MyfyDbError:
            raise
        except Exception as exc:
            failing = tracker.revision
            if failing is None:
                raise
            name = failing[0] + (f" ({failing[1]})" if failing[1] else "")
            raise ConfigError(
                f"revision {name} cannot be written as SQL offline: it needs a live "
                f"connection (op.get_bind(), a session): {_failure_detail(exc)}",
                hint="run it against the database (myfy-db migrate), or print the SQL up to "
                "the revision before it (myfy-db migrate up --sql BASE:REV)",
            ) from None


async def status(project: MigrationProject, loaded: LoadedSettings) -> MigrationStatus:
    """The current revision, the heads and the pending revisions (nothing is written)."""
    settings = loaded.settings
    url = settings.url
    script = project.script()
    heads = tuple(script.get_heads())
    with translate_errors(url, "migrate status"):
        async with open_engine(settings, url) as engine, engine.connect() as connection:
            current = await connection.run_sync(_current_heads)
    pending = pending_revisions(script, current, heads) if sorted(current) != sorted(heads) else []
    return MigrationStatus(url.target, list(current), list(heads), pending)


async def read_current(loaded: LoadedSettings, action: str) -> tuple[str, ...]:
    """The database's current heads (nothing is written)."""
    url = loaded.settings.url
    with translate_errors(url, action):
        async with open_engine(loaded.settings, url) as engine, engine.connect() as connection:
            return tuple(await connection.run_sync(_current_heads))


async def current(project: MigrationProject, loaded: LoadedSettings) -> CurrentRevision:
    """The revision(s) the database is at, as the project describes them."""
    script = project.script()
    heads = tuple(script.get_heads())
    now = await read_current(loaded, "migrate current")
    infos = []
    for revision in now:
        with alembic_errors():
            found = script.get_revision(revision)
        if found is None:  # pragma: no cover - get_revision raises for unknown ids
            continue
        infos.append(RevisionInfo.of(found, heads=heads, current=now, applied=now))
    return CurrentRevision(loaded.settings.url.target, infos)


async def history(
    project: MigrationProject, loaded: LoadedSettings | None, report: Reporter = lambda _: None
) -> list[RevisionInfo]:
    """Every revision, newest first, marked applied when the database can be read.

    Without settings, or when the database cannot be reached (or is a SQLite file that does
    not exist), the history is the project's alone and ``report`` says why.
    """
    from myfy_db.errors import CannotConnect
    from myfy_db.migrations import revisions

    project.script()
    now: tuple[str, ...] | None = None
    if loaded is not None:
        url = loaded.settings.url
        if _missing_sqlite_file(url):
            report(f"{url.target} does not exist: applied revisions not marked")
        else:
            try:
                now = await read_current(loaded, "migrate history")
            except CannotConnect as exc:
                report(f"{exc.message}: applied revisions not marked")
    return revisions.history(project, now)


def _missing_sqlite_file(url: DatabaseUrl) -> bool:
    path = url.sqlite_file
    return path is not None and not Path(path).exists()


def timeout_preamble(
    dialect: str, lock_seconds: float, statement_seconds: float | None
) -> list[str]:
    """The ``SET`` statements that bound a script's lock waits and statements (0: none)."""
    import math

    lines: list[str] = []
    if dialect == "postgresql":
        if lock_seconds > 0:
            lines.append(f"SET lock_timeout = '{max(1, math.ceil(lock_seconds * 1000))}ms';")
        if statement_seconds:
            ms = max(1, math.ceil(statement_seconds * 1000))
            lines.append(f"SET statement_timeout = '{ms}ms';")
    elif dialect in ("mysql", "mariadb"):
        if lock_seconds > 0:
            lines.append(f"SET SESSION lock_wait_timeout = {max(1, math.ceil(lock_seconds))};")
        if statement_seconds:
            lines.append(f"SET SESSION max_statement_time = {statement_seconds:g};")
    if lines:
        lines.append("")
    return lines
