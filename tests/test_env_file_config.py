"""An env.py that calls ``fileConfig(config.config_file_name)`` unguarded, as optuna's does
(issue 23): myfy-db's Config carries the ini's path as Alembic's does, in migrate and lint,
and the project's logging setup is undone once env.py returns."""

from __future__ import annotations

import logging
from pathlib import Path

from helpers import invoke
from migrate_project import runs

UNGUARDED = """
from logging.config import fileConfig

from alembic import context
from myfy_db.migrations.environment import shared_connection

config = context.config
fileConfig(config.config_file_name)  # no None check: Alembic always gives a path

if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    context.configure(connection=shared_connection(config), target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
"""


def _unguarded(project: Path) -> None:
    (project.parent / "migrations" / "env.py").write_text(UNGUARDED)


def test_migrate_hands_env_py_the_ini_path(project: Path, db_url: str) -> None:
    _unguarded(project)
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    result = invoke("migrate", "--url", db_url)
    assert result.exit_code == 0, result.output
    assert "TypeError" not in result.output
    assert runs(db_url) == ["r1", "r2", "r3"]
    assert (root.level, list(root.handlers)) == before  # the project's setup was undone


def test_lint_runs_an_unguarded_file_config(project: Path, sqlite_url: str) -> None:
    _unguarded(project)
    result = invoke("migrate", "lint", "--offline", "--url", sqlite_url, "--json")
    assert result.exit_code == 0, result.output
    assert "TypeError" not in result.output


def test_a_failure_inside_env_py_names_env_py_and_its_line(project: Path, sqlite_url: str) -> None:
    env_py = project.parent / "migrations" / "env.py"
    env_py.write_text("from alembic import context\n\nraise KeyError('formatters')\n")
    result = invoke("migrate", "lint", "--offline", "--url", sqlite_url)
    assert result.exit_code == 1
    assert "cannot lint: env.py (" in result.stderr
    assert "env.py line 3) failed" in result.stderr
    assert "op.get_bind()" not in result.stderr
