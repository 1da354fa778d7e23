"""Alembic's vocabulary in ``myfy-db migrate``: relative targets as plain arguments, the
read-only verbs (current, heads, branches, show, history), merge, the upgrade/downgrade
aliases, and ``down``'s list of what it will undo.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from helpers import free_port, invoke, on_a_terminal
from migrate_project import branched_project, query, runs, tables


def migrate(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return invoke("migrate", *args, env=env)


def _cells(line: str) -> list[str]:
    """The cells of one row of a rendered table, box drawing removed."""
    return [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]


def _at(url: str) -> list[str]:
    return sorted(row[0] for row in query(url, "SELECT version_num FROM alembic_version"))


# -- relative targets ----------------------------------------------------------------------


def test_down_minus_one_is_a_plain_argument(project: Path, db_url: str) -> None:
    assert migrate("--url", db_url).exit_code == 0
    result = migrate("down", "-1", "--yes", "--url", db_url, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["from"], summary["to"]) == ("r3", "r2")
    assert runs(db_url) == ["r1", "r2"]


def test_up_plus_two_then_relative_to_a_revision(project: Path, db_url: str) -> None:
    result = migrate("up", "+2", "--url", db_url, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["to"] == "r2"
    assert migrate("down", "r1", "--yes", "--url", db_url).exit_code == 0
    relative = migrate("up", "r1+2", "--url", db_url, "--json")
    assert relative.exit_code == 0, relative.stderr
    assert json.loads(relative.stdout)["to"] == "r3"


def test_down_base_and_up_heads(project: Path, sqlite_url: str) -> None:
    assert migrate("up", "heads", "--url", sqlite_url).exit_code == 0
    assert _at(sqlite_url) == ["r3"]
    assert migrate("down", "base", "--yes", "--url", sqlite_url).exit_code == 0
    assert _at(sqlite_url) == []


def test_upgrade_and_downgrade_are_aliases(project: Path, db_url: str) -> None:
    up = migrate("upgrade", "+1", "--url", db_url, "--json")
    assert up.exit_code == 0, up.stderr
    assert json.loads(up.stdout)["to"] == "r1"
    assert migrate("upgrade", "head", "--url", db_url).exit_code == 0
    down = migrate("downgrade", "-2", "--yes", "--url", db_url, "--json")
    assert down.exit_code == 0, down.stderr
    assert json.loads(down.stdout)["to"] == "r1"


def test_a_misspelled_option_beside_a_relative_target_is_still_an_error(
    project: Path, sqlite_url: str
) -> None:
    result = migrate("down", "-1", "--yse", "--url", sqlite_url)
    assert result.exit_code == 2
    assert "--yse" in result.stderr


# -- current, heads, branches, show --------------------------------------------------------


def test_current_names_the_revision_the_database_is_at(project: Path, db_url: str) -> None:
    empty = migrate("current", "--url", db_url, "--json")
    assert empty.exit_code == 0, empty.stderr
    assert json.loads(empty.stdout)["current"] == []
    assert migrate("up", "r2", "--url", db_url).exit_code == 0
    result = migrate("current", "--url", db_url, "--json")
    (info,) = json.loads(result.stdout)["current"]
    assert (info["revision"], info["is_head"], info["message"]) == ("r2", False, "add items.note")
    text = migrate("current", "--url", db_url)
    assert text.stdout.strip() == "r2 add items.note"


def test_heads_and_branches_of_a_forked_history(tmp_path: Path) -> None:
    branched_project(tmp_path)
    heads = migrate("heads", "--json")
    assert heads.exit_code == 0, heads.stderr
    assert sorted(h["revision"] for h in json.loads(heads.stdout)["heads"]) == ["b1", "r3"]
    branches = migrate("branches", "--json")
    assert branches.exit_code == 0, branches.stderr
    (point,) = json.loads(branches.stdout)["branch_points"]
    assert point["revision"] == "r1"
    assert point["branches"] == ["b1", "r2"]
    assert "-> b1" in migrate("branches").stdout


def test_branches_of_a_linear_history(project: Path) -> None:
    result = migrate("branches")
    assert result.exit_code == 0
    assert "linear" in result.stdout


def test_show_a_revision(project: Path) -> None:
    result = migrate("show", "r2", "--json")
    assert result.exit_code == 0, result.stderr
    (shown,) = json.loads(result.stdout)["revisions"]
    assert shown["down_revision"] == "r1"
    assert shown["next_revisions"] == ["r3"]
    assert shown["path"].endswith("r2.py")
    text = migrate("show", "head")
    assert "Rev: r3 (head)" in text.stdout
    assert "Parent: r2" in text.stdout


def test_show_an_unknown_revision_is_a_usage_error(project: Path) -> None:
    result = migrate("show", "zzz")
    assert result.exit_code == 2
    assert "zzz" in result.stderr


def test_merge_heads_writes_one_revision_joining_them(tmp_path: Path, db_url: str) -> None:
    branched_project(tmp_path)
    result = migrate("merge", "-m", "join the branches", "heads", "--json")
    assert result.exit_code == 0, result.stderr
    merged = json.loads(result.stdout)
    text = Path(merged["path"]).read_text()
    assert "join the branches" in text
    assert "'b1'" in text
    assert "'r3'" in text
    heads = json.loads(migrate("heads", "--json").stdout)["heads"]
    assert [h["revision"] for h in heads] == [merged["revision"]]
    applied = migrate("--url", db_url, "--json")
    assert applied.exit_code == 0, applied.stderr
    assert runs(db_url) == ["b1", "r1", "r2", "r3"]


def test_merge_of_a_single_head_is_a_usage_error(project: Path) -> None:
    result = migrate("merge", "heads")
    assert result.exit_code == 2
    assert "nothing to merge" in result.stderr


# -- history -------------------------------------------------------------------------------


def test_history_marks_applied_revisions(project: Path, db_url: str) -> None:
    assert migrate("up", "r2", "--url", db_url).exit_code == 0
    result = migrate("history", "--url", db_url, "--json")
    assert result.exit_code == 0, result.stderr
    marks = {
        r["revision"]: (r["applied"], r["current"]) for r in json.loads(result.stdout)["revisions"]
    }
    assert marks == {"r3": (False, False), "r2": (True, True), "r1": (True, False)}
    text = migrate("history", "--url", db_url).stdout
    header = next(line for line in text.splitlines() if "revision" in line)
    assert _cells(header) == ["revision", "applied", "revises", "head", "message"]
    r2 = next(line for line in text.splitlines() if _cells(line)[:1] == ["r2"])
    assert _cells(r2)[1] == "current"


def test_history_without_a_reachable_database(project: Path) -> None:
    url = f"postgresql+asyncpg://app@127.0.0.1:{free_port()}/nowhere"
    result = migrate("history", "--url", url, "--json")
    assert result.exit_code == 0, result.stderr
    revisions = json.loads(result.stdout)["revisions"]
    assert [r["revision"] for r in revisions] == ["r3", "r2", "r1"]
    assert all(r["applied"] is None for r in revisions)
    assert "applied revisions not marked" in result.stderr


def test_history_does_not_create_a_missing_sqlite_file(project: Path, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'absent.db'}"
    result = migrate("history", "--url", url)
    assert result.exit_code == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "revision" in line)
    assert _cells(header) == ["revision", "revises", "head", "message"]
    assert not (tmp_path / "absent.db").exists()


# -- down: what it will undo ---------------------------------------------------------------


def test_down_dry_run_lists_the_revisions_in_order_and_changes_nothing(
    project: Path, db_url: str
) -> None:
    assert migrate("--url", db_url).exit_code == 0
    result = migrate("down", "base", "--dry-run", "--url", db_url, "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert [r["revision"] for r in document["would_undo"]] == ["r3", "r2", "r1"]
    assert document["applied"] == []
    assert runs(db_url) == ["r1", "r2", "r3"]
    assert "tags" in tables(db_url)
    text = migrate("down", "-1", "--dry-run", "--url", db_url)
    assert "would undo 1 revision(s)" in text.stdout
    assert "r3" in text.stdout


def test_down_confirmation_lists_the_revisions_it_will_undo(
    project: Path, sqlite_url: str, tmp_path: Path
) -> None:
    assert migrate("--url", sqlite_url).exit_code == 0
    code, screen = on_a_terminal(
        ["migrate", "down", "r1", "--url", sqlite_url], "nope", str(tmp_path)
    )
    assert code == 3
    listing = screen[: screen.index("to confirm:")]
    assert "will undo 2 revision(s)" in listing
    assert listing.index("1. r3 create tags") < listing.index("2. r2 add items.note")
    assert runs(sqlite_url) == ["r1", "r2", "r3"]
    code, screen = on_a_terminal(
        ["migrate", "down", "r1", "--url", sqlite_url], "test.db", str(tmp_path)
    )
    assert code == 0, screen
    assert runs(sqlite_url) == ["r1"]


# -- several heads -------------------------------------------------------------------------


def test_status_names_several_heads_and_advises_merging(tmp_path: Path, db_url: str) -> None:
    branched_project(tmp_path)
    assert migrate("up", "r1", "--url", db_url).exit_code == 0
    result = migrate("status", "--url", db_url)
    assert result.exit_code == 5
    assert "heads:    b1, r3" in result.stdout or "heads:    r3, b1" in result.stdout
    assert "2 heads: b1, r3" in result.stderr
    assert "myfy-db migrate merge heads" in result.stderr
    assert "run `myfy-db migrate`" not in result.stderr


def test_migrate_with_several_heads_exits_2_with_both_ways_forward(
    tmp_path: Path, db_url: str
) -> None:
    branched_project(tmp_path)
    result = migrate("--url", db_url)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "2 heads: b1, r3" in lines[0]
    assert "`myfy-db migrate merge heads`" in lines[1]
    assert "`myfy-db migrate up heads`" in lines[1]
    assert "Multiple head revisions" not in result.stderr
    assert "items" not in tables(db_url)


def test_up_heads_applies_every_branch(tmp_path: Path, db_url: str) -> None:
    branched_project(tmp_path)
    result = migrate("up", "heads", "--url", db_url, "--json")
    assert result.exit_code == 0, result.stderr
    assert sorted(json.loads(result.stdout)["to"].split(", ")) == ["b1", "r3"]
    assert runs(db_url) == ["b1", "r1", "r2", "r3"]
    status = migrate("status", "--url", db_url)
    assert status.exit_code == 0
    assert "migrate merge heads" in status.stderr


# -- autogenerate --------------------------------------------------------------------------

WIDGETS = """
from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Widget(Base):
    __tablename__ = "widgets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
