"""PostgreSQL rules: locks that block reads and writes, and statements that rewrite a table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from myfy_db.migrations.lint.model import CapturedOp, RangeState, Severity, norm
from myfy_db.migrations.lint.registry import POSTGRESQL, rule
from myfy_db.migrations.lint.rules._ops import (
    dialect_kw,
    existing_type_change,
    kind,
    split_type,
    table_of,
)

AUTOCOMMIT = "inside `with op.get_context().autocommit_block():`"


def _concurrently(captured: CapturedOp) -> bool:
    if captured.raw is not None:
        return bool(captured.raw.concurrently)
    return bool(dialect_kw(captured, "postgresql_concurrently"))


@rule(
    "PG001",
    "create-index-blocking",
    severity=Severity.ERROR,
    dialects=POSTGRESQL,
    summary="CREATE INDEX without CONCURRENTLY on an existing table",
    breaks="a plain CREATE INDEX holds a SHARE lock for the whole build: every INSERT, UPDATE "
    "and DELETE on the table waits until the index is built (minutes on a big table)",
    safe="op.create_index(..., postgresql_concurrently=True) " + AUTOCOMMIT,
)
def create_index_blocking(captured: CapturedOp, state: RangeState) -> str | None:
    if kind(captured) not in ("CreateIndexOp", "raw:create_index") or _concurrently(captured):
        return None
    table = table_of(captured)
    if not state.existing(table):
        return None
    return f"builds an index on existing table {table} without CONCURRENTLY"


@rule(
    "PG002",
    "drop-index-blocking",
    severity=Severity.WARNING,
    dialects=POSTGRESQL,
    summary="DROP INDEX without CONCURRENTLY",
    breaks="DROP INDEX takes an ACCESS EXCLUSIVE lock on the index's table; while it waits for "
    "a running transaction, every query on the table queues behind it",
    safe="op.drop_index(..., postgresql_concurrently=True) " + AUTOCOMMIT,
)
def drop_index_blocking(captured: CapturedOp, state: RangeState) -> str | None:
    if kind(captured) not in ("DropIndexOp", "raw:drop_index") or _concurrently(captured):
        return None
    table = table_of(captured)
    if table is not None and not state.existing(table):
        return None
    name = captured.raw.name if captured.raw is not None else captured.operation.index_name
    return f"drops index {name} without CONCURRENTLY"


@rule(
    "PG003",
    "add-not-null-column-without-default",
    severity=Severity.ERROR,
    dialects=POSTGRESQL,
    summary="ADD COLUMN ... NOT NULL without a default on an existing table",
    breaks="the ALTER fails as soon as the table has a row, and the deploy stops half-way; "
    "code that inserts without the column fails too",
    safe="add the column nullable (or with a constant server_default), backfill in batches, "
    "then make it NOT NULL the safe way (see PG007)",
)
def add_not_null_without_default(captured: CapturedOp, state: RangeState) -> str | None:
    if kind(captured) != "AddColumnOp":
        return None
    column = captured.operation.column
    table = table_of(captured)
    if column.nullable or column.server_default is not None or not state.existing(table):
        return None
    if column.primary_key or column.identity is not None:
        return None
    return f"adds NOT NULL column {table}.{column.name} with no server default"


#: Functions PostgreSQL marks VOLATILE that defaults call (pg_proc.provolatile = 'v').
_VOLATILE = frozenset(
    {"random", "clock_timestamp", "timeofday", "gen_random_uuid", "nextval"}
    | {"uuid_generate_v1", "uuid_generate_v1mc", "uuid_generate_v4"}
)
#: The transaction's own time, the same for every row (STABLE functions and SQL's
#: CURRENT_* keywords).
_STABLE_TIME = frozenset(
    {"now", "statement_timestamp", "transaction_timestamp"}
    | {"current_timestamp", "current_date", "current_time", "localtimestamp", "localtime"}
)
_SERIAL_TYPES = frozenset({"serial", "bigserial", "smallserial", "serial2", "serial4", "serial8"})


@dataclass(frozen=True)
class _NewColumn:
    """What PostgreSQL's parser reads in a new column's rendered ``ADD COLUMN``."""

    #: The functions its default calls, lowercase; CURRENT_TIMESTAMP and the like by name.
    calls: tuple[str, ...]
    #: A serial type or an identity: filled from a sequence.
    from_sequence: bool


def _new_column(captured: CapturedOp) -> _NewColumn:
    from pglast import ast, parse_sql
    from pglast.visitors import Visitor

    calls: list[str] = []
    sequence = [captured.operation.column.identity is not None]

    class Reader(Visitor):
        def visit_FuncCall(self, _ancestors: Any, node: ast.FuncCall) -> None:
            calls.append(str((node.funcname or ())[-1].sval).lower())

        def visit_SQLValueFunction(self, _ancestors: Any, node: ast.SQLValueFunction) -> None:
            if node.op is not None:
                calls.append(node.op.name.removeprefix("SVFOP_").removesuffix("_N").lower())

        def visit_ColumnDef(self, _ancestors: Any, node: ast.ColumnDef) -> None:
            written = node.typeName.names if node.typeName else None
            names = [str(n.sval).lower() for n in written or ()]
            kinds = [c.contype.name for c in node.constraints or ()]
            if (names and names[-1] in _SERIAL_TYPES) or "CONSTR_IDENTITY" in kinds:
                sequence[0] = True

    for statement in captured.sql:
        try:
            Reader()(parse_sql(statement))
        except Exception:  # not PostgreSQL's grammar: nothing is known from it
            continue
    return _NewColumn(tuple(calls), sequence[0])


@rule(
    "PG004",
    "volatile-default",
    severity=Severity.ERROR,
    dialects=POSTGRESQL,
    summary="a volatile default (random(), gen_random_uuid(), a sequence) on a new column",
    breaks="a volatile default is computed for every existing row: the whole table is "
    "rewritten under an ACCESS EXCLUSIVE lock, blocking all reads and writes",
    safe="add the column without a default, set the default in a second step "
    "(op.alter_column(server_default=...)), then backfill existing rows in batches",
)
def volatile_default(captured: CapturedOp, state: RangeState) -> str | None:
    if kind(captured) != "AddColumnOp" or not state.existing(table_of(captured)):
        return None
    column = captured.operation.column
    read = _new_column(captured)
    if read.from_sequence:
        return f"adds {column.name} filled from a sequence (serial or identity)"
    volatile = [name for name in read.calls if name in _VOLATILE]
    if not volatile:
        return None
    return f"adds {column.name} with volatile default {volatile[0]}()"


@rule(
    "PG005",
    "time-default-on-new-column",
    severity=Severity.WARNING,
    dialects=POSTGRESQL,
    summary="now() / CURRENT_TIMESTAMP default on a new column of an existing table",
    breaks="every existing row gets the migration's timestamp, not its own creation time "
    "(and before PostgreSQL 11 the table is rewritten under an ACCESS EXCLUSIVE lock)",
    safe="add the column nullable without a default, set server_default=sa.func.now() in a "
    "second alter_column, and backfill old rows from a real source",
)
def time_default(captured: CapturedOp, state: RangeState) -> str | None:
    if kind(captured) != "AddColumnOp" or not state.existing(table_of(captured)):
        return None
    read = _new_column(captured)
    if read.from_sequence or any(name in _VOLATILE for name in read.calls):
        return None
    times = [name for name in read.calls if name in _STABLE_TIME]
    if not times:
        return None
    return f"adds {captured.operation.column.name} with default {times[0]}"


#: Spellings PostgreSQL reads as one type (``FLOAT(53)`` is ``DOUBLE PRECISION``).
_SAME_TYPE = {
    "FLOAT8": "DOUBLE PRECISION",
    "DOUBLE": "DOUBLE PRECISION",
    "FLOAT4": "REAL",
    "INT": "INTEGER",
    "INT4": "INTEGER",
    "INT8": "BIGINT",
    "INT2": "SMALLINT",
    "DECIMAL": "NUMERIC",
    "CHARACTER VARYING": "VARCHAR",
    "BOOL": "BOOLEAN",
    "TIMESTAMP": "TIMESTAMP WITHOUT TIME ZONE",
    "TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE",
}


def _canonical(compiled: str) -> str:
    """``compiled`` in the one spelling PostgreSQL stores it under."""
    base, args, rest = split_type(compiled)
    base = " ".join(base.upper().split())
    if base == "FLOAT":  # FLOAT(p): REAL up to 24 bits of precision, else DOUBLE PRECISION
        return "REAL" if args and args[0] <= 24 else "DOUBLE PRECISION"
    base = _SAME_TYPE.get(base, base)
    sized = f"{base}({', '.join(str(a) for a in args)})" if args else base
    return f"{sized} {rest}".strip()


def _rewrites(old: str | None, new: str | None) -> bool:
    """True unless the change is one PostgreSQL makes without rewriting the table."""
    if old is None or new is None:
        return True
    old, new = _canonical(old), _canonical(new)
    if old == new:
        return False
    old_base, old_args, _ = split_type(old)
    new_base, new_args, _ = split_type(new)
    texts = {"VARCHAR", "CHARACTER VARYING", "TEXT"}
    if old_base in texts and new_base in texts:
        if new_base == "TEXT" or not new_args:
            return False  # to TEXT or unbounded VARCHAR: binary coercible
        if old_base == "TEXT" or not old_args:
            return True  # bounding an unbounded column checks every row
        return new_args[0] < old_args[0]
    if old_base in ("NUMERIC", "DECIMAL") and new_base in ("NUMERIC", "DECIMAL"):
        if not new_args:
            return False
        if len(old_args) == len(new_args) == 2:
            return not (new_args[1] == old_args[1] and new_args[0] >= old_args[0])
        return True
    return True


@rule(
    "PG006",
    "column-type-rewrite",
    severity=Severity.ERROR,
    dialects=POSTGRESQL,
    summary="ALTER COLUMN ... TYPE that rewrites the table",
    breaks="the table and all its indexes are rewritten under an ACCESS EXCLUSIVE lock: no "
    "read or write gets through until it ends",
    safe="add a new column of the new type, backfill it in batches, switch the code over, "
    "then drop the old column (only widening VARCHAR/NUMERIC or VARCHAR to TEXT is free)",
)
def column_type_rewrite(captured: CapturedOp, state: RangeState) -> str | None:
    change = existing_type_change(captured, state, "postgresql")
    if change is None or not _rewrites(change.old, change.new):
        return None
    return change.describe()


@rule(
    "PG007",
    "set-not-null-scan",
    severity=Severity.ERROR,
    dialects=POSTGRESQL,
    summary="SET NOT NULL on an existing column",
    breaks="SET NOT NULL scans the whole table to check it under an ACCESS EXCLUSIVE lock, "
    "blocking every read and write for the length of the scan",
    safe="op.create_check_constraint(name, table, 'col IS NOT NULL', postgresql_not_valid=True); "
    "op.execute('ALTER TABLE t VALIDATE CONSTRAINT name'); then alter_column(nullable=False) "
    "(PostgreSQL 12+ uses the check and skips the scan; drop the check afterwards)",
)
def set_not_null(captured: CapturedOp, state: RangeState) -> str | None:
    operation = captured.operation
    if kind(captured) != "AlterColumnOp" or operation.modify_nullable is not False:
        return None
    table = table_of(captured)
    column = operation.column_name
    if not state.existing(table) or state.new_column(table, column):
        return None
    if (norm(table), norm(column)) in state.validated_checks:
        return None
    return f"sets {table}.{column} NOT NULL with no validated IS NOT NULL check"


def _not_valid(captured: CapturedOp) -> bool:
    return bool(dialect_kw(captured, "postgresql_not_valid")) or (
        "NOT VALID" in captured.rendered.upper()
    )


@rule(
    "PG008",
    "constraint-validated-under-lock",
    severity=Severity.ERROR,
    dialects=POSTGRESQL,
    summary="ADD FOREIGN KEY / ADD CHECK without NOT VALID",
    breaks="adding the constraint checks every existing row while holding a lock that blocks "
    "writes (for a foreign key, on both tables) for the whole scan",
    safe="create it with postgresql_not_valid=True, then "
    "op.execute('ALTER TABLE t VALIDATE CONSTRAINT name') (which lets writes through)",
)
def constraint_without_not_valid(captured: CapturedOp, state: RangeState) -> str | None:
    current = kind(captured)
    table = table_of(captured)
    if current == "AddColumnOp" and state.existing(table):
        column = captured.operation.column
        if column.foreign_keys and "NOT VALID" not in captured.rendered.upper():
            return f"adds column {table}.{column.name} with a foreign key validating every row"
        return None
    if current == "AlterColumnOp" and state.existing(table):
        new = captured.operation.modify_type
        if getattr(new, "create_constraint", False) and not getattr(new, "native_enum", True):
            return (
                f"changes {table}.{captured.operation.column_name} to a non-native enum whose "
                "CHECK constraint validates every row"
            )
        return None
    if current not in ("CreateForeignKeyOp", "CreateCheckConstraintOp"):
        return None
    table = table_of(captured)
    if not state.existing(table) or _not_valid(captured):
        return None
    what = "foreign key" if kind(captured) == "CreateForeignKeyOp" else "check constraint"
    name = captured.operation.constraint_name or "(unnamed)"
    return f"adds {what} {name} on {table} validating every row"


@rule(
    "PG009",
    "unique-or-primary-key-without-index",
    severity=Severity.ERROR,
    dialects=POSTGRESQL,
    summary="ADD UNIQUE / PRIMARY KEY without an index built concurrently first",
    breaks="the constraint builds its index under an ACCESS EXCLUSIVE lock: no read or write "
    "on the table until the index is built",
    safe="op.create_index(name, table, cols, unique=True, postgresql_concurrently=True) "
    + AUTOCOMMIT
    + ", then op.execute('ALTER TABLE t ADD CONSTRAINT c UNIQUE USING INDEX name')",
)
def unique_without_index(captured: CapturedOp, state: RangeState) -> str | None:
    current = kind(captured)
    table = table_of(captured)
    if not state.existing(table):
        return None
    if current == "AddColumnOp":
        column = captured.operation.column
        if column.unique or column.primary_key:
            return f"adds column {table}.{column.name} with a unique index built under lock"
        return None
    if current == "CreateExcludeConstraintOp":
        return f"adds an exclusion constraint on {table}, building its index under lock"
    if current not in ("CreateUniqueConstraintOp", "CreatePrimaryKeyOp"):
        return None
    what = "primary key" if current == "CreatePrimaryKeyOp" else "unique constraint"
    return f"adds a {what} on {table}, building its index under lock"


@rule(
    "PG010",
    "concurrently-in-transaction",
    severity=Severity.ERROR,
    dialects=POSTGRESQL,
    summary="CREATE / DROP INDEX CONCURRENTLY inside a transaction",
    breaks="PostgreSQL refuses CONCURRENTLY inside a transaction block: the revision fails "
    "in the middle of the deploy",
    safe="run it " + AUTOCOMMIT,
)
def concurrently_in_transaction(captured: CapturedOp, state: RangeState) -> str | None:
    if kind(captured) not in ("CreateIndexOp", "DropIndexOp", "raw:create_index", "raw:drop_index"):
        return None
    if not _concurrently(captured) or not captured.in_transaction:
        return None
    return "runs an index operation CONCURRENTLY inside the revision's transaction"


@rule(
    "PG011",
    "stored-generated-column",
    severity=Severity.ERROR,
    dialects=POSTGRESQL,
    summary="adding a stored generated column (sa.Computed) to an existing table",
    breaks="PostgreSQL computes the column for every row while it rewrites the table under an "
    "ACCESS EXCLUSIVE lock: no read or write gets through until it ends",
    safe="add a plain nullable column, fill it in batches (and keep it current with a "
    "trigger or the application), or compute the value in a view or the query",
)
def stored_generated_column(captured: CapturedOp, state: RangeState) -> str | None:
    if kind(captured) != "AddColumnOp" or not state.existing(table_of(captured)):
        return None
    column = captured.operation.column
    if column.computed is None:
        return None
    return f"adds stored generated column {table_of(captured)}.{column.name}"


#: PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes.
_MAX_IDENTIFIER_BYTES = 63


def _names(captured: CapturedOp) -> list[str]:
    operation = captured.operation
    names = [
        getattr(operation, attr, None)
        for attr in ("index_name", "constraint_name", "table_name", "new_table_name")
    ]
    column = getattr(operation, "column", None)
    names.append(getattr(column, "name", None))
    names += [getattr(c, "name", None) for c in getattr(operation, "columns", ()) or ()]
    names.append(getattr(operation, "modify_name", None))
    if captured.raw is not None:
        names += [captured.raw.name, captured.raw.table, *captured.raw.long_names]
    return [str(n) for n in names if isinstance(n, str) and n]


@rule(
    "PG012",
    "identifier-too-long",
    severity=Severity.ERROR,
    dialects=POSTGRESQL,
    summary="a name longer than 63 bytes",
    breaks="PostgreSQL silently truncates it to 63 bytes: two long names can collide, and "
    "code or a later revision that uses the full name does not find the object",
    safe="name it in 63 bytes or fewer (a naming convention in the metadata keeps generated "
    "constraint and index names short)",
)
def identifier_too_long(captured: CapturedOp, state: RangeState) -> str | None:
    for name in _names(captured):
        size = len(name.encode())
        if size > _MAX_IDENTIFIER_BYTES:
            return f"names {name!r}: {size} bytes, truncated by the server to 63"
    return None


@rule(
    "PG013",
    "concurrent-index-not-idempotent",
    severity=Severity.WARNING,
    dialects=POSTGRESQL,
    summary="CREATE INDEX CONCURRENTLY without IF NOT EXISTS",
    breaks="a concurrent build that fails (a deadlock, a duplicate) leaves an INVALID index "
    "behind; the revision's re-run then fails on the name that already exists",
    safe="op.create_index(..., postgresql_concurrently=True, if_not_exists=True), and drop an "
    "INVALID index left by a failed build before retrying",
)
def concurrent_index_not_idempotent(captured: CapturedOp, state: RangeState) -> str | None:
    current = kind(captured)
    if current == "raw:create_index":
        if captured.raw.concurrently and not captured.raw.if_exists:
            return f"builds {captured.raw.name or 'an index'} CONCURRENTLY without IF NOT EXISTS"
        return None
    if current != "CreateIndexOp" or not _concurrently(captured):
        return None
    if getattr(captured.operation, "if_not_exists", None):
        return None
    return f"builds {captured.operation.index_name} CONCURRENTLY without if_not_exists=True"
