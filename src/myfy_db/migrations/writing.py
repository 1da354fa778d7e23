"""One writing migrate run (up, down, stamp, reset), the same way every time.

One engine from the shared factory; the migration lock on a dedicated connection
(:mod:`.lock`); on a second connection the production guard's check, a fresh read of the
current revision, Alembic run in-process on that live connection
(``config.attributes["connection"]``), then what the database holds, read back. Each
revision is its own transaction (unless ``--atomic``), so a failing revision on PostgreSQL
leaves the database at the previous one. :class:`~.options.RunOptions` says how the run
behaves; :class:`Operation` says what it does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from myfy_db.engine import (
    classify_connect_error,
    open_engine,
    server_error,
    translate_errors,
)
from myfy_db.errors import CannotConnect, ConfigError, MyfyDbError, OperationFailed
from myfy_db.guard import Change, ProductionGuard
from myfy_db.migrations import environment as env
from myfy_db.migrations.ddl_lock import DdlLock, is_lock_timeout
from myfy_db.migrations.driving import Driver
from myfy_db.migrations.lock import APPLICATION_NAME, migration_lock
from myfy_db.migrations.options import RunOptions
from myfy_db.migrations.project import MigrationProject
from myfy_db.migrations.results import AppliedRevision, MigrationRun
from myfy_db.migrations.revisions import RevisionInfo, alembic_errors
from myfy_db.migrations.safe import SAFE_COMMANDS, check_options, refuse_unsafe, safe_execution
from myfy_db.urls import DatabaseUrl, redact

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from myfy_db.settings import DatabaseSettings, LoadedSettings


@dataclass(frozen=True)
class Operation:
    """What a writing run does: its names, its guard, the Alembic call, and its extra steps."""

    #: ``upgrade``, ``downgrade``, ``stamp``, ``reset``: the run's name in its result.
    command: str
    #: The name the production guard and its record use (``migrate down``).
    guard_command: str
    change: Change
    alembic_call: Callable[[Config, Driver], None]
    #: The revisions the run will undo, decided once the lock is held (``downgrade``).
    plan: Callable[[ScriptDirectory, tuple[str, ...]], list[RevisionInfo]] | None = None
    #: Sees the plan before anything changes; raises to decline.
    confirm: Callable[[list[RevisionInfo]], None] | None = None
    #: Runs on the migration's connection before Alembic (``reset`` drops the tables).
    before_alembic: Callable[[Connection], list[str]] | None = None
    #: Asks the user before anything changes (``reset`` lists the tables); raises to decline.
    ask: Callable[[Connection], None] | None = None
    #: The revision scripts the run will execute from the current heads (``--atomic``
    #: reads them before anything runs).
    scripts: Callable[[ScriptDirectory, tuple[str, ...]], list[Any]] | None = None


def _heads_text(heads: tuple[str, ...] | list[str]) -> str | None:
    return ", ".join(heads) if heads else None


def _current_heads(connection: Connection) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

    return tuple(MigrationContext.configure(connection).get_current_heads())


def _engine_overrides(settings: DatabaseSettings, url: str | DatabaseUrl) -> dict[str, Any]:
    """Two connections (lock + migration), named ``myfy-db migrate`` on PostgreSQL.

    One more may overflow: a project's env.py that opens its own connection from
    ``config.attributes["connection"].engine`` gets it at once instead of waiting out
    ``pool_timeout`` for a pool whose two connections this run holds.
    """
    backend = DatabaseUrl.of(url).backend
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


async def run_writing(
    project: MigrationProject, loaded: LoadedSettings, operation: Operation, options: RunOptions
) -> MigrationRun:
    """Run ``operation`` as ``options`` say, under the lock and the guard; read back the result."""
    settings = loaded.settings
    command, guard_command, change = operation.command, operation.guard_command, operation.change
    plan, confirm, before_alembic = operation.plan, operation.confirm, operation.before_alembic
    atomic, dry_run, progress = options.atomic, options.dry_run, options.progress
    ddl = options.ddl_lock(settings)
    url = settings.url  # parsed once, carried down
    guard = ProductionGuard(loaded)
    guard.check_local(guard_command)
    if atomic:
        refuse_atomic_on(url)
    safe_run = command in SAFE_COMMANDS and check_options(options, settings, atomic=atomic)
    script = project.script()  # a broken project fails before anything connects
    started = time.perf_counter()
    run = MigrationRun(command, url.target, None, None, dry_run=dry_run, atomic=atomic)

    from sqlalchemy import event

    def locked(connection: Connection) -> None:
        nonlocal started
        guard.check(connection, guard_command, change)
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
        if operation.ask is not None:
            operation.ask(connection)
            connection.rollback()  # what it read; nothing was changed
        if plan is not None or operation.ask is not None:
            started = time.perf_counter()  # the summary's time leaves out the answer's
        if atomic and operation.scripts is not None:
            _refuse_autocommit_blocks(operation.scripts(script, before))
        if safe_run and operation.scripts is not None:
            # --safe refuses what it cannot make safe before anything runs.
            pending_ids = {s.revision for s in operation.scripts(script, before)}
            if pending_ids:
                start = f"{before[0]}:heads" if len(before) == 1 else "heads"
                refuse_unsafe(project, settings, start, pending_ids, connection, options.online_ddl)
        # The record, committed on its own: after the confirmation, before the first change.
        guard.prepare(connection, guard_command, change)

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
            if pending:  # not a commit inside a revision (--safe's non-blocking steps)
                tracker.started = now
            pending.clear()

        config = project.config(
            settings,
            settings.database_url,
            connection=connection,
            on_version_apply=on_version_apply,
        )
        config.attributes[env.METADATA] = None  # no model import needed to migrate
        config.attributes[env.TRANSACTIONAL_DDL] = connection.dialect.name == "sqlite"
        ddl.apply(connection)  # --ddl-lock-timeout for every revision's statements
        event.listen(connection, "commit", on_commit)
        driver = Driver(connection, on_version_apply, on_commit, atomic=atomic, prepare=ddl.apply)
        rewrites = safe_execution(options, settings, connection, options.report)
        try:
            with _tracking_steps() as tracker, rewrites if safe_run else nullcontext():
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
                            operation.alembic_call(config, driver)
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
                                connection, tracker, exc, atomic=atomic, ddl=ddl, safe=safe_run
                            ) from exc
                        ddl.retrying(_revision_text(tracker), attempt, pause)
        finally:
            event.remove(connection, "commit", on_commit)
            driver.release()
        on_commit()  # anything applied inside a transaction committed below
        after = _current_heads(connection)  # read back: what the database now holds
        run.to_revision = _heads_text(after)
        connection.commit()
        missed = None if driver.ran else driver.target_missed(before, after)
        if missed is not None:
            raise OperationFailed(
                f"env.py ran but the database is at {_heads_text(after) or 'base'}, not {missed}",
                hint="env.py must call context.run_migrations() (inside "
                "context.begin_transaction()), as Alembic's templates do",
            )
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
            migration_lock(engine, url, options.lock_timeout, options.report) as lock,
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
    safe: bool = False,
) -> MyfyDbError:
    what = _revision_text(tracker)
    try:
        now = _heads_text(_current_heads(connection)) or "base"
        connection.rollback()
    except Exception:
        now = "unknown (could not read it back)"
    if atomic:
        hint = f"--atomic: the whole run was rolled back; the database stays at revision {now}"
    elif safe and connection.dialect.name == "postgresql":
        hint = (
            f"the database stays at revision {now}; what --safe ran of the failing revision "
            "outside its transaction stays committed, and running it again skips that"
        )
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


def refuse_atomic_on(url: str | DatabaseUrl) -> None:
    """``--atomic`` needs DDL inside a transaction: PostgreSQL and SQLite, not MySQL/MariaDB."""
    parsed = DatabaseUrl.of(url)
    backend = parsed.dialect
    if parsed.backend == "mysql":
        raise ConfigError(
            f"--atomic is not possible on {backend}: each DDL statement commits on its own "
            "there, so a run cannot be rolled back as a whole",
            hint="run without --atomic: each revision then commits on its own",
        )


def _refuse_autocommit_blocks(scripts: list[Any]) -> None:
    """``--atomic`` and a revision that steps out of the transaction cannot go together:
    ``autocommit_block()`` commits what the run did so far. Refused before anything runs."""
    import ast

    for found in scripts:
        path = getattr(found, "path", None)
        if not path:
            continue
        try:
            tree = ast.parse(Path(path).read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "autocommit_block":
                raise ConfigError(
                    f"--atomic cannot run revision {found.revision} ({path} line "
                    f"{node.lineno}): it uses autocommit_block(), which commits outside the "
                    "run's one transaction",
                    hint="run without --atomic: each revision then commits on its own",
                )