"""
ROOT = Path(__file__).resolve().parent.parent


def _example_project(tmp_path: Path) -> Path:
    """A copy of the repository's own migrations (users, accounts) in ``tmp_path``."""
    import shutil

    shutil.copy(ROOT / "alembic.ini", tmp_path)
    shutil.copytree(ROOT / "migrations", tmp_path / "migrations")
    return tmp_path / "migrations" / "versions"


def _revision_files(versions: Path) -> set[str]:
    return {p.name for p in versions.glob("*.py")}


def test_autogenerate_prints_each_detected_operation(
    project: Path, tmp_path: Path, db_url: str
) -> None:
    (tmp_path / "widget_models.py").write_text(WIDGETS)
    assert migrate("--url", db_url).exit_code == 0
    args = ["new", "-m", "widgets", "--autogenerate", "--metadata", "widget_models:Base"]
    result = migrate(*args, "--url", db_url, "--json")
    assert result.exit_code == 0, result.stderr
    created = json.loads(result.stdout)
    assert "Detected added table 'widgets'" in created["operations"]
    assert {"Detected removed table 'items'", "Detected removed table 'tags'"} <= set(
        created["operations"]
    )
    assert not any("myfy_db_meta" in op or "alembic_version" in op for op in created["operations"])
    path = Path(created["path"])
    assert path.exists()
    assert created["revision"] in path.read_text()
    text = migrate(*args[:2], "widgets again", *args[3:], "--url", db_url)
    assert text.exit_code == 2  # the first revision is pending now
    assert migrate("--url", db_url).exit_code == 0
    again = migrate(
        "new", "-m", "after", "--autogenerate", "--metadata", "widget_models:Base", "--url", db_url
    )
    assert again.exit_code == 0, again.stderr
    assert "no changes detected" in again.stdout


