"""``migrate --safe``: the project's unchanged revisions, run in their non-blocking forms.

While a writing run is active, :func:`safe_execution` installs the dialect's rewrites of
Alembic's operations (:mod:`.postgresql`; :mod:`.mysql` for MySQL/MariaDB) and takes them
out again afterwards; each rewrite says so in one line through the run's reporter (stderr,
never the ``--json`` document). Before anything runs, :func:`refuse_unsafe` judges the
pending revisions with the linter's rules (offline capture, :mod:`..lint`) and refuses, exit
1, what the rewrites cannot make safe: the rule's safe form is the way forward.

A dialect module provides:

- ``execution(run: SafeRun) -> AbstractContextManager[None]``: the rewrites, active inside;
  ``run.connection`` is None for ``--sql`` (offline: render the rewritten SQL);
- ``fixes(rule: str, captured: CapturedOp) -> bool``: the lint finding ``rule`` on
  ``captured`` is one its rewrites make safe (``migrate lint --safe`` marks it, and
  :func:`refuse_unsafe` lets it run).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from myfy_db.errors import ConfigError, OperationFailed
from myfy_db.migrations.options import ONLINE_DDL_TOOLS, Reporter, RunOptions

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from sqlalchemy import Connection

    from myfy_db.migrations.lint.model import CapturedOp, Finding
    from myfy_db.migrations.project import MigrationProject
    from myfy_db.settings import DatabaseSettings

__all__ = [
    "SafeRun",
    "check_options",
    "dialect_module",
    "fixes_for",
    "refuse_unsafe",
    "safe_execution",
]

#: The commands whose revisions --safe rewrites: the upgrades (``migrate``, ``up``).
SAFE_COMMANDS = frozenset({"upgrade"})


@dataclass(frozen=True)
class SafeRun:
    """One ``--safe`` run as a dialect module sees it."""

    options: RunOptions
    settings: DatabaseSettings
    #: ``postgresql`` or ``mysql`` (MySQL and MariaDB).
    dialect: str
    #: The migration's live connection; None when rendering SQL offline (``--sql``).
    connection: Connection | None
    #: One line each: ``r0005: create_index ix_orders_user_id -> CREATE INDEX CONCURRENTLY``.
    report: Reporter


def _family(backend: str) -> str:
    return "mysql" if backend in ("mysql", "mariadb") else backend


def check_options(options: RunOptions, settings: DatabaseSettings, *, atomic: bool) -> bool:
    """Whether the run is a safe one; :class:`ConfigError` (exit 2) for options that cannot
    go together, before anything connects."""
    backend = _family(settings.url.backend)
    tool = options.online_ddl
    if tool is not None and tool not in ONLINE_DDL_TOOLS:
        raise ConfigError(
            f"--online-ddl {tool!r} is not known", hint="give --online-ddl pt-osc, or none"
        )
    if options.pt_osc.given and tool != "pt-osc":
        raise ConfigError(
            "--max-lag, --chunk-time and --critical-load go with --online-ddl pt-osc",
            hint="add --online-ddl pt-osc, or leave them out",
        )
    if tool is not None and backend != "mysql":
        raise ConfigError(
            f"--online-ddl {tool} is for MySQL/MariaDB, not {settings.url.dialect}",
            hint="on PostgreSQL, --safe runs the operations in their non-blocking forms",
        )
    safe = options.is_safe(settings) or tool is not None
    if safe and atomic:
        raise ConfigError(
            "--safe cannot run with --atomic: its non-blocking steps (CREATE INDEX "
            "CONCURRENTLY, VALIDATE CONSTRAINT) commit outside the run's one transaction",
            hint="run --safe without --atomic (each revision then commits on its own), or "
            "--atomic with --no-safe",
        )
    return safe


def dialect_module(backend: str) -> ModuleType | None:
    """The module of ``backend``'s rewrites; None where there is nothing to rewrite (SQLite:
    one writer at a time, whatever the statement). :class:`ConfigError` where they are
    missing."""
    family = _family(backend)
    if family == "sqlite":
        return None
    try:
        return importlib.import_module(f"{__name__}.{family}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{family}":
            raise
        raise ConfigError(
            f"--safe is not available on {backend} in this version of myfy-db",
            hint="run without --safe (MYFY_DATA_SAFE_MIGRATIONS=false), and lint the "
            "revisions first: myfy-db migrate lint",
        ) from None


def fixes_for(backend: str) -> Callable[[str, CapturedOp], bool] | None:
    """``backend``'s ``fixes(rule, captured)``: which lint findings ``--safe`` makes safe."""
    try:
        module = dialect_module(backend)
    except ConfigError:
        return None
    fixes: Callable[[str, CapturedOp], bool] | None = getattr(module, "fixes", None)
    return fixes


