"""The helpers preloaded in the shell beside ``session``: ``tables()``, ``describe()``, ``sql()``
and ``help()``.

They run on the shell's own ``session`` (read from the namespace at each call, so a session
the shell replaced is the one used): in a sandbox they see what the sandbox holds, in
read-only mode the server still refuses writes, and outside a sandbox a read ends with the
input like any other. Called from the shell's code (which runs in SQLAlchemy's greenlet
bridge), they return their result directly; elsewhere they return a coroutine, and
``await describe(...)`` works everywhere. Their results print as text and are awaitable, so
``await tables()`` reads the same.

This module imports nothing heavy; what a helper needs is imported when it runs.
"""

from __future__ import annotations

import builtins
from collections.abc import Coroutine, Mapping
from typing import Any

__all__ = ["HELPERS", "Description", "ShellHelp", "ShellHelperError", "make_helpers"]

#: Tables whose exact count is cheap enough to take when the server has no estimate (bytes).
EXACT_COUNT_BELOW = 10 * 1024 * 1024

HELPERS = {
    "tables()": "the database's tables with (estimated) row counts",
    "describe(name_or_model)": (
        "columns, types, nullability, defaults, indexes and foreign keys of a table"
    ),
    "sql('SELECT ...', **params)": "run raw SQL on the session and print the rows",
    "help()": "this list; help(obj) is Python's help",
}


class ShellHelperError(Exception):
    """A helper was asked for something that is not there (a table, a model)."""


