"""A migration's success is read back, never assumed, and the guard asks before it records
(issue 22): an env.py that never runs the migrations is a failure naming where the database
is; a declined downgrade leaves the environment record as it was; the prompt names the
revision the database would end at, even for a relative target.
"""

from __future__ import annotations

from pathlib import Path

from helpers import invoke, on_a_terminal
from migrate_project import query, runs
from test_shell_sandbox import _sql

SILENT_ENV = """
from alembic import context
from myfy_db.migrations.environment import shared_connection

connection = shared_connection(context.config)
context.configure(connection=connection, target_metadata=None)
# context.run_migrations() is never called: nothing is applied
"""


def _silence_env_py(project: Path) -> None:
    (project.parent / "migrations" / "env.py").write_text(SILENT_ENV)


def test_an_env_py_that_never_runs_the_migrations_is_a_failure(project: Path, db_url: str) -> None:
    assert invoke("migrate", "up", "r1", "--url", db_url).exit_code == 0
    _silence_env_py(project)
    for args, target in ((("migrate",), "r3"), (("migrate", "up", "r2"), "r2")):
        result = invoke(*args, "--url", db_url)
        assert result.exit_code == 1, result.output
        assert f"env.py ran but the database is at r1, not {target}" in result.stderr
        assert "context.run_migrations()" in result.stderr
        assert "nothing to do" not in result.output
    status = invoke("migrate", "status", "--url", db_url)
    assert status.exit_code == 5  # status agrees: still pending
    assert runs(db_url) == ["r1"]


def test_an_env_py_at_the_target_already_is_not_a_failure(project: Path, db_url: str) -> None:
    assert invoke("migrate", "--url", db_url).exit_code == 0
    _silence_env_py(project)
    again = invoke("migrate", "--url", db_url)
    assert again.exit_code == 0, again.output
    assert "already at r3; nothing to do" in again.output


def _version(url: str) -> str:
    return str(query(url, "SELECT tool_version FROM myfy_db_meta")[0][0])


def test_a_declined_down_leaves_the_record_as_it_was(
    project: Path, sqlite_url: str, tmp_path: Path
) -> None:
    assert invoke("migrate", "--url", sqlite_url).exit_code == 0
    _sql(sqlite_url, "UPDATE myfy_db_meta SET tool_version = 'before'")
    code, screen = on_a_terminal(
        ["migrate", "down", "-1", "--url", sqlite_url], "nope", str(tmp_path)
    )
    assert code == 3, screen
    assert "Undo 1 revision(s) (down to r2)" in screen  # the revision, not "-1"
    assert _version(sqlite_url) == "before"
    assert runs(sqlite_url) == ["r1", "r2", "r3"]
    code, screen = on_a_terminal(
        ["migrate", "down", "-1", "--url", sqlite_url], "test.db", str(tmp_path)
    )
    assert code == 0, screen
    assert _version(sqlite_url) != "before"  # recorded once confirmed, before the change
    assert runs(sqlite_url) == ["r1", "r2"]


def test_a_declined_reset_leaves_the_record_as_it_was(
    project: Path, sqlite_url: str, tmp_path: Path
) -> None:
    assert invoke("migrate", "--url", sqlite_url).exit_code == 0
    _sql(sqlite_url, "UPDATE myfy_db_meta SET tool_version = 'before'")
    code, screen = on_a_terminal(["migrate", "reset", "--url", sqlite_url], "nope", str(tmp_path))
    assert code == 3, screen
    assert _version(sqlite_url) == "before"
    assert runs(sqlite_url) == ["r1", "r2", "r3"]
