"""``myfy-db migrate``: upgrade, down, status, offline SQL, failures, the guard and the lock.

Every test writes its own Alembic project into ``tmp_path`` (``migrate_project``) and runs
against a fresh real database on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import CANARY, backend_of, invoke, on_a_terminal, run_process, with_password
from migrate_project import FAILING, STANDARD, query, runs, tables, write_project

ROOT = Path(__file__).resolve().parent.parent


def migrate(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return invoke("migrate", *args, env=env)


# -- upgrade, status, down ---------------------------------------------------------------


def test_migrate_upgrades_to_head_running_each_revision_once(project: Path, db_url: str) -> None:
    result = migrate("--url", db_url, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["from"] is None
    assert summary["to"] == "r3"
    assert [a["revision"] for a in summary["applied"]] == ["r1", "r2", "r3"]
    assert all(a["duration_ms"] >= 0 for a in summary["applied"])
    assert runs(db_url) == ["r1", "r2", "r3"]
    assert {"items", "runs", "tags", "alembic_version", "myfy_db_meta"} <= tables(db_url)


def test_progress_line_per_revision_on_stderr(project: Path, db_url: str) -> None:
    result = migrate("--url", db_url)
    assert result.exit_code == 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("applied ")]
    assert [line.split()[1] for line in lines] == ["r1", "r2", "r3"]
    assert "upgrade base -> r3, 3 revision(s)" in result.stdout


def test_the_summary_shows_the_database_as_it_is_named(project: Path, tmp_path: Path) -> None:
    path = tmp_path / "ops[bold]:smile:.db"  # no markup, no emoji: the name, literally
    result = migrate("--url", f"sqlite+aiosqlite:///{path}")
    assert result.exit_code == 0, result.stderr
    expected = (
        rf"SQLite database {re.escape(str(path))}: upgrade base -> r3, 3 revision\(s\) in \d+ ms"
    )
    assert re.fullmatch(expected, result.stdout.rstrip("\n")), result.stdout


def test_the_summary_on_a_terminal_shows_the_database_as_it_is_named(
    project: Path, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ops[bold]:smile:.db'}"
    code, screen = on_a_terminal(["migrate", "--url", url], None, cwd=str(tmp_path))
    assert code == 0, screen
    assert "ops[bold]:smile:.db: upgrade base -> r3, 3 revision(s) in " in screen


def test_second_run_finds_the_database_at_head(project: Path, sqlite_url: str) -> None:
    assert migrate("--url", sqlite_url).exit_code == 0
    again = migrate("--url", sqlite_url, "--json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["applied"] == []
    assert runs(sqlite_url) == ["r1", "r2", "r3"]


def test_status_exits_5_listing_pending_revisions(project: Path, db_url: str) -> None:
    result = migrate("status", "--url", db_url, "--json")
    assert result.exit_code == 5
    status = json.loads(result.stdout)
    assert status["current"] == []
    assert status["heads"] == ["r3"]
    assert [p["revision"] for p in status["pending"]] == ["r1", "r2", "r3"]
    assert "not at head" in result.stderr


def test_status_exits_0_at_head(project: Path, db_url: str) -> None:
    assert migrate("--url", db_url).exit_code == 0
    result = migrate("status", "--url", db_url)
    assert result.exit_code == 0, result.stderr
    assert "at head" in result.stdout


def test_json_before_the_subcommand_applies_to_it(project: Path, sqlite_url: str) -> None:
    result = migrate("--url", sqlite_url, "--json", "status")
    assert result.exit_code == 5
    assert json.loads(result.stdout)["heads"] == ["r3"]


def test_up_to_a_revision_then_the_rest(project: Path, db_url: str) -> None:
    assert migrate("up", "r1", "--url", db_url).exit_code == 0
    status = migrate("status", "--url", db_url, "--json")
    assert status.exit_code == 5
    assert [p["revision"] for p in json.loads(status.stdout)["pending"]] == ["r2", "r3"]
    rest = migrate("--url", db_url, "--json")
    assert [a["revision"] for a in json.loads(rest.stdout)["applied"]] == ["r2", "r3"]


def test_down_undoes_revisions_with_yes(project: Path, db_url: str) -> None:
    assert migrate("--url", db_url).exit_code == 0
    result = migrate("down", "r1", "--yes", "--url", db_url, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["from"], summary["to"]) == ("r3", "r1")
    assert [a["revision"] for a in summary["applied"]] == ["r3", "r2"]
    assert runs(db_url) == ["r1"]
    assert "tags" not in tables(db_url)


def test_options_before_the_subcommand_apply_to_it(project: Path, sqlite_url: str) -> None:
    result = invoke("migrate", "--url", sqlite_url, "status")
    assert result.exit_code == 5
    assert "test.db" in result.stdout


def test_unknown_revision_is_a_usage_error(project: Path, sqlite_url: str) -> None:
    result = migrate("up", "nope", "--url", sqlite_url)
    assert result.exit_code == 2
    assert "nope" in result.stderr


def test_unreachable_database_exits_4_and_names_no_password(project: Path) -> None:
    url = with_password("postgresql+asyncpg://app@127.0.0.1:1/nowhere")
    result = migrate("--url", url, "--lock-timeout", "1")
    assert result.exit_code == 4
    assert "connection refused" in result.stderr
    assert CANARY not in result.stderr + result.stdout


def test_no_alembic_ini_is_a_configuration_error(sqlite_url: str) -> None:
    result = migrate("--url", sqlite_url)
    assert result.exit_code == 2
    assert "alembic.ini" in result.stderr
    assert "migrate init" in result.stderr


# -- offline SQL ---------------------------------------------------------------------------


def test_offline_sql_is_printed_and_changes_nothing(project: Path, db_url: str) -> None:
    before = tables(db_url)
    result = migrate("--sql", "--url", db_url)
    assert result.exit_code == 0, result.stderr
    assert "CREATE TABLE items" in result.stdout
    assert "INSERT INTO runs (rev) VALUES ('r3')" in result.stdout
    assert tables(db_url) == before


def test_offline_sql_does_not_create_a_sqlite_file(project: Path, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'never.db'}"
    assert migrate("--sql", "--url", url).exit_code == 0
    assert not (tmp_path / "never.db").exists()


def test_offline_downgrade_sql_takes_a_range(project: Path, sqlite_url: str) -> None:
    result = migrate("down", "r3:r2", "--sql", "--url", sqlite_url)
    assert result.exit_code == 0, result.stderr
    assert "DROP TABLE tags" in result.stdout


# -- failure -------------------------------------------------------------------------------


def test_failing_revision_on_postgres_stays_at_previous_revision(
    tmp_path: Path, postgres_url: str
) -> None:
    write_project(tmp_path, [*STANDARD, FAILING])
    result = migrate("--url", postgres_url)
    assert result.exit_code == 1
    assert "revision r4 (a revision that fails half-way) failed" in result.stderr
    assert "no_such_table" in result.stderr
    assert "stays at revision r3" in result.stderr
    assert "Traceback" not in result.stderr
    assert query(postgres_url, "SELECT version_num FROM alembic_version") == [("r3",)]
    assert "half" not in tables(postgres_url)
    assert runs(postgres_url) == ["r1", "r2", "r3"]


def test_failing_revision_on_mysql_says_where_the_database_is(
    tmp_path: Path, mysql_url: str
) -> None:
    write_project(tmp_path, [*STANDARD, FAILING])
    result = migrate("--url", mysql_url)
    assert result.exit_code == 1
    assert "revision r4" in result.stderr
    assert "now at revision r3" in result.stderr
    assert query(mysql_url, "SELECT version_num FROM alembic_version") == [("r3",)]


def test_failing_revision_on_sqlite_is_rolled_back_too(tmp_path: Path, sqlite_url: str) -> None:
    write_project(tmp_path, [*STANDARD, FAILING])
    result = migrate("--url", sqlite_url, "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert "revision r4" in error["message"]
    assert "stays at revision r3" in error["hint"]
    assert "half" not in tables(sqlite_url)
    assert runs(sqlite_url) == ["r1", "r2", "r3"]


# -- the guard -----------------------------------------------------------------------------


def test_migrate_records_the_environment(project: Path, db_url: str) -> None:
    assert migrate("--url", db_url, env={"MYFY_DATA_ENVIRONMENT": "staging"}).exit_code == 0
    assert query(db_url, "SELECT environment FROM myfy_db_meta") == [("staging",)]


def test_migrate_refused_on_a_database_recorded_as_production(project: Path, db_url: str) -> None:
    assert (
        migrate("up", "r1", "--url", db_url, env={"MYFY_DATA_ENVIRONMENT": "production"}).exit_code
        == 0
    )
    result = migrate("--url", db_url, env={"MYFY_DATA_ENVIRONMENT": "development"})
    assert result.exit_code == 3
    assert "recorded as 'production'" in result.stderr
    assert runs(db_url) == ["r1"]


def test_down_refused_in_a_protected_environment(project: Path, sqlite_url: str) -> None:
    assert migrate("--url", sqlite_url).exit_code == 0
    env = {"MYFY_DATA_ENVIRONMENT": "production"}
    result = migrate("down", "base", "--yes", "--url", sqlite_url, env=env)
    assert result.exit_code == 3
    assert "migrate down refused" in result.stderr
    assert "MYFY_DATA_ENVIRONMENT" in result.stderr
    assert runs(sqlite_url) == ["r1", "r2", "r3"]


def test_down_refused_when_the_record_differs(project: Path, sqlite_url: str) -> None:
    assert migrate("--url", sqlite_url, env={"MYFY_DATA_ENVIRONMENT": "staging"}).exit_code == 0
    result = migrate("down", "base", "--yes", "--url", sqlite_url)
    assert result.exit_code == 3
    assert "recorded as 'staging'" in result.stderr


def test_down_without_a_terminal_needs_yes(project: Path, sqlite_url: str) -> None:
    assert migrate("--url", sqlite_url).exit_code == 0
    result = migrate("down", "base", "--url", sqlite_url)
    assert result.exit_code == 3
    assert "--yes" in result.stderr
    assert runs(sqlite_url) == ["r1", "r2", "r3"]


# -- stamp, history, new, check, init ------------------------------------------------------


def test_stamp_sets_the_revision_without_running_it(project: Path, sqlite_url: str) -> None:
    assert migrate("up", "r1", "--url", sqlite_url).exit_code == 0
    result = migrate("stamp", "r3", "--url", sqlite_url, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["to"] == "r3"
    assert runs(sqlite_url) == ["r1"]
    assert migrate("status", "--url", sqlite_url).exit_code == 0


def test_history_lists_revisions_newest_first(project: Path) -> None:
    result = migrate("history", "--json")
    assert result.exit_code == 0
    revisions = json.loads(result.stdout)["revisions"]
    assert [r["revision"] for r in revisions] == ["r3", "r2", "r1"]
    assert revisions[0]["is_head"] is True
    assert revisions[1]["down_revision"] == "r1"


MODELS = """
from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Widget(Base):
    __tablename__ = "widgets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
