"""Mistakes a project can hold (issue 22): each ends in its documented exit code and one or two
lines on stderr that name what is wrong, never "unexpected" and never a traceback.

- an ``alembic.ini`` that is not UTF-8, a missing ``script.py.mako``: exit 2, naming the file;
- a revision that calls ``sys.exit`` under ``migrate lint``: a failed revision (exit 1) named
  by its file and line;
- an unknown revision, given on the command line or held by the database: exit 2 in every
  verb (``history``, ``show``, ``status``, ``up``, ``down``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import invoke
from migrate_project import add_revision, write_project
from schema_support import execute


def _error_lines(stderr: str) -> list[str]:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, stderr
    assert "unexpected" not in stderr
    assert "Traceback" not in stderr
    return lines


def _sqlite(tmp_path: Path) -> str:
    (tmp_path / "mistakes.db").touch()
    return f"sqlite+aiosqlite:///{tmp_path / 'mistakes.db'}"


@pytest.mark.parametrize(
    "args",
    [("status",), ("history",), ("up", "head"), ("lint",), ("show", "r1"), ("new", "-m", "x")],
)
def test_an_alembic_ini_that_is_not_utf8_is_exit_2_naming_it(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    ini = write_project(tmp_path)
    ini.write_bytes(ini.read_bytes() + "# café\n".encode("latin-1"))
    url = () if args[0] == "show" else ("--url", _sqlite(tmp_path))
    result = invoke("migrate", *args, *url)
    assert result.exit_code == 2, result.stderr
    first = _error_lines(result.stderr)[0]
    assert "alembic.ini" in first
    assert "not UTF-8" in first


@pytest.mark.parametrize("autogenerate", [False, True], ids=["plain", "autogenerate"])
def test_migrate_new_without_script_py_mako_is_exit_2_naming_the_path(
    autogenerate: bool, tmp_path: Path
) -> None:
    write_project(tmp_path)
    template = tmp_path / "migrations" / "script.py.mako"
    template.unlink()
    extra = ("--autogenerate", "--metadata", "myfy_db.example:Base") if autogenerate else ()
    result = invoke("migrate", "new", "-m", "add things", *extra, "--url", _sqlite(tmp_path))
    assert result.exit_code == 2, result.stderr
    assert str(template) in _error_lines(result.stderr)[0]
    written = sorted(p.name for p in (tmp_path / "migrations" / "versions").glob("*.py"))
    assert written == ["r1.py", "r2.py", "r3.py"]


def test_migrate_merge_without_script_py_mako_is_exit_2_naming_the_path(tmp_path: Path) -> None:
    write_project(tmp_path)
    add_revision(tmp_path, "b1", "r1")
    template = tmp_path / "migrations" / "script.py.mako"
    template.unlink()
    result = invoke("migrate", "merge", "heads", "-m", "join")
    assert result.exit_code == 2, result.stderr
    assert str(template) in _error_lines(result.stderr)[0]


@pytest.mark.parametrize("json_flag", [(), ("--json",)], ids=["text", "json"])
def test_a_revision_that_calls_sys_exit_fails_lint_naming_file_and_line(
    json_flag: tuple[str, ...], tmp_path: Path
) -> None:
    write_project(tmp_path)
    add_revision(tmp_path, "r4", "r3", upgrade='import sys\nop.execute("SELECT 1")\nsys.exit(0)')
    result = invoke("migrate", "lint", *json_flag, "--url", _sqlite(tmp_path))
    assert result.exit_code == 1, result.stderr
    first = _error_lines(result.stderr)[0]
    assert "revision r4" in first
    # REVISION's upgrade() body starts on line 13 of the file; sys.exit is its third line.
    assert str(Path("migrations") / "versions" / "r4.py") + " line 15" in first
    assert "sys.exit(0)" in first


# -- an unknown revision: exit 2 in every verb --------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("show", "nosuch"),
        ("up", "nosuch"),
        ("down", "nosuch", "--yes"),
        ("up", "--sql", "r1:nosuch"),
    ],
    ids=["show", "up", "down", "up-sql"],
)
def test_an_unknown_revision_on_the_command_line_is_exit_2(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    write_project(tmp_path)
    url = _sqlite(tmp_path)
    assert invoke("migrate", "--url", url).exit_code == 0
    result = invoke("migrate", *args, *(() if args[0] == "show" else ("--url", url)))
    assert result.exit_code == 2, result.stderr
    assert "nosuch" in _error_lines(result.stderr)[0]


@pytest.mark.parametrize(
    "args",
    [("history",), ("status",), ("up", "head"), ("down", "base", "--yes"), ("current",)],
    ids=["history", "status", "up", "down", "current"],
)
def test_a_database_at_a_revision_the_project_does_not_know_is_exit_2(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    write_project(tmp_path)
    url = _sqlite(tmp_path)
    assert invoke("migrate", "--url", url).exit_code == 0
    execute(url, "UPDATE alembic_version SET version_num = 'elsewhere'")
    result = invoke("migrate", *args, "--url", url)
    assert result.exit_code == 2, result.stderr
    assert "elsewhere" in _error_lines(result.stderr)[0]


def test_status_and_up_agree_on_an_unknown_database_revision_on_postgresql(
    postgres_url: str, tmp_path: Path
) -> None:
    write_project(tmp_path)
    assert invoke("migrate", "--url", postgres_url).exit_code == 0
    execute(postgres_url, "UPDATE alembic_version SET version_num = 'elsewhere'")
    codes = {
        verb: invoke("migrate", *verb.split(), "--url", postgres_url).exit_code
        for verb in ("status", "history", "up head", "up nosuch")
    }
    assert codes == dict.fromkeys(codes, 2)
