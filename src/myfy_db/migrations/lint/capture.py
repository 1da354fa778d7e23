"""Run revisions the way Alembic does, offline for the URL's dialect, and capture each operation.

The project's own ``env.py`` runs in offline (``--sql``) mode, so the revisions'
``upgrade()`` functions execute for real against a ``MigrationContext`` of the URL's dialect.
Every operation they invoke (``op.create_index(...)``, ``batch.alter_column(...)``,
``op.execute(...)``) passes through Alembic's ``Operations.invoke``; while the capture is
active that method records Alembic's operation object, the revision file and line that
called it (from the call stack), whether a transaction was open, and the SQL it rendered.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from myfy_db.errors import MyfyDbError, OperationFailed
from myfy_db.migrations.hooks import each_revision_step, replaced
from myfy_db.migrations.lint.model import CapturedOp
from myfy_db.migrations.lint.rawsql import statements_of
from myfy_db.urls import redact

if TYPE_CHECKING:
    from myfy_db.migrations.project import MigrationProject
    from myfy_db.settings import DatabaseSettings


def dialect_family(backend: str) -> str:
    """``mysql`` for MySQL and MariaDB; the backend's own name otherwise."""
    return "mysql" if backend in ("mysql", "mariadb") else backend


class _Sink(io.StringIO):
    """Alembic's offline output: each write is one statement, attributed to the running op,
    or (SQL a revision ran through ``op.get_bind()``, Alembic's mock connection, which
    writes here too) handed to ``loose``."""

    def __init__(self) -> None:
        super().__init__()
        self.in_transaction = False
        self.current: CapturedOp | None = None
        self.loose: Callable[[str], None] | None = None

    def write(self, text: str) -> int:
        statement = text.strip()
        word = statement.rstrip(";").strip().upper()
        if word in ("BEGIN", "START TRANSACTION"):
            self.in_transaction = True
        elif word in ("COMMIT", "ROLLBACK"):
            self.in_transaction = False
        elif statement and self.current is not None:
            self.current.sql.append(statement)
        elif statement and self.loose is not None:
            self.loose(statement)
        return len(text)


class _Recorder:
    def __init__(self, revisions: dict[str, str], dialect: str, sink: _Sink) -> None:
        self.revisions = revisions
        self.dialect = dialect
        self.sink = sink
        self.ops: list[CapturedOp] = []
        self.depth = 0
        #: Inside a revision's ``upgrade()`` (not Alembic's own version-table statements).
        self.in_revision = 0
        self._paths: dict[str, str | None] = {}
        sink.loose = self.bind_sql

    def _revision_of(self, filename: str) -> str | None:
        if filename not in self._paths:
            try:
                resolved = str(Path(filename).resolve())
            except OSError:
                resolved = filename
            self._paths[filename] = resolved if resolved in self.revisions else None
        return self._paths[filename]

    def caller(self) -> tuple[str, str, int]:
        frame = sys._getframe(2)
        while frame is not None:
            path = self._revision_of(frame.f_code.co_filename)
            if path is not None:
                return self.revisions[path], path, frame.f_lineno
            frame = frame.f_back  # type: ignore[assignment]
        return "?", "?", 0

    def failing_frame(self, exc: BaseException) -> tuple[str, str, int] | None:
        """``(revision, path, line)`` of the deepest revision frame of ``exc``'s traceback."""
        found = None
        tb = exc.__traceback__
        while tb is not None:
            path = self._revision_of(tb.tb_frame.f_code.co_filename)
            if path is not None:
                found = (self.revisions[path], path, tb.tb_lineno)
            tb = tb.tb_next
        return found

    def failing_revision(self, exc: BaseException) -> str:
        """``revision r2 (line 14)``: the deepest revision frame of ``exc``; else the
        project's ``env.py`` and its line, when it failed there."""
        found = self.failing_frame(exc)
        if found is not None:
            return f"revision {found[0]} (line {found[2]})"
        where = None
        tb = exc.__traceback__
        while tb is not None:
            if Path(tb.tb_frame.f_code.co_filename).name == "env.py":
                where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
            tb = tb.tb_next
        if where is not None:
            return f"env.py ({_shown_path(where[0])} line {where[1]})"
        return "a revision"

    def not_analysed(self, exc: BaseException, reason: str | None = None) -> str:
        """A revision failed offline (it reads the database): note where, and go on.

        ``reason`` replaces the exception's own words; returns the failing revision."""
        import linecache

        from myfy_db.migrations.lint.rawsql import RawStatement

        found = self.failing_frame(exc)
        revision, path, line = found if found is not None else ("?", "?", 0)
        call = linecache.getline(path, line).strip() if line else ""
        if reason is None:
            detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            reason = f"needs a live connection: {type(exc).__name__}" + (
                f": {detail}" if detail else ""
            )
        text = f"{call} ({reason})" if call else reason
        self.ops.append(
            CapturedOp(
                revision,
                path,
                line,
                None,
                self.dialect,
                self.sink.in_transaction,
                [],
                RawStatement("not_analysed", text),
            )
        )
        return revision

    def begin(self, operation: Any, in_transaction: bool | None = None) -> CapturedOp:
        revision, path, line = self.caller()
        if in_transaction is None:
            in_transaction = self.sink.in_transaction
        captured = CapturedOp(revision, path, line, operation, self.dialect, in_transaction)
        self.ops.append(captured)
        return captured

    def bind_sql(self, statement: str, in_transaction: bool | None = None) -> None:
        """SQL a revision ran itself (``op.get_bind().execute(...)``), outside any Alembic
        operation: captured as if given to ``op.execute()``, so the raw-SQL rules judge it."""
        if self.depth or not self.in_revision or not _is_statement(statement):
            return
        from alembic.operations import ops

        self.begin(ops.ExecuteSQLOp(statement), in_transaction).sql.append(statement)


