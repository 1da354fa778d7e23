"""``myfy-db migrate``: Alembic in-process, one async URL, under the migration lock.

The Typer layer parses, calls one function of :mod:`myfy_db.migrations.commands` inside
:func:`~myfy_db.cli.runtime.run`, and renders through :class:`~myfy_db.output.Output`.
Options given before a subcommand (``myfy-db migrate --url X status``) apply to it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from myfy_db.cli.options import EnvFileOption, JsonOption, MetadataOption, UrlOption, YesOption
from myfy_db.cli.runtime import load, run
from myfy_db.errors import CheckFailed

if TYPE_CHECKING:
    from rich.console import Console

    from myfy_db.migrations.commands import AppliedRevision, MigrationRun
    from myfy_db.migrations.project import MigrationProject
    from myfy_db.output import Output
    from myfy_db.settings import LoadedSettings

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
    float,
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
RevisionArgument = Annotated[
    str, typer.Argument(help="Target revision: an id, a prefix, head, base, +N / -N.")
]

app = typer.Typer(
    name="migrate",
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _shared(ctx: typer.Context, **given: Any) -> dict[str, Any]:
    """Options given to the subcommand, falling back to those given before it."""
    parent: dict[str, Any] = ctx.obj if isinstance(ctx.obj, dict) else {}
    return {key: value if value is not None else parent.get(key) for key, value in given.items()}


def _json(ctx: typer.Context, json_output: bool) -> bool:
    """``--json`` given to the subcommand, or to ``migrate`` before it."""
    parent: dict[str, Any] = ctx.obj if isinstance(ctx.obj, dict) else {}
    return json_output or bool(parent.get("json"))


def _project(config: Path | None, out: Output) -> MigrationProject:
    from myfy_db.migrations.project import find_project

    project = find_project(config)
    if project.ignores_ini_url:
        out.warn(
            f"{project.ini_path} sets sqlalchemy.url; myfy-db ignores it "
            "(the URL comes from MYFY_DATA_DATABASE_URL or --url): remove it"
        )
    return project


def _progress(out: Output) -> Any:
    verbs = {"up": "applied", "down": "undid", "stamp": "stamped"}

    def show(step: AppliedRevision) -> None:
        message = f" {step.message}" if step.message else ""
        out.info(f"{verbs[step.direction]} {step.revision}{message} ({step.duration_ms:.0f} ms)")

    return show


def _render_run(out: Output, run_result: MigrationRun) -> None:
    def human(console: Console) -> None:
        start = run_result.from_revision or "base"
        end = run_result.to_revision or "base"
        count = len(run_result.applied)
        if run_result.command == "stamp":
            console.print(f"{run_result.database}: stamped {end} (was {start})", soft_wrap=True)
        elif count == 0:
            console.print(f"{run_result.database}: already at {end}; nothing to do", soft_wrap=True)
        else:
            console.print(
                f"{run_result.database}: {run_result.command} {start} -> {end}, "
                f"{count} revision(s) in {run_result.duration_ms:.0f} ms",
                soft_wrap=True,
            )

    out.emit(run_result.to_dict(), human)


def _write(
    ctx: typer.Context,
    kind: str,
    revision: str,
    *,
    url: str | None,
    env_file: Path | None,
    config: Path | None,
    lock_timeout: float,
    sql: bool,
    json_output: bool,
    yes: bool = False,
) -> None:
    shared = _shared(ctx, url=url, env_file=env_file, config=config)

    async def action(out: Output) -> None:
        from myfy_db.migrations import commands

        loaded = load(shared["url"], shared["env_file"])
        project = _project(shared["config"], out)
        if sql:
            commands.render_sql(project, loaded.settings, revision, downgrade=kind == "down")
            return
        report = out.info
        if kind == "up":
            result = await commands.upgrade(
                project,
                loaded,
                revision,
                lock_timeout=lock_timeout,
                progress=_progress(out),
                report=report,
            )
        elif kind == "down":
            _confirm_down(out, loaded, revision, yes=yes)
            result = await commands.downgrade(
                project,
                loaded,
                revision,
                lock_timeout=lock_timeout,
                progress=_progress(out),
                report=report,
            )
        else:
            result = await commands.stamp(
                project, loaded, revision, lock_timeout=lock_timeout, report=report
            )
        _render_run(out, result)

    run(action, json_mode=_json(ctx, json_output))


def _confirm_down(out: Output, loaded: LoadedSettings, revision: str, *, yes: bool) -> None:
    from myfy_db.cli.confirm import confirm_by_name, database_name
    from myfy_db.engine import describe_target
    from myfy_db.guard import ProductionGuard

    ProductionGuard(loaded).check_local("migrate down")
    url = loaded.settings.database_url
    confirm_by_name(
        out,
        f"migrate down to {revision} on {describe_target(url)}",
        database_name(url),
        yes=yes,
    )


@app.callback(invoke_without_command=True)
def migrate(
    ctx: typer.Context,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    config: ConfigOption = None,
    lock_timeout: LockTimeoutOption = 60.0,
    sql: SqlOption = False,
    json_output: JsonOption = False,
) -> None:
    """Upgrade the database to head under the migration lock (--sql: print the SQL instead).

    The URL comes from MYFY_DATA_DATABASE_URL or --url, never from alembic.ini. One
    progress line per revision goes to stderr; --json writes the summary (from, to, each
    applied revision with its duration). Concurrent runs wait for the lock; the others find
    the database at head. --url, --env-file and --config given here also apply to a
    subcommand (myfy-db migrate --url URL status).
    """
    ctx.obj = {"url": url, "env_file": env_file, "config": config, "json": json_output}
    if ctx.invoked_subcommand is not None:
        return
    _write(
        ctx,
        "up",
        "head",
        url=None,
        env_file=None,
        config=None,
        lock_timeout=lock_timeout,
        sql=sql,
        json_output=json_output,
    )


@app.command("up")
def up(
    ctx: typer.Context,
    revision: RevisionArgument,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    config: ConfigOption = None,
    lock_timeout: LockTimeoutOption = 60.0,
    sql: SqlOption = False,
    json_output: JsonOption = False,
) -> None:
    """Upgrade to REV under the migration lock (--sql: print the SQL; REV may be FROM:TO)."""
    _write(
        ctx,
        "up",
        revision,
        url=url,
        env_file=env_file,
        config=config,
        lock_timeout=lock_timeout,
        sql=sql,
        json_output=json_output,
    )


@app.command("down")
def down(
    ctx: typer.Context,
    revision: RevisionArgument,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    config: ConfigOption = None,
    lock_timeout: LockTimeoutOption = 60.0,
    sql: SqlOption = False,
    yes: YesOption = False,
    json_output: JsonOption = False,
) -> None:
    """Downgrade to REV: asks for the database name; refused in a protected environment.

    With --sql, REV must be a range such as head:base, and only the SQL is printed.
    """
    _write(
        ctx,
        "down",
        revision,
        url=url,
        env_file=env_file,
        config=config,
        lock_timeout=lock_timeout,
        sql=sql,
        json_output=json_output,
        yes=yes,
    )


@app.command("stamp")
def stamp(
    ctx: typer.Context,
    revision: RevisionArgument,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    config: ConfigOption = None,
    lock_timeout: LockTimeoutOption = 60.0,
    json_output: JsonOption = False,
) -> None:
    """Record REV as the database's revision without running any migration."""
    _write(
        ctx,
        "stamp",
        revision,
        url=url,
        env_file=env_file,
        config=config,
        lock_timeout=lock_timeout,
        sql=False,
        json_output=json_output,
    )


