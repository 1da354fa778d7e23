"""``myfy-db dbshell``: open psql, mariadb/mysql or sqlite3 on the configured database."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from myfy_db.cli.options import EnvFileOption, UrlOption, YesOption
from myfy_db.cli.runtime import load, run

if TYPE_CHECKING:
    from myfy_db.cli.output import Output
    from myfy_db.guard import ShellDecision
    from myfy_db.settings import LoadedSettings
    from myfy_db.shell.dbshell import ClientCommand

ClientArgs = Annotated[
    list[str] | None,
    typer.Argument(
        help="Arguments for the client, after `--` (e.g. `-- -c 'SELECT 1'` for psql).",
        show_default=False,
        metavar="-- CLIENT_ARGS",
    ),
]


def dbshell(
    client_args: ClientArgs = None,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    yes: YesOption = False,
) -> None:
    """Open the database's own client (psql, mariadb or mysql, sqlite3) on the configured
    database.

    The URL's host, port, user and database become the client's arguments; the password goes
    through the client's environment (PGPASSWORD, MYSQL_PWD), never its command line.
    Arguments after `--` go to the client. On a database recorded as a protected environment
    (or in a protected one) psql and sqlite3 open read-only; the mariadb client has no
    read-only mode, so dbshell asks for the database name to be typed (--yes skips; no
    terminal without --yes: exit 3). A missing client exits 2 naming its package.
    """
    chosen: list[ClientCommand] = []

    async def action(out: Output) -> None:
        from myfy_db.shell.dbshell import client_command

        loaded = load(url, env_file)
        database_url = loaded.settings.database_url
        extra = list(client_args or [])
        # The client first: a missing one fails (exit 2) before anything connects.
        command = client_command(database_url, extra)
        decision = await _decision(loaded)
        if decision.sandbox:
            command = client_command(database_url, extra, read_only=True)
            _protect(out, loaded, decision, command, yes=yes)
        chosen.append(command)

    run(action)
    command = chosen[0]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command.program, command.argv, {**os.environ, **command.env})
    except OSError as exc:
        from myfy_db.cli.output import Output
        from myfy_db.errors import OperationFailed

        Output().error(OperationFailed(f"could not start {command.program}: {exc.strerror}"))
        raise typer.Exit(1) from None


async def _decision(loaded: LoadedSettings) -> ShellDecision:
    """What the guard says about this database (reads its ``myfy_db_meta`` record)."""
    from myfy_db.engine import open_engine, translate_errors
    from myfy_db.guard import ProductionGuard, read_record

    settings = loaded.settings
    with translate_errors(settings.database_url, "reading the environment record"):
        async with (
            open_engine(settings, command="myfy-db dbshell") as engine,
            engine.connect() as connection,
        ):
            record = await connection.run_sync(read_record)
    return ProductionGuard(loaded).shell_decision(record)


def _protect(
    out: Output,
    loaded: LoadedSettings,
    decision: ShellDecision,
    command: ClientCommand,
    *,
    yes: bool,
) -> None:
    """Say how the client is held back on a protected database; confirm where it cannot be."""
    from myfy_db.cli.confirm import confirm_by_name, database_name

    program = os.path.basename(command.program)
    if command.read_only:
        out.info(
            f"{decision.reason}: {program} opens read-only (this guards against mistakes; "
            "a read-only database role is the boundary)"
        )
        return
    out.warn(
        f"{decision.reason}: the {program} client has no read-only mode, and --safe-updates "
        "(it only stops UPDATE and DELETE without a key) is not enough"
    )
    confirm_by_name(
        out,
        f"A {program} session that can change the protected database",
        database_name(loaded.settings.database_url),
        yes=yes,
    )


__all__ = ["dbshell"]