"""


def test_new_autogenerate_writes_a_revision_from_the_models(
    project: Path, tmp_path: Path, sqlite_url: str
) -> None:
    (tmp_path / "widget_models.py").write_text(MODELS)
    assert migrate("--url", sqlite_url).exit_code == 0
    args = ["new", "-m", "add widgets", "--autogenerate", "--metadata", "widget_models:Base"]
    result = migrate(*args, "--url", sqlite_url, "--json")
    assert result.exit_code == 0, result.stderr
    (created,) = json.loads(result.stdout)["created"]
    text = Path(created).read_text()
    assert "create_table('widgets'" in text or 'create_table("widgets"' in text
    assert "myfy_db_meta" not in text
    assert "drop_table('items')" in text  # items is in the database, not in these models


def test_new_without_autogenerate_needs_no_database(project: Path) -> None:
    result = migrate("new", "-m", "empty step", "--url", "sqlite+aiosqlite:////nonexistent/x.db")
    assert result.exit_code == 0, result.stderr
    assert "empty_step" in result.stdout


def test_check_finds_no_drift_after_the_repository_migrations(db_url: str) -> None:
    config = str(ROOT / "alembic.ini")
    assert migrate("--config", config, "--url", db_url).exit_code == 0
    result = migrate("check", "--url", db_url, "--metadata", "myfy_db.example:Base", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["drift"] is False


def test_check_exits_5_listing_differences(db_url: str) -> None:
    result = migrate("check", "--url", db_url, "--metadata", "myfy_db.example:Base", "--json")
    assert result.exit_code == 5
    report = json.loads(result.stdout)
    assert {(d["kind"], d["detail"]) for d in report["differences"]} >= {
        ("add_table", "table users"),
        ("add_table", "table accounts"),
    }


def test_check_without_metadata_is_a_configuration_error(sqlite_url: str) -> None:
    result = migrate("check", "--url", sqlite_url)
    assert result.exit_code == 2


def test_init_scaffold_holds_no_url_or_credential(tmp_path: Path) -> None:
    secret_url = with_password("postgresql+asyncpg://app@db.internal:5432/prod")
    result = migrate("init", env={"MYFY_DATA_DATABASE_URL": secret_url})
    assert result.exit_code == 0, result.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"alembic.ini", "env.py", "script.py.mako"}
    for path in written:
        content = path.read_text()
        assert CANARY not in content
        assert "sqlalchemy.url" not in content
        assert "postgresql" not in content


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    assert migrate("init").exit_code == 0
    again = migrate("init")
    assert again.exit_code == 2
    assert "already exists" in again.stderr


def test_plain_alembic_works_on_a_scaffolded_project(project: Path, db_url: str) -> None:
    alembic = str(Path(sys.executable).parent / "alembic")
    env = {**os.environ, "MYFY_DATA_DATABASE_URL": db_url}
    done = subprocess.run(
        [alembic, "upgrade", "head"], cwd=project.parent, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert runs(db_url) == ["r1", "r2", "r3"]


def test_repository_env_py_is_the_scaffold_template() -> None:
    from myfy_db.migrations.scaffold import template_text

    assert (ROOT / "migrations" / "env.py").read_text() == template_text("env.py")
    assert (ROOT / "migrations" / "script.py.mako").read_text() == template_text("script.py.mako")


def test_fresh_clone_migrate_builds_myfy_db_without_drift(tmp_path: Path) -> None:
    import shutil

    clone = tmp_path / "clone"
    clone.mkdir()
    shutil.copy(ROOT / "alembic.ini", clone)
    shutil.copy(ROOT / "pyproject.toml", clone)
    shutil.copytree(ROOT / "migrations", clone / "migrations")
    result = run_process("migrate", cwd=str(clone))
    assert result.returncode == 0, result.stderr
    assert (clone / "myfy.db").exists()
    assert {"users", "accounts"} <= tables(f"sqlite+aiosqlite:///{clone / 'myfy.db'}")
    check = run_process("migrate", "check", cwd=str(clone))
    assert check.returncode == 0, check.stdout + check.stderr


# -- the lock ------------------------------------------------------------------------------


def _start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "myfy_db", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_four_concurrent_migrations_apply_each_revision_once(project: Path, db_url: str) -> None:
    processes = [_start("migrate", "--url", db_url, "--json", cwd=project.parent) for _ in range(4)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in processes]
    for code, _, stderr in results:
        assert code == 0, stderr
    assert runs(db_url) == ["r1", "r2", "r3"]
    applied = [len(json.loads(stdout)["applied"]) for _, stdout, _ in results]
    assert sorted(applied) == [0, 0, 0, 3]


HOLD_LOCK = """
import asyncio, sys
from myfy_db import DatabaseSettings, open_engine
from myfy_db.migrations.writing import _engine_overrides
from myfy_db.migrations.lock import migration_lock

async def main():
    url = sys.argv[1]
    settings = DatabaseSettings(database_url=url)
    async with open_engine(settings, url, **_engine_overrides(settings, url)) as engine:
        async with migration_lock(engine, url, 10, print):
            print("locked", flush=True)
            await asyncio.sleep(60)

asyncio.run(main())
"""


@pytest.mark.wall_clock
def test_lock_timeout_exits_1_naming_the_holder(project: Path, db_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, db_url],
        cwd=project.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        result = migrate("--url", db_url, "--lock-timeout", "0.5")
        assert time.monotonic() - started < 30
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1
    assert "waiting for the migration lock" in result.stderr
    assert "timed out after 0.5 s waiting for the migration lock" in result.stderr
    expected = {
        "sqlite": f"pid {holder.pid}",
        "postgresql": "application 'myfy-db migrate'",
        "mysql": "held by connection",
    }[backend_of(db_url)]
    assert expected in result.stderr
    assert "items" not in tables(db_url)
