"""``myfy-db migrate`` drives the project's own ``env.py``: Alembic's generic and async
templates, the connection in ``config.attributes``, a new connection from its engine, and
the scaffold. Each migrates under the lock with a summary that matches the database, or
exits 2 in one line saying why it cannot be driven. Also ``--sql`` on revisions that need
a live connection.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import invoke
from migrate_project import STANDARD, query, runs, tables, write_env_shape, write_project

DRIVABLE = ("generic", "async", "attributes", "engine", "scaffold")


def migrate(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return invoke("migrate", *args, env=env)


def _at(url: str) -> list[str]:
    return sorted(row[0] for row in query(url, "SELECT version_num FROM alembic_version"))


@pytest.mark.parametrize("shape", DRIVABLE)
def test_each_env_py_shape_migrates_with_a_true_summary(
    shape: str, tmp_path: Path, db_url: str
) -> None:
    write_env_shape(tmp_path, shape)
    result = migrate("--url", db_url, "--json", "--lock-timeout", "5")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["from"], summary["to"]) == (None, "r3")
    assert [a["revision"] for a in summary["applied"]] == ["r1", "r2", "r3"]
    assert _at(db_url) == ["r3"]
    assert runs(db_url) == ["r1", "r2", "r3"]
    text = migrate("--url", db_url)
    assert text.exit_code == 0, text.stderr
    assert "already at r3; nothing to do" in text.stdout
    down = migrate("down", "-1", "--yes", "--url", db_url, "--json")
    assert down.exit_code == 0, down.stderr
    undone = json.loads(down.stdout)
    assert (undone["from"], undone["to"]) == ("r3", "r2")
    assert [a["revision"] for a in undone["applied"]] == ["r3"]
    assert _at(db_url) == ["r2"]
    again = migrate("--url", db_url)
    assert again.exit_code == 0, again.stderr
    assert "upgrade r2 -> r3, 1 revision(s)" in again.stdout


@pytest.mark.parametrize("shape", ["generic", "engine"])
def test_an_env_py_with_its_own_connection_cannot_be_atomic(
    shape: str, tmp_path: Path, sqlite_url: str
) -> None:
    write_env_shape(tmp_path, shape)
    result = migrate("--atomic", "--url", sqlite_url)
    assert result.exit_code == 2
    assert "--atomic needs env.py to migrate on the connection myfy-db holds" in result.stderr
    assert "config.attributes['connection']" in result.stderr
    assert "Traceback" not in result.stderr
    assert "items" not in tables(sqlite_url)


def test_attribute_shape_can_be_atomic(tmp_path: Path, postgres_url: str) -> None:
    write_env_shape(tmp_path, "attributes")
    result = migrate("--atomic", "--url", postgres_url, "--json")
    assert result.exit_code == 0, result.stderr
    assert [a["revision"] for a in json.loads(result.stdout)["applied"]] == ["r1", "r2", "r3"]


def test_an_env_py_migrating_another_database_exits_2(tmp_path: Path, sqlite_url: str) -> None:
    write_env_shape(tmp_path, "elsewhere")
    result = migrate("--url", sqlite_url)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 2
    assert "env.py migrates a different database" in lines[0]
    assert "elsewhere.db" in lines[0]
    assert not (tmp_path / "elsewhere.db").exists() or "items" not in tables(
        f"sqlite+aiosqlite:///{tmp_path / 'elsewhere.db'}"
    )


# -- --sql on revisions that need a live connection ----------------------------------------

NEEDS_CONNECTION = [
    STANDARD[0],
    (
        "r2",
        "rename items through a session",
        "from sqlalchemy.orm import Session\n"
        "session = Session(bind=op.get_bind())\n"
        "session.execute(sa.text(\"UPDATE items SET name = 'x'\"))\n"
        "session.commit()\n"
        "session.close()",
        "pass",
    ),
]


def test_sql_on_a_revision_needing_a_connection_names_it(tmp_path: Path, db_url: str) -> None:
    write_project(tmp_path, NEEDS_CONNECTION)
    result = migrate("--sql", "--url", db_url)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "revision r2 (rename items through a session)" in lines[0]
    assert "needs a live connection" in lines[0]
    assert "MockConnection" not in lines[0] or "unexpected" not in lines[0]
    assert "unexpected" not in result.stderr
    assert "Traceback" not in result.stderr


def test_sql_on_a_revision_reading_through_get_bind(tmp_path: Path, sqlite_url: str) -> None:
    reading = [
        STANDARD[0],
        (
            "r2",
            "count items",
            'count = op.get_bind().execute(sa.text("SELECT COUNT(*) FROM items")).scalar()',
            "pass",
        ),
    ]
    write_project(tmp_path, reading)
    result = migrate("--sql", "--url", sqlite_url)
    assert result.exit_code == 2
    assert "revision r2 (count items)" in result.stderr
    assert "needs a live connection" in result.stderr
