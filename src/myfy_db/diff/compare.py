"""Two snapshots compared: the differences, and the Alembic operations that make TO equal
FROM.

Where Alembic's autogenerate decides that two things are equal, its decision is reused:
types go through the migration context's ``impl.compare_type`` (type affinity and
synonyms, per dialect) and server defaults through ``impl.compare_server_default`` (its
normalisation, and on PostgreSQL its comparison on the server), with the database side as
Alembic's "inspector" column. Constraints and indexes are compared in
:mod:`myfy_db.diff.constraints`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Column, Integer, SmallInteger, String, Text
from sqlalchemy.schema import Computed, Identity

from myfy_db.diff.constraints import compare_constraints
from myfy_db.diff.kinds import Difference, Plan, Step
from myfy_db.diff.reflect import Snapshot

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.engine import Dialect


def compare(from_snap: Snapshot, to_snap: Snapshot, impl: Any) -> Plan:
    """What differs between FROM and TO, and the steps that make TO equal FROM.

    ``impl`` is an Alembic ``DefaultImpl`` on the database side's connection (TO's, or
    FROM's when TO is the models); its decisions are the ones ``migrate check`` makes.
    """
    from alembic.operations import ops

    plan = Plan()
    both_databases = from_snap.database and to_snap.database
    if both_databases:
        _compare_types(plan, from_snap, to_snap)
        _compare_views(plan, from_snap, to_snap)
    from_keys, to_keys = from_snap.table_keys(), to_snap.table_keys()
    missing = [from_snap.table(key) for key in sorted(from_keys - to_keys)]
    for table in creation_order(missing):
        steps = [Step("create_tables", ops.CreateTableOp.from_table(table))]
        steps += [
            Step("indexes", ops.CreateIndexOp.from_index(index))
            for index in sorted(table.indexes, key=lambda i: str(i.name))
        ]
        plan.add(Difference("table_missing", table.key, table.name, "table", None), *steps)
    extra = [to_snap.table(key) for key in sorted(to_keys - from_keys)]
    for table in reversed(creation_order(extra)):  # a table before those it points at
        key = table.key
        plan.add(
            Difference("table_extra", key, table.name, None, "table"),
            Step("drop_tables", ops.DropTableOp.from_table(table), f"drops table {key}"),
        )
    context = _Context(from_snap, to_snap, impl)
    for key in sorted(from_keys & to_keys):
        if context.both_databases and context.same_dialect:
            signature = from_snap.signatures.get(key)
            if signature is not None and signature == to_snap.signatures.get(key):
                continue  # reflected alike, fact for fact: nothing can differ
        from_t, to_t = from_snap.table(key), to_snap.table(key)
        _compare_columns(plan, context, from_t, to_t)
        compare_constraints(plan, context, from_t, to_t)
    return plan


def creation_order(tables: list[Table]) -> list[Table]:
    """``tables`` with each after the tables among them its foreign keys point at (a cycle
    is broken where it closes; the database then refuses, as it would the same revision)."""
    by_key = {t.key: t for t in tables}
    ordered: list[Table] = []
    state: dict[str, bool] = {}

    def visit(table: Table) -> None:
        if table.key in state:
            return
        state[table.key] = False
        for constraint in table.foreign_key_constraints:
            for element in constraint.elements:
                target = by_key.get(element.target_fullname.rsplit(".", 1)[0])
                if target is not None and target is not table:
                    visit(target)
        state[table.key] = True
        ordered.append(table)

    for table in tables:
        visit(table)
    return ordered


class _Context:
    """What the comparisons of one pair share: the sides, their dialects, Alembic's impl."""

    def __init__(self, from_snap: Snapshot, to_snap: Snapshot, impl: Any) -> None:
        self.from_snap = from_snap
        self.to_snap = to_snap
        self.impl = impl
        self.both_databases = from_snap.database and to_snap.database
        #: The side Alembic calls the inspector's (the database); the other is "metadata".
        self.to_is_inspector = to_snap.database
        self.dialect: Dialect = (to_snap if to_snap.database else from_snap).dialect
        self.same_dialect = from_snap.dialect_name == to_snap.dialect_name


def type_text(column: Column[Any], dialect: Dialect) -> str:
    try:
        return str(column.type.compile(dialect=dialect))
    except Exception:
        return repr(column.type)