@contextmanager
def safe_execution(
    options: RunOptions,
    settings: DatabaseSettings,
    connection: Connection | None,
    report: Reporter,
) -> Iterator[None]:
    """The dialect's rewrites, active for the block (the Alembic call of a writing run, or
    ``--sql``); nothing when the run is not a safe one."""
    if not (options.is_safe(settings) or options.online_ddl is not None):
        yield
        return
    backend = settings.url.backend
    module = dialect_module(backend)
    if module is None:
        report(f"--safe: nothing to rewrite on {backend} (one writer at a time); run as written")
        yield
        return
    run = SafeRun(options, settings, _family(backend), connection, report)
    execution: Callable[[SafeRun], AbstractContextManager[None]] = module.execution
    with execution(run):
        yield


def _shown(finding: Finding) -> str:
    return (
        f"revision {finding.revision} ({finding.path} line {finding.line}): {finding.detail} "
        f"({finding.rule} {finding.name})"
    )


def refuse_unsafe(
    project: MigrationProject,
    settings: DatabaseSettings,
    alembic_range: str,
    revisions: set[str] | None = None,
    connection: Connection | None = None,
    online_ddl: str | None = None,
) -> None:
    """Judge the revisions of ``alembic_range`` (only those in ``revisions`` when given) as
    ``migrate lint --safe`` would, and refuse (:class:`OperationFailed`, exit 1) before
    anything runs when an error-level finding is neither made safe by ``--safe`` nor
    accepted by an allow comment.

    ``connection`` (the live one) gives the column types before the range, as ``lint``
    reads them; without it, the revisions' own ``existing_type`` is all there is.
    ``online_ddl`` (``--online-ddl``) is passed to the dialect's ``fixes``: with pt-osc,
    MySQL's copies are made safe too.
    """
    from myfy_db.migrations.lint import judge
    from myfy_db.migrations.lint.capture import capture
    from myfy_db.migrations.lint.model import Severity

    module = dialect_module(settings.url.backend)
    if module is None:
        return
    ops = capture(project, settings, settings.database_url, alembic_range)
    if revisions is not None:
        ops = [captured for captured in ops if captured.revision in revisions]
    known = _column_types(connection) if connection is not None else {}
    fixes = getattr(module, "fixes", None)
    if fixes is not None and online_ddl is not None:  # pt-osc runs the copies (MySQL only)
        fixes = functools.partial(fixes, online_ddl=online_ddl)
    findings = judge(ops, None, known, made_safe=fixes)
    unsafe = [
        f for f in findings if f.severity >= Severity.ERROR and not f.accepted and not f.made_safe
    ]
    if not unsafe:
        return
    first = unsafe[0]
    more = f" (and {len(unsafe) - 1} more)" if len(unsafe) > 1 else ""
    raise OperationFailed(
        f"--safe cannot make {_shown(first)} safe{more}; nothing was run",
        hint=f"safe form: {first.safe}; `myfy-db migrate lint --safe` lists every finding, "
        f"and `# myfy-db: allow {first.rule} -- reason` beside the operation accepts it",
    )


def _column_types(connection: Connection) -> dict[tuple[str, str], Any]:
    """Every column's type in the default schema, read on the live connection."""
    from sqlalchemy import inspect

    was_open = connection.in_transaction()
    columns = inspect(connection).get_multi_columns()
    if not was_open:
        connection.rollback()
    return {
        (table.lower(), str(column["name"]).lower()): column["type"]
        for (_, table), found in columns.items()
        for column in found
    }
