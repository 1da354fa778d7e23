"""Classify the SQL of ``op.execute()`` so the rules can judge it like the operation form.

On PostgreSQL the statements are parsed with pglast (PostgreSQL's own parser, the one the
shell's sandbox uses): a dollar-quoted function body is one statement, names are resolved
as the server resolves them, and every shape the rules know is read from the parse tree:
data changes (and whether an UPDATE or DELETE touches every row), ``SET``, ``CREATE/DROP
INDEX`` (``CONCURRENTLY``, ``IF [NOT] EXISTS``), ``VALIDATE CONSTRAINT``, ``ADD CONSTRAINT
... USING INDEX``, renames and drops of tables and columns, functions and comments.
On MySQL and MariaDB they are parsed with sqlglot's MySQL grammar, on SQLite with its SQLite
grammar, where it covers the statement; what sqlglot only passes through as an opaque
command (``RENAME TABLE``, a ``FULLTEXT`` index, ``CONVERT TO CHARACTER SET``) is read from
the text. Anything else is reported by the raw-SQL rule, by name, rather than silently
passed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

_NAME = r'(?:"[^"]+"|`[^`]+`|[\w$]+)(?:\.(?:"[^"]+"|`[^`]+`|[\w$]+))?'

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("data", re.compile(r"^(?:INSERT|UPDATE|DELETE|SELECT|WITH|MERGE|REPLACE)\b", re.I)),
    ("set", re.compile(r"^SET\b", re.I)),
    (
        "create_index",
        re.compile(
            rf"^CREATE\s+(?P<unique>UNIQUE\s+)?(?P<fulltext>FULLTEXT\s+)?INDEX\s+"
            rf"(?P<concurrently>CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>{_NAME})?\s*"
            rf"ON\s+(?:ONLY\s+)?(?P<table>{_NAME})",
            re.I,
        ),
    ),
    (
        "drop_index",
        re.compile(
            rf"^DROP\s+INDEX\s+(?P<concurrently>CONCURRENTLY\s+)?(?:IF\s+EXISTS\s+)?"
            rf"(?P<name>{_NAME})(?:\s+ON\s+(?P<table>{_NAME}))?",
            re.I,
        ),
    ),
    (
        "validate",
        re.compile(
            rf"^ALTER\s+TABLE\s+(?:ONLY\s+)?(?P<table>{_NAME})\s+VALIDATE\s+CONSTRAINT\s+"
            rf"(?P<name>{_NAME})\s*$",
            re.I,
        ),
    ),
    (
        "using_index",
        re.compile(
            rf"^ALTER\s+TABLE\s+(?:ONLY\s+)?(?P<table>{_NAME})\s+ADD\s+CONSTRAINT\s+{_NAME}\s+"
            rf"(?:UNIQUE|PRIMARY\s+KEY)\s+USING\s+INDEX\s+(?P<name>{_NAME})\s*$",
            re.I,
        ),
    ),
    (
        "rename_table",
        re.compile(rf"^RENAME\s+TABLE\s+(?P<table>{_NAME})\s+TO\s+(?P<name>{_NAME})", re.I),
    ),
    (
        "charset",
        re.compile(
            rf"^ALTER\s+TABLE\s+(?P<table>{_NAME})\s+.*CONVERT\s+TO\s+CHARACTER\s+SET", re.I | re.S
        ),
    ),
]


@dataclass(frozen=True)
class RawStatement:
    """One recognised statement of raw SQL."""

    kind: str
    text: str
    table: str | None = None
    name: str | None = None
    concurrently: bool = False
    unique: bool = False
    fulltext: bool = False
    column: str | None = None
    #: An UPDATE or DELETE without WHERE: every row of the table, in one transaction.
    whole_table: bool = False
    #: ``IF NOT EXISTS`` / ``IF EXISTS`` was given.
    if_exists: bool = False
    #: Identifiers as written that are longer than the server keeps (PostgreSQL: 63
    #: bytes); the parser itself truncates them, as the server does.
    long_names: tuple[str, ...] = ()


def _unquote(name: str | None) -> str | None:
    if name is None:
        return None
    return name.split(".")[-1].strip('"`')


def split_statements(sql: str) -> list[str]:
    """Statements of ``sql`` split on semicolons outside quotes and comments stripped."""
    text = re.sub(r"--[^\n]*", "", sql)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    parts: list[str] = []
    current: list[str] = []
    quote: str | None = None
    for char in text:
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"`":
            quote = char
        elif char == ";":
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [" ".join(p.split()) for p in parts if p.strip()]


_CHANGE = re.compile(
    rf"^(?:UPDATE\s+(?:LOW_PRIORITY\s+|IGNORE\s+)*|DELETE\s+(?:LOW_PRIORITY\s+|QUICK\s+|IGNORE\s+)*"
    rf"FROM\s+)(?P<table>{_NAME})",
    re.I,
)


def classify(statement: str) -> RawStatement | None:
    """The recognised shape of one statement, or None when it cannot be analysed."""
    change = _CHANGE.match(statement)
    if change is not None:  # the text's reading: no WHERE at all means every row
        whole = re.search(r"\bWHERE\b", statement, re.I) is None
        return RawStatement(
            "data", statement, table=_unquote(change.group("table")), whole_table=whole
        )
    for kind, pattern in _PATTERNS:
        match = pattern.search(statement)
        if match is None:
            continue
        groups = match.groupdict()
        return RawStatement(
            kind,
            statement,
            table=_unquote(groups.get("table")),
            name=_unquote(groups.get("name")),
            concurrently=bool(groups.get("concurrently")),
            unique=bool(groups.get("unique")),
            fulltext=bool(groups.get("fulltext")),
        )
    return None


def statements_of(sql: str, dialect: str) -> list[RawStatement]:
    """Every statement of ``sql`` classified for ``dialect`` (``unknown`` where no shape
    is known); PostgreSQL's statements come from PostgreSQL's own parser."""
    if dialect == "postgresql":
        parsed = _postgresql(sql)
        if parsed is not None:
            return parsed
    if dialect in ("mysql", "mariadb", "sqlite"):
        parsed = _sqlglot(sql, "sqlite" if dialect == "sqlite" else "mysql")
        if parsed is not None:
            return parsed
    texts = split_statements(sql) or [sql]
    return [classify(text) or RawStatement("unknown", text) for text in texts]


def _postgresql(sql: str) -> list[RawStatement] | None:
    """The statements as pglast reads them; None when it cannot (then the text is read)."""
    try:
        from pglast import parse_sql
    except ImportError:  # pragma: no cover - pglast is a dependency
        return None
    try:
        parsed = parse_sql(sql)
    except Exception:
        return None
    long_names = _long_identifiers(sql)
    found = []
    for raw in parsed:
        # pglast gives the statements' places in characters (the server's are in bytes)
        start = raw.stmt_location or 0
        end = start + raw.stmt_len if raw.stmt_len else len(sql)
        text = " ".join(sql[start:end].split())
        shape = _pg_shape(raw.stmt, text)
        mine = tuple(name for at, name in long_names if start <= at < end)
        if mine:
            shape = replace(shape, long_names=mine)
        found.append(shape)
    return found


#: PostgreSQL keeps NAMEDATALEN - 1 bytes of an identifier and drops the rest.
_MAX_IDENTIFIER_BYTES = 63


def _long_identifiers(sql: str) -> list[tuple[int, str]]:
    """(byte offset, name) of every identifier in ``sql`` longer than PostgreSQL keeps,
    read with PostgreSQL's own scanner (a quoted name unquoted; strings never count)."""
    from pglast.parser import scan

    found = []
    try:
        tokens = scan(sql)
    except Exception:
        return []
    for token in tokens:
        if token.name not in ("IDENT", "UIDENT"):
            continue
        written = sql[token.start : token.end + 1]  # the scanner counts characters
        name = written
        if written.startswith('"') and written.endswith('"'):
            name = written[1:-1].replace('""', '"')
        if len(name.encode()) > _MAX_IDENTIFIER_BYTES:
            found.append((token.start, name))
    return found


