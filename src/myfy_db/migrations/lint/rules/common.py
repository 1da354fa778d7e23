"""Rules for every dialect: renames and drops that break the code still running."""

from __future__ import annotations

from myfy_db.migrations.lint.model import CapturedOp, RangeState, Severity, norm
from myfy_db.migrations.lint.registry import ALL, rule
from myfy_db.migrations.lint.rules._ops import kind

EXPAND_CONTRACT = (
    "expand/contract: add the new one and deploy code that uses both, migrate the data, "
    "deploy code that no longer uses the old one, and only then drop or rename it in a "
    "later release"
)


def _removal(captured: CapturedOp) -> tuple[str, str, str | None] | None:
    """(verb, table, column) for a drop or rename of a table or column."""
    operation = captured.operation
    current = kind(captured)
    if current == "DropTableOp":
        return "drops", operation.table_name, None
    if current == "DropColumnOp":
        return "drops", operation.table_name, operation.column_name
    if current == "RenameTableOp":
        return "renames", operation.table_name, None
    if current == "AlterColumnOp" and operation.modify_name:
        return "renames", operation.table_name, operation.column_name
    raw = captured.raw
    if raw is not None and raw.table:
        verbs = {
            "rename_table": "renames",
            "rename_column": "renames",
            "drop_table": "drops",
            "drop_column": "drops",
        }
        if raw.kind in verbs:
            return verbs[raw.kind], raw.table, raw.column
    return None


def _existing(captured: CapturedOp, state: RangeState, verb: str) -> tuple[str, str | None] | None:
    removal = _removal(captured)
    if removal is None or removal[0] != verb:
        return None
    _, table, column = removal
    if not state.existing(table) or (column and state.new_column(table, column)):
        return None
    return table, column


@rule(
    "DB001",
    "drop-table-or-column",
    severity=Severity.WARNING,
    dialects=ALL,
    summary="dropping a table or column",
    breaks="application servers still running the previous release keep querying it and "
    "fail from the moment the revision commits until they are replaced",
    safe=EXPAND_CONTRACT,
)
def drop_table_or_column(captured: CapturedOp, state: RangeState) -> str | None:
    found = _existing(captured, state, "drops")
    if found is None:
        return None
    table, column = found
    return f"drops column {table}.{column}" if column else f"drops table {table}"


@rule(
    "DB002",
    "rename-table-or-column",
    severity=Severity.WARNING,
    dialects=ALL,
    summary="renaming a table or column",
    breaks="code still running uses the old name and fails as soon as the rename commits; "
    "the new code fails the same way if it is deployed first",
    safe=EXPAND_CONTRACT,
)
def rename_table_or_column(captured: CapturedOp, state: RangeState) -> str | None:
    found = _existing(captured, state, "renames")
    if found is None:
        return None
    table, column = found
    operation = captured.operation
    if captured.raw is not None:  # the new name as the parser read it (a column's: unknown)
        to = f" to {captured.raw.name}" if captured.raw.name else ""
        return f"renames column {table}.{column}" if column else f"renames table {table}{to}"
    if column:
        return f"renames column {table}.{column} to {operation.modify_name}"
    return f"renames table {table} to {operation.new_table_name}"


@rule(
    "DB003",
    "drop-still-mapped",
    severity=Severity.ERROR,
    dialects=ALL,
    summary="dropping or renaming a table or column the configured models still map",
    breaks="the models of this very release still read and write it: every query through "
    "that model fails once the revision runs",
    safe="remove it from the models (and deploy that) first; drop it in a later revision",
)
def drop_still_mapped(captured: CapturedOp, state: RangeState) -> str | None:
    removal = _removal(captured)
    if removal is None or state.models is None:
        return None
    verb, table, column = removal
    columns = state.models.get(norm(table))
    if columns is None:
        return None
    if column is None:
        return f"{verb} table {table}, which the models map"
    if norm(column) in columns:
        return f"{verb} column {table}.{column}, which the models map"
    return None


@rule(
    "DB004",
    "raw-sql-not-analysed",
    severity=Severity.INFO,
    dialects=ALL,
    summary="op.execute() with SQL the linter cannot analyse",
    breaks="nothing is known about the locks or rewrites this statement causes: review it by hand",
    safe="prefer Alembic operations; keep raw SQL to data changes and statements the linter "
    "understands, or accept the finding with a reason",
)
def raw_sql(captured: CapturedOp, state: RangeState) -> str | None:
    if kind(captured) != "raw:unknown":
        return None
    text = captured.raw.text
    return f"runs SQL it cannot analyse: {text[:120] + ('...' if len(text) > 120 else '')}"


@rule(
    "DB005",
    "whole-table-backfill",
    severity=Severity.WARNING,
    dialects=ALL,
    summary="an UPDATE or DELETE of every row inside the migration's transaction",
    breaks="every row stays locked until the revision commits: writers to the table queue "
    "behind it, and on a large table the revision runs for minutes",
    safe="backfill in batches outside the schema change (a separate revision or a job): "
    "UPDATE ... WHERE id BETWEEN :lo AND :hi, committing each batch",
)
def whole_table_backfill(captured: CapturedOp, state: RangeState) -> str | None:
    raw = captured.raw
    if raw is None or raw.kind != "data" or not raw.whole_table or not raw.table:
        return None
    if not state.existing(raw.table):
        return None
    verb = raw.text.split(" ", 1)[0].upper()
    return f"{verb} of every row of {raw.table} in the migration's transaction"


@rule(
    "DB006",
    "not-analysed-offline",
    severity=Severity.WARNING,
    dialects=ALL,
    summary="a revision lint could not run: it needs a live connection offline, or it "
    "fails on the --dev-url scratch database",
    breaks="nothing is known about what this revision does after the call that failed: its "
    "locks and rewrites go unreviewed",
    safe="lint with --dev-url URL (a scratch database on a server of the same kind, created "
    "and dropped by lint) so the revision runs for real; or guard the reading part with "
    "`if not context.is_offline_mode():` so the operations can be judged offline",
)
def not_analysed(captured: CapturedOp, state: RangeState) -> str | None:
    if kind(captured) != "raw:not_analysed":
        return None
    return f"not analysed: {captured.raw.text}"
