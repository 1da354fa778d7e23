"""What the ``migrate`` commands share: their options, declared once, and the few helpers
that read them (options given to ``migrate`` before a subcommand apply to it too).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from myfy_db.cli.options import ConnectingCommand, FiniteFloat

if TYPE_CHECKING:
    from myfy_db.cli.output import Output
    from myfy_db.migrations.project import MigrationProject

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="The project's alembic.ini (default: ./alembic.ini).",
        show_default=False,
        metavar="PATH",
    ),
]
LockTimeoutOption = Annotated[
    FiniteFloat,
    typer.Option(
        "--lock-timeout",
        min=0,
        metavar="SECONDS",
        help="How long to wait for the migration lock before giving up (exit 1).",
    ),
]
SqlOption = Annotated[
    bool,
    typer.Option("--sql", help="Write the SQL to stdout instead of running it (offline)."),
]
StatementTimeoutOption = Annotated[
    FiniteFloat | None,
    typer.Option(
        "--statement-timeout",
        min=0,
        metavar="SECONDS",
        show_default=False,
        help="With --sql: the script sets this statement timeout at its top (PostgreSQL "
        "statement_timeout, MariaDB max_statement_time), beside the DDL lock timeout.",
    ),
]
RevisionArgument = Annotated[
    str,
    typer.Argument(
        help="Target revision: an id, a prefix, head, heads, base, +N / -N, REV+N / REV-N.",
        metavar="REV",
    ),
]
AtomicOption = Annotated[
    bool,
    typer.Option(
        "--atomic",
        help="The whole run in one transaction, all or nothing (PostgreSQL, SQLite; "
        "MySQL/MariaDB commits DDL on its own, so there it exits 2).",
    ),
]
DdlLockTimeoutOption = Annotated[
    FiniteFloat | None,
    typer.Option(
        "--ddl-lock-timeout",
        min=0,
        metavar="SECONDS",
        show_default=False,
        help="How long each revision's statements wait for a table lock before failing "
        "(default 5, or MYFY_DATA_DDL_LOCK_TIMEOUT; 0: no limit). Not --lock-timeout.",
    ),
]
RetriesOption = Annotated[
    int,
    typer.Option(
        "--retries",
        min=0,
        metavar="N",
        help="Retry a revision that failed only on --ddl-lock-timeout, up to N times, backing off.",
    ),
]
SafeOption = Annotated[
    bool | None,
    typer.Option(
        "--safe/--no-safe",
        show_default=False,
        help="Run the revisions' operations in their non-blocking forms (PostgreSQL: indexes "
        "CONCURRENTLY, constraints NOT VALID then VALIDATE; MySQL/MariaDB: online DDL), one "
        "line each; refuse what cannot be made safe before anything runs (default: "
        "MYFY_DATA_SAFE_MIGRATIONS). Not with --atomic.",
    ),
]
OnlineDdlOption = Annotated[
    str | None,
    typer.Option(
        "--online-ddl",
        metavar="[none|pt-osc]",
        show_default=False,
        help="MySQL/MariaDB: run the ALTERs that need a table copy through "
        "pt-online-schema-change (pt-osc; the Debian package percona-toolkit), or not (none).",
    ),
]
MaxLagOption = Annotated[
    FiniteFloat | None,
    typer.Option(
        "--max-lag",
        min=0,
        metavar="SECONDS",
        show_default=False,
        help="With --online-ddl pt-osc: pause the copy while a replica lags more than this.",
    ),
]
ChunkTimeOption = Annotated[
    FiniteFloat | None,
    typer.Option(
        "--chunk-time",
        min=0,
        metavar="SECONDS",
        show_default=False,
        help="With --online-ddl pt-osc: the time each chunk of the copy aims for.",
    ),
]
CriticalLoadOption = Annotated[
    str | None,
    typer.Option(
        "--critical-load",
        metavar="VAR=N",
        show_default=False,
        help="With --online-ddl pt-osc: abort the copy when a status variable passes this "
        "(e.g. Threads_running=50).",
    ),
]
DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="List the revisions it would undo, in order, and change nothing."
    ),
]
_RELATIVE = re.compile(r"^-\d+$")


class RevisionCommand(TyperCommand):
    """A command taking a revision: Alembic's relative targets (``-1``) are arguments."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if any(_RELATIVE.match(arg) for arg in args):
            ctx.ignore_unknown_options = True
        return list(super().parse_args(ctx, args))


class ConnectingRevisionCommand(RevisionCommand, ConnectingCommand):
    """A command taking a revision that connects (``--wait``)."""


def _shared(ctx: typer.Context, **given: Any) -> dict[str, Any]:
    """Options given to the subcommand, falling back to those given before it."""
    parent: dict[str, Any] = ctx.obj if isinstance(ctx.obj, dict) else {}
    return {key: value if value is not None else parent.get(key) for key, value in given.items()}


def _json(ctx: typer.Context, json_output: bool) -> bool:
    """``--json`` given to the subcommand, or to ``migrate`` before it."""
    parent: dict[str, Any] = ctx.obj if isinstance(ctx.obj, dict) else {}
    return json_output or bool(parent.get("json"))


def _project(config: Path | None, out: Output, url: str | None = None) -> MigrationProject:
    """The project of ``--config``; says once when its ini names another database than
    ``url`` (the one in use; packaged chains ship a ``sqlalchemy.url`` line)."""
    from myfy_db.migrations.project import find_project

    project = find_project(config)
    if project.ini_url_differs(url):
        out.warn(
            f"{project.ini_path} sets sqlalchemy.url; myfy-db ignores it "
            "(the URL comes from MYFY_DATA_DATABASE_URL or --url): remove it"
        )
    return project