@app.command("status")
def status(
    ctx: typer.Context,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Current revision, heads and pending revisions; exit 5 when not at head."""
    shared = _shared(ctx, url=url, env_file=env_file, config=config)

    async def action(out: Output) -> None:
        from myfy_db.migrations import commands
        from myfy_db.output import table

        loaded = load(shared["url"], shared["env_file"])
        result = await commands.status(_project(shared["config"], out), loaded)

        def human(console: Console) -> None:
            console.print(f"database: {result.database}")
            console.print(f"current:  {', '.join(result.current) or 'base (no revision)'}")
            console.print(f"head:     {', '.join(result.heads) or '(no revisions)'}")
            if result.pending:
                rows = [[p.revision, p.message] for p in result.pending]
                console.print(table("Pending revisions", ["revision", "message"], rows))
            else:
                console.print("at head: nothing pending")

        out.emit(result.to_dict(), human)
        if not result.at_head:
            raise CheckFailed(
                f"the database is not at head: {len(result.pending)} pending revision(s)",
                hint="run `myfy-db migrate`",
            )

    run(action, json_mode=_json(ctx, json_output))


@app.command("history")
def history(
    ctx: typer.Context,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Every revision of the project, newest first (no database needed)."""
    shared = _shared(ctx, config=config)

    def action(out: Output) -> None:
        from myfy_db.migrations import commands
        from myfy_db.output import table

        revisions = commands.history(_project(shared["config"], out))

        def human(console: Console) -> None:
            rows = [
                [r.revision, r.down_revision or "base", "head" if r.is_head else "", r.message]
                for r in revisions
            ]
            console.print(table("Revisions", ["revision", "revises", "", "message"], rows))

        out.emit({"revisions": [r.__dict__ for r in revisions]}, human)

    run(action, json_mode=_json(ctx, json_output))


@app.command("new")
def new(
    ctx: typer.Context,
    message: Annotated[
        str, typer.Option("--message", "-m", help="What the revision does.", metavar="MSG")
    ],
    autogenerate: Annotated[
        bool,
        typer.Option("--autogenerate", help="Compare the models with the database and fill it in."),
    ] = False,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    config: ConfigOption = None,
    metadata: MetadataOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write a new revision file (--autogenerate: from the models against the database)."""
    shared = _shared(ctx, url=url, env_file=env_file, config=config)

    async def action(out: Output) -> None:
        from myfy_db.metadata import load_metadata
        from myfy_db.migrations import commands

        loaded = load(shared["url"], shared["env_file"], metadata=metadata)
        project = _project(shared["config"], out)
        models = None
        if autogenerate or loaded.settings.metadata:
            models = load_metadata(loaded.settings.metadata).metadata
        paths = await commands.new_revision(
            project, loaded, message, autogenerate=autogenerate, metadata=models
        )

        def human(console: Console) -> None:
            for path in paths:
                console.print(f"created {path}")

        out.emit({"created": [str(p) for p in paths]}, human)

    run(action, json_mode=_json(ctx, json_output))


@app.command("check")
def check(
    ctx: typer.Context,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    metadata: MetadataOption = None,
    json_output: JsonOption = False,
) -> None:
    """Compare the models with the database; exit 5 listing the differences."""

    async def action(out: Output) -> None:
        from myfy_db.metadata import load_metadata
        from myfy_db.migrations import commands
        from myfy_db.output import table

        loaded = load(url, env_file, metadata=metadata)
        models = load_metadata(loaded.settings.metadata)
        report = await commands.check(loaded, models.metadata, models.spec)

        def human(console: Console) -> None:
            if not report.drift:
                console.print(f"{report.database}: no drift from {report.metadata}", soft_wrap=True)
                return
            rows = [[d.kind, d.detail] for d in report.differences]
            title = f"{report.database} differs from {report.metadata}"
            console.print(table(title, ["difference", "detail"], rows))

        out.emit(report.to_dict(), human)
        if report.drift:
            raise CheckFailed(
                f"the database differs from the models ({len(report.differences)} difference(s))",
                hint="write a revision: myfy-db migrate new -m MSG --autogenerate",
            )

    run(action, json_mode=_json(ctx, json_output))


@app.command("init")
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


__all__ = ["app"]
