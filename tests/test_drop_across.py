"""``drop-tables`` never leaves a foreign key from another database (MariaDB) or another
schema (PostgreSQL) pointing at a dropped table: the server's catalog is asked before
anything is dropped, and the drop is refused (exit 3) naming the constraint and the
referencing table with its database or schema.

Each test makes its own extra database or schema (a unique name) and removes it at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from helpers import WORKER, invoke, server_for
from schema_support import execute, tables, write_module

PARENT_ONLY = """
from sqlalchemy import Column, Integer, MetaData, Table

metadata = MetaData()
Table("parent", metadata, Column("id", Integer, primary_key=True))
"""

FLAGS = {"metadata": ["--yes"], "all": ["--all", "--yes"], "dry-run": ["--dry-run"]}


def _unique(prefix: str) -> str:
    return f"{prefix}_{WORKER}_{uuid.uuid4().hex[:10]}"


def _create_parent(url: str, tmp_path: Path) -> str:
    module = write_module(tmp_path, "parent_only", PARENT_ONLY)
    result = invoke("create-tables", "--metadata", f"{module}:metadata", "--url", url)
    assert result.exit_code == 0, result.stderr
    return f"{module}:metadata"


@contextmanager
def _other_mysql_database() -> Iterator[str]:
    server = server_for("mysql")
    name = _unique("myfy_other")
    server.admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield name
    finally:
        server.admin(f"DROP DATABASE IF EXISTS `{name}`")


@contextmanager
def _other_postgres_schema(url: str) -> Iterator[str]:
    name = _unique("other")
    execute(url, f'CREATE SCHEMA "{name}"')
    try:
        yield name
    finally:
        execute(url, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _drop(url: str, metadata: str, how: str) -> tuple[int, str]:
    flags = FLAGS[how]
    args = flags if how == "all" else ["--metadata", metadata, *flags]
    result = invoke("drop-tables", "--url", url, *args)
    return result.exit_code, result.stderr


@pytest.mark.parametrize("how", sorted(FLAGS))
def test_mariadb_foreign_key_from_another_database_refuses_the_drop(
    mysql_url: str, tmp_path: Path, how: str
) -> None:
    metadata = _create_parent(mysql_url, tmp_path)
    database = make_url(mysql_url).database
    with _other_mysql_database() as other:
        execute(
            mysql_url,
            f"CREATE TABLE `{other}`.child (id INTEGER PRIMARY KEY, parent_id INTEGER,"
            f" CONSTRAINT fk_across_db FOREIGN KEY (parent_id)"
            f" REFERENCES `{database}`.parent (id)) ENGINE=InnoDB",
        )
        code, err = _drop(mysql_url, metadata, how)
        assert code == 3, err
        assert "fk_across_db" in err
        assert f"{other}.child references parent" in err
        assert "nothing was dropped" in err
        assert tables(mysql_url) == ["myfy_db_meta", "parent"]
        rows = server_for("mysql").admin(
            "SELECT COUNT(*) FROM information_schema.TABLES"
            f" WHERE TABLE_SCHEMA = '{other}' AND TABLE_NAME = 'child'"
        )
        assert rows[0][0][0] == 1


@pytest.mark.parametrize("how", sorted(FLAGS))
def test_postgresql_foreign_key_from_another_schema_refuses_the_drop(
    postgres_url: str, tmp_path: Path, how: str
) -> None:
    metadata = _create_parent(postgres_url, tmp_path)
    with _other_postgres_schema(postgres_url) as other:
        execute(
            postgres_url,
            f'CREATE TABLE "{other}".child (id INTEGER PRIMARY KEY, parent_id INTEGER,'
            " CONSTRAINT fk_across_schema FOREIGN KEY (parent_id) REFERENCES public.parent (id))",
        )
        code, err = _drop(postgres_url, metadata, how)
        assert code == 3, err
        assert "fk_across_schema" in err
        assert f"{other}.child references parent" in err
        assert "nothing was dropped" in err
        assert tables(postgres_url) == ["myfy_db_meta", "parent"]


def test_a_foreign_key_between_dropped_tables_in_two_schemas_is_no_obstacle(
    postgres_url: str, tmp_path: Path
) -> None:
    """A reference from a table that is dropped too is fine, whichever schema it is in."""
    with _other_postgres_schema(postgres_url) as other:
        source = f"""
from sqlalchemy import Column, ForeignKey, Integer, MetaData, Table

metadata = MetaData()
Table("parent", metadata, Column("id", Integer, primary_key=True))
Table("child", metadata, Column("id", Integer, primary_key=True),
      Column("parent_id", Integer, ForeignKey("parent.id")), schema="{other}")
"""
        module = write_module(tmp_path, "two_schemas", source)
        created = invoke("create-tables", "--metadata", f"{module}:metadata", "--url", postgres_url)
        assert created.exit_code == 0, created.stderr
        dropped = invoke(
            "drop-tables", "--metadata", f"{module}:metadata", "--url", postgres_url, "--yes"
        )
        assert dropped.exit_code == 0, dropped.stderr
        assert tables(postgres_url) == ["myfy_db_meta"]
