"""Classify the SQL of ``op.execute()`` where its shape is known; the rest is "not analysed".

Only statement shapes the rules need are recognised: data changes and ``SET`` (no schema
effect), ``CREATE/DROP INDEX`` (with or without ``CONCURRENTLY``), ``VALIDATE CONSTRAINT``,
``ADD CONSTRAINT ... USING INDEX`` and MySQL's ``CONVERT TO CHARACTER SET``. Anything else is
reported by the raw-SQL rule, by name, rather than silently passed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


def classify(statement: str) -> RawStatement | None:
    """The recognised shape of one statement, or None when it cannot be analysed."""
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
