"""The ``migrate`` operations: plain async functions over a project and the settings.

Every writing operation (upgrade, downgrade, stamp) runs the same way: one engine from the
shared factory; the migration lock on a dedicated connection (:mod:`.lock`); on a second
connection the production guard's check, a fresh read of the current revision, Alembic run
in-process on that live connection (``config.attributes["connection"]``), then the
environment record. Each revision is its own transaction, so a failing revision on
PostgreSQL leaves the database at the previous one.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from alembic import command

from myfy_db.engine import (
    classify_connect_error,
    describe_target,
    open_engine,
    server_error,
    translate_errors,
)
from myfy_db.errors import CannotConnect, ConfigError, MyfyDbError, OperationFailed
from myfy_db.guard import Change, ProductionGuard
from myfy_db.migrations import driving
from myfy_db.migrations import environment as env
from myfy_db.migrations.ddl_lock import DdlLock, is_lock_timeout
from myfy_db.migrations.driving import Driver
from myfy_db.migrations.lock import APPLICATION_NAME, migration_lock
from myfy_db.migrations.project import MigrationProject
from myfy_db.migrations.revisions import (
    SEVERAL_HEADS_HINT,
    RevisionInfo,
    alembic_errors,
    several_heads,
)
from myfy_db.urls import redact

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from myfy_db.schema import DropPlan
    from myfy_db.settings import DatabaseSettings, LoadedSettings

Progress = Callable[["AppliedRevision"], None]
Reporter = Callable[[str], None]
DEFAULT_LOCK_TIMEOUT = 60.0


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


def _heads_text(heads: tuple[str, ...] | list[str]) -> str | None:
    return ", ".join(heads) if heads else None


def _current_heads(connection: Connection) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

    return tuple(MigrationContext.configure(connection).get_current_heads())


def _engine_overrides(settings: DatabaseSettings, url: str) -> dict[str, Any]:
    """Two connections (lock + migration), named ``myfy-db migrate`` on PostgreSQL.

    One more may overflow: a project's env.py that opens its own connection from
    ``config.attributes["connection"].engine`` gets it at once instead of waiting out
    ``pool_timeout`` for a pool whose two connections this run holds.
    """
    from sqlalchemy.engine import make_url

    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return {}
    overrides: dict[str, Any] = {"pool_size": 2, "max_overflow": 1}
    if backend == "postgresql":
        overrides["connect_args"] = {
            "timeout": settings.connect_timeout,
            "server_settings": {"application_name": APPLICATION_NAME},
        }
    return overrides


def _sqlite_transactional_ddl(engine: AsyncEngine) -> None:
    """Make the SQLite driver emit BEGIN itself, so DDL runs inside the transaction.

    Python's sqlite3 module only opens a transaction before DML, committing DDL on its own;
    this is SQLAlchemy's documented recipe for real transactions (and transactional DDL) on
    SQLite. A migration revision then commits once, atomically.
    """
    from sqlalchemy import event

    @event.listens_for(engine.sync_engine, "connect")
    def _no_driver_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")


def _failure_detail(exc: BaseException) -> str:
    found = server_error(exc)  # the server's words: class and SQLSTATE / error code
    if found is not None:
        return redact(found[0])
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip()
    first = text.splitlines()[0] if text else ""
    return redact(f"{type(original).__name__}: {first}" if first else type(original).__name__)


class _StepTracker(logging.Handler):
    """Notes which revision Alembic is running (from its "Running ..." log record)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.step: Any = None
        self.started = time.perf_counter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "Running %s" and record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            self.step = args[0]
            self.started = time.perf_counter()

    @property
    def revision(self) -> tuple[str, str | None] | None:
        script = getattr(self.step, "revision", None)
        if script is None:
            return None
        return script.revision, script.doc or None


@contextmanager
def _tracking_steps() -> Iterator[_StepTracker]:
    logger = logging.getLogger("alembic.runtime.migration")
    tracker = _StepTracker()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(tracker)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield tracker
    finally:
        logger.removeHandler(tracker)
        logger.setLevel(level)
        logger.propagate = propagate


