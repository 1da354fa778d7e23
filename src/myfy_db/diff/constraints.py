"""Primary keys, indexes, unique, foreign-key and check constraints of one table, compared.

Each is matched by name; an unnamed one (the models' without a naming convention, SQLite's
unnamed constraints) by what it says. Each is compared by a signature that holds what the
database enforces: an index's columns or expressions, uniqueness, partial predicate and
method; a foreign key's columns, target, actions and deferrability; a check's expression.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import CheckConstraint, Column, ForeignKeyConstraint, UniqueConstraint

from myfy_db.diff.kinds import Difference, Plan, Step

if TYPE_CHECKING:
    from sqlalchemy import Index, Table
    from sqlalchemy.engine import Dialect


def compare_constraints(plan: Plan, context: Any, from_t: Table, to_t: Table) -> None:
    """Add the differences of ``from_t``'s and ``to_t``'s keys, indexes and constraints."""
    _compare_primary_keys(plan, context, from_t, to_t)
    dialect = context.dialect
    _compare_named(
        plan,
        "index",
        from_t,
        list(from_t.indexes),
        list(to_t.indexes),
        lambda i: _index_sig(i, dialect),
        _index_steps,
        dialect,
    )
    _compare_named(
        plan,
        "unique",
        from_t,
        _of(from_t, UniqueConstraint),
        _of(to_t, UniqueConstraint),
        lambda c: ("UNIQUE", *_columns(c)),
        _constraint_steps("unique"),
        dialect,
    )
    _compare_named(
        plan,
        "foreign_key",
        from_t,
        _of(from_t, ForeignKeyConstraint),
        _of(to_t, ForeignKeyConstraint),
        lambda c: _fk_sig(c, dialect),
        _constraint_steps("foreignkey"),
        dialect,
    )
    if context.both_databases:
        check_sig: Callable[[Any], tuple[str, ...]] = lambda c: (  # noqa: E731
            "CHECK",
            _check_text(c),
        )
    else:  # a models' check and the database's spelling of it: compared by name only
        check_sig = lambda c: ("CHECK",)  # noqa: E731
    _compare_named(
        plan,
        "check",
        from_t,
        [c for c in _of(from_t, CheckConstraint) if not _from_type(c)],
        [c for c in _of(to_t, CheckConstraint) if not _from_type(c)],
        check_sig,
        _constraint_steps("check"),
        dialect,
    )


def _of(table: Table, kind: type) -> list[Any]:
    """The table's constraints of ``kind``, those declared on a column included."""
    found = [c for c in table.constraints if isinstance(c, kind)]
    for column in table.columns:
        found += [c for c in column.constraints if isinstance(c, kind) and c not in found]
    return found


def _from_type(constraint: CheckConstraint) -> bool:
    """A check a type generates (SQLAlchemy's Boolean or Enum on a backend without them)."""
    return bool(getattr(constraint, "_type_bound", False))


def _columns(constraint: Any) -> tuple[str, ...]:
    return tuple(c.name for c in constraint.columns)


