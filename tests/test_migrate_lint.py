"""``myfy-db migrate lint``: every rule fires on a revision that breaks production and stays
quiet on its safe rewrite, judged through the command on the dialects the rule is for.

Each case migrates a fresh real database to the base revision ``r1``, then lints the pending
revision ``r2`` (default range) in two projects that share ``r1``: the bad one and its safe
rewrite. The safe rewrite is then applied for real, to show that it runs.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from helpers import backend_of, free_port, invoke
from migrate_project import write_project
from myfy_db.migrations.lint import all_rules

ROOT = Path(__file__).resolve().parent.parent

BASE = (
    "r1",
    "base schema",
    textwrap.dedent(
        """\
        op.create_table("owners", sa.Column("id", sa.Integer, primary_key=True))
        op.create_table(
            "items",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(50), nullable=False),
            sa.Column("note", sa.String(50)),
            sa.Column("price", sa.Numeric(10, 2)),
            sa.Column("body", sa.Text),
            sa.Column("owner_id", sa.Integer),
        )
        op.create_index("ix_items_note", "items", ["note"])
        op.create_table("tags", sa.Column("name", sa.String(50), nullable=False))"""
    ),
    'op.drop_table("tags")\nop.drop_table("items")\nop.drop_table("owners")',
)

AUTOCOMMIT = "with op.get_context().autocommit_block():\n    "

PG = ("postgresql",)
MY = ("mysql",)
SQ = ("sqlite",)
EVERY = ("sqlite", "postgresql", "mysql")

# rule id, backends, the revision that triggers it, its safe rewrite
DROP = 'op.drop_table("tags")'

CASES: list[tuple[str, tuple[str, ...], str, str]] = [
    (
        "PG001",
        PG,
        'op.create_index("ix_items_name", "items", ["name"])',
        AUTOCOMMIT
        + 'op.create_index("ix_items_name", "items", ["name"], postgresql_concurrently=True,'
        " if_not_exists=True)",
    ),
    (
        "PG002",
        PG,
        'op.drop_index("ix_items_note", table_name="items")',
        AUTOCOMMIT
        + 'op.drop_index("ix_items_note", table_name="items", postgresql_concurrently=True)',
    ),
    (
        "PG003",
        PG,
        'op.add_column("items", sa.Column("qty", sa.Integer, nullable=False))',
        'op.add_column("items", sa.Column("qty", sa.Integer, nullable=False, server_default="0"))',
    ),
    (
        "PG004",
        PG,
        'op.add_column("items", sa.Column("token", sa.Float, server_default=sa.text("random()")))',
        'op.add_column("items", sa.Column("token", sa.Float))\n'
        'op.alter_column("items", "token", server_default=sa.text("random()"))',
    ),
    (
        "PG005",
        PG,
        'op.add_column("items", sa.Column("seen", sa.DateTime, server_default=sa.func.now()))',
        'op.add_column("items", sa.Column("seen", sa.DateTime))\n'
        'op.alter_column("items", "seen", server_default=sa.func.now())',
    ),
    (
        "PG006",
        PG,
        'op.alter_column("items", "price", type_=sa.Numeric(10, 4), '
        "existing_type=sa.Numeric(10, 2))",
        'op.alter_column("items", "name", type_=sa.String(100), existing_type=sa.String(50))',
    ),
    (
        "PG007",
        PG,
        'op.alter_column("items", "note", nullable=False, existing_type=sa.String(50))',
        'op.create_check_constraint("ck_note", "items", "note IS NOT NULL", '
        "postgresql_not_valid=True)\n"
        'op.execute("ALTER TABLE items VALIDATE CONSTRAINT ck_note")\n'
        'op.alter_column("items", "note", nullable=False, existing_type=sa.String(50))\n'
        'op.drop_constraint("ck_note", "items", type_="check")',
    ),
    (
        "PG008",
        PG,
        'op.create_foreign_key("fk_owner", "items", "owners", ["owner_id"], ["id"])',
        'op.create_foreign_key("fk_owner", "items", "owners", ["owner_id"], ["id"], '
        "postgresql_not_valid=True)\n"
        'op.execute("ALTER TABLE items VALIDATE CONSTRAINT fk_owner")',
    ),
    (
        "PG009",
        PG,
        'op.create_unique_constraint("uq_name", "items", ["name"])',
        AUTOCOMMIT + 'op.create_index("ux_name", "items", ["name"], unique=True, '
        "postgresql_concurrently=True, if_not_exists=True)\n"
        'op.execute("ALTER TABLE items ADD CONSTRAINT uq_name UNIQUE USING INDEX ux_name")',
    ),
    (
        "PG008",
        PG,
        'op.create_check_constraint("ck_price", "items", "price >= 0")',
        'op.create_check_constraint("ck_price", "items", "price >= 0", '
        "postgresql_not_valid=True)\n"
        'op.execute("ALTER TABLE items VALIDATE CONSTRAINT ck_price")',
    ),
    (
        "PG009",
        PG,
        'op.create_primary_key("pk_tags", "tags", ["name"])',
        AUTOCOMMIT + 'op.create_index("ux_tags", "tags", ["name"], unique=True, '
        "postgresql_concurrently=True, if_not_exists=True)\n"
        'op.execute("ALTER TABLE tags ADD CONSTRAINT pk_tags PRIMARY KEY USING INDEX ux_tags")',
    ),
    (
        "PG004",
        PG,
        'op.add_column("items", sa.Column("seq", sa.Integer, sa.Identity()))',
        'op.add_column("items", sa.Column("seq", sa.Integer))',
    ),
    (
        "PG010",
        PG,
        'op.create_index("ix_items_name", "items", ["name"], postgresql_concurrently=True)',
        AUTOCOMMIT
        + 'op.create_index("ix_items_name", "items", ["name"], postgresql_concurrently=True,'
        " if_not_exists=True)",
    ),
    (
        "MY001",
        MY,
        'op.alter_column("items", "name", type_=sa.String(100), existing_type=sa.String(50), '
        "existing_nullable=False)",
        'op.alter_column("items", "name", type_=sa.String(60), existing_type=sa.String(50), '
        "existing_nullable=False)",
    ),
    (
        "MY002",
        MY,
        'op.create_primary_key("pk_tags", "tags", ["name"])',
        'op.create_table("labels", sa.Column("name", sa.String(50), primary_key=True))',
    ),
    (
        "MY003",
        MY,
        'op.execute("ALTER TABLE items CONVERT TO CHARACTER SET latin1")',
        'op.create_table("legacy", sa.Column("id", sa.Integer, primary_key=True), '
        'mysql_charset="latin1")',
    ),
    (
        "MY004",
        MY,
        'op.create_index("ft_body", "items", ["body"], mysql_prefix="FULLTEXT")',
        'op.create_table("docs", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("body", sa.Text))\n'
        'op.create_index("ft_body", "docs", ["body"], mysql_prefix="FULLTEXT")',
    ),
    (
        "DB001",
        EVERY,
        'op.drop_column("items", "body")',
        'op.drop_column("items", "body")  # myfy-db: allow DB001 -- unused since release 41',
    ),
    (
        "DB002",
        EVERY,
        'op.alter_column("items", "body", new_column_name="text", existing_type=sa.Text)',
        'op.add_column("items", sa.Column("text", sa.Text))\n'
        'op.execute("UPDATE items SET text = body WHERE id BETWEEN 1 AND 1000")',
    ),
    (
        "PG011",
        PG,
        'op.add_column("items", sa.Column("total", sa.Numeric(10, 2), '
        'sa.Computed("price * 2", persisted=True)))',
        'op.add_column("items", sa.Column("total", sa.Numeric(10, 2)))',
    ),
    (
        "PG012",
        PG,
        'op.add_column("items", sa.Column("c" * 64, sa.Integer))',
        'op.add_column("items", sa.Column("c" * 63, sa.Integer))',
    ),
    (
        "PG013",
        PG,
        AUTOCOMMIT
        + 'op.create_index("ix_items_name", "items", ["name"], postgresql_concurrently=True)',
        AUTOCOMMIT
        + 'op.create_index("ix_items_name", "items", ["name"], postgresql_concurrently=True,'
        " if_not_exists=True)",
    ),
    (
        "MY005",
        MY,
        'op.create_foreign_key("fk_items_owner", "items", "owners", ["owner_id"], ["id"])',
        'op.create_table("children", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("owner_id", sa.Integer, sa.ForeignKey("owners.id")))',
    ),
    (
        "SQ001",
        SQ,
        'op.add_column("items", sa.Column("pages", sa.Integer(), nullable=False))',
        'op.add_column("items", sa.Column("pages", sa.Integer(), nullable=False, '
        'server_default="0"))',
    ),
    (
        "SQ002",
        SQ,
        'op.alter_column("items", "note", type_=sa.String(100), existing_type=sa.String(50))',
        # copy_from: batch mode offline cannot reflect the table, so it is given
        'items = sa.Table("items", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),'
        ' sa.Column("name", sa.String(50), nullable=False), sa.Column("note", sa.String(50)),'
        ' sa.Column("price", sa.Numeric(10, 2)), sa.Column("body", sa.Text),'
        ' sa.Column("owner_id", sa.Integer))\n'
        'with op.batch_alter_table("items", copy_from=items) as batch:\n'
        '    batch.alter_column("note", type_=sa.String(100), existing_type=sa.String(50))',
    ),
    (
        "DB006",
        EVERY,
        'op.get_bind().execute(sa.text("SELECT 1")).scalar_one()',
        "from alembic import context\n\nif not context.is_offline_mode():\n"
        '    op.get_bind().execute(sa.text("SELECT 1")).scalar_one()',
    ),
    (
        "DB005",
        EVERY,
        "op.execute(\"UPDATE items SET note = 'x'\")",
        "op.execute(\"UPDATE items SET note = 'x' WHERE id BETWEEN 1 AND 1000\")",
    ),
    (
        "DB004",
        EVERY,
        'op.execute("CREATE VIEW item_names AS SELECT name FROM items")',
        "op.execute(\"UPDATE items SET note = 'x' WHERE note IS NULL\")",
    ),
]


def _project(root: Path, upgrade: str) -> Path:
    root.mkdir()
    return write_project(root, [BASE, ("r2", "under test", upgrade, "pass")])


def _lint(ini: Path, url: str, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = invoke("migrate", "lint", "--url", url, "--config", str(ini), "--json", *args)
    assert result.exit_code in (0, 5), result.stderr
    return result.exit_code, json.loads(result.stdout)


def _fresh_url(backend: str, request: pytest.FixtureRequest) -> str:
    name = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mysql": "mysql_url"}[backend]
    return str(request.getfixturevalue(name))


def _params() -> list[object]:
    return [
        pytest.param(rule, backend, bad, safe, id=f"{rule}-{backend}")
        for rule, backends, bad, safe in CASES
        for backend in backends
    ]


@pytest.mark.parametrize(("rule", "backend", "bad", "safe"), _params())
def test_rule_fires_on_the_bad_revision_and_not_on_its_safe_rewrite(
    rule: str, backend: str, bad: str, safe: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _fresh_url(backend, request)
    bad_ini = _project(tmp_path / "bad", bad)
    safe_ini = _project(tmp_path / "safe", safe)
    applied = invoke("migrate", "up", "r1", "--url", url, "--config", str(bad_ini))
    assert applied.exit_code == 0, applied.stderr

    code, report = _lint(bad_ini, url)
    assert report["revisions"] == ["r2"]
    hits = [f for f in report["findings"] if f["rule"] == rule]
    assert len(hits) == 1, report
    hit = hits[0]
    assert hit["revision"] == "r2"
    assert hit["file"].endswith("r2.py")
    line = (tmp_path / hit["file"]).read_text().splitlines()[hit["line"] - 1]
    assert "op." in line
    assert hit["breaks"]
    assert hit["safe"]
    assert not hit["accepted"]
    assert code == (5 if hit["severity"] == "error" else 0)

    code, report = _lint(safe_ini, url, "--fail-on", "info")
    live = [f for f in report["findings"] if f["rule"] == rule and not f["accepted"]]
    assert live == [], report
    assert code == 0, report

    done = invoke("migrate", "--url", url, "--config", str(safe_ini))
    assert done.exit_code == 0, done.stderr


def test_every_registered_rule_has_a_case() -> None:
    covered = {case[0] for case in CASES} | {"DB003"}
    assert covered == {rule.id for rule in all_rules()}


MODELS = """\
import sqlalchemy as sa

