"""``myfy-db diff FROM TO``: what differs between two schemas; exit 5 when they differ."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from myfy_db.cli.migrate_options import ConfigOption
from myfy_db.cli.options import EnvFileOption, JsonOption, MetadataOption
from myfy_db.cli.runtime import load, run

if TYPE_CHECKING:
    from pathlib import Path

    from myfy_db.cli.output import Output
    from myfy_db.diff import Outcome
    from myfy_db.settings import LoadedSettings

SIDE_HELP = (
    "a database URL, `models` (the --metadata target), or a revision (head, an id) "
    "replayed on a scratch database on --dev-url."
)


def diff(
    from_spec: Annotated[
        str, typer.Argument(metavar="FROM", help="What TO should become: " + SIDE_HELP)
    ],
    to_spec: Annotated[str, typer.Argument(metavar="TO", help="What is compared: " + SIDE_HELP)],
    schema: Annotated[
        list[str] | None,
        typer.Option(
            "--schema",
            metavar="NAME",
            show_default=False,
            help="Compare this schema too, besides the default one (repeatable).",
        ),
    ] = None,
    sql: Annotated[
        bool,
        typer.Option(
            "--sql",
            help="Print the DDL that makes TO equal FROM, in TO's dialect (Alembic offline; "
            "destructive steps marked; PostgreSQL: CONCURRENTLY, NOT VALID then VALIDATE).",
        ),
    ] = False,
    revision: Annotated[
        bool,
        typer.Option(
            "--revision",
            help="Write the operations that make TO equal FROM as a new revision of the "
            "project (needs -m); exit 0 once written.",
        ),
    ] = False,
    message: Annotated[
        str | None,
        typer.Option("--message", "-m", metavar="MSG", help="With --revision: what it says."),
    ] = None,
    dev_url: Annotated[
        str | None,
        typer.Option(
            "--dev-url",
            metavar="URL",
            show_default=False,
            help="For a revision side: the server diff creates a scratch database on, replays "
            "the chain to that revision in, and drops; never FROM or TO themselves.",
        ),
    ] = None,
    config: ConfigOption = None,
    env_file: EnvFileOption = None,
    metadata: MetadataOption = None,
    json_output: JsonOption = False,
) -> None:
    """Compare two schemas: FROM and TO are each a database URL, `models` or a revision.

    Both databases are only read, inside a read-only transaction. Reports each difference,
    grouped by table (--json: one object per difference, with a stable kind); --sql prints
    the DDL that makes TO equal FROM; --revision writes it as a new revision. Exit 0 when
    they are equal, 5 when they differ, 4 when a side cannot be reached, 2 on bad input.
    """

    async def action(out: Output) -> None:
        from myfy_db.diff import diff as compare_sides
        from myfy_db.diff.report import document, human_lines
        from myfy_db.diff.sides import parse_side, same_database
        from myfy_db.errors import CheckFailed, ConfigError
        from myfy_db.urls import url_has_password

        if revision and not message:
            raise ConfigError("--revision needs -m MSG: what the revision says")
        if message and not revision:
            raise ConfigError("-m is for --revision: without it nothing is written")
        if revision and sql:
            raise ConfigError("--revision and --sql: choose one (the revision holds the SQL)")
        loaded = load(None, env_file, metadata=metadata)
        from_side = parse_side(from_spec, "FROM")
        to_side = parse_side(to_spec, "TO")
        for side, spec in ((from_side, from_spec), (to_side, to_spec)):
            if side.url is not None and url_has_password(spec):
                out.warn(
                    f"the password in {side.label} is visible to every local user in the "
                    "process list; prefer a URL without one (e.g. ~/.pgpass)"
                )
        if from_side.kind == "models" and to_side.kind == "models":
            raise ConfigError("FROM and TO are both `models`: there is nothing to compare")
        if same_database(from_side, to_side):
            raise ConfigError(
                f"FROM and TO are the same database ({from_side.label}): nothing to compare"
            )
        if (sql or revision) and to_side.kind != "url":
            raise ConfigError(
                f"{'--sql' if sql else '--revision'} changes TO, and TO is {to_side.label}, "
                "not a database",
                hint="put a database URL as TO, e.g. myfy-db diff models URL",
            )
        if from_side.kind == "models" or to_side.kind == "models":
            from myfy_db.metadata import load_metadata

            load_metadata(loaded.settings.metadata)  # exit 2 before connecting
        project, dev = None, None
        if "revision" in (from_side.kind, to_side.kind):
            from myfy_db.cli.migrate_options import _project
            from myfy_db.urls import DatabaseUrl

            if dev_url is None:
                raise ConfigError(
                    "a revision side is the chain replayed on a scratch database: "
                    "pass --dev-url URL",
                    hint="--dev-url names a server diff may create (and drop) a database on",
                )
            dev = DatabaseUrl.parse(dev_url)
            project = _project(config, out, loaded.settings.database_url)
        outcome = await compare_sides(
            loaded.settings,
            from_side,
            to_side,
            schemas=schema or (),
            metadata=loaded.settings.metadata,
            project=project,
            dev_url=dev,
        )
        differ = bool(outcome.plan.differences)
        if revision:
            _write_revision(out, outcome, loaded, config, message or "")
            return
        if sql:
            from myfy_db.diff.render import render_sql

            script = render_sql(outcome.plan, outcome.dialect)
            if out.json_mode:
                out.emit(document(outcome, script), lambda console: None)
            else:
                import sys

                from myfy_db.urls import redact

                sys.stdout.write(redact(script))
                sys.stdout.flush()
                out.info(
                    f"{len(outcome.plan.differences)} difference(s); "
                    f"SQL for {outcome.dialect.name} above"
                )
        else:
            out.emit_text(document(outcome), human_lines(outcome))
        if differ:
            raise CheckFailed(f"the schemas differ: {len(outcome.plan.differences)} difference(s)")

    run(action, json_mode=json_output, read_only=True)


def _write_revision(
    out: Output, outcome: Outcome, loaded: LoadedSettings, config: Path | None, msg: str
) -> None:
    from myfy_db.cli.migrate_options import _project
    from myfy_db.diff.render import write_revision

    settings = loaded.settings
    if not outcome.plan.differences:
        out.emit_text(
            {"revision": None, "path": None, "differences": 0},
            ["no differences: no revision written"],
        )
        return
    project = _project(config, out, settings.database_url)
    rev, path = write_revision(project, settings, outcome.plan, msg, outcome.dialect)
    out.emit_text(
        {"revision": rev, "path": str(path), "differences": len(outcome.plan.differences)},
        [f"created {path} ({len(outcome.plan.differences)} difference(s))"],
    )


__all__ = ["diff"]