async def _run_writing(
    project: MigrationProject,
    loaded: LoadedSettings,
    *,
    command: str,
    guard_command: str,
    change: Change,
    alembic_call: Callable[[Config, Driver], None],
    lock_timeout: float,
    progress: Progress | None,
    report: Reporter,
    plan: Callable[[ScriptDirectory, tuple[str, ...]], list[RevisionInfo]] | None = None,
    confirm: Callable[[list[RevisionInfo]], None] | None = None,
    dry_run: bool = False,
    before_alembic: Callable[[Connection], list[str]] | None = None,
    atomic: bool = False,
    ddl_lock: DdlLock | None = None,
) -> MigrationRun:
    settings = loaded.settings
    ddl = ddl_lock or DdlLock(0)
    url = settings.database_url
    guard = ProductionGuard(loaded)
    guard.check_local(guard_command)
    if atomic:
        refuse_atomic_on(url)
    script = project.script()  # a broken project fails before anything connects
    started = time.perf_counter()
    run = MigrationRun(command, describe_target(url), None, None, dry_run=dry_run, atomic=atomic)

    from sqlalchemy import event

    def locked(connection: Connection) -> None:
        if dry_run:
            guard.check(connection, guard_command, change)
        else:
            guard.prepare(connection, guard_command, change)  # the record, committed, first
        before = _current_heads(connection)  # re-read now that the lock is held
        connection.commit()
        run.from_revision = _heads_text(before)
        if plan is not None:
            run.planned = plan(script, before)
            if dry_run:
                run.to_revision = run.from_revision
                return
            if run.planned and confirm is not None:
                confirm(run.planned)

        pending: list[tuple[str, str | None, str, float]] = []

        def on_version_apply(*, ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
            script = step.up_revision
            direction = "stamp" if step.is_stamp else ("up" if step.is_upgrade else "down")
            message = (script.doc or None) if script is not None else None
            pending.append((step.up_revision_id, message, direction, tracker.started))

        def on_commit(_connection: Any = None) -> None:
            """A revision counts as applied once its transaction has committed."""
            now = time.perf_counter()
            for revision, message, direction, began in pending:
                done = AppliedRevision(revision, message, direction, round((now - began) * 1000, 3))
                run.applied.append(done)
                if progress is not None:
                    progress(done)
            pending.clear()
            tracker.started = now

        config = project.config(
            settings, url, connection=connection, on_version_apply=on_version_apply
        )
        config.attributes[env.METADATA] = None  # no model import needed to migrate
        config.attributes[env.TRANSACTIONAL_DDL] = connection.dialect.name == "sqlite"
        ddl.apply(connection)  # --ddl-lock-timeout for every revision's statements
        event.listen(connection, "commit", on_commit)
        driver = Driver(connection, on_version_apply, on_commit, atomic=atomic, prepare=ddl.apply)
        try:
            with _tracking_steps() as tracker:
                attempt = 0
                while True:
                    try:
                        if atomic:
                            # One transaction for the whole run: Alembic sees it already open
                            # and adds none of its own; the commit below ends it.
                            connection.begin()
                        if before_alembic is not None:
                            run.dropped = before_alembic(connection)
                            if not atomic:
                                connection.commit()
                        with alembic_errors():
                            alembic_call(config, driver)
                        break
                    except MyfyDbError:
                        connection.rollback()
                        raise
                    except Exception as exc:
                        pending.clear()  # rolled back, or reported by the error below
                        connection.rollback()
                        attempt += 1
                        pause = ddl.should_retry(exc, attempt)
                        if pause is None:
                            raise _revision_failed(
                                connection, tracker, exc, atomic=atomic, ddl=ddl
                            ) from exc
                        ddl.retrying(_revision_text(tracker), attempt, pause)
        finally:
            event.remove(connection, "commit", on_commit)
            driver.release()
        on_commit()  # anything applied inside a transaction committed below
        after = _current_heads(connection)  # read back: what the database now holds
        run.to_revision = _heads_text(after)
        connection.commit()
        if not run.applied and sorted(after) != sorted(before) and command != "stamp":
            run.applied = _applied_between(script, before, after)

    @asynccontextmanager
    async def watcher() -> AsyncIterator[AsyncConnection]:
        async with (
            open_engine(settings, url, pool_size=1, max_overflow=0) as engine,
            engine.connect() as conn,
        ):
            yield conn

    with translate_errors(url, f"migrate {command}"):
        overrides = _engine_overrides(settings, url)
        async with (
            open_engine(settings, url, **overrides) as engine,
            migration_lock(engine, url, lock_timeout, report) as lock,
        ):
            run.lock, run.lock_wait_ms = lock.kind, lock.waited_ms
            if engine.dialect.name == "sqlite":
                _sqlite_transactional_ddl(engine)
            async with engine.connect() as connection, ddl.watching(connection, watcher):
                await connection.run_sync(locked)
    run.duration_ms = (time.perf_counter() - started) * 1000
    return run


def _applied_between(
    script: ScriptDirectory, before: tuple[str, ...], after: tuple[str, ...]
) -> list[AppliedRevision]:
    """The revisions between two states, for an env.py whose steps could not be watched."""
    from alembic.script.revision import RevisionError

    revisions = script.revision_map
    try:
        held = (
            {r.revision for r in revisions.iterate_revisions(before, "base")} if before else set()
        )
        if set(after) - held:
            steps = list(revisions.iterate_revisions(after, before or "base"))
            direction, ordered = "up", list(reversed(steps))
        else:
            steps = list(revisions.iterate_revisions(before, after or "base"))
            direction, ordered = "down", steps
    except RevisionError:
        return []
    return [
        AppliedRevision(r.revision, getattr(r, "doc", None) or None, direction, 0.0)
        for r in ordered
    ]


def _revision_text(tracker: _StepTracker) -> str:
    failing = tracker.revision
    if not failing:
        return "migration"
    return f"revision {failing[0]}" + (f" ({failing[1]})" if failing[1] else "")


def _revision_failed(
    connection: Connection,
    tracker: _StepTracker,
    exc: Exception,
    *,
    atomic: bool = False,
    ddl: DdlLock | None = None,
) -> MyfyDbError:
    what = _revision_text(tracker)
    try:
        now = _heads_text(_current_heads(connection)) or "base"
        connection.rollback()
    except Exception:
        now = "unknown (could not read it back)"
    if atomic:
        hint = f"--atomic: the whole run was rolled back; the database stays at revision {now}"
    elif connection.dialect.name in ("postgresql", "sqlite"):  # DDL inside the transaction
        hint = f"the database stays at revision {now}; nothing of the failing revision was kept"
    else:
        hint = (
            f"the database is now at revision {now}; {connection.dialect.name} commits DDL as it "
            "runs, so statements of the failing revision that ran before the error remain"
        )
    if ddl is not None and ddl.enabled and is_lock_timeout(exc):
        hint += "; end the blocking transaction, or run again with --retries N"
        return OperationFailed(f"{what} failed: {ddl.explain()}", hint=hint)
    lost = classify_connect_error(exc, connection.engine.url.render_as_string(), what)
    if lost is not None:  # the server went away: exit 4, not a failed revision
        return CannotConnect(lost.message, hint=hint)
    found = server_error(exc)
    if found is not None and found[1]:  # the server's DETAIL and HINT lead the second line
        hint = redact(f"{found[1]}; {hint}")
    return OperationFailed(f"{what} failed: {_failure_detail(exc)}", hint=hint)


def refuse_atomic_on(url: str) -> None:
    """``--atomic`` needs DDL inside a transaction: PostgreSQL and SQLite, not MySQL/MariaDB."""
    from sqlalchemy.engine import make_url

    backend = make_url(url).get_backend_name()
    if backend in ("mysql", "mariadb"):
        raise ConfigError(
            f"--atomic is not possible on {backend}: each DDL statement commits on its own "
            "there, so a run cannot be rolled back as a whole",
            hint="run without --atomic: each revision then commits on its own",
        )


async def upgrade(
    project: MigrationProject,
    loaded: LoadedSettings,
    revision: str = "head",
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    progress: Progress | None = None,
    report: Reporter = lambda _: None,
    atomic: bool = False,
    ddl_lock: DdlLock | None = None,
) -> MigrationRun:
    """Upgrade the database to ``revision`` (default: head) under the migration lock.

    ``ddl_lock`` bounds each revision's wait for its table locks (``--ddl-lock-timeout``,
    ``--retries``).

    ``atomic``: the whole run in one transaction, all or nothing (PostgreSQL, SQLite).

    ``head`` on a project with several heads is a usage error naming them and the two ways
    forward (merge them, or ``heads`` to apply every branch).
    """
    if revision == "head":
        heads = project.script().get_heads()
        if len(heads) > 1:
            raise ConfigError(several_heads(heads), hint=SEVERAL_HEADS_HINT)
    return await _run_writing(
        project,
        loaded,
        command="upgrade",
        guard_command="migrate",
        change=Change.SCHEMA,
        alembic_call=lambda config, driver: driving.upgrade(
            config, revision, driver, project.script()
        ),
        lock_timeout=lock_timeout,
        progress=progress,
        report=report,
        atomic=atomic,
        ddl_lock=ddl_lock,
    )


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
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    progress: Progress | None = None,
    report: Reporter = lambda _: None,
    confirm: Callable[[list[RevisionInfo]], None] | None = None,
    dry_run: bool = False,
    atomic: bool = False,
    ddl_lock: DdlLock | None = None,
) -> MigrationRun:
    """Downgrade the database to ``revision``; guarded as destructive.

    Once the lock is held, the revisions to undo are listed and passed to ``confirm``
    (which raises to decline); ``dry_run`` stops there and changes nothing.
    """
    return await _run_writing(
        project,
        loaded,
        command="downgrade",
        guard_command="migrate down",
        change=Change.DESTRUCTIVE,
        alembic_call=lambda config, driver: driving.downgrade(
            config, revision, driver, project.script()
        ),
        lock_timeout=lock_timeout,
        progress=progress,
        report=report,
        plan=lambda script, current: downgrade_plan(script, current, revision),
        confirm=confirm,
        dry_run=dry_run,
        atomic=atomic,
        ddl_lock=ddl_lock,
    )