def test_autogenerate_with_no_changes_writes_nothing(tmp_path: Path, db_url: str) -> None:
    versions = _example_project(tmp_path)
    assert migrate("--url", db_url).exit_code == 0
    before = _revision_files(versions)
    args = ["new", "-m", "nothing", "--autogenerate", "--metadata", "myfy_db.example:Base"]
    result = migrate(*args, "--url", db_url)
    assert result.exit_code == 0, result.stderr
    assert "no changes detected" in result.stdout
    assert "Detected" not in result.stdout
    assert _revision_files(versions) == before
    document = json.loads(migrate(*args, "--url", db_url, "--json").stdout)
    assert (document["path"], document["operations"]) == (None, [])
    empty = migrate(*args, "--empty", "--url", db_url, "--json")
    assert empty.exit_code == 0, empty.stderr
    written = json.loads(empty.stdout)
    assert Path(written["path"]).name in _revision_files(versions) - before


def test_autogenerate_against_a_database_behind_head_names_the_pending_revisions(
    project: Path, tmp_path: Path, db_url: str
) -> None:
    (tmp_path / "widget_models.py").write_text(WIDGETS)
    assert migrate("up", "r1", "--url", db_url).exit_code == 0
    before = _revision_files(tmp_path / "migrations" / "versions")
    args = ["new", "-m", "widgets", "--autogenerate", "--metadata", "widget_models:Base"]
    result = migrate(*args, "--url", db_url)
    assert result.exit_code == 2
    assert "2 pending revision(s) (r2, r3)" in result.stderr
    assert "run `myfy-db migrate` first" in result.stderr
    assert "Target database is not up to date" not in result.stderr
    assert _revision_files(tmp_path / "migrations" / "versions") == before
