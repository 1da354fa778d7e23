"""An ``alter_column`` without ``existing_type`` is judged against the column's type as the
database has it, else the models' (issue 23): widening a VARCHAR, or VARCHAR to TEXT, does
not rewrite a PostgreSQL table and is not reported; narrowing is."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import invoke
from test_migrate_lint import _lint, _project


@pytest.mark.parametrize(
    ("new_type", "rules"),
    [("sa.String(200)", []), ("sa.Text()", []), ("sa.String(10)", ["PG006"])],
)
def test_pending_type_change_is_judged_against_the_database_type(
    new_type: str, rules: list[str], tmp_path: Path, postgres_url: str
) -> None:
    ini = _project(tmp_path / "p", f'op.alter_column("items", "name", type_={new_type})')
    assert invoke("migrate", "up", "r1", "--url", postgres_url, "--config", str(ini)).exit_code == 0
    _, report = _lint(ini, postgres_url, "--fail-on", "never")
    assert report["revisions"] == ["r2"]
    assert [f["rule"] for f in report["findings"]] == rules


def test_without_the_database_the_type_is_said_to_be_unknown(tmp_path: Path) -> None:
    from helpers import free_port

    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    ini = _project(tmp_path / "p", 'op.alter_column("items", "name", type_=sa.String(200))')
    _, report = _lint(ini, url, "r1:r2", "--offline", "--fail-on", "never")
    (finding,) = report["findings"]
    assert finding["rule"] == "PG006"
    assert "unknown type" in finding["detail"]
