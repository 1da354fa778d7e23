"""``myfy-db create-tables``: created vs present, --sql, metadata errors and the guard."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection

from helpers import CANARY, invoke, run_process
from myfy_db.guard import read_record, record_environment
from schema_support import CYCLE_MODELS, EXAMPLE, execute, on, tables, write_module

ROOT = Path(__file__).resolve().parent.parent


def _create(
    url: str, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], str]:
    result = invoke("create-tables", "--metadata", EXAMPLE, "--url", url, "--json", *extra, env=env)
    return result.exit_code, json.loads(result.stdout), result.stderr


def test_creates_missing_tables_in_dependency_order_and_records_environment(db_url: str) -> None:
    code, doc, _ = _create(db_url)
    assert code == 0
    assert doc["tables"] == [
        {"name": "users", "status": "created"},
        {"name": "accounts", "status": "created"},
    ]
    assert doc["created"] == ["users", "accounts"]
    assert doc["present"] == []
    assert tables(db_url) == ["accounts", "myfy_db_meta", "users"]
    record = on(db_url, read_record)
    assert record.environment == "development"
    assert record.tool_version
    assert doc["recorded_environment"] == "development"


def test_second_run_reports_every_table_already_present(db_url: str) -> None:
    assert _create(db_url)[0] == 0
    code, doc, _ = _create(db_url)
    assert code == 0
    assert doc["created"] == []
    assert doc["present"] == ["users", "accounts"]
    assert tables(db_url) == ["accounts", "myfy_db_meta", "users"]


def test_reports_created_and_present_side_by_side(db_url: str) -> None:
    assert _create(db_url)[0] == 0
    execute(db_url, "DROP TABLE accounts")
    code, doc, _ = _create(db_url)
    assert code == 0
    assert doc["tables"] == [
        {"name": "users", "status": "present"},
        {"name": "accounts", "status": "created"},
    ]


def test_json_reports_whether_ddl_is_all_or_nothing(db_url: str) -> None:
    _, doc, _ = _create(db_url)
    assert doc["all_or_nothing"] is (doc["backend"] in ("sqlite", "postgresql"))
    assert doc["elapsed_ms"] >= 0


def test_human_report_lists_each_table_with_its_status(sqlite_url: str) -> None:
    invoke("create-tables", "--metadata", EXAMPLE, "--url", sqlite_url)
    execute(sqlite_url, "DROP TABLE accounts")
    result = invoke("create-tables", "--metadata", EXAMPLE, "--url", sqlite_url)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert any("users" in line and "already present" in line for line in lines)
    assert any("accounts" in line and "created" in line for line in lines)
    assert "1 created, 1 already present" in result.stdout


def test_creates_a_use_alter_cycle(db_url: str, tmp_path: Path) -> None:
    module = write_module(tmp_path, "cycle_models_create", CYCLE_MODELS)
    result = invoke("create-tables", "--metadata", f"{module}:Base", "--url", db_url, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["created"] == ["parents", "children", "toys"]
    assert tables(db_url) == ["children", "myfy_db_meta", "parents", "toys"]


_DIALECT_MARK = {"sqlite": "CREATE TABLE users", "postgresql": "SERIAL", "mysql": "AUTO_INCREMENT"}


def test_sql_prints_the_dialects_ddl_and_touches_nothing(db_url: str) -> None:
    result = invoke("create-tables", "--metadata", EXAMPLE, "--url", db_url, "--sql")
    assert result.exit_code == 0, result.stderr
    backend = "mysql" if db_url.startswith("mysql") else db_url.split("+")[0]
    assert "CREATE TABLE users" in result.stdout
    assert "CREATE TABLE accounts" in result.stdout
    assert "CREATE INDEX ix_accounts_owner_id" in result.stdout
    assert _DIALECT_MARK[backend] in result.stdout
    assert result.stdout.index("CREATE TABLE users") < result.stdout.index("CREATE TABLE accounts")
    assert tables(db_url) == []


def test_sql_json_is_one_document_of_statements(sqlite_url: str) -> None:
    result = invoke("create-tables", "--metadata", EXAMPLE, "--url", sqlite_url, "--sql", "--json")
    doc = json.loads(result.stdout)
    assert doc["dialect"] == "sqlite"
    assert [s.split("(")[0].strip() for s in doc["statements"]] == [
        "CREATE TABLE users",
        "CREATE TABLE accounts",
        "CREATE INDEX ix_accounts_owner_id ON accounts",
    ]


def test_sql_needs_no_reachable_server() -> None:
    url = "postgresql+asyncpg://app@127.0.0.1:1/nowhere"
    result = invoke("create-tables", "--metadata", EXAMPLE, "--url", url, "--sql")
    assert result.exit_code == 0
    assert "CREATE TABLE users" in result.stdout


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_xyz:Base", "cannot import module 'no_such_module_xyz'"),
        ("myfy_db.example:Nope", "module 'myfy_db.example' has no attribute 'Nope'"),
        ("myfy_db.example:Decimal", "class Decimal, not a DeclarativeBase subclass or a MetaData"),
        ("myfy_db.example:__doc__", "is a str, not a DeclarativeBase subclass or a MetaData"),
        ("myfy_db.example", "must be module:attr"),
    ],
    ids=["not-importable", "no-attribute", "plain-class", "wrong-kind", "not-module-attr"],
)
def test_metadata_errors_exit_2_saying_which_part_failed(
    spec: str, message: str, sqlite_url: str
) -> None:
    result = invoke("create-tables", "--metadata", spec, "--url", sqlite_url)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert tables(sqlite_url) == []


def test_a_module_that_fails_on_import_exits_2_naming_the_error(
    tmp_path: Path, sqlite_url: str
) -> None:
    write_module(tmp_path, "broken_models", "raise RuntimeError('boom in models')\n")
    result = invoke("create-tables", "--metadata", "broken_models:Base", "--url", sqlite_url)
    assert result.exit_code == 2
    assert "importing module 'broken_models' failed: RuntimeError: boom in models" in result.stderr


def test_metadata_module_in_the_working_directory_is_importable(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "local_models",
        "from sqlalchemy import Column, Integer, MetaData, Table\n"
        "metadata = MetaData()\n"
        "Table('widgets', metadata, Column('id', Integer, primary_key=True))\n",
    )
    result = run_process("create-tables", "--metadata", "local_models:metadata", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "widgets" in result.stdout
    assert tables(f"sqlite+aiosqlite:///{tmp_path / 'myfy.db'}") == ["myfy_db_meta", "widgets"]


def test_fresh_clone_creates_the_example_schema_with_nothing_set(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    result = run_process("create-tables", "--json", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["created"] == ["users", "accounts"]
    assert (tmp_path / "myfy.db").exists()


@pytest.mark.parametrize("environment", ["Production", " production ", "PROD", "prod"])
def test_protected_environment_refuses_and_creates_nothing(environment: str, db_url: str) -> None:
    result = invoke(
        "create-tables",
        "--metadata",
        EXAMPLE,
        "--url",
        db_url,
        env={"MYFY_DATA_ENVIRONMENT": environment},
    )
    assert result.exit_code == 3
    normalised = environment.strip().lower()
    assert f"environment '{normalised}' (from environment variable MYFY_DATA_ENVIRONMENT)" in (
        result.stderr
    )
    assert tables(db_url) == []


def test_protected_environment_named_in_env_file_says_so(tmp_path: Path, sqlite_url: str) -> None:
    (tmp_path / "prod.env").write_text("MYFY_DATA_ENVIRONMENT=production\n")
    result = invoke(
        "create-tables", "--metadata", EXAMPLE, "--url", sqlite_url, "--env-file", "prod.env"
    )
    assert result.exit_code == 3
    assert "(from env file prod.env)" in result.stderr


def test_protected_environments_variable_extends_the_list(sqlite_url: str) -> None:
    staging = {"MYFY_DATA_ENVIRONMENT": "staging"}
    extended = {**staging, "MYFY_DATA_PROTECTED_ENVIRONMENTS": "production, Staging"}
    refused = invoke("create-tables", "--metadata", EXAMPLE, "--url", sqlite_url, env=extended)
    assert refused.exit_code == 3
    assert "'staging'" in refused.stderr
    assert tables(sqlite_url) == []
    allowed = invoke("create-tables", "--metadata", EXAMPLE, "--url", sqlite_url, env=staging)
    assert allowed.exit_code == 0


def _record(environment: str) -> Callable[[Connection], object]:
    return lambda conn: record_environment(conn, environment)


def test_database_recorded_as_production_refuses_from_development(db_url: str) -> None:
    on(db_url, _record("production"))
    code, doc, stderr = _create(db_url)
    assert code == 3
    assert doc["error"]["exit_code"] == 3
    assert "recorded as 'production'" in stderr
    assert "current environment is 'development'" in stderr
    assert tables(db_url) == ["myfy_db_meta"]


def test_database_recorded_as_another_unprotected_environment_allows_create(
    sqlite_url: str,
) -> None:
    on(sqlite_url, _record("staging"))
    code, doc, _ = _create(sqlite_url)
    assert code == 0
    assert doc["recorded_environment"] == "staging"


def test_override_variable_passes_the_record_check_and_never_lowers_it(db_url: str) -> None:
    on(db_url, _record("production"))
    code, doc, _ = _create(db_url, env={"MYFY_DB_DISABLE_ENVIRONMENT_CHECK": "1"})
    assert code == 0
    assert doc["created"] == ["users", "accounts"]
    assert on(db_url, read_record).environment == "production"


def test_override_does_not_lift_the_local_protected_environment(sqlite_url: str) -> None:
    env = {"MYFY_DATA_ENVIRONMENT": "production", "MYFY_DB_DISABLE_ENVIRONMENT_CHECK": "1"}
    code, _, _ = _create(sqlite_url, env=env)
    assert code == 3
    assert tables(sqlite_url) == []


def test_override_is_not_read_from_an_env_file(tmp_path: Path, sqlite_url: str) -> None:
    on(sqlite_url, _record("production"))
    (tmp_path / ".env").write_text("MYFY_DB_DISABLE_ENVIRONMENT_CHECK=1\n")
    code, _, _ = _create(sqlite_url)
    assert code == 3
    assert tables(sqlite_url) == ["myfy_db_meta"]


@pytest.mark.parametrize("flag", ["--force", "--disable-environment-check", "--no-guard"])
def test_there_is_no_override_flag(flag: str, sqlite_url: str) -> None:
    on(sqlite_url, _record("production"))
    result = invoke("create-tables", "--metadata", EXAMPLE, "--url", sqlite_url, flag)
    assert result.exit_code == 2
    assert "No such option" in result.stderr
    assert tables(sqlite_url) == ["myfy_db_meta"]


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_unreachable_server_exits_4_in_one_line_without_password(backend: str) -> None:
    scheme = {"postgresql": "postgresql+asyncpg", "mysql": "mysql+aiomysql"}[backend]
    url = f"{scheme}://app:{CANARY}@127.0.0.1:1/app"
    # From the environment: a password in --url adds its own warning line (test_passwords).
    env = {"MYFY_DATA_DATABASE_URL": url}
    result = run_process("create-tables", "--metadata", EXAMPLE, env=env)
    assert result.returncode == 4
    assert result.stderr.startswith("Error: connection refused by 127.0.0.1:1/app")
    assert len(result.stderr.strip().splitlines()) <= 2
    assert "Traceback" not in result.stderr
    assert CANARY not in result.stdout + result.stderr


def test_statement_failure_exits_1_and_rolls_back_where_ddl_is_transactional(
    db_url: str,
) -> None:
    # A view named like a table the metadata wants: CREATE TABLE accounts fails after users.
    execute(db_url, "CREATE VIEW accounts AS SELECT 1 AS x")
    code, doc, stderr = _create(db_url)
    assert code == 1
    assert "create-tables failed" in stderr
    assert doc["error"]["exit_code"] == 1
    if not db_url.startswith("mysql"):
        assert "users" not in tables(db_url)


def test_echoed_sql_goes_to_stderr_leaving_one_json_document(db_url: str) -> None:
    code, doc, stderr = _create(db_url, env={"MYFY_DATA_ECHO": "true"})
    assert code == 0
    assert doc["created"] == ["users", "accounts"]
    assert "CREATE TABLE users" in stderr