metadata = sa.MetaData()
sa.Table("items", metadata, sa.Column("id", sa.Integer, primary_key=True), {columns})
"""


@pytest.mark.parametrize("backend", EVERY)
def test_dropping_a_column_the_models_still_map_is_an_error(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _fresh_url(backend, request)
    ini = _project(tmp_path / "p", 'op.drop_column("items", "note")')
    assert invoke("migrate", "up", "r1", "--url", url, "--config", str(ini)).exit_code == 0
    (tmp_path / "mapped_models.py").write_text(
        MODELS.format(columns='sa.Column("note", sa.String(50))')
    )
    (tmp_path / "unmapped_models.py").write_text(MODELS.format(columns=""))

    code, report = _lint(ini, url, "--metadata", "mapped_models:metadata")
    assert code == 5
    assert {f["rule"] for f in report["findings"]} == {"DB001", "DB003"}

    code, report = _lint(ini, url, "--metadata", "unmapped_models:metadata")
    assert code == 0
    assert {f["rule"] for f in report["findings"]} == {"DB001"}


def test_an_unreachable_database_is_exit_4_never_a_silent_offline_lint(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    ini = _project(tmp_path / "p", 'op.create_index("ix_items_name", "items", ["name"])')
    result = invoke("migrate", "lint", "--url", url, "--config", str(ini), "--json")
    assert result.exit_code == 4, result.output
    assert "no findings" not in result.output


def test_offline_lint_judges_each_revision_on_its_own(tmp_path: Path) -> None:
    # items is created in r1 and indexed in r2: deployed months apart, r2 locks a table
    # that is no longer new, so the index is judged as on an existing table.
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    ini = _project(tmp_path / "p", 'op.create_index("ix_items_name", "items", ["name"])')
    code, report = _lint(ini, url, "--offline")
    assert report["revisions"] == ["r1", "r2"]
    assert "--offline" in report["scope"]
    assert code == 5
    assert [f["rule"] for f in report["findings"]] == ["PG001"]

    code, report = _lint(ini, url, "r1:r2", "--offline")
    assert code == 5
    assert [f["rule"] for f in report["findings"]] == ["PG001"]


def test_nothing_pending_lints_nothing(tmp_path: Path, postgres_url: str) -> None:
    ini = _project(tmp_path / "p", 'op.create_index("ix_items_name", "items", ["name"])')
    assert invoke("migrate", "--url", postgres_url, "--config", str(ini)).exit_code == 0
    code, report = _lint(ini, postgres_url)
    assert code == 0
    assert report["revisions"] == []
    assert report["findings"] == []


def test_fail_on_warning_and_never(tmp_path: Path, sqlite_url: str) -> None:
    ini = _project(tmp_path / "p", 'op.drop_column("items", "body")')
    assert _lint(ini, sqlite_url, "r1:r2")[0] == 0
    assert _lint(ini, sqlite_url, "r1:r2", "--fail-on", "warning")[0] == 5
    assert _lint(ini, sqlite_url, "r1:r2", "--fail-on", "never")[0] == 0
    bad = invoke("migrate", "lint", "--url", sqlite_url, "--config", str(ini), "--fail-on", "x")
    assert bad.exit_code == 2
    assert "--fail-on" in bad.stderr


def test_accepted_finding_is_shown_with_its_reason_and_does_not_fail(
    tmp_path: Path, postgres_url: str
) -> None:
    upgrade = (
        "# myfy-db: allow PG001 -- items holds 40 rows, built in milliseconds\n"
        'op.create_index(\n    "ix_items_name",\n    "items",\n    ["name"],\n)'
    )
    ini = _project(tmp_path / "p", upgrade)
    code, report = _lint(ini, postgres_url, "r1:r2")
    assert code == 0
    (finding,) = report["findings"]
    assert finding["rule"] == "PG001"
    assert finding["accepted"] is True
    assert finding["reason"] == "items holds 40 rows, built in milliseconds"

    human = invoke("migrate", "lint", "r1:r2", "--url", postgres_url, "--config", str(ini))
    assert human.exit_code == 0
    assert "PG001 accepted error" in human.stdout
    assert "items holds 40 rows" in human.stdout


def test_human_report_names_rule_revision_file_line_and_safe_form(
    tmp_path: Path, postgres_url: str
) -> None:
    ini = _project(tmp_path / "p", 'op.create_index("ix_items_name", "items", ["name"])')
    result = invoke("migrate", "lint", "r1:r2", "--url", postgres_url, "--config", str(ini))
    assert result.exit_code == 5
    lines = result.stdout.splitlines()
    (finding,) = [line for line in lines if line.startswith("p/migrations/versions/r2.py:")]
    assert " PG001 error builds an index on existing table items without CONCURRENTLY" in finding
    assert finding.endswith("(revision r2)")
    # the recipe once per rule, then the per-rule summary
    assert sum("postgresql_concurrently=True" in line for line in lines) == 1
    assert lines[-1] == "1 finding(s): PG001 x1"
    assert "1 finding(s) at or above error" in result.stderr


def test_rule_for_another_dialect_stays_quiet(tmp_path: Path, mysql_url: str) -> None:
    ini = _project(tmp_path / "p", 'op.create_index("ix_items_name", "items", ["name"])')
    code, report = _lint(ini, mysql_url, "r1:r2")
    assert code == 0
    assert report["findings"] == []


@pytest.mark.parametrize("backend", EVERY)
def test_shipped_example_migrations_lint_clean(
    backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _fresh_url(backend, request)
    monkeypatch.chdir(ROOT)
    for args in ((), ("base:head",)):
        result = invoke("migrate", "lint", *args, "--url", url, "--fail-on", "info", "--json")
        assert result.exit_code == 0, result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert report["findings"] == []
        assert report["revisions"] == ["0001"]
    assert backend_of(url) == backend


def test_a_revision_that_cannot_run_offline_is_reported_and_lint_goes_on(tmp_path: Path) -> None:
    upgrade = (
        'op.get_bind().execute(sa.text("SELECT 1")).scalar_one()\n'
        'op.create_index("ix_items_name", "items", ["name"])'
    )
    root = tmp_path / "p"
    root.mkdir()
    ini = write_project(
        root,
        [BASE, ("r2", "reads the database", upgrade, "pass"), ("r3", "after it", DROP, "pass")],
    )
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    code, report = _lint(ini, url, "--offline", "--fail-on", "never")
    assert code == 0
    assert report["revisions"] == ["r1", "r2", "r3"]
    (not_analysed,) = [f for f in report["findings"] if f["rule"] == "DB006"]
    assert not_analysed["revision"] == "r2"
    assert not_analysed["file"].endswith("r2.py")
    assert not_analysed["line"] == 13
    assert "op.get_bind().execute" in not_analysed["detail"]
    # the revision after it was still judged
    assert any(f["rule"] == "DB001" and f["revision"] == "r3" for f in report["findings"])
