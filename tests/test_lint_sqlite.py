"""SQLite's own lint rules (issue 23): what lint calls an error is what SQLite refuses.

Every bad revision is linted against a real SQLite file whose table holds a row, then run
for real: lint's SQ001/SQ002 finding and SQLite's refusal go together, the database stays
at the previous revision. Every good form lints clean of those rules and applies.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from helpers import invoke
from test_migrate_lint import _project

# What SQLite answers for each refused form: (rule, revision body, SQLite's words).
REFUSED = [
    (
        "SQ001",
        'op.add_column("items", sa.Column("pages", sa.Integer(), nullable=False))',
        "NOT NULL column with default value NULL",
    ),
    (
        "SQ001",
        'op.add_column("items", sa.Column("seen", sa.DateTime(), '
        "server_default=sa.text('CURRENT_TIMESTAMP')))",
        "non-constant default",
    ),
    (
        "SQ001",
        'op.add_column("items", sa.Column("total", sa.Numeric(10, 2), '
        'sa.Computed("price * 2", persisted=True)))',
        "STORED",
    ),
    (
        "SQ001",
        'op.add_column("items", sa.Column("code", sa.String(20), unique=True))',
        "ALTER of constraints",  # Alembic refuses before SQLite can
    ),
    (
        "SQ002",
        'op.alter_column("items", "note", type_=sa.String(100), existing_type=sa.String(50))',
        "syntax error",
    ),
    (
        "SQ002",
        'op.alter_column("items", "note", nullable=False, existing_type=sa.String(50))',
        "syntax error",
    ),
    (
        "SQ002",
        'op.create_foreign_key("fk_items_owner", "items", "owners", ["owner_id"], ["id"])',
        "batch mode",
    ),
    ("SQ002", 'op.create_unique_constraint("uq_items_name", "items", ["name"])', "batch mode"),
    ("SQ002", 'op.create_check_constraint("ck_price", "items", "price > 0")', "batch mode"),
]

ACCEPTED = [
    'op.add_column("items", sa.Column("pages", sa.Integer(), nullable=False, server_default="0"))',
    'op.add_column("items", sa.Column("seen", sa.DateTime()))',
    # a constant with a quote in it
    'op.add_column("items", sa.Column("label", sa.String(10), nullable=False, '
    'server_default="it\'s"))',
    'op.add_column("items", sa.Column("total", sa.Numeric(10, 2), '
    'sa.Computed("price * 2", persisted=False)))',
    'op.alter_column("items", "note", new_column_name="remark", existing_type=sa.String(50))',
    'op.create_table("pages", sa.Column("id", sa.Integer, primary_key=True))\n'
    'op.add_column("pages", sa.Column("n", sa.Integer(), nullable=False))',
]


def _with_a_row(url: str, ini: Path) -> Path:
    applied = invoke("migrate", "up", "r1", "--url", url, "--config", str(ini))
    assert applied.exit_code == 0, applied.stderr
    path = Path(url.split("///", 1)[1])
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO owners (id) VALUES (1)")
        db.execute("INSERT INTO items (id, name, price) VALUES (1, 'a', 2)")
    return path


def _rules(url: str, ini: Path) -> tuple[int, list[dict[str, object]]]:
    result = invoke(
        "migrate", "lint", "--url", url, "--config", str(ini), "--json", "--fail-on", "error"
    )
    assert result.exit_code in (0, 5), result.stderr
    return result.exit_code, json.loads(result.stdout)["findings"]


@pytest.mark.parametrize(
    ("rule", "body", "words"), REFUSED, ids=[f"{r[0]}-{i}" for i, r in enumerate(REFUSED)]
)
def test_what_lint_calls_an_error_sqlite_refuses(
    rule: str, body: str, words: str, tmp_path: Path, sqlite_url: str
) -> None:
    ini = _project(tmp_path / "p", body)
    path = _with_a_row(sqlite_url, ini)

    code, findings = _rules(sqlite_url, ini)
    hits = [f for f in findings if f["rule"] == rule]
    assert len(hits) == 1, findings
    assert hits[0]["severity"] == "error"
    assert hits[0]["file"].endswith("r2.py")  # type: ignore[union-attr]
    assert code == 5
    # The revision after the refused operation is still judged: no "not analysed".
    assert "DB006" not in {f["rule"] for f in findings}, findings

    ran = invoke("migrate", "--url", sqlite_url, "--config", str(ini))
    assert ran.exit_code == 1, ran.stderr
    assert words.lower() in ran.stderr.lower()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("r1",)]


@pytest.mark.parametrize("body", ACCEPTED)
def test_what_sqlite_runs_lints_clean_of_its_rules(
    body: str, tmp_path: Path, sqlite_url: str
) -> None:
    ini = _project(tmp_path / "p", body)
    path = _with_a_row(sqlite_url, ini)

    _, findings = _rules(sqlite_url, ini)
    assert not [f for f in findings if str(f["rule"]).startswith("SQ")], findings

    ran = invoke("migrate", "--url", sqlite_url, "--config", str(ini))
    assert ran.exit_code == 0, ran.stderr
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("r2",)]


def test_the_sqlite_rules_stay_on_sqlite(tmp_path: Path) -> None:
    """A NOT NULL column without a default is PG003 on PostgreSQL, never SQ001."""
    ini = _project(tmp_path / "p", REFUSED[0][1])
    result = invoke(
        "migrate", "lint", "r1:r2", "--offline", "--json", "--fail-on", "never",
        "--url", "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere", "--config", str(ini),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    rules = {f["rule"] for f in json.loads(result.stdout)["findings"]}
    assert "PG003" in rules
    assert not {r for r in rules if r.startswith("SQ")}


def test_batch_mode_is_judged_offline_without_a_connection(tmp_path: Path) -> None:
    """Offline, Alembic cannot copy a SQLite table in batch mode without reflecting it; the
    batch's operations are judged one by one and the rest of the revision too."""
    body = (
        'with op.batch_alter_table("items") as batch:\n'
        '    batch.alter_column("note", type_=sa.String(100), existing_type=sa.String(50))\n'
        '    batch.drop_column("body")\n'
        'op.drop_table("tags")'
    )
    ini = _project(tmp_path / "p", body)
    result = invoke(
        "migrate", "lint", "r1:r2", "--offline", "--json", "--fail-on", "never",
        "--url", f"sqlite+aiosqlite:///{tmp_path / 'none.db'}", "--config", str(ini),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    findings = json.loads(result.stdout)["findings"]
    assert [(f["rule"], f["detail"]) for f in findings] == [
        ("DB001", "drops column items.body"),
        ("DB001", "drops table tags"),
    ]
