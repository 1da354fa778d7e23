"""MySQL/MariaDB DDL statements that take an algorithm, read from their text, and their
online forms (:mod:`.mysql` runs them).

``ALTER TABLE``, ``CREATE INDEX`` and ``DROP INDEX`` (written as ``ALTER TABLE ... DROP
INDEX``, the form that takes an algorithm on MariaDB) are recognised; anything else, and text
of several statements, is not (None: run as written). The text is the SQL the dialect sends:
Alembic's rendering, or a revision's own ``op.execute()`` text. Quoted strings and
identifiers are blanked out before a clause is looked for, so a ``;`` or an ``ALGORITHM``
inside a comment string or a default is never taken for one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["OnlineStatement", "online_statement"]

_NAME = r"(?:`(?:[^`]|``)*`|[\w$]+)"
_QUALIFIED = rf"(?P<first>{_NAME})(?:\s*\.\s*(?P<second>{_NAME}))?"
_ALTER = re.compile(
    rf"^ALTER\s+(?:ONLINE\s+)?(?:IGNORE\s+)?TABLE\s+(?:IF\s+EXISTS\s+)?"
    rf"(?P<table>{_NAME}(?:\s*\.\s*{_NAME})?)(?:\s+(?:WAIT\s+\d+|NOWAIT))?\s+(?P<clauses>\S.*)$",
    re.I | re.S,
)
_CREATE_INDEX = re.compile(
    rf"^CREATE\s+(?:(?P<kind>UNIQUE|FULLTEXT|SPATIAL)\s+)?INDEX\s+(?P<if>IF\s+NOT\s+EXISTS\s+)?"
    rf"(?P<name>{_NAME})\s+(?P<using>USING\s+\w+\s+)?ON\s+"
    rf"(?P<table>{_NAME}(?:\s*\.\s*{_NAME})?)\s*(?P<rest>\(.*)$",
    re.I | re.S,
)
_DROP_INDEX = re.compile(
    rf"^DROP\s+INDEX\s+(?P<if>IF\s+EXISTS\s+)?(?P<name>{_NAME})\s+ON\s+"
    rf"(?P<table>{_NAME}(?:\s*\.\s*{_NAME})?)\s*$",
    re.I | re.S,
)
_OPTION = (
    r"(?:ALGORITHM\s*=?\s*(?:DEFAULT|INSTANT|INPLACE|NOCOPY|COPY)"
    r"|LOCK\s*=?\s*(?:DEFAULT|NONE|SHARED|EXCLUSIVE))\b"
)
#: An ALTER clause list, or CREATE INDEX's options, that name their own algorithm or lock.
_GIVEN = re.compile(rf"(?:^|,)\s*{_OPTION}", re.I)
_GIVEN_INDEX = re.compile(rf"\s{_OPTION}", re.I)
_FOREIGN_KEY = re.compile(r"\bADD\b[^,]*?\bFOREIGN\s+KEY\b", re.I | re.S)
_RENAME_ONLY = re.compile(rf"^RENAME\s+(?:TO\s+|AS\s+)?{_NAME}(?:\s*\.\s*{_NAME})?$", re.I)


def _unquote(name: str) -> str:
    name = name.strip()
    if name.startswith("`") and name.endswith("`"):
        return name[1:-1].replace("``", "`")
    return name


def _blank_quoted(text: str) -> str:
    """``text`` with what is inside quotes and backticks blanked out, same length."""
    out: list[str] = []
    quote_char: str | None = None
    for char in text:
        if quote_char is not None:
            if char == quote_char:
                quote_char = None
                out.append(char)
            else:
                out.append(" ")
        elif char in "'\"`":
            quote_char = char
            out.append(char)
        else:
            out.append(char)
    return "".join(out)


def _strip(sql: str) -> str:
    """The statement without leading comments, surrounding space and trailing semicolons."""
    text = sql.strip()
    while True:
        if text.startswith("--") or text.startswith("#"):
            text = text.split("\n", 1)[1].strip() if "\n" in text else ""
        elif text.startswith("/*") and not text.startswith("/*!") and "*/" in text:
            text = text.split("*/", 1)[1].strip()
        else:
            break
    while text.endswith(";"):
        text = text[:-1].rstrip()
    return text


@dataclass(frozen=True)
class OnlineStatement:
    """One DDL statement that takes an algorithm, and its online forms."""

    #: ``alter``, ``create_index`` or ``drop_index``.
    kind: str
    #: The statement as the revision issued it (comments and ``;`` stripped).
    text: str
    #: The table as written (quoted as written), and its parts unquoted.
    table: str
    schema_name: str | None
    table_name: str
    #: The ALTER clause list equivalent to the statement (``MODIFY total BIGINT``).
    clauses: str
    #: The statement names its own ALGORITHM or LOCK: run as written.
    given: bool = False

    @property
    def base(self) -> str:
        """The statement in the form an algorithm clause can follow."""
        if self.kind == "drop_index":
            return f"ALTER TABLE {self.table} {self.clauses}"
        return self.text

    def form(self, algorithm: str) -> str:
        """The statement asking for ``algorithm`` (``ALGORITHM=INSTANT``)."""
        if self.kind == "create_index":  # CREATE INDEX takes the options without commas
            return f"{self.text} {algorithm.replace(',', '')}"
        return f"{self.base}, {algorithm}"

    @property
    def adds_foreign_key(self) -> bool:
        return self.kind == "alter" and _FOREIGN_KEY.search(_blank_quoted(self.clauses)) is not None

    @property
    def rename_only(self) -> bool:
        return self.kind == "alter" and _RENAME_ONLY.match(self.clauses.strip()) is not None

    def describe(self) -> str:
        """``ALTER TABLE orders``, for a statement no operation names."""
        verb = {"alter": "ALTER TABLE", "create_index": "CREATE INDEX ON"}.get(
            self.kind, "DROP INDEX ON"
        )
        return f"{verb} {self.table_name}"


def _table_parts(written: str) -> tuple[str | None, str]:
    match = re.fullmatch(rf"\s*{_QUALIFIED}\s*", written, re.S)
    if match is None:
        return None, _unquote(written)
    if match["second"] is not None:
        return _unquote(match["first"]), _unquote(match["second"])
    return None, _unquote(match["first"])


def online_statement(sql: str) -> OnlineStatement | None:
    """``sql`` as a statement that takes an algorithm; None for anything else (any other
    statement, several statements, or none)."""
    text = _strip(sql)
    if not text:
        return None
    blank = _blank_quoted(text)
    if ";" in blank:
        return None  # several statements: run as written
    for kind, pattern in (
        ("alter", _ALTER),
        ("create_index", _CREATE_INDEX),
        ("drop_index", _DROP_INDEX),
    ):
        match = pattern.match(text)
        if match is None:
            continue
        table = match["table"]
        schema_name, table_name = _table_parts(table)
        if kind == "alter":
            clauses = match["clauses"].strip()
            given = _GIVEN.search(_blank_quoted(clauses)) is not None
        elif kind == "create_index":
            prefix = f"{match['kind'].upper()} " if match["kind"] else ""
            exists = "IF NOT EXISTS " if match["if"] else ""
            using = f" {match['using'].strip()}" if match["using"] else ""
            clauses = f"ADD {prefix}INDEX {exists}{match['name']}{using} {match['rest'].strip()}"
            given = _GIVEN_INDEX.search(_blank_quoted(match["rest"])) is not None
        else:
            exists = "IF EXISTS " if match["if"] else ""
            clauses = f"DROP INDEX {exists}{match['name']}"
            given = False
        return OnlineStatement(kind, text, table, schema_name, table_name, clauses, given)
    return None
