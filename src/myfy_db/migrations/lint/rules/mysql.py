"""MySQL / MariaDB rules: ALTER TABLE forms that copy the table instead of running online."""

from __future__ import annotations

from myfy_db.migrations.lint.model import CapturedOp, RangeState, Severity
from myfy_db.migrations.lint.registry import MYSQL, rule
from myfy_db.migrations.lint.rules._ops import (
    dialect_kw,
    existing_type_change,
    kind,
    split_type,
    table_of,
)

#: utf8mb4: up to 4 bytes a character; VARCHAR keeps a 1-byte length up to 255 bytes.
_BYTES_PER_CHAR = 4


def _inplace_type_change(old: str | None, new: str | None) -> bool:
    """True for the one type change InnoDB makes in place: widening a VARCHAR while its
    length prefix stays the same size (both under, or both over, 256 bytes)."""
    if old is None or new is None:
        return False
    old_base, old_args, old_rest = split_type(old)
    new_base, new_args, new_rest = split_type(new)
    if old_base != "VARCHAR" or new_base != "VARCHAR" or old_rest != new_rest:
        return old == new
    if not old_args or not new_args or new_args[0] < old_args[0]:
        return False
    small = old_args[0] * _BYTES_PER_CHAR < 256
    return small == (new_args[0] * _BYTES_PER_CHAR < 256)


@rule(
    "MY001",
    "column-type-copy",
    severity=Severity.ERROR,
    dialects=MYSQL,
    summary="column type change (MODIFY) that cannot run INSTANT or INPLACE",
    breaks="the table is copied row by row (ALGORITHM=COPY): writes are blocked for the whole "
    "copy, and the copy needs as much free disk as the table",
    safe="add a new column, backfill it in batches, switch the code, drop the old one; or run "
    "the change with an online schema-change tool (gh-ost, pt-online-schema-change)",
)
def column_type_copy(captured: CapturedOp, state: RangeState) -> str | None:
    change = existing_type_change(captured, state, "mysql")
    if change is None or _inplace_type_change(change.old, change.new):
        return None
    return change.describe()


@rule(
    "MY002",
    "primary-key-change",
    severity=Severity.ERROR,
    dialects=MYSQL,
    summary="adding or dropping a primary key on an existing table",
    breaks="InnoDB stores rows in primary-key order: changing the key rebuilds the whole table "
    "(dropping it without adding one in the same statement is a COPY that blocks writes)",
    safe="choose the primary key when the table is created; for a big live table use an "
    "online schema-change tool",
)
def primary_key_change(captured: CapturedOp, state: RangeState) -> str | None:
    current = kind(captured)
    if current == "CreatePrimaryKeyOp":
        verb = "adds"
    elif current == "DropConstraintOp" and captured.operation.constraint_type == "primary":
        verb = "drops"
    else:
        return None
    table = table_of(captured)
    if not state.existing(table):
        return None
    return f"{verb} the primary key of {table}"


@rule(
    "MY003",
    "charset-conversion",
    severity=Severity.ERROR,
    dialects=MYSQL,
    summary="CONVERT TO CHARACTER SET on an existing table",
    breaks="converting the table's character set copies every row (ALGORITHM=COPY), blocking "
    "writes for the whole copy",
    safe="create the table with the right character set; for a live table use an online "
    "schema-change tool, or convert column by column during a quiet window",
)
def charset_conversion(captured: CapturedOp, state: RangeState) -> str | None:
    if kind(captured) != "raw:charset" or not state.existing(table_of(captured)):
        return None
    return f"converts the character set of {table_of(captured)}"


def _fulltext(captured: CapturedOp) -> bool:
    if captured.raw is not None:
        return bool(captured.raw.fulltext)
    prefix = dialect_kw(captured, "mysql_prefix") or dialect_kw(captured, "mariadb_prefix")
    return str(prefix or "").upper() == "FULLTEXT" or "FULLTEXT" in captured.rendered.upper()


@rule(
    "MY004",
    "fulltext-index",
    severity=Severity.ERROR,
    dialects=MYSQL,
    summary="adding a FULLTEXT index to an existing table",
    breaks="a FULLTEXT index cannot be built with LOCK=NONE: writes to the table are blocked "
    "while it builds, and the first one rebuilds the whole table to add FTS_DOC_ID",
    safe="declare the FULLTEXT index when the table is created; on a live table build it with "
    "an online schema-change tool",
)
def fulltext_index(captured: CapturedOp, state: RangeState) -> str | None:
    if kind(captured) not in ("CreateIndexOp", "raw:create_index") or not _fulltext(captured):
        return None
    table = table_of(captured)
    if not state.existing(table):
        return None
    return f"adds a FULLTEXT index to {table}"


@rule(
    "MY005",
    "foreign-key-copy",
    severity=Severity.WARNING,
    dialects=MYSQL,
    summary="adding a foreign key to an existing table",
    breaks="with foreign_key_checks on, MySQL and MariaDB add it with ALGORITHM=COPY: the "
    "table is copied while writes are blocked (older servers always copy)",
    safe="SET foreign_key_checks = 0 around the ALTER so it runs INPLACE (the existing rows "
    "are not checked: verify them first), or use an online schema-change tool",
)
def foreign_key_copy(captured: CapturedOp, state: RangeState) -> str | None:
    if kind(captured) != "CreateForeignKeyOp" or not state.existing(table_of(captured)):
        return None
    name = captured.operation.constraint_name or "(unnamed)"
    return f"adds foreign key {name} on {table_of(captured)}"