def default_text(column: Column[Any], dialect: Dialect) -> str | None:
    """A column's server default as Alembic renders it for comparison (None: none)."""
    default = column.server_default
    if default is None or isinstance(default, (Computed, Identity)):
        return None
    arg = getattr(default, "arg", None)
    if isinstance(arg, str):
        return arg
    if arg is None:
        return None
    text = getattr(arg, "text", None)
    if isinstance(text, str):
        return text
    return str(arg.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def normalise_sql(sql: str | None) -> str:
    """SQL text compared loosely: case, quoting, spaces and parentheses do not count."""
    if sql is None:
        return ""
    return re.sub(r"[\s()\"`\[\]]", "", sql).lower()


def _compare_columns(plan: Plan, context: _Context, from_t: Table, to_t: Table) -> None:
    from alembic.operations import ops

    key = from_t.key
    from_cols = {c.name: c for c in from_t.columns}
    to_cols = {c.name: c for c in to_t.columns}
    for name, column in from_cols.items():
        if name not in to_cols:
            plan.add(
                Difference("column_missing", key, name, type_text(column, context.dialect), None),
                Step(
                    "columns",
                    ops.AddColumnOp.from_column_and_tablename(
                        from_t.schema, from_t.name, bare_column(column)
                    ),
                ),
            )
    for name, column in to_cols.items():
        if name not in from_cols:
            plan.add(
                Difference("column_extra", key, name, None, type_text(column, context.dialect)),
                Step(
                    "drop_columns",
                    ops.DropColumnOp.from_column_and_tablename(to_t.schema, to_t.name, column),
                    f"drops column {key}.{name}",
                ),
            )
    for name, from_col in from_cols.items():
        if name in to_cols:
            _compare_column(plan, context, from_col, to_cols[name])


def _compare_column(
    plan: Plan, context: _Context, from_col: Column[Any], to_col: Column[Any]
) -> None:
    from alembic.operations import ops

    table = to_col.table
    key, name, dialect = table.key, to_col.name, context.dialect
    alter: dict[str, Any] = {}
    destroys: list[str] = []
    found: list[Difference] = []
    if _computed_differs(context, from_col, to_col):
        found.append(
            Difference(
                "column_computed", key, name, _computed_text(from_col), _computed_text(to_col)
            )
        )
        plan.add(
            found[-1],
            Step(
                "drop_columns",
                ops.DropColumnOp.from_column_and_tablename(table.schema, table.name, to_col),
                f"drops column {key}.{name} to add it again",
            ),
            Step(
                "drop_columns",
                ops.AddColumnOp.from_column_and_tablename(
                    table.schema, table.name, bare_column(from_col)
                ),
            ),
        )
        return
    if _types_differ(context, from_col, to_col):
        from_type, to_type = type_text(from_col, dialect), type_text(to_col, dialect)
        found.append(Difference("column_type", key, name, from_type, to_type))
        alter["modify_type"] = from_col.type
        if not _widens(to_col.type, from_col.type):
            destroys.append(f"changes the type of {key}.{name} from {to_type} to {from_type}")
    elif context.both_databases and _collation(from_col) != _collation(to_col):
        found.append(
            Difference("column_collation", key, name, _collation(from_col), _collation(to_col))
        )
        alter["modify_type"] = from_col.type
    if bool(from_col.nullable) != bool(to_col.nullable) and not (
        from_col.primary_key and to_col.primary_key
    ):
        nullable = {True: "NULL", False: "NOT NULL"}
        found.append(
            Difference(
                "column_nullable",
                key,
                name,
                nullable[bool(from_col.nullable)],
                nullable[bool(to_col.nullable)],
            )
        )
        alter["modify_nullable"] = bool(from_col.nullable)
    if _defaults_differ(context, from_col, to_col):
        found.append(
            Difference(
                "column_default",
                key,
                name,
                default_text(from_col, context.from_snap.dialect),
                default_text(to_col, context.to_snap.dialect),
            )
        )
        alter["modify_server_default"] = _copy_default(from_col)
    identity = _identity_text(context, from_col), _identity_text(context, to_col)
    if identity[0] != identity[1]:
        found.append(Difference("column_identity", key, name, identity[0], identity[1]))
        if from_col.identity is not None or to_col.identity is not None:
            alter["modify_server_default"] = (
                None if from_col.identity is None else _copy_identity(from_col.identity)
            )
        else:
            plan.steps.append(
                Step(
                    "columns",
                    manual=f"{key}.{name}: autoincrement {identity[0]} in FROM, "
                    f"{identity[1]} in TO (change it by hand)",
                )
            )
    if not found:
        return
    step = None
    if alter:
        existing_default = to_col.identity if to_col.identity is not None else _copy_default(to_col)
        op = ops.AlterColumnOp(
            table.name,
            name,
            schema=table.schema,
            existing_type=to_col.type,
            existing_nullable=bool(to_col.nullable),
            existing_server_default=existing_default or False,
            **alter,
        )
        step = Step("columns", op, "; ".join(destroys) or None)
    plan.add(found[0], *([step] if step else []))
    for difference in found[1:]:
        plan.add(difference)


def bare_column(column: Column[Any]) -> Column[Any]:
    """A copy of ``column`` without its foreign keys (those are steps of their own)."""
    args: list[Any] = []
    if column.computed is not None:
        args.append(Computed(column.computed.sqltext, persisted=column.computed.persisted))
    elif column.identity is not None:
        args.append(_copy_identity(column.identity))
    return Column(
        column.name,
        column.type,
        *args,
        nullable=column.nullable,
        server_default=_copy_default(column),
        autoincrement=column.autoincrement,
    )


def _copy_default(column: Column[Any]) -> Any:
    from sqlalchemy.schema import DefaultClause

    default = column.server_default
    if default is None or isinstance(default, (Computed, Identity)):
        return None
    return DefaultClause(default.arg)  # type: ignore[attr-defined]


def _copy_identity(identity: Identity) -> Identity:
    return Identity(
        always=identity.always,
        on_null=identity.on_null,
        start=identity.start,
        increment=identity.increment,
    )


def _types_differ(context: _Context, from_col: Column[Any], to_col: Column[Any]) -> bool:
    inspector, metadata = (to_col, from_col) if context.to_is_inspector else (from_col, to_col)
    try:
        return bool(context.impl.compare_type(inspector, metadata))
    except Exception:  # a type the other dialect cannot compile: compare the spelling
        return type_text(from_col, context.dialect) != type_text(to_col, context.dialect)


def _defaults_differ(context: _Context, from_col: Column[Any], to_col: Column[Any]) -> bool:
    inspector, metadata = (to_col, from_col) if context.to_is_inspector else (from_col, to_col)
    if inspector.identity is not None or metadata.identity is not None:
        return False
    rendered_insp = default_text(inspector, context.dialect)
    rendered_meta = default_text(metadata, context.dialect)
    if rendered_insp == rendered_meta:
        return False
    if not context.same_dialect:
        return normalise_sql(rendered_insp) != normalise_sql(rendered_meta)
    connection = getattr(context.impl, "connection", None)
    if connection is None or context.dialect.name != "postgresql":
        return bool(
            context.impl.compare_server_default(inspector, metadata, rendered_meta, rendered_insp)
        )
    # PostgreSQL's impl asks the server; a savepoint keeps a refused comparison from
    # aborting the read-only transaction.
    savepoint = connection.begin_nested()
    try:
        differ = bool(
            context.impl.compare_server_default(inspector, metadata, rendered_meta, rendered_insp)
        )
    except Exception:
        savepoint.rollback()
        return normalise_sql(rendered_insp) != normalise_sql(rendered_meta)
    savepoint.commit()
    return differ


def _identity_text(context: _Context, column: Column[Any]) -> str:
    identity = column.identity
    if identity is not None:
        return "identity " + ("always" if identity.always else "by default")
    if context.both_databases and column.autoincrement is True:
        return "autoincrement"
    return "none"


def _collation(column: Column[Any]) -> str | None:
    return getattr(column.type, "collation", None)


def _computed_text(column: Column[Any]) -> str | None:
    computed = column.computed
    return None if computed is None else str(computed.sqltext)


def _computed_differs(context: _Context, from_col: Column[Any], to_col: Column[Any]) -> bool:
    f, t = _computed_text(from_col), _computed_text(to_col)
    if f is None or t is None:
        return (f is None) != (t is None)
    return context.both_databases and context.same_dialect and normalise_sql(f) != normalise_sql(t)


_INTEGERS = (SmallInteger, Integer, BigInteger)


def _widens(old: Any, new: Any) -> bool:
    """True when changing a column from type ``old`` to ``new`` loses nothing."""
    if isinstance(old, String) and isinstance(new, String):
        if isinstance(new, Text) or getattr(new, "length", None) is None:
            return True
        return old.length is not None and new.length is not None and new.length >= old.length
    if isinstance(old, _INTEGERS) and isinstance(new, _INTEGERS):
        return _rank(new) >= _rank(old)
    return False


def _rank(value: Any) -> int:
    if isinstance(value, BigInteger):
        return 2
    return 0 if isinstance(value, SmallInteger) else 1


def _quote(dialect: Dialect, key: str) -> str:
    schema, _, name = key.rpartition(".")
    preparer = dialect.identifier_preparer
    quoted = preparer.quote(name)
    return f"{preparer.quote_schema(schema)}.{quoted}" if schema else quoted


def _execute(sql: str) -> Any:
    from alembic.operations import ops

    return ops.ExecuteSQLOp(sql)


def _compare_views(plan: Plan, from_snap: Snapshot, to_snap: Snapshot) -> None:
    dialect = to_snap.dialect
    for key in sorted(set(from_snap.views) - set(to_snap.views)):
        definition = from_snap.views[key]
        step = (
            Step("create_views", _execute(f"CREATE VIEW {_quote(dialect, key)} AS {definition}"))
            if definition
            else Step("create_views", manual=f"view {key}: its definition could not be read")
        )
        plan.add(Difference("view_missing", None, key, "view", None), step)
    for key in sorted(set(to_snap.views) - set(from_snap.views)):
        plan.add(
            Difference("view_extra", None, key, None, "view"),
            Step("drop_views", _execute(f"DROP VIEW {_quote(dialect, key)}"), f"drops view {key}"),
        )


def _compare_types(plan: Plan, from_snap: Snapshot, to_snap: Snapshot) -> None:
    dialect = to_snap.dialect
    if dialect.name != "postgresql":  # TO has no enum types: say what FROM has, not DDL
        for key in sorted(set(from_snap.enums) - set(to_snap.enums)):
            plan.add(
                Difference("enum_missing", None, key, ", ".join(from_snap.enums[key]), None),
                Step("types", manual=f"enum {key}: {dialect.name} has no enum types"),
            )
        from_snap = _without_enums(from_snap)
    for key in sorted(set(from_snap.enums) - set(to_snap.enums)):
        values = ", ".join(_string(v) for v in from_snap.enums[key])
        plan.add(
            Difference("enum_missing", None, key, ", ".join(from_snap.enums[key]), None),
            Step("types", _execute(f"CREATE TYPE {_quote(dialect, key)} AS ENUM ({values})")),
        )
    for key in sorted(set(to_snap.enums) - set(from_snap.enums)):
        plan.add(
            Difference("enum_extra", None, key, None, ", ".join(to_snap.enums[key])),
            Step("drop_types", _execute(f"DROP TYPE {_quote(dialect, key)}"), f"drops type {key}"),
        )
    for key in sorted(set(to_snap.enums) & set(from_snap.enums)):
        wanted, held = from_snap.enums[key], to_snap.enums[key]
        if wanted != held:
            plan.add(
                Difference("enum_values", None, key, ", ".join(wanted), ", ".join(held)),
                *_enum_steps(dialect, key, wanted, held),
            )
    for key in sorted(from_snap.sequences - to_snap.sequences):
        plan.add(
            Difference("sequence_missing", None, key, "sequence", None),
            Step("types", _execute(f"CREATE SEQUENCE {_quote(dialect, key)}"))
            if dialect.supports_sequences
            else Step("types", manual=f"sequence {key}: {dialect.name} has no sequences"),
        )
    for key in sorted(to_snap.sequences - from_snap.sequences):
        plan.add(
            Difference("sequence_extra", None, key, None, "sequence"),
            Step(
                "drop_types",
                _execute(f"DROP SEQUENCE {_quote(dialect, key)}"),
                f"drops sequence {key}",
            ),
        )


def _without_enums(snapshot: Snapshot) -> Snapshot:
    from dataclasses import replace

    return replace(snapshot, enums={})


def _string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _enum_steps(
    dialect: Dialect, key: str, wanted: tuple[str, ...], held: tuple[str, ...]
) -> list[Step]:
    """``ALTER TYPE ... ADD VALUE`` for each value TO lacks, when TO's values are FROM's in
    FROM's order with some missing; anything else (a value removed, an order changed) has
    no ALTER and is left to a person."""
    position = iter(wanted)
    if not all(any(value == w for w in position) for value in held):
        return [Step("types", manual=f"enum {key}: values removed or reordered")]
    steps: list[Step] = []
    present = list(held)
    for i, value in enumerate(wanted):
        if value in present:
            continue
        after = next((w for w in reversed(wanted[:i]) if w in present), None)
        where = f" AFTER {_string(after)}" if after else f" BEFORE {_string(present[0])}"
        if not present:
            where = ""
        sql = f"ALTER TYPE {_quote(dialect, key)} ADD VALUE {_string(value)}{where}"
        steps.append(Step("types", _execute(sql)))
        present.insert(present.index(after) + 1 if after else 0, value)
    return steps
