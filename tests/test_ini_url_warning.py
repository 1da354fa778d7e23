"""Packaged chains ship ``sqlalchemy.url`` in their alembic.ini (issue 23): myfy-db ignores it,
and says so once, only when it names another database than the one in use."""

from __future__ import annotations

from pathlib import Path

from helpers import invoke


def _with_ini_url(project: Path, url: str) -> None:
    text = project.read_text()
    project.write_text(text.replace("[alembic]\n", f"[alembic]\nsqlalchemy.url = {url}\n", 1))


def test_the_warning_names_another_database_once(project: Path, sqlite_url: str) -> None:
    _with_ini_url(project, "postgresql://someone:pw@elsewhere/db")
    result = invoke("migrate", "--url", sqlite_url)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("sets sqlalchemy.url; myfy-db ignores it") == 1
    assert "someone" not in result.stderr  # the ini's URL is not printed


def test_the_same_database_in_another_driver_is_not_warned_about(
    project: Path, sqlite_url: str
) -> None:
    _with_ini_url(project, sqlite_url.replace("sqlite+aiosqlite", "sqlite"))
    result = invoke("migrate", "--url", sqlite_url)
    assert result.exit_code == 0, result.output
    assert "sqlalchemy.url" not in result.stderr
