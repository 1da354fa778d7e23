"""``migrate lint --dev-url``: replay the chain on a scratch database and capture it as it runs.

The revisions before the linted range are replayed first, unjudged, so the scratch
database (:mod:`myfy_db.migrations.scratch`) holds the schema they leave. The range is then
upgraded online through the project's own ``env.py``, and every operation is recorded as
it runs, exactly as the offline capture (:mod:`.capture`) records it: Alembic's operation
object, the revision's file and line, whether a transaction was open, and the SQL it sent.
A revision that reads the database (``op.get_bind()``, an inspector) therefore runs as it
will in production, and the SQL it sends itself (``op.get_bind().execute(...)``,
``connection.execute(...)``) is captured from SQLAlchemy's ``before_cursor_execute``,
attributed to the revision frame on the stack, and judged as ``op.execute()`` text would
be. Statements Alembic's own operations send belong to that operation and are not counted
twice; reads (``SELECT``, ``SHOW``, ``PRAGMA``) and transaction control are left out.

Where an ``alter_column`` gives no ``existing_type``, the column's type is reflected from
the scratch database at that moment, before the change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from myfy_db.migrations.hooks import each_revision_step, replaced
from myfy_db.migrations.lint.capture import (
    _expand_raw,
    _Recorder,
    _Sink,
    batch_flush_muted,
    unsupported_on_sqlite,
)
from myfy_db.migrations.lint.model import CapturedOp

if TYPE_CHECKING:
    from myfy_db.migrations.project import MigrationProject
    from myfy_db.settings import DatabaseSettings
    from myfy_db.urls import DatabaseUrl

COMMAND = "migrate lint"

#: Statements that only read, or steer the transaction: never a change to judge.
_NOT_A_CHANGE = re.compile(
    r"^\s*(?:SELECT|SHOW|DESCRIBE|DESC|EXPLAIN|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|"
    r"START\s+TRANSACTION|PRAGMA\s+[\w.]+\s*(?:\([^)]*\))?\s*;?\s*$)",
    re.I,
)


class OnlineCapture:
    """What one online replay captured: the operations, and the column types reflected
    before each ``alter_column`` that gave none (by revision)."""

    def __init__(self, ops: list[CapturedOp], types: dict[str, dict[tuple[str, str], Any]]):
        self.ops = ops
        self.types = types


class _OnlineRecorder(_Recorder):
    def __init__(self, revisions: dict[str, str], dialect: str) -> None:
        super().__init__(revisions, dialect, _Sink())
        self.sink.loose = None  # online, SQL arrives through the engine, not the sink
        self.current: CapturedOp | None = None
        self.types: dict[str, dict[tuple[str, str], Any]] = {}
        self.paused = False
        #: What made a revision fail on the scratch database (the first failure).
        self.failure: BaseException | None = None

    def statement(self, connection: Any, statement: str) -> None:
        if not self.in_revision or self.paused or _NOT_A_CHANGE.match(statement):
            return
        text = statement.strip()
        if self.depth and self.current is not None:
            self.current.sql.append(text)
        elif not self.depth:
            self.bind_sql(text, _connection_in_transaction(connection))

    def existing_type(self, context: Any, operation: Any) -> None:
        """Reflect the type of the column an ``alter_column`` without ``existing_type``
        changes, as the scratch database has it now (first time per revision)."""
        if getattr(operation, "existing_type", None) is not None:
            return
        table = str(getattr(operation, "table_name", "") or "")
        column = str(getattr(operation, "column_name", "") or "")
        if not table or not column:
            return
        revision = self.caller()[0]
        key = (table.lower(), column.lower())
        known = self.types.setdefault(revision, {})
        if key in known:
            return
        from sqlalchemy import inspect

        self.paused = True
        try:
            columns = inspect(context.connection).get_columns(
                table, schema=getattr(operation, "schema", None)
            )
        except Exception:  # a table the reflection cannot see: the rule says "unknown"
            return
        finally:
            self.paused = False
        for found in columns:
            if str(found["name"]).lower() == key[1]:
                known[key] = found["type"]


def _connection_in_transaction(connection: Any) -> bool:
    try:
        from alembic import op

        context = op.get_context()
    except Exception:
        context = None
    if context is not None and not context.impl.transactional_ddl:
        return False
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return False
    return bool(connection.in_transaction())


def _context_in_transaction(context: Any) -> bool:
    """What the offline capture reads from BEGIN/COMMIT: a transaction around DDL is open."""
    connection = context.connection
    if connection is None or not context.impl.transactional_ddl:
        return False
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return False
    return bool(connection.in_transaction())


@contextmanager
def _revisions_marked(recorder: _OnlineRecorder) -> Iterator[None]:
    """``in_revision`` while a revision's ``upgrade()`` runs: Alembic's version-table
    statements, and env.py's own, are not the revision's."""

    def mark(_step: Any, upgrade: Callable[..., Any]) -> Callable[..., Any]:
        def marked(**kwargs: Any) -> Any:
            recorder.in_revision += 1
            try:
                return upgrade(**kwargs)
            except Exception as exc:
                if recorder.failure is None:
                    recorder.failure = exc
                raise
            finally:
                recorder.in_revision -= 1

        return marked

    with each_revision_step(mark):
        yield


@contextmanager
def _operations_recorded(recorder: _OnlineRecorder) -> Iterator[None]:
    from alembic.operations import ops
    from alembic.operations.base import AbstractOperations, BatchOperations

    original = AbstractOperations.invoke

    def invoke(self: Any, operation: Any) -> Any:
        if recorder.depth or not recorder.in_revision:
            return original(self, operation)
        context = self.migration_context
        if isinstance(operation, ops.AlterColumnOp):
            recorder.existing_type(context, operation)
        captured = recorder.begin(operation, _context_in_transaction(context))
        captured.batch = isinstance(self, BatchOperations)
        previous = recorder.current
        recorder.current = captured
        recorder.depth += 1
        try:
            return original(self, operation)
        except NotImplementedError as exc:
            return unsupported_on_sqlite(captured, exc)
        finally:
            recorder.depth -= 1
            recorder.current = previous

    with replaced(AbstractOperations, "invoke", invoke):
        yield


@contextmanager
def _statements_recorded(recorder: _OnlineRecorder) -> Iterator[None]:
    """Every statement any engine sends while a revision runs (env.py may open its own
    engine, on another thread for Alembic's async template)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def before(connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        recorder.statement(connection, statement)

    event.listen(Engine, "before_cursor_execute", before)
    try:
        yield
    finally:
        event.remove(Engine, "before_cursor_execute", before)


async def capture_online(
    project: MigrationProject,
    settings: DatabaseSettings,
    dev_url: DatabaseUrl,
    *,
    protect: Sequence[DatabaseUrl],
    start: str | None,
    end: str,
    dialect: str,
) -> OnlineCapture:
    """Replay up to ``start`` (None or ``base``: nothing) unjudged on a scratch database on
    ``dev_url``'s server, then upgrade to ``end`` capturing every operation.

    A revision of the range that fails on the scratch database (``CREATE INDEX
    CONCURRENTLY`` inside a transaction, an ALTER SQLite refuses) is reported not analysed
    at the failing call, with the server's words; what it did before is judged, and the
    revisions after it are captured offline, as without ``--dev-url``.
    """
    from myfy_db.errors import OperationFailed
    from myfy_db.migrations.lint.capture import capture
    from myfy_db.migrations.scratch import replay, scratch_database
    from myfy_db.migrations.writing import _failure_detail

    script = project.script()
    revisions = {str(Path(s.path).resolve()): s.revision for s in script.walk_revisions() if s.path}
    recorder = _OnlineRecorder(revisions, dialect)
    failed = None
    async with scratch_database(settings, dev_url, protect=protect, command=COMMAND) as url:
        if start not in (None, "", "base"):
            await replay(project, settings, url, str(start), command=COMMAND)
        try:
            with (
                _revisions_marked(recorder),
                _operations_recorded(recorder),
                batch_flush_muted(recorder),
                _statements_recorded(recorder),
            ):
                await replay(project, settings, url, end, command=COMMAND)
        except OperationFailed:
            if recorder.failure is None:  # env.py, not a revision
                raise
            reason = f"fails on the dev database: {_failure_detail(recorder.failure)}"
            failed = recorder.not_analysed(recorder.failure, reason)
    ops = [item for captured in recorder.ops for item in _expand_raw(captured)]
    if failed is not None and failed != "?":
        ops += capture(project, settings, settings.database_url, f"{failed}:{end}")
    return OnlineCapture(ops, recorder.types)
