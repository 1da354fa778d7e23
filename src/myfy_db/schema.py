"""Creating and dropping the application's tables, behind the production guard.

:func:`create_tables` creates the tables of a :class:`~sqlalchemy.MetaData` that the database
does not have yet, in dependency order, and reports each table as created or already present.
The guard check and the environment record (``myfy_db_meta``) come first, committed on their
own, so even a failed run leaves the database protected; the creates then run in one
transaction, so on PostgreSQL and SQLite a failure leaves the tables as they were.

:func:`drop_tables` drops the metadata's tables (or, with ``metadata=None``, every table the
database holds) in reverse dependency order. Foreign keys that form a cycle are dropped
first on PostgreSQL; MySQL/MariaDB drops with ``FOREIGN_KEY_CHECKS=0`` on its connection;
SQLite defers its foreign-key checks to the commit. On PostgreSQL and SQLite the drop is all
or nothing; MySQL/MariaDB commits each ``DROP TABLE`` on its own, and the report says so.

The environment record ``myfy_db_meta`` is never dropped, not even by ``--all``: the record
is what lets the guard recognise a production database after its tables are gone, so it
outlives them on purpose.

:func:`create_tables_sql` renders the ``CREATE`` statements for a dialect without any
connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, MetaData, Table, inspect
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import DropTable

from myfy_db.driver_errors import classify_connect_error, describe_server_error
from myfy_db.errors import OperationFailed, Refused
from myfy_db.guard import (
    META_TABLE,
    Change,
    EnvironmentRecord,
    ProductionGuard,
    server_database_name,
)
from myfy_db.urls import DatabaseUrl, redact

__all__ = [
    "CreateReport",
    "DropPlan",
    "DropReport",
    "TableStatus",
    "create_tables",
    "create_tables_sql",
    "drop_tables",
    "drop_tables_sync",
    "transactional_ddl",
]

Status = Literal["created", "present"]
ALEMBIC_VERSION = "alembic_version"


@dataclass(frozen=True)
class TableStatus:
    """One table of the metadata after ``create-tables``."""

    name: str
    status: Status


@dataclass(frozen=True)
class CreateReport:
    """What :func:`create_tables` did, table by table in dependency order."""

    tables: list[TableStatus]
    record: EnvironmentRecord
    transactional: bool

    @property
    def created(self) -> list[str]:
        return [t.name for t in self.tables if t.status == "created"]

    @property
    def present(self) -> list[str]:
        return [t.name for t in self.tables if t.status == "present"]


@dataclass(frozen=True)
class DropPlan:
    """What :func:`drop_tables` is about to drop, decided after the guard checks passed.

    ``tables`` is in drop order (dependents first); ``constraints`` are the foreign keys
    dropped first to break cycles, as ``(table, constraint)``; ``missing`` lists metadata
    tables the database does not have; ``kept`` lists tables deliberately left in place;
    ``types`` are the metadata's own named enum types (PostgreSQL), dropped after the tables;
    ``database`` is the database's name as the server reports it (what confirming types).
    """

    tables: list[str]
    constraints: list[tuple[str, str]]
    missing: list[str]
    kept: list[str]
    transactional: bool
    all_tables: bool
    types: list[str] = field(default_factory=list)
    #: ``alembic_version`` goes too: the migration history of the tables dropped.
    alembic_version: bool = False
    database: str = ""


@dataclass(frozen=True)
class DropReport:
    """What :func:`drop_tables` dropped (or, with ``dry_run``, would drop)."""

    plan: DropPlan
    dry_run: bool
    dropped: list[str] = field(default_factory=list)
    types_dropped: list[str] = field(default_factory=list)
    types_kept: list[str] = field(default_factory=list)


def transactional_ddl(dialect_name: str) -> bool:
    """True when the backend rolls DDL back with its transaction (PostgreSQL, SQLite)."""
    return dialect_name in ("postgresql", "sqlite")


def _qualified(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name


async def _begin_ddl(conn: AsyncConnection) -> None:
    """Open a real transaction that also covers DDL.

    SQLAlchemy begins lazily and Python's sqlite3 module issues ``BEGIN`` only before
    INSERT/UPDATE/DELETE, so on SQLite a ``CREATE``/``DROP`` would otherwise commit on its own.
    An explicit ``BEGIN`` makes it part of the transaction that the commit or rollback ends.
    """
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql("BEGIN")


async def create_tables(
    engine: AsyncEngine, metadata: MetaData, guard: ProductionGuard
) -> CreateReport:
    """Create the tables of ``metadata`` the database lacks, after the guard allows it.

    Raises :class:`~myfy_db.errors.Refused` (exit 3) when the guard refuses; nothing is
    created then. The environment is recorded in ``myfy_db_meta`` before anything else, in a
    transaction of its own.
    """
    async with engine.connect() as conn:
        record = await conn.run_sync(guard.prepare, "create-tables", Change.SCHEMA)
        await _begin_ddl(conn)
        tables, existing = await conn.run_sync(_list_tables, metadata)
        missing = [t for t in tables if t.fullname not in existing]
        if missing and conn.dialect.name == "postgresql":
            # One round trip for the whole DDL script instead of a prepare and an execute per
            # statement: the same statements create_all would run, in the same transaction,
            # less the named enum types the database already has.
            existing_types = await conn.run_sync(_existing_enum_types)
            statements = _ddl_statements(
                metadata, missing, conn.sync_engine.url, conn.dialect, skip_types=existing_types
            )
            await _run_script(conn, statements)
        elif missing:
            # create_all orders the subset by dependency and adds use_alter foreign keys last.
            await conn.run_sync(_create_all, metadata, missing)
        await conn.commit()
    statuses = [
        TableStatus(t.fullname, "present" if t.fullname in existing else "created") for t in tables
    ]
    return CreateReport(statuses, record, transactional_ddl(engine.dialect.name))


def _existing_tables(connection: Connection, schemas: Iterable[str | None]) -> set[str]:
    inspector = inspect(connection)
    existing: set[str] = set()
    for schema in schemas:
        existing.update(_qualified(schema, name) for name in inspector.get_table_names(schema))
    return existing


def _list_tables(connection: Connection, metadata: MetaData) -> tuple[list[Table], set[str]]:
    tables = [t for t in metadata.sorted_tables if t.name != META_TABLE]
    return tables, _existing_tables(connection, {t.schema for t in tables})


def _create_all(connection: Connection, metadata: MetaData, tables: list[Table]) -> None:
    metadata.create_all(connection, tables=tables, checkfirst=False)


async def _run_script(conn: AsyncConnection, statements: list[str]) -> None:
    """Run ``statements`` as one script on the driver connection (asyncpg), in the open
    transaction."""
    script = "\n\n".join(statements)
    if conn.sync_engine.echo:
        conn.sync_engine.logger.info(script)
    raw = await conn.get_raw_connection()
    try:
        await raw.driver_connection.execute(script)  # type: ignore[union-attr]
    except Exception as exc:
        detail, server_hint = describe_server_error(exc)
        hint = "nothing was created: the transaction was rolled back"
        raise OperationFailed(
            redact(f"create-tables failed: {detail}"),
            hint=redact(f"{server_hint}; {hint}" if server_hint else hint),
        ) from exc


def _ddl_statements(
    metadata: MetaData,
    tables: list[Table],
    url: str | URL | DatabaseUrl,
    dialect: Dialect | None = None,
    *,
    skip_types: set[tuple[str | None, str]] | None = None,
) -> list[str]:
    """The statements ``create_all`` runs for ``tables`` on an empty database, compiled for
    ``dialect`` (default: ``url``'s), without a connection; ``CREATE TYPE`` is left out for
    the ``(schema, name)`` pairs in ``skip_types``."""
    from sqlalchemy import create_mock_engine

    statements: list[str] = []

    def collect(sql: Any, *multiparams: Any, **params: Any) -> None:
        element = getattr(sql, "element", None)
        if (
            skip_types
            and type(sql).__name__ == "CreateEnumType"
            and (getattr(element, "schema", None), getattr(element, "name", None)) in skip_types
        ):
            return
        statements.append(str(sql.compile(dialect=dialect or mock.dialect)).strip() + ";")

    target = url.sqlalchemy_url if isinstance(url, DatabaseUrl) else url
    mock = create_mock_engine(target, collect)
    metadata.create_all(mock, tables=tables, checkfirst=False)
    return statements


def _existing_enum_types(connection: Connection) -> set[tuple[str | None, str]]:
    """The enum types the PostgreSQL database has, as ``(schema, name)``; the schema is None
    for the current schema, the way an unqualified ``Enum(name=...)`` names it."""
    rows = connection.exec_driver_sql(
        "SELECT n.nspname, t.typname, n.nspname = current_schema() FROM pg_type t "
        "JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typtype = 'e'"
    ).all()
    found: set[tuple[str | None, str]] = set()
    for schema, name, current in rows:
        found.add((schema, name))
        if current:
            found.add((None, name))
    return found


def _named_enum_types(metadata: MetaData) -> list[Any]:
    """The metadata's own named native enum types (PostgreSQL ``CREATE TYPE``), by name."""
    from sqlalchemy import ARRAY, Enum

    found: dict[tuple[str | None, str], Any] = {}
    for table in metadata.tables.values():
        for column in table.columns:
            kind = column.type
            if isinstance(kind, ARRAY):
                kind = kind.item_type
            if isinstance(kind, Enum) and kind.native_enum and kind.name:
                found.setdefault((kind.schema, kind.name), kind)
    return [found[key] for key in sorted(found, key=lambda k: (k[0] or "", k[1]))]


def _type_label(kind: Any) -> str:
    return f"{kind.schema}.{kind.name}" if kind.schema else str(kind.name)


def create_tables_sql(metadata: MetaData, url: str | DatabaseUrl) -> list[str]:
    """The DDL ``create-tables`` would run on an empty database of ``url``'s dialect.

    Nothing connects: the statements are compiled for the dialect by a mock engine.
    """
    tables = [t for t in metadata.sorted_tables if t.name != META_TABLE]
    return _ddl_statements(metadata, tables, url)


async def drop_tables(
    engine: AsyncEngine,
    metadata: MetaData | None,
    guard: ProductionGuard,
    *,
    dry_run: bool = False,
    confirm: Callable[[DropPlan], None] | None = None,
) -> DropReport:
    """Drop the tables of ``metadata`` (``None``: every table) in reverse dependency order.

    The guard is checked first; then the plan is made and passed to ``confirm`` (which
    raises :class:`~myfy_db.errors.Refused` to decline) unless it is empty or ``dry_run``;
    then everything is dropped in one transaction where the backend allows transactional
    DDL. ``dry_run`` checks and plans exactly the same way and drops nothing.
    """
    async with engine.connect() as conn:
        await _begin_ddl(conn)
        report = await conn.run_sync(drop_tables_sync, metadata, guard, dry_run, confirm)
        if dry_run:
            await conn.rollback()
        else:
            await conn.commit()
    return report


def _plan(connection: Connection, metadata: MetaData | None) -> DropPlan:
    inspector = inspect(connection)
    if metadata is None:
        wanted: set[str] | None = None
        schemas: list[str | None] = [None]
        declared: list[str] = []
    else:
        declared = [t.fullname for t in metadata.sorted_tables if t.name != META_TABLE]
        wanted = set(declared)
        schemas = sorted({t.schema for t in metadata.tables.values()}, key=lambda s: s or "")
    # Creation order of the tables the database has, and the foreign keys (by name) that
    # close a cycle: those cannot be ordered and are dropped before any table.
    sorted_tables = inspector.sort_tables_on_foreign_key_dependency(consider_schemas=schemas)
    present: list[str] = []
    for key, _fks in sorted_tables:
        if key is not None:
            present.append(_qualified(*key))
    cycle_fks = sorted_tables[-1][1] if sorted_tables else []
    kept = [name for name in present if name == META_TABLE]
    targets = [n for n in present if n != META_TABLE and (wanted is None or n in wanted)]
    # Without their migration history gone too, `migrate` would find the database "at head"
    # with none of its tables: the metadata's tables take alembic_version with them.
    history = wanted is not None and ALEMBIC_VERSION in present and ALEMBIC_VERSION not in wanted
    if history:
        targets.insert(0, ALEMBIC_VERSION)  # dropped last: nothing refers to it
    target_set = set(targets)
    constraints = sorted(
        {
            (_qualified(*table), name)
            for table, name in cycle_fks
            if name is not None and _qualified(*table) in target_set
        }
    )
    missing = [name for name in declared if name not in set(present)]
    types: list[str] = []
    if metadata is not None and connection.dialect.name == "postgresql":
        types = [_type_label(t) for t in _named_enum_types(metadata)]
    return DropPlan(
        tables=list(reversed(targets)),
        constraints=constraints,
        missing=missing,
        kept=kept,
        transactional=transactional_ddl(connection.dialect.name),
        all_tables=metadata is None,
        types=types,
        alembic_version=history,
        database=server_database_name(connection),
    )


def _refuse_dangling_references(connection: Connection, plan: DropPlan) -> None:
    """Refuse (exit 3) when a table that stays references one that would be dropped.

    Dropping it would leave that table pointing at nothing (MySQL/MariaDB with its checks off,
    SQLite), or fail half-way; so nothing is dropped and the referencing table is named. On
    PostgreSQL and MySQL/MariaDB the server's catalog is asked, across every schema and
    database it shows this account (``pg_constraint``; ``information_schema``); SQLite has
    one database, which SQLAlchemy's inspector reads.
    """
    targets = set(plan.tables)
    if not targets:
        return
    dialect = connection.dialect.name
    if dialect == "postgresql":
        found = _references_postgresql(connection, targets)
    elif dialect in ("mysql", "mariadb"):
        found = _references_mysql(connection, targets)
    else:
        found = _references_inspected(connection, targets)
    if found:
        table, referred, constraint = found[0]
        more = f" (and {len(found) - 1} more foreign key(s))" if len(found) > 1 else ""
        raise Refused(
            f"drop-tables refused: table {table} references {referred} (foreign key "
            f"{constraint}) and is not being dropped{more}; nothing was dropped",
            hint=f"drop {table} too, or remove its foreign key first",
        )


#: A foreign key into a dropped table: (referencing table, referenced table, constraint).
Reference = tuple[str, str, str]


def _references_postgresql(connection: Connection, targets: set[str]) -> list[Reference]:
    """Foreign keys from tables outside ``targets``, in any schema, into ``targets``."""
    from sqlalchemy import bindparam, text

    default = connection.exec_driver_sql("SELECT current_schema()").scalar() or "public"
    wanted = {_split_qualified(t, default): t for t in targets}
    query = text(
        "SELECT rn.nspname, r.relname, tn.nspname, t.relname, c.conname "
        "FROM pg_constraint c "
        "JOIN pg_class r ON r.oid = c.conrelid "
        "JOIN pg_namespace rn ON rn.oid = r.relnamespace "
        "JOIN pg_class t ON t.oid = c.confrelid "
        "JOIN pg_namespace tn ON tn.oid = t.relnamespace "
        "WHERE c.contype = 'f' AND t.relname IN :names "
        "ORDER BY rn.nspname, r.relname, c.conname"
    ).bindparams(bindparam("names", expanding=True))
    rows = connection.execute(query, {"names": sorted({n for _, n in wanted})}).all()
    return _outside(rows, wanted, default)


def _references_mysql(connection: Connection, targets: set[str]) -> list[Reference]:
    """Foreign keys from tables outside ``targets``, in any database, into ``targets``."""
    from sqlalchemy import bindparam, text

    default = connection.exec_driver_sql("SELECT DATABASE()").scalar() or ""
    wanted = {_split_qualified(t, default): t for t in targets}
    query = text(
        "SELECT DISTINCT k.TABLE_SCHEMA, k.TABLE_NAME, k.REFERENCED_TABLE_SCHEMA, "
        "k.REFERENCED_TABLE_NAME, k.CONSTRAINT_NAME "
        "FROM information_schema.KEY_COLUMN_USAGE k "
        "WHERE k.REFERENCED_TABLE_SCHEMA IN :schemas AND k.REFERENCED_TABLE_NAME IN :names "
        "ORDER BY k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME"
    ).bindparams(bindparam("schemas", expanding=True), bindparam("names", expanding=True))
    params = {
        "schemas": sorted({schema for schema, _ in wanted}),
        "names": sorted({name for _, name in wanted}),
    }
    return _outside(connection.execute(query, params).all(), wanted, default)


def _split_qualified(qualified: str, default: str) -> tuple[str, str]:
    schema, _, name = qualified.rpartition(".")
    return (schema or default, name)


def _outside(
    rows: Iterable[Any], wanted: dict[tuple[str, str], str], default: str
) -> list[Reference]:
    """The catalog's ``(schema, table, referred schema, referred table, constraint)`` rows
    whose referenced table is dropped and whose referencing table is not."""
    found: list[Reference] = []
    for schema, table, referred_schema, referred_table, constraint in rows:
        referred = wanted.get((referred_schema, referred_table))
        if referred is None or (schema, table) in wanted:
            continue
        name = table if schema == default else f"{schema}.{table}"
        found.append((name, referred, constraint or "(unnamed)"))
    return found


def _references_inspected(connection: Connection, targets: set[str]) -> list[Reference]:
    """Foreign keys into ``targets`` from the other tables of their schemas (SQLite)."""
    inspector = inspect(connection)
    schemas = sorted({t.rpartition(".")[0] or None for t in targets}, key=lambda s: s or "")
    found: list[Reference] = []
    for schema in schemas:
        for name in inspector.get_table_names(schema):
            table = _qualified(schema, name)
            if table in targets:
                continue
            for fk in inspector.get_foreign_keys(name, schema):
                referred_schema = fk.get("referred_schema")
                if referred_schema == connection.dialect.default_schema_name:
                    referred_schema = None
                referred = _qualified(referred_schema or schema, fk["referred_table"])
                if referred in targets:
                    found.append((table, referred, fk.get("name") or "(unnamed)"))
    return found


def _table(qualified: str) -> Table:
    schema, _, name = qualified.rpartition(".")
    return Table(name, MetaData(), schema=schema or None)


def drop_tables_sync(
    connection: Connection,
    metadata: MetaData | None,
    guard: ProductionGuard,
    dry_run: bool = False,
    confirm: Callable[[DropPlan], None] | None = None,
    *,
    command: str = "drop-tables",
) -> DropReport:
    """:func:`drop_tables` on a synchronous connection; the caller commits or rolls back.

    ``command`` names the guarded command (``migrate reset`` drops through here too).
    """
    guard.check(connection, command, Change.DESTRUCTIVE)
    plan = _plan(connection, metadata)
    _refuse_dangling_references(connection, plan)
    if dry_run or not plan.tables:
        return DropReport(plan, dry_run)
    if confirm is not None:
        confirm(plan)
    dialect = connection.dialect.name
    preparer = connection.dialect.identifier_preparer
    mysql = dialect in ("mysql", "mariadb")
    if mysql:
        # MySQL/MariaDB: checks off on this connection only, for tables referencing each
        # other; DDL commits itself there, so the drop is not all or nothing.
        connection.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
    elif dialect == "sqlite":
        # Foreign keys (if enforced) are checked at COMMIT, when every table is gone.
        connection.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
    dropped: list[str] = []
    types_dropped: list[str] = []
    types_kept: list[str] = []
    step = ""
    try:
        if dialect == "postgresql":
            for table, name in plan.constraints:
                step = f"dropping foreign key {name} of {table}"
                connection.exec_driver_sql(
                    f"ALTER TABLE {preparer.format_table(_table(table))} "
                    f"DROP CONSTRAINT {preparer.quote(name)}"
                )
        for name in plan.tables:
            step = f"dropping table {name}"
            connection.execute(DropTable(_table(name)))
            dropped.append(name)
        if metadata is not None and dialect == "postgresql":
            types_dropped, types_kept = _drop_enum_types(connection, metadata)
    except SQLAlchemyError as exc:
        if classify_connect_error(exc, connection.engine.url) is not None:
            raise
        detail, server_hint = describe_server_error(exc)
        if plan.transactional:
            hint = "nothing was dropped: the transaction was rolled back"
        else:
            done = ", ".join(dropped) or "none"
            hint = f"{dialect} does not roll back DDL: already dropped: {done}"
        hint = f"{server_hint}; {hint}" if server_hint else hint
        raise OperationFailed(
            redact(f"drop-tables failed {step}: {detail}"), hint=redact(hint)
        ) from exc
    finally:
        if mysql:
            with suppress(SQLAlchemyError):
                connection.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")
    return DropReport(plan, False, dropped, types_dropped, types_kept)


def _drop_enum_types(connection: Connection, metadata: MetaData) -> tuple[list[str], list[str]]:
    """Drop the metadata's named enum types; one still used by another table is kept."""
    preparer = connection.dialect.identifier_preparer
    dropped: list[str] = []
    kept: list[str] = []
    existing = _existing_enum_types(connection)
    for kind in _named_enum_types(metadata):
        if (kind.schema, kind.name) not in existing:
            continue
        savepoint = connection.begin_nested()
        try:
            quoted = preparer.quote(kind.name)
            if kind.schema:
                quoted = f"{preparer.quote_schema(kind.schema)}.{quoted}"
            connection.exec_driver_sql(f"DROP TYPE {quoted}")
        except SQLAlchemyError:
            savepoint.rollback()  # still in use by a table that stays
            kept.append(_type_label(kind))
        else:
            savepoint.commit()
            dropped.append(_type_label(kind))
    return dropped, kept
