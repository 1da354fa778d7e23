"""``myfy-db config``: every effective setting with its source, password masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import CANARY, invoke


def test_config_lists_every_setting_with_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYFY_DATA_POOL_SIZE", "12")
    result = invoke("config")
    assert result.exit_code == 0, result.stderr
    for name in ("database_url", "pool_size", "pool_use_lifo", "replica_urls", "environment"):
        assert name in result.stdout
    assert "environment variable MYFY_DATA_POOL_SIZE" in result.stdout
    assert "sqlite+aiosqlite:///./myfy.db" in result.stdout


def test_config_json_is_one_document_on_stdout(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"postgresql+asyncpg://app:{CANARY}@db.internal:5432/shop"
    result = invoke("config", "--json", "--url", url)
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["valid"] is True
    entry = document["settings"]["database_url"]
    assert entry == {
        "value": "postgresql+asyncpg://app:***@db.internal:5432/shop",
        "source": "command-line flag",
        "env_var": "MYFY_DATA_DATABASE_URL",
    }
    assert document["settings"]["pool_size"]["value"] == 5
    assert CANARY not in result.stdout + result.stderr


def test_config_reports_protection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYFY_DATA_ENVIRONMENT", " Production ")
    document = json.loads(invoke("config", "--json").stdout)
    assert document["environment"] == "production"
    assert document["protected"] is True


def test_config_invalid_lists_every_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYFY_DATA_POOL_SIZE", "x")
    monkeypatch.setenv("MYFY_DATA_ECHO", "loud")
    result = invoke("config")
    assert result.exit_code == 2
    assert "pool_size" in result.stderr
    assert "echo" in result.stderr
    assert "configuration is invalid (2 setting(s))" in result.stderr


def test_config_reads_env_file_flag(tmp_path: Path) -> None:
    env = tmp_path / "ci.env"
    env.write_text("MYFY_DATA_ENVIRONMENT=staging\n")
    document = json.loads(invoke("config", "--json", "--env-file", str(env)).stdout)
    assert document["environment"] == "staging"
    assert document["settings"]["environment"]["source"] == f"env file {env}"
