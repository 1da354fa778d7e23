"""``myfy-db drop-tables``: order, cycles, --all, --dry-run, the guard and the confirmation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from helpers import CANARY, backend_of, invoke, on_a_terminal, run_process
from myfy_db.guard import read_record, record_environment
from schema_support import CYCLE_MODELS, EXAMPLE, execute, on, process, tables, write_module

EXAMPLE_TABLES = ["accounts", "myfy_db_meta", "users"]


def _create(url: str, metadata: str = EXAMPLE) -> None:
    result = invoke("create-tables", "--metadata", metadata, "--url", url)
    assert result.exit_code == 0, result.stderr


def _drop(url: str, *extra: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    result = invoke("drop-tables", "--url", url, "--json", *extra, env=env)
    return result.exit_code, json.loads(result.stdout)


def _record(environment: str) -> Callable[[Connection], object]:
    return lambda conn: record_environment(conn, environment)


def _name(url: str) -> str:
    database = make_url(url).database or ""
    return Path(database).name if backend_of(url) == "sqlite" else database


def test_drops_the_metadata_tables_in_reverse_dependency_order(db_url: str) -> None:
    _create(db_url)
    code, doc = _drop(db_url, "--metadata", EXAMPLE, "--yes")
    assert code == 0
    assert doc["dropped"] == ["accounts", "users"]
    assert doc["kept"] == ["myfy_db_meta"]
    assert doc["all_or_nothing"] is (backend_of(db_url) in ("sqlite", "postgresql"))
    assert tables(db_url) == ["myfy_db_meta"]


def test_dropping_with_rows_referencing_each_other(db_url: str) -> None:
    _create(db_url)
    execute(
        db_url,
        "INSERT INTO users (id, email, name) VALUES (1, 'a@example.com', 'A')",
        "INSERT INTO accounts (id, owner_id, name, balance) VALUES (1, 1, 'main', 0)",
    )
    code, _ = _drop(db_url, "--metadata", EXAMPLE, "--yes")
    assert code == 0
    assert tables(db_url) == ["myfy_db_meta"]


def test_drops_a_foreign_key_cycle(db_url: str, tmp_path: Path) -> None:
    module = write_module(tmp_path, "cycle_models_drop", CYCLE_MODELS)
    _create(db_url, f"{module}:Base")
    execute(
        db_url,
        "INSERT INTO parents (id) VALUES (1)",
        "INSERT INTO children (id, parent_id) VALUES (1, 1)",
        "UPDATE parents SET favourite_id = 1 WHERE id = 1",
        "INSERT INTO toys (id, child_id) VALUES (1, 1)",
    )
    code, doc = _drop(db_url, "--metadata", f"{module}:Base", "--yes")
    assert code == 0, doc
    dropped = doc["dropped"]
    assert sorted(dropped) == ["children", "parents", "toys"]
    assert dropped.index("toys") < dropped.index("children")
    if backend_of(db_url) == "postgresql":
        assert doc["foreign_keys_dropped_first"]
    assert tables(db_url) == ["myfy_db_meta"]


def test_all_drops_every_reflected_table_but_keeps_the_environment_record(db_url: str) -> None:
    _create(db_url)
    execute(db_url, "CREATE TABLE audit_log (id INTEGER PRIMARY KEY)")
    code, doc = _drop(db_url, "--all", "--yes")
    assert code == 0
    assert sorted(doc["dropped"]) == ["accounts", "audit_log", "users"]
    assert doc["dropped"].index("accounts") < doc["dropped"].index("users")
    assert doc["metadata"] is None
    assert tables(db_url) == ["myfy_db_meta"]
    assert on(db_url, read_record).environment == "development"


def test_metadata_drop_leaves_tables_outside_the_metadata(sqlite_url: str) -> None:
    _create(sqlite_url)
    execute(sqlite_url, "CREATE TABLE audit_log (id INTEGER PRIMARY KEY)")
    code, _ = _drop(sqlite_url, "--metadata", EXAMPLE, "--yes")
    assert code == 0
    assert tables(sqlite_url) == ["audit_log", "myfy_db_meta"]


def test_dry_run_lists_the_order_and_drops_nothing_without_confirmation(db_url: str) -> None:
    _create(db_url)
    code, doc = _drop(db_url, "--metadata", EXAMPLE, "--dry-run")
    assert code == 0
    assert doc["dry_run"] is True
    assert doc["would_drop"] == ["accounts", "users"]
    assert tables(db_url) == EXAMPLE_TABLES


def test_dry_run_human_output_names_the_order(sqlite_url: str) -> None:
    _create(sqlite_url)
    result = invoke("drop-tables", "--all", "--dry-run", "--url", sqlite_url)
    assert result.exit_code == 0
    assert "dry run" in result.stdout
    assert result.stdout.index("accounts") < result.stdout.index("users")
    assert tables(sqlite_url) == EXAMPLE_TABLES


def test_missing_tables_are_reported_not_an_error(sqlite_url: str) -> None:
    _create(sqlite_url)
    execute(sqlite_url, "DROP TABLE accounts")
    code, doc = _drop(sqlite_url, "--metadata", EXAMPLE, "--yes")
    assert code == 0
    assert doc["dropped"] == ["users"]
    assert doc["missing"] == ["accounts"]


def test_nothing_to_drop_needs_no_confirmation(sqlite_url: str) -> None:
    code, doc = _drop(sqlite_url, "--metadata", EXAMPLE)
    assert code == 0
    assert doc["dropped"] == []


def test_failed_drop_rolls_everything_back_on_postgresql(postgres_url: str) -> None:
    _create(postgres_url)
    # A view on users makes DROP TABLE users fail after accounts was already dropped.
    execute(postgres_url, "CREATE VIEW user_names AS SELECT name FROM users")
    code, doc = _drop(postgres_url, "--metadata", EXAMPLE, "--yes")
    assert code == 1
    assert "users" in doc["error"]["message"]
    assert "nothing was dropped" in doc["error"]["hint"]
    assert tables(postgres_url) == EXAMPLE_TABLES


# --- the guard -------------------------------------------------------------------------


@pytest.mark.parametrize("environment", ["Production", " production ", "PROD"])
def test_protected_environment_refuses_and_leaves_every_table(
    environment: str, db_url: str
) -> None:
    _create(db_url)
    env = {"MYFY_DATA_ENVIRONMENT": environment}
    result = invoke("drop-tables", "--all", "--yes", "--url", db_url, env=env)
    assert result.exit_code == 3
    normalised = environment.strip().lower()
    assert f"drop-tables refused: environment '{normalised}'" in result.stderr
    assert "(from environment variable MYFY_DATA_ENVIRONMENT)" in result.stderr
    assert tables(db_url) == EXAMPLE_TABLES


def test_protected_environments_variable_extends_the_list(sqlite_url: str) -> None:
    _create(sqlite_url)
    env = {"MYFY_DATA_ENVIRONMENT": "qa", "MYFY_DATA_PROTECTED_ENVIRONMENTS": "qa"}
    code, _ = _drop(sqlite_url, "--all", "--yes", env=env)
    assert code == 3
    assert tables(sqlite_url) == EXAMPLE_TABLES


def test_database_recorded_as_production_refuses_from_development(db_url: str) -> None:
    _create(db_url)
    on(db_url, _record("production"))
    result = invoke("drop-tables", "--metadata", EXAMPLE, "--yes", "--url", db_url)
    assert result.exit_code == 3
    assert "recorded as 'production' (protected)" in result.stderr
    assert tables(db_url) == EXAMPLE_TABLES


def test_database_recorded_as_any_other_environment_refuses_a_drop(db_url: str) -> None:
    on(db_url, _record("staging"))
    _create(db_url)
    code, doc = _drop(db_url, "--all", "--yes")
    assert code == 3
    assert "recorded as 'staging'" in doc["error"]["message"]
    assert tables(db_url) == EXAMPLE_TABLES


def test_dry_run_is_refused_where_the_drop_would_be(sqlite_url: str) -> None:
    on(sqlite_url, _record("staging"))
    _create(sqlite_url)
    code, doc = _drop(sqlite_url, "--all", "--dry-run")
    assert code == 3
    assert "recorded as 'staging'" in doc["error"]["message"]


def test_override_variable_lets_the_drop_past_the_record(db_url: str) -> None:
    _create(db_url)
    on(db_url, _record("production"))
    env = {"MYFY_DB_DISABLE_ENVIRONMENT_CHECK": "1"}
    code, doc = _drop(db_url, "--metadata", EXAMPLE, "--yes", env=env)
    assert code == 0
    assert doc["dropped"] == ["accounts", "users"]
    assert on(db_url, read_record).environment == "production"


def test_override_in_an_env_file_does_not_count(tmp_path: Path, sqlite_url: str) -> None:
    _create(sqlite_url)
    on(sqlite_url, _record("production"))
    (tmp_path / ".env").write_text("MYFY_DB_DISABLE_ENVIRONMENT_CHECK=1\n")
    code, _ = _drop(sqlite_url, "--all", "--yes")
    assert code == 3
    assert tables(sqlite_url) == EXAMPLE_TABLES


@pytest.mark.parametrize("flag", ["--force", "--disable-environment-check"])
def test_there_is_no_override_flag(flag: str, sqlite_url: str) -> None:
    _create(sqlite_url)
    on(sqlite_url, _record("production"))
    result = invoke("drop-tables", "--all", "--yes", flag, "--url", sqlite_url)
    assert result.exit_code == 2
    assert tables(sqlite_url) == EXAMPLE_TABLES


# --- confirmation ----------------------------------------------------------------------


def test_no_terminal_refuses_without_yes_and_keeps_the_tables(db_url: str, tmp_path: Path) -> None:
    _create(db_url)
    result = process("drop-tables", "--all", "--url", db_url, cwd=tmp_path)
    assert result.returncode == 3
    assert "needs confirmation and there is no terminal" in result.stderr
    assert "pass --yes" in result.stderr
    assert tables(db_url) == EXAMPLE_TABLES


def test_no_terminal_with_yes_drops(db_url: str, tmp_path: Path) -> None:
    _create(db_url)
    result = process("drop-tables", "--all", "--yes", "--url", db_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert tables(db_url) == ["myfy_db_meta"]


def test_guard_is_checked_before_the_confirmation(sqlite_url: str, tmp_path: Path) -> None:
    _create(sqlite_url)
    env = {"MYFY_DATA_ENVIRONMENT": "production"}
    result = process("drop-tables", "--all", "--url", sqlite_url, cwd=tmp_path, env=env)
    assert result.returncode == 3
    assert "protected" in result.stderr
    assert "no terminal" not in result.stderr


def test_typing_the_database_name_on_a_terminal_drops(db_url: str, tmp_path: Path) -> None:
    _create(db_url)
    args = ["drop-tables", "--metadata", EXAMPLE, "--url", db_url]
    code, screen = on_a_terminal(args, _name(db_url), str(tmp_path))
    assert "Type the database name" in screen
    assert code == 0, screen
    assert tables(db_url) == ["myfy_db_meta"]


def test_typing_a_wrong_name_on_a_terminal_exits_3_and_keeps_the_tables(
    db_url: str, tmp_path: Path
) -> None:
    _create(db_url)
    args = ["drop-tables", "--all", "--url", db_url]
    code, screen = on_a_terminal(args, "not-the-database", str(tmp_path))
    assert "Type the database name" in screen
    assert code == 3, screen
    assert "confirmation declined" in screen
    assert tables(db_url) == EXAMPLE_TABLES


# --- failures --------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql+asyncpg", "mysql+aiomysql"])
def test_unreachable_server_exits_4_in_one_line_without_password(scheme: str) -> None:
    url = f"{scheme}://app:{CANARY}@127.0.0.1:1/app"
    # From the environment: a password in --url adds its own warning line (test_passwords).
    result = run_process("drop-tables", "--all", "--yes", env={"MYFY_DATA_DATABASE_URL": url})
    assert result.returncode == 4
    assert result.stderr.startswith("Error: connection refused by 127.0.0.1:1/app")
    assert len(result.stderr.strip().splitlines()) <= 2
    assert "Traceback" not in result.stderr
    assert CANARY not in result.stdout + result.stderr


def test_metadata_not_importable_exits_2(sqlite_url: str) -> None:
    result = invoke("drop-tables", "--metadata", "nowhere_xyz:Base", "--yes", "--url", sqlite_url)
    assert result.exit_code == 2
    assert "cannot import module 'nowhere_xyz'" in result.stderr


def test_no_metadata_configured_exits_2_unless_all(sqlite_url: str) -> None:
    result = invoke("drop-tables", "--yes", "--url", sqlite_url)
    assert result.exit_code == 2
    assert "no metadata is configured" in result.stderr
    assert invoke("drop-tables", "--all", "--yes", "--url", sqlite_url).exit_code == 0


# --- never leave a table pointing at nothing; PostgreSQL enum types ---------------------

PARENT_ONLY = """
from sqlalchemy import Column, Integer, MetaData, Table

