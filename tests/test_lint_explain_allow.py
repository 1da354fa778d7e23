"""``migrate lint --explain RULE`` documents a rule, and an allow comment must name a real
rule and say why (issue 23): a misspelt id would otherwise accept nothing, silently."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import free_port, invoke
from test_migrate_lint import _project

INDEX = 'op.create_index("ix_items_name", "items", ["name"])'


def _offline(ini: Path, *args: str):  # type: ignore[no-untyped-def]
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    return invoke(
        "migrate", "lint", "r1:r2", "--offline", "--url", url, "--config", str(ini), *args
    )


@pytest.mark.parametrize(
    ("comment", "message", "hint"),
    [
        ("# myfy-db: allow PG0009 -- small table", "names no rule", "did you mean PG009?"),
        ("# myfy-db: allow PG001", "gives no reason", "-- reason"),
    ],
)
def test_a_bad_allow_comment_is_exit_2_naming_the_line(
    comment: str, message: str, hint: str, tmp_path: Path
) -> None:
    ini = _project(tmp_path / "p", f"{comment}\n{INDEX}")
    result = _offline(ini)
    assert result.exit_code == 2, result.output
    assert "r2.py:" in result.stderr
    assert message in result.stderr
    assert hint in result.stderr


def test_explain_documents_a_rule() -> None:
    result = invoke("migrate", "lint", "--explain", "pg001")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("PG001 create-index-blocking")
    assert "the safe form:" in result.stdout
    assert "postgresql_concurrently=True" in result.stdout


def test_explain_without_a_rule_lists_them_and_a_wrong_one_is_exit_2() -> None:
    listing = invoke("migrate", "lint", "--explain", "")
    assert listing.exit_code == 0
    assert "DB005 whole-table-backfill" in listing.stdout
    wrong = invoke("migrate", "lint", "--explain", "PG0001")
    assert wrong.exit_code == 2
    assert "did you mean PG001?" in wrong.stderr
