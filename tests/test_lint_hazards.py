"""Hazards lint used to miss (issue 23), each confirmed with the SQL Alembic renders: a
foreign key or a unique column added with add_column, an exclusion constraint and a
non-native enum's CHECK on an existing table."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import free_port
from test_migrate_lint import _lint, _project

CASES = [
    (
        "fk column",
        'op.add_column("items", sa.Column("owner2", sa.Integer, sa.ForeignKey("owners.id")))',
        "PG008",
    ),
    (
        "unique column",
        'op.add_column("items", sa.Column("code", sa.String(20), unique=True))',
        "PG009",
    ),
    (
        "enum check",
        'op.alter_column("items", "note", type_=sa.Enum("a", "b", name="kind", '
        "create_constraint=True, native_enum=False), existing_type=sa.String(50))",
        "PG008",
    ),
    (
        "exclusion",
        "from sqlalchemy.dialects.postgresql import ExcludeConstraint\n"
        'op.create_exclude_constraint("ex_items", "items", ("name", "="))',
        "PG009",
    ),
]


@pytest.mark.parametrize(("label", "upgrade", "rule"), CASES, ids=[c[0] for c in CASES])
def test_lint_sees_the_hazard(label: str, upgrade: str, rule: str, tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    ini = _project(tmp_path / "p", upgrade)
    _, report = _lint(ini, url, "r1:r2", "--offline", "--fail-on", "never")
    assert rule in [f["rule"] for f in report["findings"]], report["findings"]