class _Shown:
    """A helper's result: printed as its text, and awaitable (to itself)."""

    def text(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.text()

    def __str__(self) -> str:
        return self.text()

    def __await__(self) -> Any:
        return self
        yield  # pragma: no cover - makes this a generator


class Description(_Shown):
    """``describe()``'s answer: a table's columns, keys, indexes and foreign keys.

    (Plain classes here: this module loads with every shell, and a dataclass costs start-up.)
    """

    def __init__(
        self,
        table: str,
        columns: list[tuple[str, str, bool, str | None]],
        primary_key: list[str],
        indexes: list[tuple[str, bool, list[str]]],
        foreign_keys: list[str],
        referenced_by: list[str],
    ) -> None:
        self.table = table
        self.columns = columns
        self.primary_key = primary_key
        self.indexes = indexes
        self.foreign_keys = foreign_keys
        self.referenced_by = referenced_by

    def text(self) -> str:
        from myfy_db.shell.display import TextTable

        rows = [
            (name, kind, "null" if nullable else "not null", default or "")
            for name, kind, nullable, default in self.columns
        ]
        grid = TextTable(["column", "type", "nullable", "default"], rows, noun="column")
        lines = [f'Table "{self.table}"', *grid.render(limit=len(rows)).splitlines()[:-1]]
        if self.primary_key:
            lines.append(f"Primary key: ({', '.join(self.primary_key)})")
        if self.indexes:
            lines.append("Indexes:")
            for name, unique, columns in self.indexes:
                flag = " UNIQUE" if unique else ""
                lines.append(f'    "{name}"{flag} ({", ".join(columns)})')
        if self.foreign_keys:
            lines.append("Foreign keys:")
            lines += [f"    {fk}" for fk in self.foreign_keys]
        if self.referenced_by:
            lines.append("Referenced by:")
            lines += [f"    {ref}" for ref in self.referenced_by]
        from myfy_db.urls import redact

        return redact("\n".join(lines))


class Affected(_Shown):
    """``sql()`` on a statement that returns no rows."""

    def __init__(self, rowcount: int) -> None:
        self.rowcount = rowcount

    def text(self) -> str:
        from myfy_db.shell.display import affected_text

        return affected_text(self.rowcount)


class ShellHelp:
    """``help``: ``help()`` lists the shell's helpers; ``help(obj)`` is Python's own help."""

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:
            builtins.help(*args, **kwargs)
            return
        print(self.text())

    def text(self) -> str:
        width = max(len(name) for name in HELPERS)
        lines = ["Helpers (beside session, engine, select, insert, update, delete, text, func):"]
        lines += [f"  {name.ljust(width)}  {what}" for name, what in HELPERS.items()]
        lines.append("Each also works with await (await tables()).")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coroutine`` now when called from code in the greenlet bridge, else return it."""
    from sqlalchemy.util.concurrency import await_only, in_greenlet

    if in_greenlet():
        return await_only(coroutine)
    return coroutine


def make_helpers(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The helper functions over the shell ``namespace`` (its current ``session``)."""
    from myfy_db.shell.display import use_namespace

    use_namespace(namespace)  # a statement shown at the prompt reads in this database's SQL

    def tables() -> Any:
        """The database's tables with row counts (``~`` marks the server's estimate)."""
        return _run(_tables(namespace["session"]))

    def describe(name_or_model: Any) -> Any:
        """A table's columns, types, nullability, defaults, indexes and foreign keys."""
        return _run(_describe(namespace["session"], name_or_model))

    def sql(statement: str, **params: Any) -> Any:
        """Run raw SQL on the shell's session; rows print as a table."""
        return _run(_sql(namespace["session"], statement, params))

    return {"tables": tables, "describe": describe, "sql": sql, "help": ShellHelp()}


# -- the queries ------------------------------------------------------------------------


async def _sql(session: Any, statement: str, params: dict[str, Any]) -> Any:
    from sqlalchemy import text

    from myfy_db.shell.display import table_of

    result = await session.execute(text(statement), params)
    if not result.returns_rows:
        return Affected(result.rowcount)
    shown = table_of(result)
    assert shown is not None
    return shown[0]


async def _tables(session: Any) -> Any:
    from myfy_db.shell.display import TextTable

    connection = await session.connection()
    dialect = connection.dialect.name
    names: list[str] = await connection.run_sync(lambda sync: _inspector(sync).get_table_names())
    estimates: dict[str, tuple[int | None, int | None]] = {}
    if dialect == "postgresql":
        rows = await connection.exec_driver_sql(
            "SELECT c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema()"
        )
        estimates = {r[0]: (r[1] if r[1] >= 0 else None, r[2]) for r in rows}
    elif dialect in ("mysql", "mariadb"):
        rows = await connection.exec_driver_sql(
            "SELECT TABLE_NAME, TABLE_ROWS, DATA_LENGTH + INDEX_LENGTH "
            "FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
        )
        estimates = {r[0]: (r[1], r[2]) for r in rows}
    out: list[tuple[str, str]] = []
    for name in sorted(names):
        estimate, size = estimates.get(name, (None, None))
        if dialect == "sqlite" or (size is not None and size < EXACT_COUNT_BELOW):
            quoted = connection.dialect.identifier_preparer.quote(name)
            count = (await connection.exec_driver_sql(f"SELECT count(*) FROM {quoted}")).scalar()
            out.append((name, str(count)))
        elif estimate is not None:
            out.append((name, f"~{estimate}"))
        else:
            out.append((name, "?"))
    return TextTable(["table", "rows"], out, noun="table")


def _inspector(sync_connection: Any) -> Any:
    from sqlalchemy import inspect

    return inspect(sync_connection)


def _table_name(name_or_model: Any) -> tuple[str, str | None]:
    """``(table, schema)`` for a table name (``schema.table`` too), a model or a ``Table``."""
    if isinstance(name_or_model, str):
        schema, _, table = name_or_model.rpartition(".")
        return table, schema or None
    table_object = getattr(name_or_model, "__table__", name_or_model)
    name = getattr(table_object, "name", None)
    if not isinstance(name, str):
        raise ShellHelperError(
            f"describe() takes a table name, a model or a Table, not {type(name_or_model).__name__}"
        )
    return name, getattr(table_object, "schema", None)


async def _describe(session: Any, name_or_model: Any) -> Description:
    table, schema = _table_name(name_or_model)
    connection = await session.connection()

    def read(sync: Any) -> Description:
        return _read_description(_inspector(sync), table, schema)

    description: Description = await connection.run_sync(read)
    return description


def _default_text(column: Mapping[str, Any]) -> str | None:
    default = column.get("default")
    if default is not None:
        return str(default)
    if column.get("identity"):
        return "generated as identity"
    if column.get("autoincrement") is True:
        return "auto_increment"
    return None


def _read_description(inspector: Any, table: str, schema: str | None) -> Description:
    if not inspector.has_table(table, schema=schema):
        import difflib

        names = inspector.get_table_names(schema=schema)
        close = difflib.get_close_matches(table, names, n=3, cutoff=0.6)
        close += [n for n in names if n.lower() == table.lower() and n not in close]
        maybe = f"did you mean {' or '.join(repr(n) for n in close)}? " if close else ""
        raise ShellHelperError(f"no table {table!r} in the database ({maybe}tables() lists them)")
    columns = [
        (c["name"], str(c["type"]), bool(c.get("nullable", True)), _default_text(c))
        for c in inspector.get_columns(table, schema=schema)
    ]
    primary = inspector.get_pk_constraint(table, schema=schema).get("constrained_columns") or []
    indexes: list[tuple[str, bool, list[str]]] = []
    seen: set[str] = set()
    for unique in inspector.get_unique_constraints(table, schema=schema):
        name = unique.get("name") or "(unnamed)"
        seen.add(name)
        indexes.append((name, True, list(unique["column_names"])))
    for index in inspector.get_indexes(table, schema=schema):
        name = index.get("name") or "(unnamed)"
        if name in seen:
            continue
        seen.add(name)
        columns_of = [c if c is not None else "(expression)" for c in index["column_names"]]
        indexes.append((name, bool(index.get("unique")), columns_of))
    foreign_keys = [
        _foreign_key_text(fk) for fk in inspector.get_foreign_keys(table, schema=schema)
    ]
    referenced_by: list[str] = []
    for other in inspector.get_table_names(schema=schema):
        for fk in inspector.get_foreign_keys(other, schema=schema):
            if fk["referred_table"] == table:
                referenced_by.append(
                    f"{other}({', '.join(fk['constrained_columns'])}) "
                    f"-> ({', '.join(fk['referred_columns'])})"
                )
    return Description(
        table if schema is None else f"{schema}.{table}",
        columns,
        list(primary),
        indexes,
        foreign_keys,
        referenced_by,
    )


def _foreign_key_text(fk: Mapping[str, Any]) -> str:
    target = fk["referred_table"]
    if fk.get("referred_schema"):
        target = f"{fk['referred_schema']}.{target}"
    text = (
        f"({', '.join(fk['constrained_columns'])}) REFERENCES "
        f"{target}({', '.join(fk['referred_columns'])})"
    )
    options = fk.get("options") or {}
    for key in ("ondelete", "onupdate"):
        if options.get(key):
            text += f" ON {key[2:].upper()} {options[key].upper()}"
    return text
