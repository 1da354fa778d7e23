"""The myfy-db Typer application: the command tree and the entry point.

Command modules import only Typer and the light parts of myfy-db at module level;
SQLAlchemy, Alembic and the drivers are imported inside command bodies, so ``--help`` and
shell completion stay fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from myfy_db._version import __version__
from myfy_db.cli import (
    check_pool,
    config_cmd,
    create_tables,
    dbshell,
    drop_tables,
    migrate_cmd,
    migrate_lint,
    profile_pool,
)
from myfy_db.cli import shell as shell_cmd
from myfy_db.cli.runtime import set_invoked_command, set_traceback

app = typer.Typer(
    name="myfy-db",
    help="Database operations for async SQLAlchemy 2 applications.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"myfy-db {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Show the full traceback when a command fails.")
    ] = False,
) -> None:
    """Database operations for async SQLAlchemy 2 applications.

    Settings come from flags, MYFY_DATA_* environment variables, ./.env and
    [tool.myfy-db] in pyproject.toml, in that order.
    """
    set_traceback(traceback)
    set_invoked_command(ctx.invoked_subcommand)


app.command("config")(config_cmd.config)
app.command("create-tables")(create_tables.create_tables)
app.command("drop-tables")(drop_tables.drop_tables)
migrate_cmd.app.command("lint")(migrate_lint.lint)
app.add_typer(migrate_cmd.app, name="migrate")
app.command("check-pool")(check_pool.check_pool)
app.command("profile-pool")(profile_pool.profile_pool)
app.command("dbshell")(dbshell.dbshell)
app.command("shell")(shell_cmd.shell)
