"""A diff's outcome for people (grouped by table, a line per difference) and for programs
(one JSON document, one object per difference)."""

from __future__ import annotations

from itertools import groupby
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from myfy_db.diff import Outcome
    from myfy_db.diff.kinds import Difference


def sorted_differences(outcome: Outcome) -> list[Difference]:
    """Schema-level objects first, then each table's differences, table by table."""
    return sorted(
        outcome.plan.differences,
        key=lambda d: (d.table is not None, d.table or "", d.kind, d.name),
    )


def document(outcome: Outcome, sql: str | None = None) -> dict[str, Any]:
    """The ``--json`` document."""
    differences = sorted_differences(outcome)
    counts: dict[str, int] = {}
    for difference in differences:
        counts[difference.kind] = counts.get(difference.kind, 0) + 1
    result: dict[str, Any] = {
        "from": outcome.from_label,
        "to": outcome.to_label,
        "equal": not differences,
        "differences": [d.to_dict() for d in differences],
        "counts": dict(sorted(counts.items())),
    }
    if sql is not None:
        result["dialect"] = outcome.dialect.name
        result["sql"] = sql
    return result


def _side(value: str | None) -> str:
    return "(none)" if value is None else value


def human_lines(outcome: Outcome) -> list[str]:
    """The report: a heading per table (or ``schema`` for views, enums, sequences), one line
    per difference saying what FROM has and what TO has."""
    differences = sorted_differences(outcome)
    lines = [f"FROM {outcome.from_label}", f"TO   {outcome.to_label}"]
    if not differences:
        lines.append("no differences")
        return lines
    for table, group in groupby(differences, key=lambda d: d.table):
        lines.append("")
        lines.append(f"table {table}" if table else "schema")
        for d in group:
            # A table's own line needs no name: its heading has it.
            what = d.kind if d.kind.startswith("table_") else f"{d.kind} {d.name}"
            lines.append(f"  {what}: FROM {_side(d.from_side)} | TO {_side(d.to_side)}")
    tables = len({d.table for d in differences if d.table})
    lines.append("")
    lines.append(f"{len(differences)} difference(s) in {tables} table(s)")
    return lines
