"""``myfy-db drop-tables``: drop the metadata's tables (or all), guarded and confirmed."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from myfy_db.cli.options import (
    EnvFileOption,
    JsonOption,
    MetadataOption,
    UrlOption,
    YesOption,
)
from myfy_db.cli.runtime import load, run

if TYPE_CHECKING:
    from rich.console import Console

    from myfy_db.cli.output import Output
    from myfy_db.schema import DropPlan

AllOption = Annotated[
    bool,
    typer.Option(
        "--all",
        help="Drop every table the database holds (found by reflection), not only the "
        "metadata's; the myfy_db_meta environment record is kept.",
    ),
]
DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="List what would be dropped, in order, and drop nothing (no confirmation).",
    ),
]


def drop_confirmation(
    out: Output, command: str, url: str, *, yes: bool
) -> Callable[[DropPlan], None]:
    """The typed-name confirmation of a drop (``drop-tables``, ``migrate reset``).

    On a terminal it lists the tables first; ``--yes`` skips it; no terminal refuses.
    """
    from myfy_db.cli.confirm import confirm_by_name
    from myfy_db.urls import DatabaseUrl

    parsed = DatabaseUrl.of(url)
    target = parsed.target
    backend = parsed.dialect

    def confirm(plan: DropPlan) -> None:
        if not yes and sys.stdin.isatty():
            out.info(f"{command} will drop {len(plan.tables)} table(s) from {target}:")
            out.info("  " + ", ".join(plan.tables))
            if not plan.transactional:
                out.warn(f"{backend} does not roll back DDL: not all or nothing")
        # The name the server reports (plan.database), never one read from the URL.
        action = f"Drop {len(plan.tables)} table(s) from {target}"
        confirm_by_name(out, action, plan.database, yes=yes)

    return confirm


def drop_tables(
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    metadata: MetadataOption = None,
    all_tables: AllOption = False,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    json_output: JsonOption = False,
) -> None:
    """Drop the metadata's tables in reverse dependency order, after typing the database name.

    alembic_version goes with them when it exists (the migration history of those tables).
    All or nothing on PostgreSQL and SQLite; MySQL/MariaDB commits each DROP on its own.
    Refused (exit 3) in a protected environment, when the database is recorded as another
    environment, with no terminal unless --yes, or when the confirmation is declined.
    The override for the database's record is MYFY_DB_DISABLE_ENVIRONMENT_CHECK=1 in the
    environment; there is no flag.
    """

    async def action(out: Output) -> None:
        from myfy_db.engine import describe_target, open_engine, translate_errors
        from myfy_db.guard import ProductionGuard
        from myfy_db.metadata import load_metadata
        from myfy_db.schema import drop_tables as drop

        started = time.perf_counter()
        loaded = load(url, env_file, metadata=metadata)
        settings = loaded.settings
        guard = ProductionGuard(loaded)
        guard.check_local("drop-tables")
        spec = None if all_tables else load_metadata(settings.metadata)
        target = describe_target(settings.database_url)

        confirm = drop_confirmation(out, "drop-tables", settings.database_url, yes=yes)

        with translate_errors(settings.database_url, "drop-tables"):
            async with open_engine(settings) as engine:
                report = await drop(
                    engine,
                    None if spec is None else spec.metadata,
                    guard,
                    dry_run=dry_run,
                    confirm=confirm,
                )
        plan = report.plan
        tables = plan.tables if dry_run else report.dropped
        document: dict[str, Any] = {
            "database": target,
            "backend": settings.backend,
            "metadata": None if spec is None else spec.spec,
            "all": all_tables,
            "dry_run": dry_run,
            "environment": guard.environment,
            ("would_drop" if dry_run else "dropped"): tables,
            "foreign_keys_dropped_first": [
                {"table": t, "constraint": c} for t, c in plan.constraints
            ],
            "missing": plan.missing,
            "kept": plan.kept,
            ("types_would_drop" if dry_run else "types_dropped"): (
                plan.types if dry_run else report.types_dropped
            ),
            "types_kept": report.types_kept,
            "alembic_version": plan.alembic_version,
            "all_or_nothing": plan.transactional,
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
        }

        def render(console: Console) -> None:
            from myfy_db.cli.output import table

            if not tables:
                console.print(f"Nothing to drop in {target}.", markup=False)
            else:
                title = (
                    f"Would drop from {target} (dry run, in this order)"
                    if dry_run
                    else f"Dropped from {target}"
                )
                console.print(title, markup=False)
                console.print(table(None, ["#", "table"], list(enumerate(tables, 1))))
            for t, c in plan.constraints:
                verb = "would drop" if dry_run else "dropped"
                console.print(f"{verb} foreign key {c} of {t} first (cycle)", markup=False)
            if plan.missing:
                console.print(f"not in the database: {', '.join(plan.missing)}", markup=False)
            types = plan.types if dry_run else report.types_dropped
            if types:
                verb = "would drop" if dry_run else "dropped"
                console.print(f"{verb} enum type(s): {', '.join(types)}", markup=False)
            if report.types_kept:
                console.print(
                    f"kept enum type(s) still used by other tables: {', '.join(report.types_kept)}",
                    markup=False,
                )
            if plan.alembic_version:
                verb = "would drop" if dry_run else "dropped"
                console.print(
                    f"{verb} alembic_version too: the migration history of these tables "
                    "(myfy-db migrate starts again from base)",
                    markup=False,
                )
            if plan.kept:
                console.print(
                    f"kept {', '.join(plan.kept)}: the environment record the guard relies on",
                    markup=False,
                )
            if tables and not plan.transactional:
                console.print(
                    f"{settings.backend} does not roll back DDL: each DROP committed on its own",
                    markup=False,
                )

        out.emit(document, render)

    run(action, json_mode=json_output, read_only=dry_run)


__all__ = ["drop_tables"]
