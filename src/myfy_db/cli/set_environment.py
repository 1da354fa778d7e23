"""``myfy-db set-environment NAME``: record what a database is, on one that has no record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from myfy_db.cli.options import EnvFileOption, JsonOption, UrlOption, YesOption
from myfy_db.cli.runtime import load, run

if TYPE_CHECKING:
    from rich.console import Console

    from myfy_db.cli.output import Output


def set_environment(
    name: Annotated[
        str,
        typer.Argument(
            help="The environment to record (development, staging, production, ...).",
            metavar="NAME",
            show_default=False,
        ),
    ],
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    yes: YesOption = False,
    json_output: JsonOption = False,
) -> None:
    """Record NAME as the database's environment (myfy_db_meta) where it has none.

    Destructive commands refuse on a database that holds tables but no record; this writes
    it. Asks for the database name (no terminal: exit 3 unless --yes). A database already
    recorded as NAME is left as it is; one recorded as another environment is refused
    (exit 3): a record is never moved.
    """

    async def action(out: Output) -> None:
        from sqlalchemy import Connection

        from myfy_db.cli.confirm import confirm_by_name
        from myfy_db.engine import describe_target, open_engine, translate_errors
        from myfy_db.guard import ProductionGuard, reported_database_name
        from myfy_db.guard import set_environment as record

        loaded = load(url, env_file)
        settings = loaded.settings
        guard = ProductionGuard(loaded)
        target = describe_target(settings.database_url)

        def confirm() -> None:
            confirm_by_name(
                out,
                f"Record {name.strip()!r} as the environment of {target}",
                reported_database_name.get() or "",
                yes=yes,
            )

        def write(connection: Connection) -> tuple[object, bool]:
            return record(connection, guard, name, confirm)

        with translate_errors(settings.database_url, "set-environment"):
            async with open_engine(settings) as engine, engine.connect() as connection:
                written, changed = await connection.run_sync(write)

        environment = getattr(written, "environment", name)
        protected = bool(getattr(written, "protected", False))
        document = {
            "database": target,
            "environment": environment,
            "protected": protected,
            "written": changed,
        }

        def render(console: Console) -> None:
            state = " (protected)" if protected else ""
            if changed:
                line = f"{target}: recorded as {environment!r}{state} in myfy_db_meta"
            else:
                line = f"{target}: already recorded as {environment!r}{state}; nothing to do"
            console.print(line, markup=False, highlight=False, soft_wrap=True)

        out.emit(document, render)

    run(action, json_mode=json_output)


__all__ = ["set_environment"]
