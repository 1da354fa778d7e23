"""Reading a statement before it reaches the server.

On PostgreSQL the server's own parser decides (:mod:`.pg_statements`). On MySQL/MariaDB and
SQLite the statement is read as the server reads it (comments, quoting, executable comments)
for the refusals that need no server help; the boundary itself is the server's: MariaDB's XA
transaction, SQLite's authorizer and its read-only file (:mod:`.sandbox`, :mod:`.session`).
"""

from __future__ import annotations

import re

from myfy_db.shell.policy import LEAVE, META, READ_ONLY_HINT, Policy, StatementRefused

__all__ = ["dialect_label", "refusal", "statements"]


_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_MYSQL_EXECUTABLE = re.compile(r"/\*M?!\d*")


def statements(sql: str, dialect: str) -> list[tuple[str, str]]:
    """Split ``sql`` into statements as the server would read them.

    Returns, for each statement, ``(code, full)``: both upper-cased with whitespace collapsed
    and comments removed; ``code`` has string literals emptied, ``full`` keeps them. MySQL's
    executable comments (``/*! ... */``, ``/*M! ... */``) count as code, as the server runs them.
    """
    mysql = dialect in ("mysql", "mariadb")
    found: list[tuple[str, str]] = []
    code: list[str] = []
    full: list[str] = []
    i, n = 0, len(sql)
    executable_depth = 0

    def flush() -> None:
        c = " ".join("".join(code).split()).upper()
        f = " ".join("".join(full).split()).upper()
        if c:
            found.append((c, f))
        code.clear()
        full.clear()

    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\" and mysql and ch != "`":
                    j += 2
                    continue
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            literal = sql[i : j + 1]
            full.append(literal)
            code.append(" '' " if ch == "'" else " " + literal[1:-1] + " ")
            i = j + 1
            continue
        if ch == "$" and not mysql and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_")):
            match = _DOLLAR.match(sql, i)
            if match:
                tag = match.group(0)
                end = sql.find(tag, match.end())
                end = n if end < 0 else end + len(tag)
                full.append(sql[i:end])
                code.append(" '' ")
                i = end
                continue
        if ch == "-" and sql.startswith("--", i):
            after = sql[i + 2 : i + 3]
            if not mysql or after == "" or after.isspace():
                end = sql.find("\n", i)
                i = n if end < 0 else end
                continue
        if ch == "#" and mysql:
            end = sql.find("\n", i)
            i = n if end < 0 else end
            continue
        if ch == "/" and sql.startswith("/*", i):
            if mysql:
                match = _MYSQL_EXECUTABLE.match(sql, i)
                if match:
                    executable_depth += 1
                    code.append(" ")
                    full.append(" ")
                    i = match.end()
                    continue
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("*/", j):
                    depth -= 1
                    j += 2
                elif not mysql and sql.startswith("/*", j):
                    depth += 1
                    j += 2
                else:
                    j += 1
            code.append(" ")
            full.append(" ")
            i = j
            continue
        if ch == "*" and executable_depth and sql.startswith("*/", i):
            executable_depth -= 1
            code.append(" ")
            full.append(" ")
            i += 2
            continue
        if ch == ";":
            flush()
            i += 1
            continue
        code.append(ch)
        full.append(ch)
        i += 1
    flush()
    return found


# -- what is refused ------------------------------------------------------------------------

_TRANSACTION_CONTROL = {
    "BEGIN",
    "START",
    "COMMIT",
    "END",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT",
    "RELEASE",
    "XA",
}
#: MySQL/MariaDB statements that commit the transaction implicitly (MySQL manual, "Statements
#: That Cause an Implicit Commit"), plus dynamic SQL and procedures, which may.
_MYSQL_IMPLICIT_COMMIT = {
    "CREATE",
    "ALTER",
    "DROP",
    "RENAME",
    "TRUNCATE",
    "GRANT",
    "REVOKE",
    "LOCK",
    "UNLOCK",
    "ANALYZE",
    "OPTIMIZE",
    "REPAIR",
    "CHECK",
    "FLUSH",
    "RESET",
    "INSTALL",
    "UNINSTALL",
    "CACHE",
    "CHANGE",
    "STOP",
    "PURGE",
    "BACKUP",
    "CALL",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
}
_WRITES = {"INSERT", "UPDATE", "DELETE", "REPLACE", "MERGE", "UPSERT", "COPY", "LOAD"}
_DDL = {"CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE", "COMMENT", "GRANT", "REVOKE"}


def _words(code: str) -> list[str]:
    return code.lstrip("( ").split(" ")


def _sandbox_refusal(code: str, dialect: str) -> str | None:
    words = _words(code)
    first = words[0]
    second = words[1] if len(words) > 1 else ""
    mysql = dialect in ("mysql", "mariadb")
    if first in _TRANSACTION_CONTROL or (first == "PREPARE" and second == "TRANSACTION"):
        return "it would end the sandbox's transaction and keep what it did"
    if first == "SET" and "AUTOCOMMIT" in code:
        return "it would commit the sandbox's transaction"
    if first == "SET" and (second in ("GLOBAL", "PERSIST", "PERSIST_ONLY") or "@@GLOBAL." in code):
        return "SET GLOBAL changes the server for good, outside any transaction"
    if first == "SET" and second == "PASSWORD":
        return "SET PASSWORD is kept at once, outside any transaction"
    if mysql and re.search(r"\bSETVAL\s*\(", code):
        return "SETVAL() moves the sequence for good: a rollback does not undo it"
    if mysql and first in _MYSQL_IMPLICIT_COMMIT:
        return f"{dialect_label(dialect)} commits the sandbox's transaction before running it"
    return None


def dialect_label(dialect: str) -> str:
    return {"mysql": "MySQL/MariaDB", "mariadb": "MariaDB"}.get(dialect, dialect)


def _read_only_refusal(code: str, full: str) -> str | None:
    words = _words(code)
    first = words[0]
    if "READ WRITE" in full or "SESSION CHARACTERISTICS" in full:
        return "it would switch the transaction or session to read-write"
    if "SET_CONFIG" in full:
        return "set_config() can switch the session to read-write"
    if first in ("SET", "RESET", "ALTER") and (
        "READ_ONLY" in full or "QUERY_ONLY" in full or "READ ONLY" in full
    ):
        return "it changes the access mode"
    if first in ("PREPARE", "EXECUTE", "DEALLOCATE"):
        return "dynamic SQL is not read here, so it is not run"
    if first in ("RESET", "DISCARD"):
        return f"{first} would restore the read-write default"
    if first == "PRAGMA" and re.search(r"QUERY_ONLY\s*(=|\()", full):
        return "PRAGMA query_only would switch SQLite to read-write"
    return None


def _meta_refusal(code: str, full: str) -> bool:
    if META not in full:
        return False
    first = _words(code)[0]
    return first in _WRITES | _DDL or (first == "WITH" and _has_write(code))


def _has_write(code: str) -> bool:
    return re.search(r"\b(INSERT|UPDATE|DELETE|MERGE)\b", code) is not None


def refusal(sql: str, dialect: str, policy: Policy) -> StatementRefused | None:
    """The error refusing ``sql`` under ``policy``, or None when it may run.

    On PostgreSQL the server's own parser decides (:mod:`.pg_statements`); elsewhere the
    statement is read as the server would read it, and the server itself is the boundary
    (MariaDB's XA transaction, SQLite's authorizer and read-only file).
    """
    if dialect == "postgresql":
        return _pg_refusal(sql, policy)
    for code, full in statements(sql, dialect):
        if policy.protected_record is not None and _meta_refusal(code, full):
            return _record_refusal(policy)
        if policy.sandbox:
            reason = _sandbox_refusal(code, dialect)
            if reason:
                return StatementRefused(f"sandbox: {_head(code)} refused: {reason}", hint=LEAVE)
        if policy.read_only:
            reason = _read_only_refusal(code, full)
            if reason:
                return StatementRefused(
                    f"read-only: {_head(code)} refused: {reason}", hint=READ_ONLY_HINT
                )
    return None


def _pg_refusal(sql: str, policy: Policy) -> StatementRefused | None:
    from myfy_db.shell.pg_statements import judge

    verdict = judge(
        sql,
        sandbox=policy.sandbox,
        read_only=policy.read_only,
        protected_record=policy.protected_record is not None,
    )
    if verdict is None:
        return None
    if verdict.record:
        return _record_refusal(policy)
    if policy.sandbox:
        return StatementRefused(f"sandbox: {verdict.what} refused: {verdict.reason}", hint=LEAVE)
    return StatementRefused(
        f"read-only: {verdict.what} refused: {verdict.reason}", hint=READ_ONLY_HINT
    )


def _record_refusal(policy: Policy) -> StatementRefused:
    return StatementRefused(
        f"refused: {META.lower()} records this database as "
        f"{policy.protected_record!r} (protected); the shell cannot change that record",
        hint="only MYFY_DB_DISABLE_ENVIRONMENT_CHECK=1 lifts the guard",
    )


def _head(code: str) -> str:
    words = _words(code)
    second = re.match(r"[A-Z_]*", words[1]).group(0) if len(words) > 1 else ""  # type: ignore[union-attr]
    return f"{words[0]} {second}".strip()
