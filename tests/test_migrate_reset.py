"""``migrate reset``, ``--atomic``, and the ``alembic_version`` that ``drop-tables`` leaves
behind: each on a fresh real database (SQLite, PostgreSQL, MariaDB where it applies).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import invoke, on_a_terminal
from migrate_project import FAILING, STANDARD, query, runs, tables, write_project

ROOT = Path(__file__).resolve().parent.parent


def migrate(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return invoke("migrate", *args, env=env)


def _at(url: str) -> list[str]:
    if "alembic_version" not in tables(url):
        return []
    return sorted(row[0] for row in query(url, "SELECT version_num FROM alembic_version"))


def _columns(url: str, table: str) -> set[str]:
    import asyncio

    from sqlalchemy import inspect

    from myfy_db import DatabaseSettings, open_engine

    async def go() -> set[str]:
        settings = DatabaseSettings(database_url=url)
        async with open_engine(settings) as engine, engine.connect() as conn:
            found = await conn.run_sync(lambda c: inspect(c).get_columns(table))
        return {c["name"] for c in found}

    return asyncio.run(go())


# -- drop-tables and alembic_version -------------------------------------------------------


def test_drop_tables_takes_alembic_version_with_the_metadata_tables(
    tmp_path: Path, db_url: str
) -> None:
    shutil.copy(ROOT / "alembic.ini", tmp_path)
    shutil.copytree(ROOT / "migrations", tmp_path / "migrations")
    assert migrate("--url", db_url).exit_code == 0
    args = ["drop-tables", "--metadata", "myfy_db.example:Base", "--url", db_url]
    dry = invoke(*args, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert "alembic_version" in planned["would_drop"]
    assert planned["alembic_version"] is True
    assert "alembic_version" in tables(db_url)
    result = invoke(*args, "--yes")
    assert result.exit_code == 0, result.stderr
    assert "dropped alembic_version too" in result.stdout
    assert tables(db_url) == {"myfy_db_meta"}
    status = migrate("status", "--url", db_url)
    assert status.exit_code == 5  # every revision pending again, not "at head"
    assert migrate("--url", db_url).exit_code == 0
    assert {"users", "accounts"} <= tables(db_url)


def test_drop_tables_without_alembic_version_does_not_mention_it(sqlite_url: str) -> None:
    assert (
        invoke("create-tables", "--metadata", "myfy_db.example:Base", "--url", sqlite_url).exit_code
        == 0
    )
    result = invoke(
        "drop-tables", "--metadata", "myfy_db.example:Base", "--url", sqlite_url, "--yes", "--json"
    )
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["alembic_version"] is False
    assert "alembic_version" not in document["dropped"]


# -- reset ---------------------------------------------------------------------------------


def test_reset_drops_every_table_and_reapplies_every_revision(project: Path, db_url: str) -> None:
    assert migrate("--url", db_url).exit_code == 0
    import asyncio

    from sqlalchemy import text

    from myfy_db import DatabaseSettings, open_engine

    async def add_rows() -> None:
        settings = DatabaseSettings(database_url=db_url)
        async with open_engine(settings) as engine, engine.begin() as conn:
            await conn.execute(text("INSERT INTO items (id, name) VALUES (1, 'kept?')"))
            await conn.execute(text("CREATE TABLE stray (id INTEGER PRIMARY KEY)"))

    asyncio.run(add_rows())
    result = migrate("reset", "--yes", "--url", db_url, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert set(summary["dropped"]) == {"items", "runs", "tags", "stray", "alembic_version"}
    assert [a["revision"] for a in summary["applied"]] == ["r1", "r2", "r3"]
    assert (summary["from"], summary["to"]) == ("r3", "r3")
    assert runs(db_url) == ["r1", "r2", "r3"]
    assert query(db_url, "SELECT COUNT(*) FROM items") == [(0,)]
    assert "stray" not in tables(db_url)
    assert "myfy_db_meta" in tables(db_url)


def test_reset_refused_in_a_protected_environment(project: Path, sqlite_url: str) -> None:
    assert migrate("--url", sqlite_url).exit_code == 0
    env = {"MYFY_DATA_ENVIRONMENT": "production"}
    result = migrate("reset", "--yes", "--url", sqlite_url, env=env)
    assert result.exit_code == 3
    assert "migrate reset refused" in result.stderr
    assert runs(sqlite_url) == ["r1", "r2", "r3"]


def test_reset_refused_against_a_protected_record(project: Path, sqlite_url: str) -> None:
    env = {"MYFY_DATA_ENVIRONMENT": "production"}
    assert migrate("--url", sqlite_url, env=env).exit_code == 0
    result = migrate("reset", "--yes", "--url", sqlite_url)
    assert result.exit_code == 3
    assert "recorded as 'production'" in result.stderr
    assert runs(sqlite_url) == ["r1", "r2", "r3"]


def test_reset_without_a_terminal_needs_yes(project: Path, sqlite_url: str) -> None:
    assert migrate("--url", sqlite_url).exit_code == 0
    result = migrate("reset", "--url", sqlite_url)
    assert result.exit_code == 3
    assert "--yes" in result.stderr
    assert "tags" in tables(sqlite_url)


def test_reset_asks_for_the_database_name_on_a_terminal(
    project: Path, sqlite_url: str, tmp_path: Path
) -> None:
    assert migrate("--url", sqlite_url).exit_code == 0
    args = ["migrate", "reset", "--url", sqlite_url]
    code, screen = on_a_terminal(args, "wrong", str(tmp_path))
    assert code == 3, screen
    assert "migrate reset will drop" in screen
    assert "tags" in screen[: screen.index("to confirm:")]
    assert "tags" in tables(sqlite_url)
    code, screen = on_a_terminal(args, "test.db", str(tmp_path))
    assert code == 0, screen
    assert runs(sqlite_url) == ["r1", "r2", "r3"]


# -- --atomic ------------------------------------------------------------------------------

FAILING_DOWNGRADE = [
    STANDARD[0],
    (*STANDARD[1][:3], 'op.execute("SELECT * FROM no_such_table")'),
    STANDARD[2],
]


@pytest.fixture(params=("sqlite", "postgresql"))
def atomic_url(request: pytest.FixtureRequest) -> str:
    name = {"sqlite": "sqlite_url", "postgresql": "postgres_url"}[request.param]
    return str(request.getfixturevalue(name))


def test_atomic_upgrade_failing_midway_leaves_the_starting_revision(
    tmp_path: Path, atomic_url: str
) -> None:
    write_project(tmp_path, [*STANDARD, FAILING])
    assert migrate("up", "r1", "--url", atomic_url).exit_code == 0
    result = migrate("--atomic", "--url", atomic_url, "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert "revision r4" in error["message"]
    assert "whole run was rolled back" in error["hint"]
    assert "stays at revision r1" in error["hint"]
    assert _at(atomic_url) == ["r1"]
    assert runs(atomic_url) == ["r1"]
    assert not {"tags", "half"} & tables(atomic_url)
    assert "note" not in _columns(atomic_url, "items")


def test_atomic_upgrade_from_base_leaves_nothing(tmp_path: Path, atomic_url: str) -> None:
    write_project(tmp_path, [*STANDARD, FAILING])
    result = migrate("up", "head", "--atomic", "--url", atomic_url)
    assert result.exit_code == 1
    assert _at(atomic_url) == []
    assert not {"items", "runs", "tags", "half"} & tables(atomic_url)


def test_atomic_downgrade_is_all_or_nothing_where_per_revision_is_not(
    tmp_path: Path, atomic_url: str
) -> None:
    write_project(tmp_path, FAILING_DOWNGRADE)
    assert migrate("--url", atomic_url).exit_code == 0
    atomic = migrate("down", "base", "--atomic", "--yes", "--url", atomic_url)
    assert atomic.exit_code == 1
    assert "revision r2" in atomic.stderr
    assert _at(atomic_url) == ["r3"]
    assert "tags" in tables(atomic_url)
    assert runs(atomic_url) == ["r1", "r2", "r3"]
    per_revision = migrate("downgrade", "base", "--yes", "--url", atomic_url)
    assert per_revision.exit_code == 1
    assert _at(atomic_url) == ["r2"]  # r3 was undone and committed before r2 failed
    assert "tags" not in tables(atomic_url)


def test_atomic_success_applies_everything_in_one_go(project: Path, atomic_url: str) -> None:
    result = migrate("--atomic", "--url", atomic_url, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["atomic"] is True
    assert [a["revision"] for a in summary["applied"]] == ["r1", "r2", "r3"]
    assert runs(atomic_url) == ["r1", "r2", "r3"]


def test_atomic_reset_failing_keeps_every_table(tmp_path: Path, atomic_url: str) -> None:
    write_project(tmp_path)
    assert migrate("--url", atomic_url).exit_code == 0
    write_project(tmp_path / "broken", [*STANDARD, FAILING])
    shutil.copy(
        tmp_path / "broken" / "migrations" / "versions" / "r4.py",
        tmp_path / "migrations" / "versions" / "r4.py",
    )
    result = migrate("reset", "--atomic", "--yes", "--url", atomic_url)
    assert result.exit_code == 1
    assert "revision r4" in result.stderr
    assert _at(atomic_url) == ["r3"]
    assert {"items", "runs", "tags"} <= tables(atomic_url)
    assert runs(atomic_url) == ["r1", "r2", "r3"]


def test_atomic_on_mariadb_exits_2_explaining_why(project: Path, mysql_url: str) -> None:
    for args in (
        ["--atomic"],
        ["up", "head", "--atomic"],
        ["down", "base", "--atomic", "--yes"],
        ["reset", "--atomic", "--yes"],
    ):
        result = migrate(*args, "--url", mysql_url)
        assert result.exit_code == 2, args
        assert "DDL statement commits on its own" in result.stderr
    assert "items" not in tables(mysql_url)
