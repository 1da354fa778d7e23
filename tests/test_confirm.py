"""The typed confirmation, through a real pseudo-terminal.

The name to type is the database's name as the server reports it (``current_database()``,
``DATABASE()``, the SQLite file's name); an empty or blank answer never confirms; Ctrl-C at
the prompt is an interrupt (exit 130), not a refusal; names with rich markup in them are
shown literally.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from helpers import Server, backend_of, on_a_terminal, server_for
from migrate_project import write_project
from schema_support import EXAMPLE, execute, tables

EXAMPLE_TABLES = ["accounts", "myfy_db_meta", "users"]


def _terminal(
    args: list[str], answer: str | None, cwd: Path, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """``on_a_terminal`` with this file's wide terminal."""
    return on_a_terminal(args, answer, str(cwd), {"COLUMNS": "200", **(env or {})})


def _create(url: str, cwd: Path) -> None:
    from helpers import invoke

    result = invoke("create-tables", "--metadata", EXAMPLE, "--url", url)
    assert result.exit_code == 0, result.stderr


def _server_name(url: str) -> str:
    database = make_url(url).database or ""
    return Path(database).name if backend_of(url) == "sqlite" else database


@pytest.mark.parametrize("answer", ["", "   ", "\t"])
def test_an_empty_or_blank_answer_never_confirms(db_url: str, tmp_path: Path, answer: str) -> None:
    _create(db_url, tmp_path)
    code, screen = _terminal(["drop-tables", "--all", "--url", db_url], answer, tmp_path)
    assert "Type the database name" in screen
    assert code == 3, screen
    assert "confirmation declined" in screen
    assert tables(db_url) == EXAMPLE_TABLES


@pytest.mark.wall_clock
def test_ctrl_c_at_the_prompt_exits_130_and_drops_nothing(db_url: str, tmp_path: Path) -> None:
    _create(db_url, tmp_path)
    code, screen = _terminal(["drop-tables", "--all", "--url", db_url], None, tmp_path)
    assert code == 130, screen
    assert "Traceback" not in screen
    assert tables(db_url) == EXAMPLE_TABLES


@pytest.mark.wall_clock
def test_ctrl_c_at_the_migrate_down_prompt_exits_130(sqlite_url: str, tmp_path: Path) -> None:
    ini = str(write_project(tmp_path))
    from helpers import invoke

    assert invoke("migrate", "--config", ini, "--url", sqlite_url).exit_code == 0
    args = ["migrate", "down", "base", "--config", ini, "--url", sqlite_url]
    code, screen = _terminal(args, None, tmp_path)
    assert code == 130, screen
    assert "items" in tables(sqlite_url)


def test_postgres_url_without_a_database_asks_for_the_name_the_server_reports(
    postgres_url: str, tmp_path: Path
) -> None:
    """``postgresql+asyncpg://user@host:5432/``: the server opens the database named like the
    user, and the prompt asks for that name, never an empty one. A role named like the
    fresh database makes the bare URL land on it (and nowhere else)."""
    database = make_url(postgres_url).database
    admin = server_for("postgresql")
    admin.admin(
        f'CREATE ROLE "{database}" LOGIN', f'ALTER DATABASE "{database}" OWNER TO "{database}"'
    )
    try:
        bare = (
            make_url(postgres_url)
            .set(username=database, database="")
            .render_as_string(hide_password=False)
        )
        _create(bare, tmp_path)
        for answer in ("", " "):
            code, screen = _terminal(["drop-tables", "--all", "--url", bare], answer, tmp_path)
            assert f"Type the database name {database} to confirm" in screen, screen
            assert code == 3, screen
        assert tables(postgres_url) == EXAMPLE_TABLES
        code, screen = _terminal(["drop-tables", "--all", "--url", bare], database, tmp_path)
        assert code == 0, screen
        assert tables(postgres_url) == ["myfy_db_meta"]
    finally:
        Server("postgresql", postgres_url).admin(f'REASSIGN OWNED BY "{database}" TO CURRENT_USER')
        admin.admin(f'ALTER DATABASE "{database}" OWNER TO CURRENT_USER', f'DROP ROLE "{database}"')


def test_mariadb_url_without_a_database_never_confirms_an_empty_name(
    mysql_url: str, tmp_path: Path
) -> None:
    bare = make_url(mysql_url).set(database="").render_as_string(hide_password=False)
    _create(mysql_url, tmp_path)
    code, screen = _terminal(["drop-tables", "--all", "--url", bare], "", tmp_path)
    assert code == 2, screen
    assert "the URL names no database" in screen
    assert "Type the database name" not in screen
    assert tables(mysql_url) == EXAMPLE_TABLES


def test_the_server_reported_name_confirms(db_url: str, tmp_path: Path) -> None:
    _create(db_url, tmp_path)
    args = ["drop-tables", "--metadata", EXAMPLE, "--url", db_url]
    code, screen = _terminal(args, _server_name(db_url), tmp_path)
    assert code == 0, screen
    assert tables(db_url) == ["myfy_db_meta"]


def test_markup_in_a_path_is_shown_literally(tmp_path: Path) -> None:
    folder = tmp_path / "x[/b]y[bold]"
    folder.mkdir(parents=True)
    db = folder / "[bold]odd[red].db"
    url = f"sqlite+aiosqlite:///{db}"
    _create(url, tmp_path)
    code, screen = _terminal(["drop-tables", "--all", "--url", url], "wrong", tmp_path)
    assert code == 3, screen
    assert "Type the database name [bold]odd[red].db to confirm" in screen, screen
    assert "x[/b]y[bold]" in screen
    # And it confirms when typed as shown.
    code, screen = _terminal(["drop-tables", "--all", "--url", url], "[bold]odd[red].db", tmp_path)
    assert code == 0, screen
    assert tables(url) == ["myfy_db_meta"]


def test_markup_in_an_environment_name_is_shown_literally(sqlite_url: str) -> None:
    from helpers import invoke

    execute(sqlite_url, "CREATE TABLE t (id INTEGER PRIMARY KEY)")
    name = "[bold]prod[/b]"
    env = {"MYFY_DATA_ENVIRONMENT": name, "MYFY_DATA_PROTECTED_ENVIRONMENTS": name}
    result = invoke("drop-tables", "--all", "--yes", "--url", sqlite_url, env=env)
    assert result.exit_code == 3
    assert "[bold]prod[/b]" in result.stderr
