"""``# myfy-db: allow RULE-ID -- reason`` comments beside an operation in a revision file."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

_ALLOW = re.compile(
    r"#\s*myfy-db:\s*allow\s+(?P<ids>[A-Za-z0-9_-]+(?:\s*,\s*[A-Za-z0-9_-]+)*)"
    r"(?:\s+--\s*(?P<reason>.*\S))?\s*$"
)
NO_REASON = "(no reason given)"


@dataclass
class _File:
    comments: dict[int, dict[str, str]] = field(default_factory=dict)
    statements: list[tuple[int, int]] = field(default_factory=list)
    #: (line, rule id as written) for every id an allow comment names.
    named: list[tuple[int, str]] = field(default_factory=list)


@cache
def _read(path: str) -> _File:
    parsed = _File()
    try:
        source = Path(path).read_text(encoding="utf-8")
    except OSError:
        return parsed
    if "myfy-db" not in source:  # no allow comment: nothing to tokenize or parse
        return parsed
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type != tokenize.COMMENT:
                continue
            match = _ALLOW.search(token.string)
            if match is None:
                continue
            reason = match.group("reason") or NO_REASON
            ids = {i.strip().upper(): reason for i in match.group("ids").split(",")}
            parsed.comments.setdefault(token.start[0], {}).update(ids)
            parsed.named += [(token.start[0], i.strip()) for i in match.group("ids").split(",")]
        tree = ast.parse(source)
    except (SyntaxError, tokenize.TokenError):
        return parsed
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and not isinstance(
            node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.With, ast.AsyncWith)
        ):
            parsed.statements.append((node.lineno, node.end_lineno or node.lineno))
    return parsed


def allowed(path: str, line: int, rule: str) -> str | None:
    """The reason given for accepting ``rule`` at ``path:line``, or None.

    The comment may sit on any line of the statement that makes the call, or on the line
    just above it.
    """
    parsed = _read(path)
    spans = [s for s in parsed.statements if s[0] <= line <= s[1]]
    start, end = min(spans, key=lambda s: s[1] - s[0]) if spans else (line, line)
    for number in range(start - 1, end + 1):
        reason = parsed.comments.get(number, {}).get(rule.upper())
        if reason is not None:
            return reason
    return None


def clear_cache() -> None:
    """Forget parsed files (revision files can change between runs in one process)."""
    _read.cache_clear()


def check_comments(paths: set[str], known: set[str], shown: dict[str, str]) -> None:
    """Refuse (exit 2) an allow comment that names no rule, or gives no reason.

    A misspelt id (``PG0009``) would otherwise accept nothing and be silently ignored.
    ``shown`` maps each path to the form to print it in.
    """
    from difflib import get_close_matches

    from myfy_db.errors import ConfigError

    for path in sorted(paths):
        parsed = _read(path)
        for line, rule in parsed.named:
            where = f"{shown.get(path, path)}:{line}"
            if rule.upper() not in known:
                close = get_close_matches(rule.upper(), sorted(known), n=1)
                hint = (
                    f"did you mean {close[0]}?" if close else "see myfy-db migrate lint --explain"
                )
                raise ConfigError(f"{where}: `# myfy-db: allow {rule}` names no rule", hint=hint)
            if parsed.comments.get(line, {}).get(rule.upper()) == NO_REASON:
                raise ConfigError(
                    f"{where}: `# myfy-db: allow {rule}` gives no reason",
                    hint=f"say why after two dashes: # myfy-db: allow {rule} -- reason",
                )
