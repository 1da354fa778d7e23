"""What one side of a diff holds: a :class:`Snapshot` read from a database or the models.

A database is read with SQLAlchemy 2's bulk reflection (``MetaData.reflect``, which asks
the inspector's ``get_multi_*`` for every table of a schema at once: columns, primary keys,
foreign keys, indexes, unique and check constraints), plus what a table does not carry:
views (by name), PostgreSQL enums (values, in order) and sequences not owned by a column.
Nothing here writes; the caller holds the connection in a read-only transaction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import MetaData, Table, inspect, text

from myfy_db.migrations.environment import IGNORED_TABLES

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.engine import Dialect

_SERIAL = re.compile(r"""^nextval\('(?:"?[^'".]+"?\.)?"?([^'"]+)"?'::regclass\)$""")

#: PostgreSQL sequences that no column owns (a serial's own sequence comes with its table).
_PG_SEQUENCES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S' AND n.nspname = :schema AND NOT EXISTS (
  SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
  AND d.deptype IN ('a', 'i'))
ORDER BY c.relname
"""


@dataclass
class _Source:
    """Where a database table's reflection is: its schema, name and the bulk result."""

    schema: str | None
    name: str
    info: Any
    inspector: Any


@dataclass
class Snapshot:
    """One side's schema: its tables and what tables do not hold.

    A database's tables are read in bulk once; the SQLAlchemy ``Table`` of one is built from
    that only when it is needed (:meth:`table`), and :attr:`signatures` (the reflected
    facts of each table, as text) let two databases' identical tables be passed over
    without building either. ``views``, ``enums`` and ``sequences`` are keyed
    ``schema.name`` (``name`` in the default schema); ``database`` is False for the models.
    """

    label: str
    dialect: Dialect
    metadata: MetaData
    database: bool
    views: dict[str, str | None] = field(default_factory=dict)
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sequences: set[str] = field(default_factory=set)
    schemas: tuple[str | None, ...] = (None,)
    signatures: dict[str, str] = field(default_factory=dict)
    sources: dict[str, _Source] = field(default_factory=dict)

    @property
    def dialect_name(self) -> str:
        return str(self.dialect.name)

    def table_keys(self) -> set[str]:
        if self.database:
            return set(self.sources)
        return {
            key
            for key, table in self.metadata.tables.items()
            if table.schema in self.schemas and table.name not in IGNORED_TABLES
        }

    def table(self, key: str) -> Table:
        """The ``Table`` of ``key``, built from the bulk reflection on first use."""
        found = self.metadata.tables.get(key)
        if found is not None:
            return found
        source = self.sources[key]
        table = Table(
            source.name,
            self.metadata,
            schema=source.schema,
            autoload_with=source.inspector,
            resolve_fks=False,
            _reflect_info=source.info,
        )
        _normalise(table, self.dialect_name)
        return table


def qualified(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name


def reflect_database(connection: Connection, schemas: Sequence[str | None], label: str) -> Snapshot:
    """Read the schemas' tables (in bulk: ``get_multi_*``), views, enums and sequences."""
    from sqlalchemy.engine.reflection import ObjectKind, ObjectScope

    metadata = MetaData()
    inspector = inspect(connection)
    dialect = connection.dialect
    snapshot = Snapshot(label, dialect, metadata, True, schemas=tuple(schemas))
    database = connection.engine.url.database
    for schema in schemas:
        names = [n for n in inspector.get_table_names(schema=schema) if n not in IGNORED_TABLES]
        info = inspector._get_reflection_info(
            schema=schema,
            filter_names=names,
            available=names,
            kind=ObjectKind.TABLE,
            scope=ObjectScope.ANY,
        )
        for name in names:
            key = qualified(schema, name)
            at = (schema, name)
            snapshot.sources[key] = _Source(schema, name, info, inspector)
            snapshot.signatures[key] = repr(
                [
                    getattr(info, part).get(at)
                    for part in (
                        "columns",
                        "pk_constraint",
                        "foreign_keys",
                        "indexes",
                        "unique_constraints",
                        "check_constraints",
                    )
                ]
            )
        for view in inspector.get_view_names(schema=schema):
            key = qualified(schema, view)
            snapshot.views[key] = view_definition(connection, key, database)
        if dialect.name == "postgresql":
            own = schema or inspector.default_schema_name
            for enum in inspector.get_enums(schema=own):  # type: ignore[attr-defined]
                snapshot.enums[qualified(schema, enum["name"])] = tuple(enum["labels"])
            rows = connection.execute(text(_PG_SEQUENCES), {"schema": own})
            snapshot.sequences.update(qualified(schema, row[0]) for row in rows)
        elif dialect.name in ("mysql", "mariadb") and dialect.supports_sequences:
            for name in inspector.get_sequence_names(schema=schema):
                snapshot.sequences.add(qualified(schema, name))
    return snapshot


def view_definition(connection: Connection, key: str, database: str | None) -> str | None:
    """The ``SELECT`` of view ``key``, as the database stores it (for ``CREATE VIEW``)."""
    schema, _, name = key.rpartition(".")
    try:
        found = inspect(connection).get_view_definition(name, schema=schema or None)
    except Exception:  # no privilege to read it: compared by name all the same
        return None
    if not found:
        return None
    definition = str(found)
    definition = definition.strip().rstrip(";")
    # SQLite and MySQL give the whole CREATE VIEW statement: keep its SELECT.
    match = re.match(r"(?is)^create\s+.*?\bview\s+\S+\s+as\s+(.*)$", definition)
    definition = match.group(1) if match else definition
    if connection.dialect.name in ("mysql", "mariadb") and database:
        definition = definition.replace(f"`{database}`.", "")
    return definition


def snapshot_of_models(metadata: MetaData, dialect: Dialect, label: str) -> Snapshot:
    """The models' side: their own ``MetaData`` (never copied, never changed)."""
    schemas: set[str | None] = {t.schema for t in metadata.tables.values()}
    return Snapshot(label, dialect, metadata, False, schemas=tuple(sorted(schemas, key=str)))


def _normalise(table: Table, dialect: str) -> None:
    """What each database says in its own words, said one way.

    A PostgreSQL serial's ``nextval('t_id_seq'::regclass)`` default is the column's
    autoincrement (``CREATE TABLE`` makes the sequence again), and reflected enum types are
    created by the enum steps, never as a side effect of ``CREATE TABLE``.
    """
    if dialect != "postgresql":
        return
    for column in table.columns:
        default = column.server_default
        arg = getattr(default, "arg", None)
        rendered = getattr(arg, "text", arg)
        if isinstance(rendered, str):
            match = _SERIAL.match(rendered)
            if match and match.group(1) == f"{table.name}_{column.name}_seq":
                column.server_default = None
                column.autoincrement = True
        if hasattr(column.type, "create_type"):
            column.type.create_type = False


def dialect_for(url: Any) -> Dialect:
    """A dialect object for a URL's backend, to compile with (no connection)."""
    from sqlalchemy.engine import make_url

    return make_url(url).get_dialect()()
