"""How the shell shows a value: results as tables a person can read, mapped objects by their
columns.

:func:`shell_repr` is the shell's ``repr``:

- a ``Result`` (``await session.execute(...)``, ``ScalarResult``, ``MappingResult``), a list
  of ``Row``\\ s, a list of mapped objects (one column per mapped column) and a list of plain
  values print as a table, like psql's;
- a mapped object without a ``__repr__`` of its own reads ``Author(id=1, email='ann@...')``:
  its loaded column attributes, read from the instance's state, so showing an object never
  runs a query (an expired attribute is left out);
- a table longer than :data:`MAX_ROWS` rows is cut, with a note of how many were left out.

Nothing here touches the user's classes: the readable repr exists only where the shell
displays a value (:func:`displayhook`, ``-c``'s trailing expression). Values are shown as
``str`` of the value in tables, ``NULL`` for None; every line goes through ``redact``.
"""

from __future__ import annotations

import builtins
import datetime
import decimal
import os
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from myfy_db.urls import redact

__all__ = [
    "MAX_ROWS",
    "MAX_ROWS_ENV",
    "TextTable",
    "affected_text",
    "displayhook",
    "mapped_repr",
    "shell_repr",
    "table_of",
]

MAX_ROWS_ENV = "MYFY_DB_SHELL_MAX_ROWS"
MAX_ROWS = 40
MAX_CELL = 60
_SCALARS = (
    str,
    int,
    float,
    bool,
    bytes,
    decimal.Decimal,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
    type(None),
)


def max_rows() -> int:
    """Rows shown before a table is cut: ``$MYFY_DB_SHELL_MAX_ROWS`` or :data:`MAX_ROWS`."""
    try:
        value = int(os.environ.get(MAX_ROWS_ENV, ""))
    except ValueError:
        return MAX_ROWS
    return value if value > 0 else MAX_ROWS


