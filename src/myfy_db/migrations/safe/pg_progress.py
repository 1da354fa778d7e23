"""``migrate --safe`` on PostgreSQL: what an interrupted run of a revision committed.

A step of :mod:`.postgresql` that leaves the revision's transaction (a concurrent build, a
``VALIDATE``) commits what the revision did before it, but the version row is written only
after the whole revision. Just before such a step, the revision's progress is recorded in
:data:`PROGRESS_TABLE`, in the transaction the step commits: how many of its operations are
done, each described (``add_column note``), and the version rows' transaction ids then. A
re-run skips the operations done, only while the revision still has them there (a revision
edited after the failure runs the rest as written), and only while the version table has not
moved since (a plain run that applied the revision and a downgrade make the row stale). The
row goes (and the table, once empty) in the transaction that writes the version row.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PROGRESS_TABLE", "clear", "read", "versions", "write"]

PROGRESS_TABLE = "myfy_db_safe_progress"
_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} "
    "(revision varchar(255) PRIMARY KEY, done integer NOT NULL)"
)
_COLUMNS = (
    f"ALTER TABLE {PROGRESS_TABLE} ADD COLUMN IF NOT EXISTS ops text, "
    "ADD COLUMN IF NOT EXISTS versions text"
)
#: Read through to_jsonb: a table an earlier version left has no ops or versions column.
_READ = (
    "SELECT done, to_jsonb(p) ->> 'ops', to_jsonb(p) ->> 'versions' "
    f"FROM {PROGRESS_TABLE} p WHERE revision = :revision"
)
_WRITE = (
    f"INSERT INTO {PROGRESS_TABLE} (revision, done, ops, versions) "
    "VALUES (:revision, :done, :ops, :versions) ON CONFLICT (revision) DO UPDATE "
    "SET done = excluded.done, ops = excluded.ops, versions = excluded.versions"
)
_DELETE = f"DELETE FROM {PROGRESS_TABLE} WHERE revision = :revision"
_LEFT = f"SELECT count(*) FROM {PROGRESS_TABLE}"


def read(context: Any, revision: str) -> tuple[int, list[str] | None, bool] | None:
    """``(done, the operations done or None when not recorded, stale)`` of ``revision``;
    None when there is no progress row."""
    from sqlalchemy import text

    connection = context.connection
    if not connection.execute(text(f"SELECT to_regclass('{PROGRESS_TABLE}')")).scalar():
        return None
    row = connection.execute(text(_READ), {"revision": revision}).first()
    if row is None:
        return None
    done, ops, seen = row
    recorded = None if ops is None else (ops.split("\n") if ops else [])
    return int(done or 0), recorded, seen is not None and seen != versions(context)


def write(context: Any, revision: str, done: list[str]) -> None:
    """Record ``done`` (the operations completed, described) for ``revision``."""
    from sqlalchemy import text

    connection = context.connection
    connection.execute(text(_CREATE))
    connection.execute(text(_COLUMNS))
    connection.execute(
        text(_WRITE),
        {
            "revision": revision,
            "done": len(done),
            "ops": "\n".join(done),
            "versions": versions(context),
        },
    )


def clear(context: Any, revision: str) -> None:
    """``revision`` ran to its end: its row goes, and the table when it is empty."""
    from sqlalchemy import text

    connection = context.connection
    connection.execute(text(_DELETE), {"revision": revision})
    if not connection.execute(text(_LEFT)).scalar():
        connection.execute(text(f"DROP TABLE IF EXISTS {PROGRESS_TABLE}"))


def versions(context: Any) -> str:
    """The version rows' transaction ids: they change whenever a run moves the table."""
    from sqlalchemy import text

    preparer = context.impl.dialect.identifier_preparer
    table = preparer.quote(context.version_table)
    if context.version_table_schema:
        table = f"{preparer.quote(context.version_table_schema)}.{table}"
    found = context.connection.execute(
        text(f"SELECT string_agg(xmin::text, ',' ORDER BY xmin::text) FROM {table}")
    ).scalar()
    return str(found or "")
