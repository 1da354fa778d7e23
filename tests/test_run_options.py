"""One frozen RunOptions per writing run: the DDL lock timeout comes from the settings on
every writing path (migrate, reset, the library's upgrade and reset), never from a library
default. Each revision records the lock_timeout its own session runs under, on real
PostgreSQL, so the test reads what the server applied.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from helpers import invoke
from migrate_project import query, write_project

SEEN = [
    (
        "s1",
        "record the session's lock_timeout",
        "op.execute(\"CREATE TABLE seen AS SELECT current_setting('lock_timeout') AS v\")",
        'op.drop_table("seen")',
    )
]


def _seen(url: str) -> str:
    rows = query(url, "SELECT v FROM seen")
    assert len(rows) == 1
    return str(rows[0][0])


def test_reset_applies_the_ddl_lock_timeout_setting(tmp_path: Path, postgres_url: str) -> None:
    config = write_project(tmp_path, SEEN)
    env = {"MYFY_DATA_DDL_LOCK_TIMEOUT": "1.5"}
    first = invoke("migrate", "--config", str(config), "--url", postgres_url, env=env)
    assert first.exit_code == 0, first.output
    assert _seen(postgres_url) == "1500ms"
    reset = invoke(
        "migrate", "reset", "--config", str(config), "--url", postgres_url, "--yes", env=env
    )
    assert reset.exit_code == 0, reset.output
    assert _seen(postgres_url) == "1500ms"


def test_reset_takes_the_flag_like_the_other_writing_commands(
    tmp_path: Path, postgres_url: str
) -> None:
    config = write_project(tmp_path, SEEN)
    args = ["--config", str(config), "--url", postgres_url]
    assert invoke("migrate", *args).exit_code == 0
    result = invoke("migrate", "reset", *args, "--yes", "--ddl-lock-timeout", "2.25")
    assert result.exit_code == 0, result.output
    assert _seen(postgres_url) == "2250ms"


def test_library_calls_apply_the_setting_without_being_told(
    tmp_path: Path, postgres_url: str
) -> None:
    from myfy_db.migrations import commands
    from myfy_db.migrations.project import find_project
    from myfy_db.settings import load_settings

    config = write_project(tmp_path, SEEN)
    project = find_project(config)
    loaded = load_settings({"database_url": postgres_url, "ddl_lock_timeout": 0.75})
    run = asyncio.run(commands.upgrade(project, loaded))
    assert [a.revision for a in run.applied] == ["s1"]
    assert _seen(postgres_url) == "750ms"
    asyncio.run(commands.downgrade(project, loaded, "base"))
    assert "seen" not in {r[0] for r in query(postgres_url, "SELECT tablename FROM pg_tables")}


def test_run_options_are_frozen() -> None:
    from myfy_db.migrations.options import DEFAULT_OPTIONS

    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_OPTIONS.atomic = True  # type: ignore[misc]
