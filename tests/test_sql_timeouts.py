"""``migrate up --sql`` renders the session's timeouts at the top of the script (issue 23),
so a DBA who applies the file gets the bounds a live run would have."""

from __future__ import annotations

from pathlib import Path

from helpers import free_port, invoke

PG = f"postgresql+asyncpg://u@127.0.0.1:{free_port()}/db"
MY = f"mysql+aiomysql://u@127.0.0.1:{free_port()}/db"


def test_postgres_script_sets_lock_and_statement_timeouts(project: Path) -> None:
    result = invoke("migrate", "up", "--sql", "head", "--url", PG, "--statement-timeout", "30")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:2] == ["SET lock_timeout = '5000ms';", "SET statement_timeout = '30000ms';"]


def test_the_ddl_lock_timeout_setting_and_zero(project: Path) -> None:
    result = invoke("migrate", "up", "--sql", "head", "--url", PG, "--ddl-lock-timeout", "0.25")
    assert result.stdout.splitlines()[0] == "SET lock_timeout = '250ms';"
    none = invoke("migrate", "up", "--sql", "head", "--url", PG, "--ddl-lock-timeout", "0")
    assert "lock_timeout" not in none.stdout  # 0: no limit, so nothing is set


def test_mariadb_script_sets_its_own_forms(project: Path) -> None:
    result = invoke("migrate", "up", "--sql", "head", "--url", MY, "--statement-timeout", "30")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        "SET SESSION lock_wait_timeout = 5;",
        "SET SESSION max_statement_time = 30;",
    ]