async def reset(
    project: MigrationProject,
    loaded: LoadedSettings,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    progress: Progress | None = None,
    report: Reporter = lambda _: None,
    confirm: Callable[[DropPlan], None] | None = None,
    atomic: bool = False,
) -> MigrationRun:
    """Drop every table, then re-apply every revision to head, under the migration lock.

    Guarded exactly like ``drop-tables --all`` (it is the same code): refused in a protected
    environment and against a differing record; ``confirm`` sees the tables before any goes.
    """
    from myfy_db.schema import drop_tables_sync

    heads = project.script().get_heads()
    if len(heads) > 1:
        raise ConfigError(several_heads(heads), hint=SEVERAL_HEADS_HINT)
    guard = ProductionGuard(loaded)

    def drop_everything(connection: Connection) -> list[str]:
        dropped = drop_tables_sync(
            connection, None, guard, command="migrate reset", confirm=confirm
        )
        return dropped.dropped

    return await _run_writing(
        project,
        loaded,
        command="reset",
        guard_command="migrate reset",
        change=Change.DESTRUCTIVE,
        alembic_call=lambda config, driver: driving.upgrade(
            config, "head", driver, project.script()
        ),
        lock_timeout=lock_timeout,
        progress=progress,
        report=report,
        before_alembic=drop_everything,
        atomic=atomic,
    )


