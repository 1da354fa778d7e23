"""``myfy-db create-tables``: create the metadata's missing tables, behind the guard."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from myfy_db.cli.options import EnvFileOption, JsonOption, MetadataOption, UrlOption
from myfy_db.cli.runtime import load, run

if TYPE_CHECKING:
    from rich.console import Console

    from myfy_db.cli.output import Output

SqlOption = Annotated[
    bool,
    typer.Option(
        "--sql",
        help="Print the CREATE statements for the target dialect instead of running them; "
        "connects to nothing (so the guard does not apply).",
    ),
]


def create_tables(
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    metadata: MetadataOption = None,
    sql: SqlOption = False,
    json_output: JsonOption = False,
) -> None:
    """Create the metadata's tables that are missing, in dependency order.

    Reports each table as created or already present, and records the environment in the
    database (myfy_db_meta). Refused (exit 3) in a protected environment, or when the
    database is recorded as a protected environment other than the current one.
    """

    async def action(out: Output) -> None:
        from myfy_db.engine import describe_target
        from myfy_db.metadata import load_metadata

        started = time.perf_counter()
        loaded = load(url, env_file, metadata=metadata)
        settings = loaded.settings
        if sql:
            _print_sql(out, load_metadata(settings.metadata).metadata, settings.database_url)
            return

        from myfy_db.engine import open_engine, translate_errors
        from myfy_db.guard import ProductionGuard
        from myfy_db.schema import create_tables as create

        guard = ProductionGuard(loaded)
        guard.check_local("create-tables")
        spec = load_metadata(settings.metadata)
        target = describe_target(settings.database_url)
        with translate_errors(settings.database_url, "create-tables"):
            async with open_engine(settings) as engine:
                report = await create(engine, spec.metadata, guard)

        document: dict[str, Any] = {
            "database": target,
            "backend": settings.backend,
            "metadata": spec.spec,
            "environment": guard.environment,
            "recorded_environment": report.record.environment,
            "tables": [{"name": t.name, "status": t.status} for t in report.tables],
            "created": report.created,
            "present": report.present,
            "all_or_nothing": report.transactional,
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
        }

        def render(console: Console) -> None:
            # Plain aligned lines rather than a rich table: metadata often has hundreds of
            # tables, and a rich table of 300 rows costs more than creating them on SQLite.
            labels = {"created": "created", "present": "already present"}
            width = max((len(t.name) for t in report.tables), default=5)
            lines = [f"Tables of {spec.spec} in {target}", f"  {'table':<{width}}  status"]
            lines += [f"  {t.name:<{width}}  {labels[t.status]}" for t in report.tables]
            lines.append(
                f"{len(report.created)} created, {len(report.present)} already present; "
                f"environment {report.record.environment!r} recorded in the database"
            )
            console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)

        out.emit(document, render)

    run(action, json_mode=json_output)


def _print_sql(out: Output, metadata: Any, url: str) -> None:
    from myfy_db.schema import create_tables_sql
    from myfy_db.urls import DatabaseUrl

    statements = create_tables_sql(metadata, url)
    dialect = DatabaseUrl.of(url).dialect

    def render(console: Console) -> None:
        for statement in statements:
            console.print(statement + "\n", markup=False, highlight=False, soft_wrap=True)

    out.emit({"dialect": dialect, "statements": statements}, render)


__all__ = ["create_tables"]
