"""A plan's operations as SQL (Alembic in offline mode) or as a new revision file.

The SQL is what Alembic emits for the same operations in a migration: a ``MigrationContext``
with ``as_sql`` and an output buffer, for TO's dialect. Each destructive step is preceded by
a ``-- destructive:`` line; a difference no operation can remove is a ``-- manual:`` line.
On PostgreSQL the steps take their non-blocking forms (DESIGN.md, "Safe execution"): indexes
are built and dropped CONCURRENTLY, and foreign keys and checks are added NOT VALID, then
validated.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from myfy_db.diff.kinds import Plan, Step

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect

    from myfy_db.migrations.project import MigrationProject
    from myfy_db.settings import DatabaseSettings


def render_sql(plan: Plan, dialect: Dialect) -> str:
    """The DDL that makes TO equal FROM, in ``dialect`` (TO's)."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.exc import CompileError

    buffer = io.StringIO()
    context = MigrationContext.configure(
        dialect=dialect, opts={"as_sql": True, "output_buffer": buffer, "literal_binds": True}
    )
    operations = Operations(context)
    postgresql = dialect.name == "postgresql"
    chunks: list[str] = []
    for step in plan.ordered_steps():
        if step.manual is not None:
            chunks.append(f"-- manual: {step.manual}")
            continue
        if postgresql and step.safe == "index":
            step.op.kw["postgresql_concurrently"] = True
        start = buffer.tell()
        try:
            operations.invoke(step.op)
        except NotImplementedError as exc:  # SQLite: no ALTER for it outside batch mode
            buffer.seek(start)
            buffer.truncate()
            chunks.append(f"-- manual: {_what(step.op)}: {exc} (--revision writes a batch one)")
            continue
        except CompileError as exc:  # FROM's type or construct in TO's dialect (JSONB on MySQL)
            buffer.seek(start)
            buffer.truncate()
            reason = re.sub(r"<([\w.]+) object at 0x\w+>", r"\1", " ".join(str(exc).split()))
            chunks.append(f"-- manual: {_what(step.op)}: {dialect.name} cannot say it: {reason}")
            continue
        sql = buffer.getvalue()[start:].strip()
        if postgresql and step.safe == "constraint":
            sql = _not_valid(sql, step, dialect)
        if step.destructive:
            chunks.append(f"-- destructive: {step.destructive}")
        chunks.append(sql)
    return "\n\n".join(chunks) + ("\n" if chunks else "")


def _what(op: Any) -> str:
    """An operation in a few words (for a step no SQL can take)."""
    name = type(op).__name__.removesuffix("Op")
    table = getattr(op, "table_name", None) or getattr(op, "source_table", None)
    return f"{name} on {table}" if table else name


def _not_valid(sql: str, step: Step, dialect: Dialect) -> str:
    """``ADD CONSTRAINT ... NOT VALID`` then ``VALIDATE CONSTRAINT``: the table is not
    scanned under the lock that blocks writes."""
    op = step.op
    preparer = dialect.identifier_preparer
    table = preparer.quote(op.table_name if hasattr(op, "table_name") else op.source_table)
    schema = getattr(op, "schema", None) or getattr(op, "source_schema", None)
    if schema:
        table = f"{preparer.quote_schema(schema)}.{table}"
    added = re.sub(r";\s*$", "", sql) + " NOT VALID;"
    validate = f"ALTER TABLE {table} VALIDATE CONSTRAINT {preparer.quote(op.constraint_name)};"
    return f"{added}\n\n{validate}"


def revision_operations(plan: Plan) -> tuple[list[Any], list[Any]]:
    """The plan's operations for a revision: upgrade, and the downgrade Alembic can derive
    (each reversible operation reversed, in reverse order)."""
    upgrade = [s.op for s in plan.ordered_steps() if s.op is not None]
    downgrade: list[Any] = []
    for op in reversed(upgrade):
        try:
            downgrade.append(op.reverse())
        except Exception:  # SQL, a dropped key: not reversible from what the plan holds
            continue
    return upgrade, downgrade


def write_revision(
    project: MigrationProject,
    settings: DatabaseSettings,
    plan: Plan,
    message: str,
    dialect: Dialect,
) -> tuple[str, Path]:
    """Write the plan's operations as a new revision of ``project``, rendered by Alembic as
    ``migrate new --autogenerate`` renders the operations it detects."""
    from alembic.autogenerate.api import RevisionContext
    from alembic.operations import ops
    from alembic.runtime.migration import MigrationContext

    from myfy_db.migrations.revisions import alembic_errors

    project.require_template()
    config = project.config(settings, settings.database_url)
    script = project.script()
    upgrade, downgrade = revision_operations(plan)

    def swap_in(_context: Any, _revision: Any, directives: list[Any]) -> None:
        directives[0].upgrade_ops = ops.UpgradeOps(ops=_grouped(upgrade))
        directives[0].downgrade_ops = ops.DowngradeOps(ops=_grouped(downgrade))

    command_args = {
        "message": message,
        "autogenerate": True,
        "sql": False,
        "head": "head",
        "splice": False,
        "branch_label": None,
        "version_path": None,
        "rev_id": None,
        "depends_on": None,
    }
    # Alembic says "Generating PATH ... done" on stdout, which holds only the result.
    with alembic_errors(), contextlib.redirect_stdout(sys.stderr):
        revision_context = RevisionContext(config, script, command_args, swap_in)
        context = MigrationContext.configure(
            dialect=dialect,
            opts={
                "upgrade_token": "upgrades",
                "downgrade_token": "downgrades",
                "process_revision_directives": None,
                "sqlalchemy_module_prefix": "sa.",
                "alembic_module_prefix": "op.",
                "render_as_batch": dialect.name == "sqlite",
            },
        )
        revision_context.run_no_autogenerate("heads", context)
        written = [s for s in revision_context.generate_scripts() if s is not None]
    return written[0].revision, Path(written[0].path)


def _grouped(operations: list[Any]) -> list[Any]:
    """Table-level operations inside a ``ModifyTableOps`` per table, as autogenerate
    groups them (and as its renderer expects)."""
    from alembic.operations import ops

    grouped: list[Any] = []
    for op in operations:
        table = getattr(op, "table_name", None)
        if table is None or isinstance(op, (ops.CreateTableOp, ops.DropTableOp)):
            grouped.append(op)
            continue
        schema = getattr(op, "schema", None)
        last = grouped[-1] if grouped else None
        if (
            isinstance(last, ops.ModifyTableOps)
            and last.table_name == table
            and last.schema == schema
        ):
            last.ops.append(op)
        else:
            grouped.append(ops.ModifyTableOps(table, [op], schema=schema))
    return grouped
