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
    # what Enum.create(bind) sends: a new type locks no table
    ("enum type", "op.execute(\"CREATE TYPE mood AS ENUM ('a', 'b')\")", []),
    ("enum value", "op.execute(\"ALTER TYPE mood ADD VALUE 'c'\")", []),
    ("sequence", 'op.execute("CREATE SEQUENCE item_numbers")', []),
    ("view", 'op.execute("CREATE VIEW v AS SELECT 1")', ["DB004"]),
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


PROCEDURE = (
    'op.execute("""CREATE PROCEDURE touch_all()\n'
    'BEGIN\n  UPDATE items SET name = lower(name) WHERE id < 10;\n  SELECT 1;\nEND""")'
)
MYSQL_CASES = [
    ("procedure", PROCEDURE, []),
    ("rename", 'op.execute("ALTER TABLE items RENAME TO things")', ["DB002"]),
    ("rename table", 'op.execute("RENAME TABLE items TO things")', ["DB002"]),
    ("rename column", 'op.execute("ALTER TABLE items RENAME COLUMN name TO title")', ["DB002"]),
    ("drop column", 'op.execute("ALTER TABLE `items` DROP COLUMN `note`")', ["DB001"]),
    ("backfill", "op.execute(\"UPDATE items SET name = 'x'\")", ["DB005"]),
    ("batched", "op.execute(\"UPDATE items SET name = 'x' WHERE id < 1000\")", []),
    ("delete all", 'op.execute("DELETE FROM items")', ["DB005"]),
    ("two statements", 'op.execute("SET foreign_key_checks = 0; DROP TABLE items")', ["DB001"]),
    ("fulltext", 'op.execute("CREATE FULLTEXT INDEX ft_items ON items (name)")', ["MY004"]),
    ("charset", 'op.execute("ALTER TABLE items CONVERT TO CHARACTER SET utf8mb4")', ["MY003"]),
    # The server runs what an executable comment holds: never read it as a comment.
    ("executable comment", 'op.execute("/*!50001 DROP TABLE items */")', ["DB004"]),
    ("mariadb comment", 'op.execute("SELECT 1; /*M!100100 DROP TABLE items */")', ["DB004"]),
]


@pytest.mark.parametrize(
    ("label", "upgrade", "rules"), MYSQL_CASES, ids=[c[0] for c in MYSQL_CASES]
)
def test_mysql_raw_sql_is_read_with_its_grammar(
    label: str, upgrade: str, rules: list[str], tmp_path: Path
) -> None:
    url = f"mysql+aiomysql://root@127.0.0.1:{free_port()}/nowhere"
    ini = _project(tmp_path / "p", upgrade)
    _, report = _lint(ini, url, "r1:r2", "--offline", "--fail-on", "never")
    found = [f["rule"] for f in report["findings"] if f["revision"] == "r2"]
    assert found == rules, report["findings"]


LONG = "ix_flow_run__scheduler_deployment_id_auto_scheduled_next_scheduled_start_time"


@pytest.mark.parametrize(
    ("label", "sql", "flagged"),
    [
        # prefect 54c1876c68ae: pglast, like the server, truncates the name it parses
        ("raw index name", f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {LONG} ON items (name)", True),
        ("quoted multibyte", 'CREATE TABLE "' + "é" * 32 + '" (a int)', True),
        ("63 bytes", 'CREATE TABLE "' + "é" * 31 + 'x" (a int)', False),
        ("long string", "UPDATE items SET name = '" + "x" * 90 + "' WHERE id = 1", False),
    ],
)
def test_a_raw_identifier_longer_than_postgresql_keeps_is_pg012(
    label: str, sql: str, flagged: bool, tmp_path: Path
) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    upgrade = f"with op.get_context().autocommit_block():\n    op.execute({sql!r})"
    ini = _project(tmp_path / "p", upgrade)
    _, report = _lint(ini, url, "r1:r2", "--offline", "--fail-on", "never")
    found = [f for f in report["findings"] if f["rule"] == "PG012"]
    assert bool(found) == flagged, report["findings"]


def test_statement_texts_are_cut_where_postgresql_cut_them_with_multibyte_text() -> None:
    from myfy_db.migrations.lint.rawsql import statements_of

    sql = "SELECT 'ééé'; DROP TABLE «x»; DROP TABLE items; ALTER TABLE é RENAME TO ü"
    sql = sql.replace("DROP TABLE «x»; ", "")
    shapes = statements_of(sql, "postgresql")
    assert [s.text for s in shapes] == [
        "SELECT 'ééé'",
        "DROP TABLE items",
        "ALTER TABLE é RENAME TO ü",
    ]
    assert [s.kind for s in shapes] == ["data", "drop_table", "rename_table"]
    assert shapes[2].table == "é"


SQLITE_CASES = [
    ("rename", 'op.execute("ALTER TABLE items RENAME TO things")', ["DB002"]),
    ("rename column", 'op.execute("ALTER TABLE items RENAME COLUMN name TO title")', ["DB002"]),
    ("drop column", 'op.execute("ALTER TABLE \\"items\\" DROP COLUMN note")', ["DB001"]),
    ("backfill", "op.execute(\"UPDATE items SET name = 'x'\")", ["DB005"]),
    ("batched", "op.execute(\"UPDATE items SET name = 'x' WHERE id < 1000\")", []),
    # a WHERE inside a string is no WHERE: the grammar, not the text, says every row
    ("where in a string", "op.execute(\"UPDATE items SET name = 'x WHERE y'\")", ["DB005"]),
]


@pytest.mark.parametrize(
    ("label", "upgrade", "rules"), SQLITE_CASES, ids=[c[0] for c in SQLITE_CASES]
)
def test_sqlite_raw_sql_is_read_with_a_grammar(
    label: str, upgrade: str, rules: list[str], tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'none.db'}"
    ini = _project(tmp_path / "p", upgrade)
    _, report = _lint(ini, url, "r1:r2", "--offline", "--fail-on", "never")
    found = [f["rule"] for f in report["findings"] if f["revision"] == "r2"]
    assert found == rules, report["findings"]