metadata = MetaData()
Table("parent", metadata, Column("id", Integer, primary_key=True))
"""


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_table_outside_the_drop_referencing_a_dropped_one_is_refused(
    db_url: str, tmp_path: Path, dry_run: bool
) -> None:
    module = write_module(tmp_path, "parent_only", PARENT_ONLY)
    _create(db_url, f"{module}:metadata")
    execute(
        db_url,
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER,"
        " CONSTRAINT fk_child_to_parent FOREIGN KEY (parent_id) REFERENCES parent (id))",
    )
    flags = ["--dry-run"] if dry_run else ["--yes"]
    result = invoke("drop-tables", "--metadata", f"{module}:metadata", "--url", db_url, *flags)
    assert result.exit_code == 3, result.stderr
    assert "child references parent" in result.stderr
    assert "fk_child_to_parent" in result.stderr
    assert tables(db_url) == ["child", "myfy_db_meta", "parent"]
    # Dropping both (--all) is fine: nothing is left dangling.
    everything = invoke("drop-tables", "--all", "--yes", "--url", db_url)
    assert everything.exit_code == 0, everything.stderr
    assert tables(db_url) == ["myfy_db_meta"]


COLORS = """
from sqlalchemy import Column, Enum, Integer, MetaData, Table

metadata = MetaData()
Table("shirts", metadata, Column("id", Integer, primary_key=True),
      Column("color", Enum("red", "green", name="color")))
