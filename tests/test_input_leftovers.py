"""Inputs that ended in the wrong code (issue 22): an upper-case URL scheme, an unknown key in
[tool.myfy-db], and --atomic with a revision that steps out of the transaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import invoke
from migrate_project import STANDARD, tables, write_project


@pytest.mark.parametrize(
    "args",
    [
        ("config", "--json"),
        ("check-pool", "--connections", "1", "--samples", "1"),
        ("migrate", "status"),
    ],
    ids=lambda a: a[0],
)
def test_an_upper_case_scheme_is_read_like_a_lower_case_one(
    args: tuple[str, ...], sqlite_url: str, project: Path
) -> None:
    assert invoke("migrate", "--url", sqlite_url).exit_code == 0
    shouting = sqlite_url.replace("sqlite+aiosqlite", "SQLITE+AIOSQLITE")
    result = invoke(*args, "--url", shouting)
    assert result.exit_code == 0, result.output


def test_an_unknown_pyproject_key_is_reported_with_the_closest_name(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.myfy-db]\npool_siz = 3\n")
    result = invoke("config")
    assert result.exit_code == 2
    assert "pool_siz (from pyproject.toml [tool.myfy-db])" in result.stderr
    assert "did you mean pool_size?" in result.stderr
    other = invoke("check-pool", "--url", "sqlite+aiosqlite:///:memory:")
    assert "unknown setting pool_siz" in other.stderr  # a warning elsewhere, as for env names


def test_atomic_with_an_autocommit_block_is_refused_before_anything_runs(
    tmp_path: Path, postgres_url: str
) -> None:
    concurrent = (
        "r4",
        "index concurrently",
        "with op.get_context().autocommit_block():\n"
        '    op.create_index("ix_items_name", "items", ["name"], postgresql_concurrently=True)',
        'op.drop_index("ix_items_name", table_name="items")',
    )
    write_project(tmp_path, [*STANDARD, concurrent])
    result = invoke("migrate", "--atomic", "--url", postgres_url)
    assert result.exit_code == 2, result.output
    assert "--atomic cannot run revision r4" in result.stderr
    assert "autocommit_block()" in result.stderr
    assert "runs" not in tables(postgres_url)  # nothing ran, not even r1..r3
