"""``migrate redo`` (issue 22): the latest revision undone and applied again, guarded like
``down``. The standard project's revisions each record themselves in ``runs``, so the
database shows what ran."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import invoke
from migrate_project import runs


def test_redo_undoes_and_reapplies_the_latest_revision(project: Path, db_url: str) -> None:
    assert invoke("migrate", "--url", db_url).exit_code == 0
    result = invoke("migrate", "redo", "--url", db_url, "--yes", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["command"] == "redo"
    assert [(a["revision"], a["direction"]) for a in summary["applied"]] == [
        ("r3", "down"),
        ("r3", "up"),
    ]
    assert summary["from"] == summary["to"] == "r3"
    assert runs(db_url) == ["r1", "r2", "r3"]


def test_redo_in_a_protected_environment_is_refused(project: Path, sqlite_url: str) -> None:
    assert invoke("migrate", "--url", sqlite_url).exit_code == 0
    env = {"MYFY_DATA_ENVIRONMENT": "production"}
    result = invoke("migrate", "redo", "--url", sqlite_url, "--yes", env=env)
    assert result.exit_code == 3
    assert "migrate redo refused" in result.stderr
    assert runs(sqlite_url) == ["r1", "r2", "r3"]


def test_redo_without_a_terminal_needs_yes(project: Path, sqlite_url: str) -> None:
    assert invoke("migrate", "--url", sqlite_url).exit_code == 0
    result = invoke("migrate", "redo", "--url", sqlite_url)
    assert result.exit_code == 3
    assert "--yes" in result.stderr
    assert runs(sqlite_url) == ["r1", "r2", "r3"]


def test_redo_at_base_has_nothing_to_redo(project: Path, sqlite_url: str) -> None:
    result = invoke("migrate", "redo", "--url", sqlite_url, "--yes")
    assert result.exit_code == 2
    assert "no revision to redo" in result.stderr
