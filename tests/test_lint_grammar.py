"""Raw SQL in a revision is read with the database's own grammar (issue 23): on PostgreSQL
pglast parses ``op.execute()`` text, so a dollar-quoted function is one statement, not five
"cannot analyse" findings, and a statement it recognises meets the same rules as the
operation form (a raw table rename is a rename; an UPDATE of every row is a backfill)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import free_port
from test_migrate_lint import _lint, _project

FUNCTION = (
    'op.execute("""CREATE FUNCTION touch() RETURNS trigger AS $$\n'
    "BEGIN\n  NEW.name := lower(NEW.name);\n  RETURN NEW;\nEND;\n"
    '$$ LANGUAGE plpgsql""")'
)
CASES = [
    ("function", FUNCTION, []),
    ("rename", 'op.execute("ALTER TABLE items RENAME TO things")', ["DB002"]),
    ("rename column", 'op.execute("ALTER TABLE items RENAME COLUMN name TO title")', ["DB002"]),
    ("backfill", "op.execute(\"UPDATE items SET name = 'x'\")", ["DB005"]),
    ("batched", "op.execute(\"UPDATE items SET name = 'x' WHERE id < 1000\")", []),
    ("delete all", 'op.execute("DELETE FROM items")', ["DB005"]),
    ("two statements", 'op.execute("SET lock_timeout = 1000; DROP TABLE items")', ["DB001"]),
]


@pytest.mark.parametrize(("label", "upgrade", "rules"), CASES, ids=[c[0] for c in CASES])
def test_raw_sql_meets_the_rules_of_its_operation_form(
    label: str, upgrade: str, rules: list[str], tmp_path: Path
) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    ini = _project(tmp_path / "p", upgrade)
    _, report = _lint(ini, url, "r1:r2", "--offline", "--fail-on", "never")
    found = [f["rule"] for f in report["findings"] if f["revision"] == "r2"]
    assert found == rules, report["findings"]