def _norm(sql: Any, dialect: Dialect, table: str | None = None) -> str:
    from myfy_db.diff.compare import normalise_sql

    if sql is None or sql is False:
        return ""
    if isinstance(sql, Column):
        return str(sql.name)
    if not isinstance(sql, str):
        text = getattr(sql, "text", None)
        sql = (
            text
            if isinstance(text, str)
            else str(sql.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        )
    normal = normalise_sql(sql)
    if table:
        normal = normal.replace(f"{table.lower()}.", "")
    return normal


def _index_sig(index: Index, dialect: Dialect) -> tuple[str, ...]:
    table = index.table.name if index.table is not None else None
    expressions = tuple(_norm(e, dialect, table) for e in index.expressions)
    kwargs = index.dialect_kwargs
    where = kwargs.get("postgresql_where") or kwargs.get("sqlite_where")
    using = str(kwargs.get("postgresql_using") or "btree").lower()
    if dialect.name != "postgresql":
        using = ""
    unique = "UNIQUE" if index.unique else ""
    return (unique, *expressions, "WHERE " + _norm(where, dialect, table), using)


def _action(value: str | None, dialect: Dialect) -> str:
    action = (value or "NO ACTION").upper()
    if dialect.name in ("mysql", "mariadb") and action == "RESTRICT":
        return "NO ACTION"  # the same on InnoDB, and what it reports for none
    return action


def _fk_sig(constraint: ForeignKeyConstraint, dialect: Dialect) -> tuple[str, ...]:
    targets = [e.target_fullname for e in constraint.elements]
    target_table = targets[0].rsplit(".", 1)[0] if targets else ""
    target_columns = ",".join(t.rsplit(".", 1)[1] for t in targets)
    return (
        ",".join(_columns(constraint)),
        f"{target_table}({target_columns})",
        "ON DELETE " + _action(constraint.ondelete, dialect),
        "ON UPDATE " + _action(constraint.onupdate, dialect),
        "DEFERRABLE" if constraint.deferrable else "NOT DEFERRABLE",
        "INITIALLY " + (constraint.initially or "IMMEDIATE").upper(),
    )


#: A PostgreSQL cast as its deparser writes it (``::character varying``, ``::text[]``).
_CAST = re.compile(
    r"::\s*(?:character varying|double precision|bit varying"
    r"|(?:timestamp|time) with(?:out)? time zone|\"?\w+\"?)"
    r"(?:\(\d+(?:,\s*\d+)?\))?(?:\[\])*",
    re.IGNORECASE,
)


def _check_text(constraint: CheckConstraint) -> str:
    """A check's expression compared without its casts: PostgreSQL deparses the expression
    it stores, and one written from another's deparse comes back cast differently
    (``ARRAY['a'::varchar]::text[]`` against ``ARRAY['a'::varchar::text]``)."""
    from myfy_db.diff.compare import normalise_sql

    text = str(getattr(constraint.sqltext, "text", constraint.sqltext))
    return normalise_sql(_CAST.sub("", text))


def describe(kind: str, dialect: Dialect, item: Any) -> str:
    """What an index or constraint says, for the report."""
    if kind == "index":
        sig = _index_sig(item, dialect)
        columns = ", ".join(_spelled(e, dialect) for e in item.expressions)
        text = f"{'UNIQUE ' if item.unique else ''}INDEX ({columns})"
        where = item.dialect_kwargs.get("postgresql_where") or item.dialect_kwargs.get(
            "sqlite_where"
        )
        if where is not None:
            text += f" WHERE {_spelled(where, dialect)}"
        if sig[-1] not in ("", "btree"):
            text += f" USING {sig[-1]}"
        return text
    if kind == "foreign_key":
        sig = _fk_sig(item, dialect)
        extra = [s for s in sig[2:] if s not in _PLAIN]
        return " ".join([f"({sig[0]}) -> {sig[1]}", *extra])
    if kind == "check":
        return f"CHECK ({getattr(item.sqltext, 'text', item.sqltext)})"
    return f"UNIQUE ({', '.join(_columns(item))})"


_PLAIN = frozenset(
    {"ON DELETE NO ACTION", "ON UPDATE NO ACTION", "NOT DEFERRABLE", "INITIALLY IMMEDIATE"}
)


def _spelled(expression: Any, dialect: Dialect) -> str:
    if isinstance(expression, Column):
        return str(expression.name)
    if isinstance(expression, str):
        return expression
    text = getattr(expression, "text", None)
    if isinstance(text, str):
        return text
    return str(expression.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _compare_named(
    plan: Plan,
    kind: str,
    from_t: Table,
    from_items: Iterable[Any],
    to_items: Iterable[Any],
    signature: Callable[[Any], tuple[str, ...]],
    steps: Callable[[str, Any, Any, Any], list[Step]],
    dialect: Dialect,
) -> None:
    """Match ``from_items`` with ``to_items`` by name (unnamed ones by signature) and add
    the missing, extra and changed ones with the steps ``steps`` builds."""
    key = from_t.key
    left = {i.name: i for i in from_items if i.name}
    right = {i.name: i for i in to_items if i.name}
    unnamed_left = [i for i in from_items if not i.name]
    unnamed_right = [i for i in to_items if not i.name]
    missing = [left[n] for n in sorted(set(left) - set(right))] + unnamed_left
    extra = [right[n] for n in sorted(set(right) - set(left))] + unnamed_right
    if unnamed_left or unnamed_right:  # an unnamed one is the same as any with its signature
        matched_extra: set[int] = set()
        still_missing = []
        for item in missing:
            twin = next(
                (
                    j
                    for j, other in enumerate(extra)
                    if j not in matched_extra
                    and signature(other) == signature(item)
                    and (not item.name or not other.name)
                ),
                None,
            )
            if twin is None:
                still_missing.append(item)
            else:
                matched_extra.add(twin)
        missing = still_missing
        extra = [item for j, item in enumerate(extra) if j not in matched_extra]
    for item in missing:
        plan.add(
            Difference(f"{kind}_missing", key, _name(item), describe(kind, dialect, item), None),
            *steps(key, item, None, None),
        )
    for item in extra:
        plan.add(
            Difference(f"{kind}_extra", key, _name(item), None, describe(kind, dialect, item)),
            *steps(key, None, item, None),
        )
    for name in sorted(set(left) & set(right)):
        if signature(left[name]) != signature(right[name]):
            plan.add(
                Difference(
                    f"{kind}_changed",
                    key,
                    name,
                    describe(kind, dialect, left[name]),
                    describe(kind, dialect, right[name]),
                ),
                *steps(key, left[name], right[name], True),
            )


def _name(item: Any) -> str:
    return str(item.name) if item.name else "(unnamed)"


def _index_steps(key: str, wanted: Any, held: Any, changed: Any) -> list[Step]:
    from alembic.operations import ops

    steps: list[Step] = []
    if held is not None:
        steps.append(
            Step(
                "drop_constraints",
                ops.DropIndexOp.from_index(held),
                f"drops index {held.name} on {key}",
            )
        )
    if wanted is not None:
        steps.append(Step("indexes", ops.CreateIndexOp.from_index(wanted), safe="index"))
    return steps


def _constraint_steps(type_: str) -> Callable[[str, Any, Any, Any], list[Step]]:
    def steps(key: str, wanted: Any, held: Any, changed: Any) -> list[Step]:
        from alembic.operations import ops

        result: list[Step] = []
        if held is not None:
            if held.name:
                drop = (
                    ops.DropConstraintOp(
                        held.name,
                        held.table.name,
                        type_="foreignkey",
                        schema=held.table.schema,
                        _reverse=foreign_key_op(held),
                    )
                    if type_ == "foreignkey"
                    else ops.DropConstraintOp.from_constraint(held)
                )
                result.append(
                    Step(
                        "drop_constraints",
                        drop,
                        f"drops {_KIND_WORD[type_]} {held.name} on {key}",
                    )
                )
            else:
                result.append(
                    Step(
                        "drop_constraints",
                        manual=f"an unnamed {_KIND_WORD[type_]} on {key} cannot be dropped by name",
                    )
                )
        if wanted is not None:
            if type_ == "foreignkey":
                op: Any = foreign_key_op(wanted)
                phase, safe = "foreign_keys", "constraint"
            elif type_ == "check":
                op = ops.CreateCheckConstraintOp.from_constraint(wanted)
                phase, safe = "constraints", "constraint"
            else:
                op = ops.CreateUniqueConstraintOp.from_constraint(wanted)
                phase, safe = "constraints", None
            result.append(Step(phase, op, safe=safe))
        return result

    return steps


def foreign_key_op(constraint: ForeignKeyConstraint) -> Any:
    """``CreateForeignKeyOp.from_constraint`` without resolving the target: the referenced
    table is read from the key's own spelling (``schema.table.column``), so a table that is
    not compared need not be built."""
    from alembic.operations import ops

    targets = [element.target_fullname.split(".") for element in constraint.elements]
    kw: dict[str, Any] = {
        key: value
        for key in ("onupdate", "ondelete", "initially", "deferrable", "match")
        if (value := getattr(constraint, key))
    }
    kw.update(constraint.dialect_kwargs)
    return ops.CreateForeignKeyOp(
        constraint.name if isinstance(constraint.name, str) else None,
        constraint.table.name,
        targets[0][-2],
        [c.name for c in constraint.columns],
        [t[-1] for t in targets],
        source_schema=constraint.table.schema,
        referent_schema=".".join(targets[0][:-2]) or None,
        **kw,
    )


_KIND_WORD = {
    "foreignkey": "foreign key",
    "check": "check constraint",
    "unique": "unique constraint",
}


def _compare_primary_keys(plan: Plan, context: Any, from_t: Table, to_t: Table) -> None:
    from alembic.operations import ops

    wanted, held = _columns(from_t.primary_key), _columns(to_t.primary_key)
    if wanted == held:
        return
    steps: list[Step] = []
    dialect = context.dialect.name
    if dialect == "sqlite":
        steps.append(
            Step("primary_keys", manual=f"{from_t.key}: SQLite cannot alter a primary key")
        )
    else:
        if held:
            name = to_t.primary_key.name or "PRIMARY"
            steps.append(
                Step(
                    "drop_constraints",
                    ops.DropConstraintOp(name, to_t.name, type_="primary", schema=to_t.schema),
                    f"drops the primary key of {to_t.key}",
                )
            )
        if wanted:
            pk_name: str | None = None
            if dialect not in ("mysql", "mariadb"):
                pk_name = str(
                    from_t.primary_key.name or to_t.primary_key.name or f"{to_t.name}_pkey"
                )
            steps.append(
                Step(
                    "primary_keys",
                    ops.CreatePrimaryKeyOp(pk_name, to_t.name, list(wanted), schema=to_t.schema),
                )
            )
    plan.add(
        Difference(
            "primary_key",
            from_t.key,
            str(from_t.primary_key.name or to_t.primary_key.name or "(primary key)"),
            f"({', '.join(wanted)})" if wanted else None,
            f"({', '.join(held)})" if held else None,
        ),
        *steps,
    )
