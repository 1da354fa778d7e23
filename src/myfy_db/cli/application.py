"""The myfy-db Typer application: the command tree and the entry point.

Command modules import only Typer and the light parts of myfy-db at module level;
SQLAlchemy, Alembic and the drivers are imported inside command bodies, so ``--help`` and
shell completion stay fast.

``app`` is the whole tree (for ``--help``, the generated reference, programs that embed the
command line), built on first use. The console script runs :func:`app_for`, which builds only
the command its arguments name when that is plain from them (``myfy-db migrate ...``): the
other commands' modules are not imported, and Typer converts only that command for Click.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from myfy_db._version import __version__
from myfy_db.cli.runtime import set_invoked_command, set_traceback

#: The top-level commands, in the order ``--help`` lists them: name -> (module, attribute).
#: An attribute that is a Typer application is added as a group.
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("myfy_db.cli.config_cmd", "config"),
    "create-database": ("myfy_db.cli.create_database", "create_database"),
    "create-tables": ("myfy_db.cli.create_tables", "create_tables"),
    "drop-tables": ("myfy_db.cli.drop_tables", "drop_tables"),
    "set-environment": ("myfy_db.cli.set_environment", "set_environment"),
    "diff": ("myfy_db.cli.diff_cmd", "diff"),
    "migrate": ("myfy_db.cli.migrate_cmd", "app"),
    "check-pool": ("myfy_db.cli.check_pool", "check_pool"),
    "profile-pool": ("myfy_db.cli.profile_pool", "profile_pool"),
    "dbshell": ("myfy_db.cli.dbshell", "dbshell"),
    "shell": ("myfy_db.cli.shell", "shell"),
}
#: The top-level commands that connect to a database: they take ``--wait``.
CONNECTING = frozenset(
    {
        "create-database",
        "create-tables",
        "drop-tables",
        "set-environment",
        "diff",
        "check-pool",
        "profile-pool",
        "dbshell",
        "shell",
    }
)

#: Top-level flags that may stand before the command's name and take no value.
_ROOT_FLAGS = frozenset({"--traceback"})


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"myfy-db {__version__}")
        raise typer.Exit()


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


def build_app(only: str | None = None) -> typer.Typer:
    """The application with every command, or with only the command named ``only``."""
    application = typer.Typer(
        name="myfy-db",
        help="Database operations for async SQLAlchemy 2 applications.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    application.callback()(main_callback)
    for name, (module, attribute) in COMMANDS.items():
        if only is not None and name != only:
            continue
        target = getattr(importlib.import_module(module), attribute)
        if isinstance(target, typer.Typer):
            application.add_typer(target, name=name)
        elif name in CONNECTING:
            from myfy_db.cli.options import ConnectingCommand

            application.command(name, cls=ConnectingCommand)(target)
        else:
            application.command(name)(target)
    return application


def app_for(args: Sequence[str]) -> typer.Typer:
    """The application to run ``args`` (the command line after the program name) with.

    When the first argument past the top-level flags names a command, only that command is
    built: it parses, helps and fails exactly as in the whole tree. Anything else (no
    command, ``--help``, ``--version``, a misspelt name that Click suggests a fix for) gets
    the whole tree.
    """
    for arg in args:
        if arg in _ROOT_FLAGS:
            continue
        if arg in COMMANDS:
            return build_app(only=arg)
        break
    return _whole()


if TYPE_CHECKING:
    #: The whole command tree (built on first use, by the module's ``__getattr__``).
    app: typer.Typer


@functools.cache
def _whole() -> typer.Typer:
    return build_app()


def __getattr__(name: str) -> typer.Typer:
    if name == "app":
        return _whole()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