#: pglast's statements that create an object no table depends on yet.
_NEW_OBJECTS = frozenset(
    {
        "CreateEnumStmt",
        "CompositeTypeStmt",
        "CreateDomainStmt",
        "CreateSeqStmt",
        "CreateSchemaStmt",
        "CreateExtensionStmt",
        "AlterEnumStmt",
    }
)


def _pg_shape(node: object, text: str) -> RawStatement:
    from pglast import ast, enums

    name = type(node).__name__
    if name in ("InsertStmt", "SelectStmt", "MergeStmt"):
        return RawStatement("data", text)
    if isinstance(node, (ast.UpdateStmt, ast.DeleteStmt)):
        table = node.relation.relname if node.relation is not None else None
        return RawStatement("data", text, table=table, whole_table=node.whereClause is None)
    if isinstance(node, ast.VariableSetStmt):
        return RawStatement("set", text)
    if name in _NEW_OBJECTS:
        # A new type, domain, sequence, schema or extension (or an enum value added): no
        # existing table is locked or rewritten.
        return RawStatement("new_object", text)
    if isinstance(node, (ast.CreateFunctionStmt, ast.CommentStmt)):
        return RawStatement("function" if name == "CreateFunctionStmt" else "comment", text)
    if isinstance(node, ast.IndexStmt) and node.relation is not None:
        return RawStatement(
            "create_index",
            text,
            table=node.relation.relname,
            name=node.idxname,
            concurrently=bool(node.concurrent),
            unique=bool(node.unique),
            if_exists=bool(node.if_not_exists),
        )
    if isinstance(node, ast.DropStmt) and node.objects:
        last = node.objects[0]
        parts = last if isinstance(last, tuple) else (last,)
        object_name = str(getattr(parts[-1], "sval", "")) or None
        if node.removeType == enums.ObjectType.OBJECT_INDEX:
            return RawStatement(
                "drop_index",
                text,
                name=object_name,
                concurrently=bool(node.concurrent),
                if_exists=bool(node.missing_ok),
            )
        if node.removeType == enums.ObjectType.OBJECT_TABLE:
            return RawStatement("drop_table", text, table=object_name)
    if isinstance(node, ast.RenameStmt) and node.relation is not None:
        table = node.relation.relname
        if node.renameType == enums.ObjectType.OBJECT_TABLE:
            return RawStatement("rename_table", text, table=table, name=node.newname)
        if node.renameType == enums.ObjectType.OBJECT_COLUMN:
            return RawStatement("rename_column", text, table=table, column=node.subname)
    if (
        isinstance(node, ast.AlterTableStmt)
        and node.relation is not None
        and node.cmds
        and len(node.cmds) == 1
    ):
        command = node.cmds[0]
        table = node.relation.relname
        if command.subtype == enums.AlterTableType.AT_ValidateConstraint:
            return RawStatement("validate", text, table=table, name=command.name)
        if command.subtype == enums.AlterTableType.AT_DropColumn:
            return RawStatement("drop_column", text, table=table, column=command.name)
        constraint = getattr(command, "def_", None)
        if (
            command.subtype == enums.AlterTableType.AT_AddConstraint
            and constraint is not None
            and getattr(constraint, "indexname", None)
        ):
            return RawStatement("using_index", text, table=table, name=constraint.indexname)
    return RawStatement("unknown", text)