async def stamp(
    project: MigrationProject,
    loaded: LoadedSettings,
    revision: str,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    report: Reporter = lambda _: None,
) -> MigrationRun:
    """Record ``revision`` as the database's current one without running anything."""
    return await _run_writing(
        project,
        loaded,
        command="stamp",
        guard_command="migrate stamp",
        change=Change.SCHEMA,
        alembic_call=lambda config, driver: driving.stamp(
            config, revision, driver, project.script()
        ),
        lock_timeout=lock_timeout,
        progress=None,
        report=report,
    )


def render_sql(
    project: MigrationProject,
    settings: DatabaseSettings,
    revision: str = "head",
    *,
    downgrade: bool = False,
    output: TextIO | None = None,
) -> None:
    """Write the SQL of an upgrade (or downgrade) to ``output``; no database is touched.

    ``revision`` may be a range ``FROM:TO``; a downgrade needs one (e.g. ``head:base``).
    """
    project.script()
    config = project.config(settings, output_buffer=output or sys.stdout)
    config.attributes[env.METADATA] = None
    with _tracking_steps() as tracker:
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


def _pending(
    script: ScriptDirectory, current: tuple[str, ...], heads: tuple[str, ...]
) -> list[RevisionInfo]:
    from alembic.script.revision import ResolutionError
    from alembic.util import CommandError

    try:
        revisions = list(script.iterate_revisions(heads, current or "base"))
    except (CommandError, ResolutionError) as exc:
        raise OperationFailed(
            f"the database is at revision {_heads_text(current)}, which the project does not "
            f"know: {redact(str(exc).splitlines()[0])}",
            hint="is this the right project for this database?",
        ) from None
    return [RevisionInfo.of(r, heads=heads) for r in reversed(revisions)]


async def status(project: MigrationProject, loaded: LoadedSettings) -> MigrationStatus:
    """The current revision, the heads and the pending revisions (nothing is written)."""
    settings = loaded.settings
    url = settings.database_url
    script = project.script()
    heads = tuple(script.get_heads())
    with translate_errors(url, "migrate status"):
        async with open_engine(settings, url) as engine, engine.connect() as connection:
            current = await connection.run_sync(_current_heads)
    pending = _pending(script, current, heads) if sorted(current) != sorted(heads) else []
    return MigrationStatus(describe_target(url), list(current), list(heads), pending)


@dataclass
class CurrentRevision:
    """``current``: the revision(s) the database is at."""

    database: str
    current: list[RevisionInfo]

    def to_dict(self) -> dict[str, Any]:
        return {"database": self.database, "current": [c.to_dict() for c in self.current]}


async def read_current(loaded: LoadedSettings, action: str) -> tuple[str, ...]:
    """The database's current heads (nothing is written)."""
    url = loaded.settings.database_url
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
    return CurrentRevision(describe_target(loaded.settings.database_url), infos)


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
        url = loaded.settings.database_url
        if _missing_sqlite_file(url):
            report(f"{describe_target(url)} does not exist: applied revisions not marked")
        else:
            try:
                now = await read_current(loaded, "migrate history")
            except CannotConnect as exc:
                report(f"{exc.message}: applied revisions not marked")
    return revisions.history(project, now)


def _missing_sqlite_file(url: str) -> bool:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return False
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return False
    return not Path(parsed.database).exists()
