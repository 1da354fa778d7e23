"""The ``migrate`` commands that write files, not the database: merge, new, init."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from myfy_db.cli.migrate_options import ConfigOption, _json, _project, _shared
from myfy_db.cli.options import EnvFileOption, JsonOption, MetadataOption, UrlOption
from myfy_db.cli.runtime import load, run

if TYPE_CHECKING:
    from rich.console import Console

    from myfy_db.cli.output import Output


def merge(
    ctx: typer.Context,
    revisions_: Annotated[
        list[str],
        typer.Argument(help="The revisions to merge (heads: every head).", metavar="REV..."),
    ],
    message: Annotated[
        str | None,
        typer.Option("--message", "-m", help="What the merge revision says.", metavar="MSG"),
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write a revision that merges REV... (e.g. heads) into one head; no database needed."""
    shared = _shared(ctx, config=config)

    def action(out: Output) -> None:
        from myfy_db.migrations import revisions

        loaded = load()
        revision, path = revisions.merge(
            _project(shared["config"], out, loaded.settings.database_url),
            loaded.settings,
            revisions_,
            message,
        )

        def human(console: Console) -> None:
            console.print(f"created {path} (merge revision {revision})", soft_wrap=True)

        out.emit({"revision": revision, "path": str(path), "merged": revisions_}, human)

    run(action, json_mode=_json(ctx, json_output))


def new(
    ctx: typer.Context,
    message: Annotated[
        str, typer.Option("--message", "-m", help="What the revision does.", metavar="MSG")
    ],
    autogenerate: Annotated[
        bool,
        typer.Option("--autogenerate", help="Compare the models with the database and fill it in."),
    ] = False,
    empty: Annotated[
        bool,
        typer.Option(
            "--empty",
            help="With --autogenerate: write the revision even when no change is detected.",
        ),
    ] = False,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    config: ConfigOption = None,
    metadata: MetadataOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write a new revision file (--autogenerate: from the models against the database).

    --autogenerate prints each detected operation; with none it writes nothing ("no changes
    detected", exit 0) unless --empty. The database must be at head first.
    """
    shared = _shared(ctx, url=url, env_file=env_file, config=config)

    async def action(out: Output) -> None:
        from myfy_db.metadata import load_metadata
        from myfy_db.migrations import autogenerate as auto

        loaded = load(shared["url"], shared["env_file"], metadata=metadata)
        project = _project(shared["config"], out, loaded.settings.database_url)
        models = None
        if autogenerate or loaded.settings.metadata:
            models = load_metadata(loaded.settings.metadata).metadata
        created = await auto.new_revision(
            project, loaded, message, autogenerate=autogenerate, metadata=models, empty=empty
        )

        def human(console: Console) -> None:
            for line in created.operations:
                console.print(line, soft_wrap=True, markup=False)
            if created.path is None:
                console.print("no changes detected: no revision written", soft_wrap=True)
            else:
                console.print(f"created {created.path}", soft_wrap=True, markup=False)

        out.emit(created.to_dict(), human)

    run(action, json_mode=_json(ctx, json_output))


def init(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Argument(help="Where the migration scripts go.", metavar="DIR")
    ] = Path("migrations"),
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Scaffold alembic.ini and an async env.py on myfy-db's engine factory; no URL is written."""

    def action(out: Output) -> None:
        from myfy_db.migrations.scaffold import init_project

        written = init_project(directory, config)

        def human(console: Console) -> None:
            for path in written:
                console.print(f"created {path}")
            console.print(
                "next: myfy-db migrate new -m 'first revision' --autogenerate "
                "(the URL comes from MYFY_DATA_DATABASE_URL or --url)",
                soft_wrap=True,
            )

        out.emit({"created": [str(p) for p in written]}, human)

    run(action, json_mode=_json(ctx, json_output))