Table("hats", metadata, Column("id", Integer, primary_key=True),
      Column("color", Enum("red", "green", name="color")))
"""


def test_create_drop_create_round_trip_with_a_shared_enum_type(
    postgres_url: str, tmp_path: Path
) -> None:
    spec = write_module(tmp_path, "colors", COLORS) + ":metadata"
    for _ in range(3):
        created = invoke("create-tables", "--metadata", spec, "--url", postgres_url, "--json")
        assert created.exit_code == 0, created.stderr
        assert json.loads(created.stdout)["created"] == ["hats", "shirts"]
        code, doc = _drop(postgres_url, "--metadata", spec, "--yes")
        assert code == 0
        assert doc["types_dropped"] == ["color"]
        assert tables(postgres_url) == ["myfy_db_meta"]


def test_create_tables_creates_only_the_missing_enum_types(
    postgres_url: str, tmp_path: Path
) -> None:
    spec = write_module(tmp_path, "colors2", COLORS) + ":metadata"
    execute(postgres_url, "CREATE TYPE color AS ENUM ('red', 'green')")
    created = invoke("create-tables", "--metadata", spec, "--url", postgres_url)
    assert created.exit_code == 0, created.stderr
    assert tables(postgres_url) == ["hats", "myfy_db_meta", "shirts"]


def test_an_enum_type_still_used_elsewhere_is_kept(postgres_url: str, tmp_path: Path) -> None:
    spec = write_module(tmp_path, "colors3", COLORS) + ":metadata"
    _create(postgres_url, spec)
    execute(postgres_url, "CREATE TABLE paint (id INTEGER PRIMARY KEY, c color)")
    code, doc = _drop(postgres_url, "--metadata", spec, "--yes")
    assert code == 0
    assert doc["types_dropped"] == []
    assert doc["types_kept"] == ["color"]
    assert tables(postgres_url) == ["myfy_db_meta", "paint"]