@contextmanager
def _intercepting(recorder: _Recorder) -> Iterator[None]:
    with (
        _each_revision_guarded(recorder),
        _operations_recorded(recorder),
        batch_flush_muted(recorder),
    ):
        yield


@contextmanager
def batch_flush_muted(recorder: _Recorder) -> Iterator[None]:
    """The statements ``batch_alter_table`` sends when its block ends (SQLite's copy of the
    table) belong to the batch operations already captured, not to the revision's own SQL."""
    from alembic.operations.batch import BatchOperationsImpl

    original = BatchOperationsImpl.flush

    def flush(self: Any) -> None:
        from alembic.util import CommandError

        recorder.depth += 1
        try:
            original(self)
        except CommandError:
            # Offline, SQLite's copy of the table needs the table reflected (Alembic asks
            # for a live connection or copy_from=). The batch's operations were captured
            # one by one already; only the copy's own statements are not rendered, and the
            # rest of the revision is still judged.
            if not (self.operations.migration_context.as_sql and recorder.dialect == "sqlite"):
                raise
        finally:
            recorder.depth -= 1

    with replaced(BatchOperationsImpl, "flush", flush):
        yield


@contextmanager
def _each_revision_guarded(recorder: _Recorder) -> Iterator[None]:
    """A revision that fails offline (``op.get_bind()``, an inspector) is noted as not
    analysed, and the revisions after it are still linted."""

    def guard(_step: Any, upgrade: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(**kwargs: Any) -> Any:
            recorder.in_revision += 1
            try:
                return upgrade(**kwargs)
            except (MyfyDbError, SystemExit, KeyboardInterrupt):
                raise
            except Exception as exc:
                recorder.not_analysed(exc)
                return None
            finally:
                recorder.in_revision -= 1

        return guarded

    with each_revision_step(guard):
        yield


@contextmanager
def _operations_recorded(recorder: _Recorder) -> Iterator[None]:
    from alembic.operations.base import AbstractOperations, BatchOperations

    original = AbstractOperations.invoke

    def invoke(self: Any, operation: Any) -> Any:
        if recorder.depth:
            return original(self, operation)
        captured = recorder.begin(operation)
        captured.batch = isinstance(self, BatchOperations)
        previous = recorder.sink.current
        recorder.sink.current = captured
        recorder.depth += 1
        try:
            return original(self, operation)
        except NotImplementedError as exc:
            return unsupported_on_sqlite(captured, exc)
        finally:
            recorder.depth -= 1
            recorder.sink.current = previous

    with replaced(AbstractOperations, "invoke", invoke):
        yield


def unsupported_on_sqlite(captured: CapturedOp, exc: NotImplementedError) -> None:
    """Alembic's SQLite dialect cannot ALTER constraints: the SQLite rules report the
    operation (SQ002) and the rest of the revision is still judged. Elsewhere the error
    stands."""
    if captured.dialect != "sqlite":
        raise exc
    captured.unsupported = str(exc).split(".")[0]


def _expand_raw(captured: CapturedOp) -> list[CapturedOp]:
    """One captured op per statement of ``op.execute()`` text, each classified."""
    from alembic.operations import ops

    if not isinstance(captured.operation, ops.ExecuteSQLOp):
        return [captured]
    sqltext = captured.operation.sqltext
    text = sqltext if isinstance(sqltext, str) else str(getattr(sqltext, "text", sqltext))
    expanded = []
    for raw in statements_of(text, captured.dialect):
        statement = raw.text
        expanded.append(
            CapturedOp(
                captured.revision,
                captured.path,
                captured.line,
                captured.operation,
                captured.dialect,
                captured.in_transaction,
                [statement],
                raw,
            )
        )
    return expanded


def _is_statement(text: str) -> bool:
    """False for text that is only comments (``-- Running upgrade ...``) or blank."""
    import re

    bare = re.sub(r"/\*.*?\*/", "", re.sub(r"--[^\n]*", "", text), flags=re.S)
    return bool(bare.strip().strip(";").strip())


def _shown_path(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def capture(
    project: MigrationProject, settings: DatabaseSettings, url: str, revision_range: str
) -> list[CapturedOp]:
    """The operations the revisions in ``revision_range`` (``FROM:TO``) run on ``url``'s dialect.

    Nothing connects: the project's ``env.py`` runs in offline mode.
    """
    from alembic import command
    from alembic.util import CommandError

    from myfy_db.migrations import environment as env
    from myfy_db.urls import DatabaseUrl

    script = project.script()
    revisions = {str(Path(s.path).resolve()): s.revision for s in script.walk_revisions() if s.path}
    dialect = DatabaseUrl.of(url).backend  # MariaDB counts as mysql, as the rules do
    sink = _Sink()
    recorder = _Recorder(revisions, dialect, sink)
    config = project.config(settings, url, output_buffer=sink)
    config.attributes[env.METADATA] = None
    from myfy_db.migrations.driving import logging_kept

    with _intercepting(recorder), logging_kept():
        try:
            command.upgrade(config, revision_range, sql=True)
        except MyfyDbError:
            raise
        except CommandError:
            raise
        except SystemExit as exc:  # a revision that exits has failed, whatever its code
            found = recorder.failing_frame(exc)
            where = (
                "a revision"
                if found is None
                else (f"revision {found[0]} ({_shown_path(found[1])} line {found[2]})")
            )
            raise OperationFailed(
                f"cannot lint: {where} calls sys.exit({exc.code!r}) when run offline for "
                f"{dialect}: a revision that exits has failed",
                hint="raise an exception instead of calling sys.exit() in a revision",
            ) from None
        except Exception as exc:
            where = recorder.failing_revision(exc)
            detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            hint = (
                "env.py fails before any revision runs: run it with plain `alembic upgrade "
                "--sql` to see why (a fileConfig() needs the ini's [loggers] sections)"
                if where.startswith("env.py")
                else "a revision that reads the database (op.get_bind()) cannot be judged "
                "offline; guard that part with `if not context.is_offline_mode():`"
            )
            raise OperationFailed(
                f"cannot lint: {where} failed when run offline for {dialect}: "
                f"{type(exc).__name__}" + (f": {detail}" if detail else ""),
                hint=hint,
            ) from None
    return [item for captured in recorder.ops for item in _expand_raw(captured)]