@dataclass
class TextTable:
    """Rows under column names, rendered as aligned plain text."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    noun: str = "row"

    def render(self, limit: int | None = None) -> str:
        limit = max_rows() if limit is None else limit
        shown = self.rows[:limit]
        cells = [[_cell(value) for value in row] for row in shown]
        right = [
            all(
                isinstance(row[i], int | float | decimal.Decimal)
                for row in shown
                if row[i] is not None
            )
            and any(row[i] is not None for row in shown)
            for i in range(len(self.columns))
        ]
        widths = [
            max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(self.columns)
        ]
        lines = [" " + " | ".join(n.ljust(w) for n, w in zip(self.columns, widths, strict=True))]
        lines.append("-" + "-+-".join("-" * w for w in widths) + "-")
        for row in cells:
            lines.append(
                " "
                + " | ".join(
                    value.rjust(w) if r else value.ljust(w)
                    for value, w, r in zip(row, widths, right, strict=True)
                )
            )
        total = len(self.rows)
        nouns = self.noun + "s"
        if total > len(shown):
            lines.append(
                f"({total} {nouns}; {total - len(shown)} left out, showing the first "
                f"{len(shown)}: set {MAX_ROWS_ENV} to see more)"
            )
        else:
            lines.append(f"({total} {self.noun if total == 1 else nouns})")
        return redact("\n".join(line.rstrip() for line in lines))

    def __repr__(self) -> str:
        return self.render()

    def __str__(self) -> str:
        return self.render()

    def __await__(self) -> Any:
        # A helper's result reads the same awaited (``await sql(...)``) or not.
        return self
        yield  # pragma: no cover - makes this a generator


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    text = mapped_repr(value) if is_mapped(value) else str(value)
    text = text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def is_mapped(value: Any) -> bool:
    """True for an instance of a mapped class (not the class itself)."""
    return not isinstance(value, type) and hasattr(value, "_sa_instance_state")


def _has_own_repr(value: Any) -> bool:
    own: object = type(value).__repr__
    return own is not object.__repr__


def _column_values(value: Any) -> list[tuple[str, Any]]:
    """The mapped column attributes loaded in ``value`` (no query is run), in mapper order."""
    from sqlalchemy import inspect

    state = inspect(value)
    loaded = state.dict
    return [
        (attr.key, loaded[attr.key]) for attr in state.mapper.column_attrs if attr.key in loaded
    ]


def mapped_repr(value: Any) -> str:
    """``Author(id=1, email='ann@example.com')``, unless the class has its own ``__repr__``."""
    if _has_own_repr(value):
        return repr(value)
    fields = ", ".join(f"{key}={item!r}" for key, item in _column_values(value))
    return f"{type(value).__name__}({fields})"


def _object_table(objects: Sequence[Any]) -> TextTable:
    from sqlalchemy import inspect

    keys: list[str] = []
    for item in objects:
        for attr in inspect(item).mapper.column_attrs:
            if attr.key not in keys:
                keys.append(attr.key)
    rows = []
    for item in objects:
        loaded = inspect(item).dict
        rows.append(tuple(loaded.get(key) for key in keys))
    return TextTable(keys, rows)


def _entity_columns(result: Any) -> list[str] | None:
    """For a result of one mapped entity (``select(Book)``), the entity's column names; read
    from the result's own metadata, so an empty result still shows the table's columns."""
    try:
        metadata = (getattr(result, "_real_result", None) or result)._metadata
        keys = list(metadata.keys)
        entry = metadata._keymap.get(keys[0]) if len(keys) == 1 else None
        extras = entry[2] if entry is not None and len(entry) > 2 else ()
    except Exception:
        return None
    for extra in extras or ():
        mapper = getattr(extra, "__mapper__", None) if isinstance(extra, type) else None
        if mapper is not None:
            return [attr.key for attr in mapper.column_attrs]
    return None


def _rows_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> TextTable:
    # One entity per row (``select(Author)``): the entity's columns, not one "Author" column.
    if rows and all(len(row) == 1 and is_mapped(row[0]) for row in rows):
        return _object_table([row[0] for row in rows])
    return TextTable(list(columns), [tuple(row) for row in rows])


def _list_table(items: Sequence[Any], column: str = "value") -> TextTable | None:
    from sqlalchemy.engine import Row

    if all(isinstance(item, Row) for item in items):
        first = items[0]
        return _rows_table(list(first._fields), items)
    if all(is_mapped(item) for item in items):
        return _object_table(items)
    if all(isinstance(item, _SCALARS) for item in items):
        return TextTable([column], [(item,) for item in items])
    return None


def table_of(value: Any) -> tuple[TextTable, Any] | None:
    """``value`` as a table, and what ``_`` should hold (a result's rows), or None."""
    if isinstance(value, TextTable):
        return value, value
    if isinstance(value, list) and value:
        table = _list_table(value)
        return (table, value) if table is not None else None
    if "sqlalchemy" not in sys.modules:
        return None
    from sqlalchemy.engine import MappingResult, Result, ScalarResult

    if isinstance(value, Result):
        columns = list(value.keys())
        entity = _entity_columns(value)  # read before the rows: a spent result forgets it
        rows = value.all()
        if not rows and entity:
            columns = entity
        return _rows_table(columns, rows), rows
    if isinstance(value, ScalarResult):
        entity = _entity_columns(value)
        items = value.all()
        if not items:
            return TextTable(entity or ["value"], []), items
        table = _list_table(items)
        return (table, items) if table is not None else None
    if isinstance(value, MappingResult):
        mappings = value.all()
        columns = list(mappings[0].keys()) if mappings else []
        return TextTable(columns, [tuple(m.values()) for m in mappings]), mappings
    return None


def _inline_repr(value: Any) -> str:
    """A value inside a list or tuple: mapped objects readable, never a table."""
    if is_mapped(value):
        return mapped_repr(value)
    if type(value) in (list, tuple) and any(is_mapped(item) for item in value):
        opening, closing = ("[", "]") if isinstance(value, list) else ("(", ")")
        return _container_repr(value, opening, closing)
    return repr(value)


def _container_repr(value: Iterable[Any], opening: str, closing: str) -> str:
    items = [_inline_repr(item) for item in value]
    if opening == "(" and len(items) == 1:
        return f"({items[0]},)"
    return opening + ", ".join(items) + closing


def shell_repr(value: Any) -> str:
    """The shell's text for ``value`` (see the module docs); passwords removed."""
    return redact(_shell_repr(value)[0])


def affected_text(rowcount: int) -> str:
    """What a statement that returns no rows did: ``3 rows affected``."""
    if rowcount < 0:
        return "done (no rows returned)"
    return f"{rowcount} row{'' if rowcount == 1 else 's'} affected"


#: Where the shell's dialect is found (its namespace's ``engine``), set by the helpers.
_NAMESPACE: list[Any] = []


def use_namespace(namespace: Any) -> None:
    """Show statements in the SQL of ``namespace["engine"]``'s dialect."""
    _NAMESPACE[:] = [namespace]


def statement_sql(statement: Any) -> str:
    """A statement (``select(Book)``) as the SQL the shell's database would run: its values
    inline where they can be written so, else as parameters."""
    dialect = None
    if _NAMESPACE:
        engine = _NAMESPACE[0].get("engine")
        dialect = getattr(engine, "dialect", None)
    try:
        compiled = statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    except Exception:
        compiled = statement.compile(dialect=dialect)
    return str(compiled).strip()


def _shell_repr(value: Any) -> tuple[str, Any]:
    if isinstance(value, _SCALARS):
        return repr(value), value
    if "sqlalchemy" in sys.modules:
        from sqlalchemy.engine import CursorResult
        from sqlalchemy.sql import ClauseElement, Executable

        if isinstance(value, CursorResult) and not value.returns_rows:
            return affected_text(value.rowcount), value
        if isinstance(value, Executable) and isinstance(value, ClauseElement):
            try:
                return statement_sql(value), value
            except Exception:
                pass
    table = table_of(value)
    if table is not None:
        return table[0].render(), table[1]
    return _inline_repr(value), value


def displayhook(value: Any) -> None:
    """``sys.displayhook`` for the interactive shell: :func:`shell_repr`, and ``_`` as usual
    (a result's rows, since showing a result consumes it)."""
    if value is None:
        return
    builtins._ = None  # type: ignore[attr-defined]
    text, kept = _shell_repr(value)
    sys.stdout.write(redact(text) + "\n")
    builtins._ = kept  # type: ignore[attr-defined]
