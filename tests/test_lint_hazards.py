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


@pytest.mark.parametrize(
    ("label", "upgrade", "rules"),
    [
        (
            "volatile call",
            "sa.Column('u', sa.Uuid, server_default=sa.text('gen_random_uuid()'))",
            ["PG004"],
        ),
        (
            "the call's name in a string",
            "sa.Column('s', sa.String(20), server_default='random()')",
            [],
        ),
        ("a column called now", "sa.Column('now', sa.Integer, server_default='0')", []),
        (
            "CURRENT_TIMESTAMP",
            "sa.Column('t', sa.DateTime, server_default=sa.text('CURRENT_TIMESTAMP'))",
            ["PG005"],
        ),
        ("identity", "sa.Column('n', sa.Integer, sa.Identity())", ["PG004"]),
    ],
)
def test_a_default_is_read_with_postgresql_s_parser(
    label: str, upgrade: str, rules: list[str], tmp_path: Path
) -> None:
    """PG004/PG005 read the functions a default calls from the parse tree of the rendered
    ADD COLUMN: a function's name in a string or a column's name is no call."""
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    ini = _project(tmp_path / "p", f'op.add_column("items", {upgrade})')
    _, report = _lint(ini, url, "r1:r2", "--offline", "--fail-on", "never")
    found = [f["rule"] for f in report["findings"] if f["rule"] in ("PG004", "PG005")]
    assert found == rules, report["findings"]
