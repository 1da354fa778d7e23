"""Settings: sources and their order, normalisation, and clear errors for bad values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import CANARY, invoke
from myfy_db.errors import ConfigError
from myfy_db.settings import DatabaseSettings, InvalidSettings, load_settings


def test_defaults_match_the_contract() -> None:
    loaded = load_settings()
    s = loaded.settings
    assert s.database_url == "sqlite+aiosqlite:///./myfy.db"
    assert (s.pool_size, s.max_overflow, s.pool_timeout, s.pool_recycle) == (5, 10, 30.0, 3600)
    assert (s.pool_pre_ping, s.pool_use_lifo, s.echo) == (True, False, False)
    assert (s.connect_timeout, s.environment, s.metadata, s.replica_urls) == (
        10.0,
        "development",
        None,
        [],
    )
    assert set(loaded.sources.values()) == {"default"}


def test_sources_in_order_flag_env_dotenv_pyproject_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.myfy-db]\npool_size = 2\nmax_overflow = 3\npool_timeout = 4\npool_recycle = 5\n"
    )
    (tmp_path / ".env").write_text("MYFY_DATA_POOL_SIZE=20\nMYFY_DATA_MAX_OVERFLOW=30\n")
    monkeypatch.setenv("MYFY_DATA_POOL_SIZE", "200")
    monkeypatch.setenv("MYFY_DATA_POOL_TIMEOUT", "40")
    loaded = load_settings({"pool_size": 2000})
    s = loaded.settings
    assert (s.pool_size, s.max_overflow, s.pool_timeout, s.pool_recycle) == (2000, 30, 40.0, 5)
    assert loaded.source_of("pool_size") == "command-line flag"
    assert loaded.source_of("pool_timeout") == "environment variable MYFY_DATA_POOL_TIMEOUT"
    assert loaded.source_of("max_overflow") == "env file .env"
    assert loaded.source_of("pool_recycle") == "pyproject.toml [tool.myfy-db]"
    assert loaded.source_of("echo") == "default"


def test_env_file_flag_replaces_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MYFY_DATA_POOL_SIZE=20\n")
    other = tmp_path / "staging.env"
    other.write_text("MYFY_DATA_POOL_SIZE=7\nMYFY_DATA_ENVIRONMENT=staging\n")
    loaded = load_settings(env_file=other)
    assert loaded.settings.pool_size == 7
    assert loaded.settings.environment == "staging"
    assert loaded.source_of("pool_size") == f"env file {other}"


def test_missing_env_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="env file not found"):
        load_settings(env_file=tmp_path / "nope.env")


@pytest.mark.parametrize("raw", ["Production", " production ", "PROD", "prod"])
def test_environment_is_normalised_and_protected(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYFY_DATA_ENVIRONMENT", raw)
    settings = load_settings().settings
    assert settings.environment == raw.strip().lower()
    assert settings.is_protected


def test_protected_environments_extend_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYFY_DATA_PROTECTED_ENVIRONMENTS", "Staging, live")
    monkeypatch.setenv("MYFY_DATA_ENVIRONMENT", "STAGING")
    settings = load_settings().settings
    assert settings.is_protected
    assert DatabaseSettings(environment="production").is_protected
    assert not DatabaseSettings(environment="development").is_protected


def test_replica_urls_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "MYFY_DATA_REPLICA_URLS",
        "postgresql+asyncpg://u@r1/db, postgresql+asyncpg://u@r2/db",
    )
    assert load_settings().settings.replica_urls == [
        "postgresql+asyncpg://u@r1/db",
        "postgresql+asyncpg://u@r2/db",
    ]


BAD_SETTINGS = [
    ("MYFY_DATA_POOL_SIZE", "ten", "pool_size", "valid integer"),
    ("MYFY_DATA_POOL_SIZE", "-1", "pool_size", "greater than or equal to 1"),
    ("MYFY_DATA_POOL_TIMEOUT", "-5", "pool_timeout", "greater than 0"),
    ("MYFY_DATA_MAX_OVERFLOW", "1.5", "max_overflow", "integer"),
    ("MYFY_DATA_POOL_PRE_PING", "maybe", "pool_pre_ping", "true/false"),
    ("MYFY_DATA_DATABASE_URL", "oracle+cx://u:p@h/db", "database_url", "unknown database driver"),
    ("MYFY_DATA_DATABASE_URL", "not a url", "database_url", "not a database URL"),
    (
        "MYFY_DATA_DATABASE_URL",
        "postgresql://u@h/db",
        "database_url",
        "postgresql+asyncpg://u@h/db",
    ),
    (
        "MYFY_DATA_DATABASE_URL",
        "postgresql+psycopg2://u@h/db",
        "database_url",
        "postgresql+asyncpg://",
    ),
    ("MYFY_DATA_DATABASE_URL", "mysql+pymysql://u@h/db", "database_url", "mysql+aiomysql://u@h/db"),
    ("MYFY_DATA_DATABASE_URL", "sqlite:///x.db", "database_url", "sqlite+aiosqlite:///x.db"),
    ("MYFY_DATA_REPLICA_URLS", "postgresql://u@h/db", "replica_urls", "postgresql+asyncpg://"),
    ("MYFY_DATA_METADATA", "models.Base", "metadata", "module:attr"),
    ("MYFY_DATA_ENVIRONMENT", "   ", "environment", "must not be empty"),
]


@pytest.mark.parametrize(("var", "value", "field", "expected"), BAD_SETTINGS)
def test_bad_setting_exits_2_naming_setting_source_and_fix(
    var: str, value: str, field: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(InvalidSettings) as caught:
        load_settings()
    message = str(caught.value)
    assert field in message
    assert f"environment variable {var}" in message
    assert expected in message
    result = invoke("config")
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    assert expected in result.stderr
    assert result.stdout == ""


def test_sync_url_error_never_shows_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYFY_DATA_DATABASE_URL", f"postgresql://app:{CANARY}@db/prod")
    result = invoke("config", "--json")
    assert result.exit_code == 2
    assert CANARY not in result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["valid"] is False
    assert "postgresql+asyncpg://app:***@db/prod" in document["errors"][0]["message"]


def test_settings_repr_masks_the_password() -> None:
    settings = DatabaseSettings(database_url=f"postgresql+asyncpg://u:{CANARY}@h/db")
    assert CANARY not in repr(settings)
    assert CANARY not in str(settings)


def test_bad_pyproject_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.myfy-db\nbroken")
    result = invoke("config")
    assert result.exit_code == 2
    assert "pyproject.toml" in result.stderr
    assert "Traceback" not in result.stderr
