"""Start-up: the CLI module loads nothing heavy, and the entry points work as processes."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import run_process
from myfy_db import __version__

HEAVY = (
    "sqlalchemy",
    "alembic",
    "asyncpg",
    "aiosqlite",
    "aiomysql",
    "pymysql",
    "pydantic_settings",
)


def test_importing_the_cli_loads_no_sqlalchemy_alembic_or_driver() -> None:
    code = (
        "import sys, json, myfy_db.cli\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
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
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
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
