"""``myfy-db create-database``: create the database the URL names (a no-op when it exists)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from myfy_db.cli.options import EnvFileOption, JsonOption, UrlOption
from myfy_db.cli.runtime import load, run

if TYPE_CHECKING:
    from rich.console import Console

    from myfy_db.cli.output import Output


def create_database(
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create the database the URL names, with the server's own CREATE DATABASE.

    A no-op when it exists (exit 0 either way): for CI steps and new developers. PostgreSQL
    runs it from the maintenance database (postgres); a SQLite file is created empty.
    """

    async def action(out: Output) -> None:
        from myfy_db.databases import create_database as create

        loaded = load(url, env_file)
        result = await create(loaded.settings)

        def render(console: Console) -> None:
            done = "created" if result.created else "already exists; nothing to do"
            console.print(f"{result.target}: {done}", markup=False, highlight=False)

        out.emit(result.to_dict(), render)

    run(action, json_mode=json_output)


__all__ = ["create_database"]
