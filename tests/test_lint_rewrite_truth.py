"""PG006 against the server itself: lint says a type change rewrites the table exactly when
PostgreSQL gives the table a new file (``pg_class.relfilenode``) for it.

Each change runs for real on a table with rows in a fresh database; the server's answer is
the truth the rule's verdict is held to, so the rule cannot drift into inventing rewrites
(VARCHAR widening, VARCHAR to TEXT, a same-type change) or missing them.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Connection

from myfy_db.migrations.lint.rules.postgresql import _rewrites
from schema_support import on

# (old type, new type): the lint verdict is compared with what PostgreSQL does.
CHANGES = [
    ("VARCHAR(50)", "VARCHAR(100)"),
    ("VARCHAR(50)", "VARCHAR(50)"),
    ("VARCHAR(50)", "TEXT"),
    ("VARCHAR(50)", "VARCHAR"),
    ("TEXT", "VARCHAR"),
    ("VARCHAR(100)", "VARCHAR(50)"),
    ("TEXT", "VARCHAR(10)"),
    ("INTEGER", "BIGINT"),
    ("BIGINT", "INTEGER"),
    ("NUMERIC(10, 2)", "NUMERIC(12, 2)"),
    ("NUMERIC(10, 2)", "NUMERIC(10, 3)"),
    ("NUMERIC(10, 2)", "NUMERIC"),
    ("NUMERIC", "NUMERIC(10, 2)"),
    ("INTEGER", "TEXT"),
    ("VARCHAR(20)", "INTEGER"),
    # the same type spelled two ways (optuna v3.0.0.b: DOUBLE PRECISION to FLOAT(53))
    ("DOUBLE PRECISION", "FLOAT(53)"),
    ("REAL", "FLOAT(24)"),
    ("REAL", "FLOAT(25)"),
    ("DECIMAL(10, 2)", "NUMERIC(10, 2)"),
    ("TIMESTAMP", "TIMESTAMP WITHOUT TIME ZONE"),
    ("INTEGER", "INT4"),
]

VALUES = {
    "VARCHAR": "'12'",
    "TEXT": "'12'",
    "INTEGER": "12",
    "BIGINT": "12",
    "NUMERIC": "12",
    "DECIMAL": "12",
    "DOUBLE PRECISION": "12",
    "REAL": "12",
    "TIMESTAMP": "now()",
}


def _rewritten(connection: Connection, old: str, new: str) -> bool:
    base = old.split("(")[0]
    using = f" USING c::{new}" if base in ("VARCHAR", "TEXT") and new == "INTEGER" else ""
    connection.exec_driver_sql(f"CREATE TABLE t (id serial PRIMARY KEY, c {old})")
    connection.exec_driver_sql(
        f"INSERT INTO t (c) SELECT {VALUES[base]} FROM generate_series(1, 50)"
    )
    before = connection.exec_driver_sql("SELECT relfilenode FROM pg_class WHERE relname = 't'")
    first = before.scalar_one()
    connection.exec_driver_sql(f"ALTER TABLE t ALTER COLUMN c TYPE {new}{using}")
    after = connection.exec_driver_sql("SELECT relfilenode FROM pg_class WHERE relname = 't'")
    rewritten = bool(after.scalar_one() != first)
    connection.exec_driver_sql("DROP TABLE t")
    return rewritten


@pytest.mark.parametrize(("old", "new"), CHANGES, ids=[f"{o}->{n}" for o, n in CHANGES])
def test_pg006_says_rewrite_exactly_when_postgresql_rewrites(
    old: str, new: str, postgres_url: str
) -> None:
    truth = on(postgres_url, lambda c: _rewritten(c, old, new))
    assert _rewrites(old, new) == truth, f"{old} -> {new}: PostgreSQL rewrites={truth}"
