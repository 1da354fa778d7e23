"""What the shell refuses on PostgreSQL, decided on PostgreSQL's own parse tree.

Every statement the shell's engine sends is parsed with pglast (libpg_query: the server's
own grammar as a library), so comments (``--`` ended by ``\\r``, nested ``/* */``),
quoting, ``U&"..."`` escapes and several statements in one string read exactly as the
server reads them, and names are compared after the parser has resolved them. A statement
the parser cannot read is refused: the server would not run it either.

Refused in a sandbox and in read-only mode:

- transaction control of any form (``BEGIN``, ``COMMIT``, ``END``, ``SAVEPOINT``,
  ``PREPARE TRANSACTION`` ...);
- ``SET``/``RESET`` of the session's or transaction's characteristics, of the role or the
  session authorization, ``RESET ALL`` and ``DISCARD``; ``set_config`` of those names (or of
  a name that is not a constant);
- ``COPY`` to or from a program or a server file;
- functions whose effects a rollback does not undo (:data:`LASTING_FUNCTIONS`);
- in read-only mode, ``dblink`` as well (it writes through a connection of its own).

On a database recorded as protected, a statement that writes to or alters the record
(``myfy_db_meta``), under whatever spelling, is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

__all__ = ["LASTING_FUNCTIONS", "Verdict", "judge"]

#: Functions whose effects survive a rollback (or reach past the transaction).
LASTING_FUNCTIONS = frozenset(
    {
        "setval",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_signal_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_log_backend_memory_contexts",
        "pg_create_physical_replication_slot",
        "pg_create_logical_replication_slot",
        "pg_drop_replication_slot",
        "pg_copy_physical_replication_slot",
        "pg_copy_logical_replication_slot",
        "pg_replication_slot_advance",
        "pg_logical_slot_get_changes",
        "pg_logical_slot_get_binary_changes",
        "pg_logical_emit_message",
        "lo_import",
        "lo_export",
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_advisory_unlock",
        "pg_advisory_unlock_shared",
        "pg_advisory_unlock_all",
        "pg_file_write",
        "pg_file_rename",
        "pg_file_unlink",
        "pg_file_sync",
        "pg_switch_wal",
        "pg_promote",
        "pg_create_restore_point",
        "pg_backup_start",
        "pg_backup_stop",
        "pg_wal_replay_pause",
        "pg_wal_replay_resume",
    }
)
#: Function name prefixes with the same property.
_LASTING_PREFIXES = ("dblink", "pg_replication_origin_", "pg_stat_reset")
#: Settings that change the transaction's or the session's access, role or authorization.
_CHARACTERISTICS = frozenset(
    {
        "transaction_read_only",
        "default_transaction_read_only",
        "transaction_isolation",
        "default_transaction_isolation",
        "transaction_deferrable",
        "default_transaction_deferrable",
        "session_authorization",
        "role",
        "session characteristics",
        "transaction",
        "transaction snapshot",
        "session_replication_role",
        "idle_in_transaction_session_timeout",
    }
)
META = "myfy_db_meta"
#: A DBAPI placeholder SQLAlchemy may leave in the text (``%s``, ``%(name)s``).
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s")


class Verdict:
    """Why a statement is refused (``reason``, ``what`` names it), or nothing."""

    def __init__(self, what: str, reason: str, *, record: bool = False) -> None:
        self.what = what
        self.reason = reason
        #: Refused because it would change the protected record.
        self.record = record


def _nodes(tree: Any) -> Iterator[Any]:
    """Every node of a pglast tree, depth first."""
    from pglast import ast

    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Node):
            yield node
            slots: Any = getattr(node, "__slots__", ())
            stack.extend(getattr(node, name) for name in slots)
        elif isinstance(node, (tuple, list)):
            stack.extend(node)


def _function_name(node: Any) -> str:
    return ".".join(part.sval for part in node.funcname if hasattr(part, "sval")).lower()


def _const_string(node: Any) -> str | None:
    from pglast import ast

    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.String):
        return str(node.val.sval)
    if isinstance(node, ast.TypeCast):
        return _const_string(node.arg)
    return None


def _parse(sql: str) -> tuple[Any, ...]:
    from pglast import parse_sql

    return tuple(parse_sql(_PLACEHOLDER.sub("NULL", sql)))


_TARGETS = (
    "InsertStmt",
    "UpdateStmt",
    "DeleteStmt",
    "MergeStmt",
    "TruncateStmt",
    "AlterTableStmt",
    "DropStmt",
    "RenameStmt",
    "CreateTrigStmt",
)


def _touches_record(statement: Any) -> bool:
    """The statement writes to, alters or drops ``myfy_db_meta`` (or drops its trigger)."""
    from pglast import ast

    for node in _nodes(statement):
        name = type(node).__name__
        if name in ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"):
            relation = node.relation
            if relation is not None and str(relation.relname).lower() == META:
                return True
        elif name in ("TruncateStmt",):
            if any(str(r.relname).lower() == META for r in node.relations or ()):
                return True
        elif name in ("AlterTableStmt", "RenameStmt", "CreateTrigStmt"):
            relation = getattr(node, "relation", None)
            if relation is not None and str(relation.relname).lower() == META:
                return True
        elif name == "DropStmt":
            for item in node.objects or ():
                parts = item if isinstance(item, tuple) else (item,)
                names = [str(p.sval).lower() for p in parts if isinstance(p, ast.String)]
                if META in names:
                    return True
    return False


def judge(sql: str, *, sandbox: bool, read_only: bool, protected_record: bool) -> Verdict | None:
    """The reason to refuse ``sql`` under these rules, or None when it may run."""
    from pglast import ast, enums

    try:
        statements = _parse(sql)
    except Exception as exc:  # the parser's error: the server would not run it either
        if sandbox or read_only:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return Verdict("statement", f"PostgreSQL's parser cannot read it ({first})")
        return None
    for raw in statements:
        statement = raw.stmt
        if protected_record and _touches_record(statement):
            return Verdict(type(statement).__name__, "it would change the record", record=True)
        if not (sandbox or read_only):
            continue
        for node in _nodes(statement):
            if isinstance(node, ast.TransactionStmt):
                kind = str(getattr(node.kind, "name", "TRANSACTION")).removeprefix("TRANS_STMT_")
                return Verdict(
                    kind.replace("_", " "),
                    "it would end the transaction the shell holds"
                    if sandbox
                    else "the shell's transactions are read-only; it would change that",
                )
            if isinstance(node, ast.VariableSetStmt):
                name = (node.name or "").lower()
                if node.kind == enums.VariableSetKind.VAR_RESET_ALL or name in _CHARACTERISTICS:
                    resets = (enums.VariableSetKind.VAR_RESET, enums.VariableSetKind.VAR_RESET_ALL)
                    verb = "RESET" if node.kind in resets else "SET"
                    what = (
                        f"{verb} {name.upper() if ' ' in name or name == 'transaction' else name}"
                    )
                    return Verdict(
                        what.strip() if name else f"{verb} ALL",
                        "it could switch the session or its transaction to read-write, or "
                        "change its role"
                        if read_only
                        else "it changes the session's access, role or transaction",
                    )
            if isinstance(node, ast.DiscardStmt):
                return Verdict("DISCARD", "it would reset the session's read-only default")
            if isinstance(node, ast.CopyStmt) and (node.is_program or node.filename):
                target = "a program" if node.is_program else "a server file"
                return Verdict("COPY", f"COPY to or from {target} reaches outside the database")
            if isinstance(node, ast.FuncCall):
                function = _function_name(node)
                short = function.rsplit(".", 1)[-1]
                if short in LASTING_FUNCTIONS or short.startswith(_LASTING_PREFIXES):
                    return Verdict(f"{short}()", "its effect is not undone by a rollback")
                if short == "set_config":
                    args = node.args or ()
                    setting = _const_string(args[0]) if args else None
                    if setting is None or setting.lower() in _CHARACTERISTICS:
                        return Verdict(
                            "set_config()",
                            "it can change the session's access, role or transaction",
                        )
    return None
