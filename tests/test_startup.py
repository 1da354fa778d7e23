"""Start-up: the CLI module loads nothing heavy, and the entry points work as processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from helpers import run_process
from migrate_project import tables, write_project
from myfy_db import __version__
from myfy_db.cli.application import COMMANDS, app, app_for

HEAVY = (
    "sqlalchemy",
    "alembic",
    "asyncpg",
    "aiosqlite",
    "aiomysql",
    "pymysql",
    "pydantic_settings",
)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter; it must succeed."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


def _thread_that_writes(marker: Path) -> str:
    """Source that starts a non-daemon thread writing ``done`` to ``marker`` after 0.5 s."""
    return (
        "import pathlib, threading, time\n"
        "def work():\n"
        "    time.sleep(0.5)\n"
        f"    pathlib.Path({str(marker)!r}).write_text('done')\n"
        "threading.Thread(target=work).start()\n"
    )


def test_importing_the_cli_loads_no_sqlalchemy_alembic_or_driver() -> None:
    code = (
        "import sys, json, myfy_db.cli\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    result = _python(code)
    assert json.loads(result.stdout) == []


def test_help_loads_no_sqlalchemy_alembic_or_driver() -> None:
    code = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from myfy_db.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    result = _python(code)
    assert json.loads(result.stdout) == []


def test_python_dash_m_and_version() -> None:
    result = run_process("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"myfy-db {__version__}"


def test_unknown_command_is_a_usage_error() -> None:
    result = run_process("no-such-command")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_bad_setting_in_a_real_process_exits_2_without_traceback() -> None:
    result = run_process("config", env={"MYFY_DATA_POOL_SIZE": "-3"})
    assert result.returncode == 2
    assert "pool_size" in result.stderr
    assert "Traceback" not in result.stderr


# -- the process: the collector paused for start-up, a direct exit -----------------------


def test_user_code_runs_with_the_collector_on_and_start_up_frozen(sqlite_url: str) -> None:
    code = "import gc; (gc.isenabled(), gc.get_freeze_count() > 10_000)"
    result = run_process("shell", "--url", sqlite_url, "-c", code)
    assert result.returncode == 0, result.stderr
    # start-up ran with the collector paused; the shell turned it back on before the user's
    # code and froze what start-up had built
    assert result.stdout.strip() == "(True, True)"


def test_the_app_called_in_process_leaves_the_collector_alone(sqlite_url: str) -> None:
    code = (
        "import gc\n"
        "from typer.testing import CliRunner\n"
        "from myfy_db.cli import app\n"
        f"r = CliRunner().invoke(app, ['shell', '--url', {sqlite_url!r}, '-c', '1'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(gc.isenabled(), gc.get_freeze_count())"
    )
    result = _python(code)
    assert result.stdout.split() == ["True", "0"]


def test_main_called_in_process_returns_to_its_caller() -> None:
    code = (
        "import sys\n"
        "from myfy_db.cli import main\n"
        "sys.argv = ['myfy-db', '--version']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as done:\n"
        "    print('returned', done.code)\n"
    )
    result = _python(code)
    assert result.stdout.splitlines()[-1] == "returned 0"


def test_a_thread_started_by_shell_code_finishes_before_the_process_ends(
    sqlite_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "thread-done"
    result = run_process("shell", "--url", sqlite_url, "-c", _thread_that_writes(marker))
    assert result.returncode == 0, result.stderr
    assert marker.read_text() == "done"


def test_a_file_left_open_by_shell_code_is_flushed(sqlite_url: str, tmp_path: Path) -> None:
    target = tmp_path / "left-open.txt"
    # held by a module until the interpreter shuts down, not just by the snippet's namespace
    code = f"import json\njson.kept = open({str(target)!r}, 'w')\n_ = json.kept.write('kept')"
    result = run_process("shell", "--url", sqlite_url, "-c", code)
    assert result.returncode == 0, result.stderr
    assert target.read_text() == "kept"


def test_a_thread_started_by_the_metadata_module_is_waited_for(tmp_path: Path) -> None:
    marker = tmp_path / "thread-done"
    (tmp_path / "threaded_models.py").write_text(
        "from sqlalchemy import Column, Integer, MetaData, Table\n"
        "metadata = MetaData()\n"
        "Table('things', metadata, Column('id', Integer, primary_key=True))\n"
        + _thread_that_writes(marker)
    )
    result = run_process(
        "create-tables", "--metadata", "threaded_models:metadata", cwd=str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert marker.read_text() == "done"


def test_output_that_cannot_be_written_at_exit_is_an_error() -> None:
    code = (
        "import sys\n"
        "from myfy_db.cli.lifecycle import exit_now\n"
        "sys.stdout.write('buffered until exit')\n"
        "exit_now(0)\n"
    )
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-c", code],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=buffered,
        )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: could not write the output: [Errno 28] No space left on device"
    )


def test_a_full_disk_under_json_output_is_one_error_without_traceback() -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "myfy_db", "config", "--json"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert result.returncode == 1
    assert "No space left on device" in result.stderr
    assert "Traceback" not in result.stderr


def test_atexit_handlers_run_and_output_is_complete_at_the_direct_exit(
    sqlite_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "atexit-ran"
    code = (
        "import atexit, pathlib, sys\n"
        f"atexit.register(pathlib.Path({str(marker)!r}).write_text, 'ran')\n"
        "sys.stdout.write('x' * 1_000_000)\n"
        "_ = sys.stderr.write('y' * 100_000)"
    )
    result = run_process("shell", "--url", sqlite_url, "-c", code)
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout == "x" * 1_000_000
    assert result.stderr.count("y") == 100_000
    assert marker.read_text() == "ran"


def test_exit_codes_survive_the_direct_exit(sqlite_url: str) -> None:
    assert run_process("shell", "--url", sqlite_url, "-c", "raise SystemExit(7)").returncode == 7
    failed = run_process("shell", "--url", sqlite_url, "-c", "1/0")
    assert failed.returncode == 1
    assert "ZeroDivisionError" in failed.stderr
    assert run_process("config", "--url", "postgresql://u@h/d").returncode == 2


def test_a_reader_that_goes_away_ends_the_process_quietly(sqlite_url: str) -> None:
    code = "for i in range(200_000): print(i)"
    argv = [sys.executable, "-m", "myfy_db", "shell", "--url", sqlite_url, "-c", code]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        assert process.stdout.readline() == "0\n"
        process.stdout.close()
        stderr = process.stderr.read()
        status = process.wait(timeout=60)
    assert stderr == ""
    assert status == 0


# -- a command's start-up: what it needs, and nothing of the other commands ---------------


def _imported_by(args: list[str], cwd: Path, env: dict[str, str]) -> set[str]:
    """The modules a real ``python -X importtime -m myfy_db ARGS`` process imported."""
    done = run_process(*args, env=env, cwd=str(cwd), python_flags=["-X", "importtime"])
    assert done.returncode == 0, done.stderr[-2000:]
    return {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_migrate_loads_no_rich_no_pygments_and_no_other_command(tmp_path: Path) -> None:
    write_project(tmp_path)
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    names = _imported_by(["migrate"], tmp_path, {"MYFY_DATA_DATABASE_URL": url})
    assert "alembic_version" in tables(url)  # it really migrated
    packages = {name.split(".")[0] for name in names}
    assert {"alembic", "sqlalchemy", "typer"} <= packages
    assert not packages & {"rich", "pygments"}
    others = {module for name, (module, _) in COMMANDS.items() if name != "migrate"}
    assert not names & others


def test_pygments_and_mako_error_pages_still_work_once_alembic_has_loaded() -> None:
    code = (
        "import sys\n"
        "import myfy_db.migrations.commands\n"
        "print('pygments' in sys.modules)\n"
        "import mako.ext.pygmentplugin\n"
        "from mako import exceptions\n"
        "from mako.template import Template\n"
        "try:\n"
        "    Template('${missing.attribute}').render()\n"
        "except Exception:\n"
        "    print(exceptions.text_error_template().render().strip().splitlines()[-1])\n"
    )
    lines = _python(code).stdout.splitlines()
    assert lines[0] == "False"
    assert "has no attribute 'attribute'" in lines[-1]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_command_built_alone_helps_exactly_as_in_the_whole_tree(name: str) -> None:
    whole = CliRunner().invoke(app, [name, "--help"])
    alone = CliRunner().invoke(app_for([name, "--help"]), [name, "--help"])
    assert whole.exit_code == alone.exit_code == 0
    assert alone.output == whole.output


@pytest.mark.parametrize(
    "args", [["migrate"], ["--traceback", "migrate", "status"], ["migrate", "--url", "x"]]
)
def test_arguments_naming_a_command_build_only_that_command(args: list[str]) -> None:
    built = typer.main.get_command(app_for(args))
    assert list(built.commands) == ["migrate"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "args", [[], ["--help"], ["--version"], ["migrat"], ["-h", "migrate"], ["--url", "x"]]
)
def test_anything_else_gets_the_whole_tree(args: list[str]) -> None:
    built = typer.main.get_command(app_for(args))
    assert set(built.commands) == set(COMMANDS)  # type: ignore[attr-defined]


def test_a_misspelt_command_in_a_real_process_is_offered_the_right_name() -> None:
    result = run_process("migrat")
    assert result.returncode == 2
    assert "No such command 'migrat'. Did you mean 'migrate'?" in result.stderr


def test_an_unknown_subcommand_in_a_real_process_is_a_usage_error() -> None:
    result = run_process("--traceback", "migrate", "upgrayed")
    assert result.returncode == 2
    assert "No such command 'upgrayed'" in result.stderr
    assert "Traceback" not in result.stderr