_EXECUTABLE_COMMENT = re.compile(r"/\*M?!", re.I)


def _sqlglot(sql: str, read: str) -> list[RawStatement] | None:
    """The statements as sqlglot's grammar for ``read`` (``mysql``, ``sqlite``) reads them;
    None when it cannot parse them (then the text is read)."""
    import logging

    try:
        import sqlglot
    except ImportError:  # pragma: no cover - sqlglot is a dependency
        return None
    if read == "mysql" and _EXECUTABLE_COMMENT.search(sql):
        # /*! ... */ and /*M! ... */ run on the server: a parser that reads them as
        # comments would hide what they do, so the whole text cannot be analysed.
        return [RawStatement("unknown", " ".join(sql.split()))]
    quiet = logging.getLogger("sqlglot")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "falling back to parsing as a Command" is expected
    try:
        parsed = sqlglot.parse(sql, read=read)
    except Exception:
        return None
    finally:
        quiet.setLevel(level)
    found = []
    for node in parsed:
        if node is None:
            continue
        found.append(_sqlglot_shape(node, read))
    return found


def _name(node: object) -> str | None:
    name = getattr(node, "name", None)
    return str(name) if name else None


def _sqlglot_shape(node: object, read: str) -> RawStatement:
    from sqlglot import exp

    assert isinstance(node, exp.Expression)
    text = " ".join(node.sql(dialect=read).split())
    if isinstance(node, exp.Command):  # sqlglot passes it through: read the text
        return classify(text) or RawStatement("unknown", text)
    if isinstance(node, (exp.Update, exp.Delete)):
        table = _name(node.this)
        return RawStatement("data", text, table=table, whole_table=node.args.get("where") is None)
    if isinstance(node, (exp.Insert, exp.Select, exp.Union)):
        return RawStatement("data", text)
    if isinstance(node, exp.Set):
        return RawStatement("set", text)
    if isinstance(node, exp.Create):
        kind = str(node.args.get("kind") or "").upper()
        index = node.this
        if kind == "INDEX" and isinstance(index, exp.Index):
            return RawStatement(
                "create_index",
                text,
                table=_name(index.args.get("table")),
                name=_name(index),
                unique=bool(node.args.get("unique")),
                if_exists=bool(node.args.get("exists")),
            )
        if kind in ("FUNCTION", "PROCEDURE", "TRIGGER"):
            return RawStatement("function", text)
    if isinstance(node, exp.Drop):
        kind = str(node.args.get("kind") or "").upper()
        tables = node.args.get("tables") or [node.this]
        name = _name(tables[0]) if tables else None
        if kind == "INDEX":
            return RawStatement(
                "drop_index", text, name=name, if_exists=bool(node.args.get("exists"))
            )
        if kind == "TABLE":
            return RawStatement("drop_table", text, table=name)
    if isinstance(node, exp.Alter) and len(node.args.get("actions") or []) == 1:
        return _sqlglot_alter(node, text)
    return RawStatement("unknown", text)


def _sqlglot_alter(node: object, text: str) -> RawStatement:
    from sqlglot import exp

    assert isinstance(node, exp.Alter)
    table = _name(node.this)
    action = node.args["actions"][0]
    if isinstance(action, exp.AlterRename):
        return RawStatement("rename_table", text, table=table, name=_name(action.this))
    if isinstance(action, exp.RenameColumn):
        return RawStatement("rename_column", text, table=table, column=_name(action.this))
    if isinstance(action, exp.Drop) and str(action.args.get("kind") or "").upper() == "COLUMN":
        columns = action.args.get("tables") or [action.this]
        return RawStatement("drop_column", text, table=table, column=_name(columns[0]))
    return RawStatement("unknown", text)
