"""``myfy-db migrate``: Alembic in-process, one async URL, under the migration lock.

The Typer layer parses, calls one function of :mod:`myfy_db.migrations.commands` inside
:func:`~myfy_db.cli.runtime.run`, and renders through :class:`~myfy_db.cli.output.Output`.
Options given before a subcommand (``myfy-db migrate --url X status``) apply to it too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from myfy_db.cli.options import (
    EnvFileOption,
    FiniteFloat,
    JsonOption,
    MetadataOption,
    UrlOption,
    WaitOption,
    YesOption,
)
from myfy_db.cli.runtime import load, run
from myfy_db.errors import CheckFailed

if TYPE_CHECKING:
    from rich.console import Console

    from myfy_db.cli.output import Output
    from myfy_db.migrations.commands import AppliedRevision, MigrationRun
    from myfy_db.migrations.project import MigrationProject
    from myfy_db.migrations.revisions import RevisionInfo
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
    FiniteFloat,
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
    str,
    typer.Argument(
        help="Target revision: an id, a prefix, head, heads, base, +N / -N, REV+N / REV-N.",
        metavar="REV",
    ),
]
AtomicOption = Annotated[
    bool,
    typer.Option(
        "--atomic",
        help="The whole run in one transaction, all or nothing (PostgreSQL, SQLite; "
        "MySQL/MariaDB commits DDL on its own, so there it exits 2).",
    ),
]
DdlLockTimeoutOption = Annotated[
    FiniteFloat | None,
    typer.Option(
        "--ddl-lock-timeout",
        min=0,
        metavar="SECONDS",
        show_default=False,
        help="How long each revision's statements wait for a table lock before failing "
        "(default 5, or MYFY_DATA_DDL_LOCK_TIMEOUT; 0: no limit). Not --lock-timeout.",
    ),
]
RetriesOption = Annotated[
    int,
    typer.Option(
        "--retries",
        min=0,
        metavar="N",
        help="Retry a revision that failed only on --ddl-lock-timeout, up to N times, backing off.",
    ),
]
DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="List the revisions it would undo, in order, and change nothing."
    ),
]
_RELATIVE = re.compile(r"^-\d+$")


class RevisionCommand(TyperCommand):
    """A command taking a revision: Alembic's relative targets (``-1``) are arguments."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if any(_RELATIVE.match(arg) for arg in args):
            ctx.ignore_unknown_options = True
        return list(super().parse_args(ctx, args))


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
    out.emit_text(run_result.to_dict(), _run_summary(run_result))


def _run_summary(run_result: MigrationRun) -> list[Any]:
    """The human summary of a run: lines of text (and the revisions a dry run would undo)."""
    database = run_result.database
    start = run_result.from_revision or "base"
    end = run_result.to_revision or "base"
    count = len(run_result.applied)
    if run_result.dry_run:
        planned = run_result.planned or []
        if not planned:
            return [f"{database}: at {start}; nothing to undo"]
        return [
            f"{database}: would undo {len(planned)} revision(s), in this order "
            "(dry run, nothing changed)",
            _revision_table(None, planned),
        ]
    if run_result.command == "reset":
        dropped = run_result.dropped or []
        return [
            f"{database}: reset: dropped {len(dropped)} table(s), then applied "
            f"{count} revision(s), base -> {end}, in {run_result.duration_ms:.0f} ms (was {start})"
        ]
    if count == 0:
        return [f"{database}: already at {end}; nothing to do"]
    return [
        f"{database}: {run_result.command} {start} -> {end}, "
        f"{count} revision(s) in {run_result.duration_ms:.0f} ms"
    ]


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
    dry_run: bool = False,
    atomic: bool = False,
    ddl_lock_timeout: float | None = None,
    retries: int = 0,
) -> None:
    shared = _shared(ctx, url=url, env_file=env_file, config=config)

    async def action(out: Output) -> None:
        from myfy_db.migrations import commands
        from myfy_db.migrations.ddl_lock import DdlLock

        loaded = load(shared["url"], shared["env_file"], ddl_lock_timeout=ddl_lock_timeout)
        ddl = DdlLock(loaded.settings.ddl_lock_timeout, retries, out.info)
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
                atomic=atomic,
                ddl_lock=ddl,
            )
        elif kind == "down":
            result = await commands.downgrade(
                project,
                loaded,
                revision,
                lock_timeout=lock_timeout,
                progress=_progress(out),
                report=report,
                confirm=_confirm_down(out, loaded, revision, yes=yes),
                dry_run=dry_run,
                atomic=atomic,
                ddl_lock=ddl,
            )
        else:
            result = await commands.stamp(
                project, loaded, revision, lock_timeout=lock_timeout, report=report
            )
        _render_run(out, result)

    run(action, json_mode=_json(ctx, json_output))


def _revision_table(title: str | None, revisions: list[RevisionInfo]) -> Any:
    from myfy_db.cli.output import table

    rows = [[n, r.revision, r.message or ""] for n, r in enumerate(revisions, 1)]
    return table(title, ["#", "revision", "message"], rows)


def _confirm_down(out: Output, loaded: LoadedSettings, revision: str, *, yes: bool) -> Any:
    """Ask for the database name, after listing the revisions the downgrade will undo."""
    import sys

    from myfy_db.cli.confirm import confirm_by_name, database_name
    from myfy_db.engine import describe_target

    url = loaded.settings.database_url
    target = describe_target(url)

    def confirm(planned: list[RevisionInfo]) -> None:
        if not yes and sys.stdin.isatty():
            out.info(f"migrate down will undo {len(planned)} revision(s) on {target}, in order:")
            for number, info in enumerate(planned, 1):
                out.info(
                    f"  {number}. {info.revision}" + (f" {info.message}" if info.message else "")
                )
        confirm_by_name(
            out,
            f"Undo {len(planned)} revision(s) (down to {revision}) on {target}",
            database_name(url),
            yes=yes,
        )

    return confirm


@app.callback(invoke_without_command=True)
def migrate(
    ctx: typer.Context,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    config: ConfigOption = None,
    lock_timeout: LockTimeoutOption = 60.0,
    ddl_lock_timeout: DdlLockTimeoutOption = None,
    retries: RetriesOption = 0,
    sql: SqlOption = False,
    atomic: AtomicOption = False,
    json_output: JsonOption = False,
    wait: WaitOption = None,
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
        atomic=atomic,
        ddl_lock_timeout=ddl_lock_timeout,
        retries=retries,
    )


@app.command("up", cls=RevisionCommand)
def up(
    ctx: typer.Context,
    revision: RevisionArgument,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    config: ConfigOption = None,
    lock_timeout: LockTimeoutOption = 60.0,
    ddl_lock_timeout: DdlLockTimeoutOption = None,
    retries: RetriesOption = 0,
    sql: SqlOption = False,
    atomic: AtomicOption = False,
    json_output: JsonOption = False,
    wait: WaitOption = None,
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
        atomic=atomic,
        ddl_lock_timeout=ddl_lock_timeout,
        retries=retries,
    )


@app.command("down", cls=RevisionCommand)
def down(
    ctx: typer.Context,
    revision: RevisionArgument,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    config: ConfigOption = None,
    lock_timeout: LockTimeoutOption = 60.0,
    ddl_lock_timeout: DdlLockTimeoutOption = None,
    retries: RetriesOption = 0,
    sql: SqlOption = False,
    atomic: AtomicOption = False,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    json_output: JsonOption = False,
    wait: WaitOption = None,
) -> None:
    """Downgrade to REV: lists the revisions to undo and asks for the database name.

    Refused in a protected environment. --dry-run lists them and changes nothing. With
    --sql, REV must be a range such as head:base, and only the SQL is printed.
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
        dry_run=dry_run,
        atomic=atomic,
        ddl_lock_timeout=ddl_lock_timeout,
        retries=retries,
    )


@app.command("reset")
def reset(
    ctx: typer.Context,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    config: ConfigOption = None,
    lock_timeout: LockTimeoutOption = 60.0,
    atomic: AtomicOption = False,
    yes: YesOption = False,
    json_output: JsonOption = False,
) -> None:
    """Drop every table, then re-apply every revision to head, under the migration lock.

    Guarded like drop-tables --all: asks for the database name; refused (exit 3) in a
    protected environment, when the database is recorded as another environment, and with no
    terminal unless --yes. The myfy_db_meta environment record is kept.
    """
    shared = _shared(ctx, url=url, env_file=env_file, config=config)

    async def action(out: Output) -> None:
        from myfy_db.cli.drop_tables import drop_confirmation
        from myfy_db.migrations import commands

        loaded = load(shared["url"], shared["env_file"])
        project = _project(shared["config"], out)
        confirm = drop_confirmation(out, "migrate reset", loaded.settings.database_url, yes=yes)
        result = await commands.reset(
            project,
            loaded,
            lock_timeout=lock_timeout,
            progress=_progress(out),
            report=out.info,
            confirm=confirm,
            atomic=atomic,
        )
        _render_run(out, result)

    run(action, json_mode=_json(ctx, json_output))


@app.command("stamp", cls=RevisionCommand)
def stamp(
    ctx: typer.Context,
    revision: RevisionArgument,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    config: ConfigOption = None,
    lock_timeout: LockTimeoutOption = 60.0,
    json_output: JsonOption = False,
    wait: WaitOption = None,
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
    wait: WaitOption = None,
) -> None:
    """Current revision, heads and pending revisions; exit 5 when not at head."""
    shared = _shared(ctx, url=url, env_file=env_file, config=config)

    async def action(out: Output) -> None:
        from myfy_db.cli.output import table
        from myfy_db.migrations import commands
        from myfy_db.migrations.revisions import SEVERAL_HEADS_HINT, several_heads

        loaded = load(shared["url"], shared["env_file"])
        result = await commands.status(_project(shared["config"], out), loaded)

        def human(console: Console) -> None:
            label = "heads:   " if len(result.heads) > 1 else "head:    "
            console.print(f"database: {result.database}", soft_wrap=True)
            console.print(f"current:  {', '.join(result.current) or 'base (no revision)'}")
            console.print(f"{label} {', '.join(result.heads) or '(no revisions)'}")
            if result.pending:
                rows = [[p.revision, p.message] for p in result.pending]
                console.print(table("Pending revisions", ["revision", "message"], rows))
            else:
                console.print("at head: nothing pending")

        out.emit(result.to_dict(), human)
        several = len(result.heads) > 1
        if not result.at_head:
            raise CheckFailed(
                f"the database is not at head: {len(result.pending)} pending revision(s)"
                + (f"; {several_heads(result.heads)}" if several else ""),
                hint=SEVERAL_HEADS_HINT if several else "run `myfy-db migrate`",
            )
        if several:
            out.warn(f"{several_heads(result.heads)}: {SEVERAL_HEADS_HINT}")

    run(action, json_mode=_json(ctx, json_output), read_only=True)


@app.command("history")
def history(
    ctx: typer.Context,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Every revision, newest first; marks those applied when the database can be read.

    Without a reachable database the history still lists the project's revisions.
    """
    shared = _shared(ctx, url=url, env_file=env_file, config=config)

    async def action(out: Output) -> None:
        from myfy_db.migrations import commands

        loaded = load(shared["url"], shared["env_file"])
        revisions = await commands.history(_project(shared["config"], out), loaded, out.warn)
        marked = any(r.applied is not None for r in revisions)

        def human(console: Console) -> None:
            from myfy_db.cli.output import table

            columns = ["revision", "revises", "head", "message"]
            if marked:
                columns.insert(1, "applied")
            rows = []
            for r in revisions:
                row = [
                    r.revision,
                    r.down_revision or "base",
                    "head" if r.is_head else "",
                    r.message,
                ]
                if marked:
                    row.insert(1, "current" if r.current else ("yes" if r.applied else "no"))
                rows.append(row)
            console.print(table("Revisions", columns, rows))

        out.emit({"revisions": [r.to_dict() for r in revisions]}, human)

    run(action, json_mode=_json(ctx, json_output), read_only=True)


@app.command("current")
def current(
    ctx: typer.Context,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    wait: WaitOption = None,
) -> None:
    """The revision(s) the database is at (base when it has none)."""
    shared = _shared(ctx, url=url, env_file=env_file, config=config)

    async def action(out: Output) -> None:
        from myfy_db.migrations import commands

        loaded = load(shared["url"], shared["env_file"])
        result = await commands.current(_project(shared["config"], out), loaded)

        def human(console: Console) -> None:
            if not result.current:
                console.print(f"{result.database}: base (no revision)", soft_wrap=True)
            for r in result.current:
                head = " (head)" if r.is_head else ""
                message = f" {r.message}" if r.message else ""
                console.print(f"{r.revision}{head}{message}", soft_wrap=True)

        out.emit(result.to_dict(), human)

    run(action, json_mode=_json(ctx, json_output), read_only=True)


@app.command("heads")
def heads(
    ctx: typer.Context,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """The project's head revisions (more than one: merge them, or up heads)."""
    shared = _shared(ctx, config=config)

    def action(out: Output) -> None:
        from myfy_db.migrations import revisions

        found = revisions.heads(_project(shared["config"], out))

        def human(console: Console) -> None:
            for r in found:
                message = f" {r.message}" if r.message else ""
                console.print(f"{r.revision} (head){message}", soft_wrap=True)

        out.emit({"heads": [r.to_dict() for r in found]}, human)

    run(action, json_mode=_json(ctx, json_output), read_only=True)


@app.command("branches")
def branches(
    ctx: typer.Context,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """The revisions where the history forks, each with its branches."""
    shared = _shared(ctx, config=config)

    def action(out: Output) -> None:
        from myfy_db.migrations import revisions

        found = revisions.branches(_project(shared["config"], out))

        def human(console: Console) -> None:
            if not found:
                console.print("no branch points: the history is linear")
            for b in found:
                message = f" {b.message}" if b.message else ""
                console.print(f"{b.revision} (branch point){message}", soft_wrap=True)
                for child in b.branches:
                    console.print(f"  -> {child}", soft_wrap=True)

        out.emit({"branch_points": [b.to_dict() for b in found]}, human)

    run(action, json_mode=_json(ctx, json_output), read_only=True)


@app.command("show", cls=RevisionCommand)
def show(
    ctx: typer.Context,
    revision: RevisionArgument,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Everything about revision REV: parents, children, branch labels, file, docstring."""
    shared = _shared(ctx, config=config)

    def action(out: Output) -> None:
        from myfy_db.migrations import revisions

        found = revisions.show(_project(shared["config"], out), revision)

        def human(console: Console) -> None:
            for r in found:
                marks = [
                    m
                    for m, on in (
                        ("head", r.is_head),
                        ("branch point", r.is_branch_point),
                        ("merge point", r.is_merge_point),
                    )
                    if on
                ]
                suffix = f" ({', '.join(marks)})" if marks else ""
                console.print(f"Rev: {r.revision}{suffix}", soft_wrap=True)
                console.print(f"Parent: {r.down_revision or 'base'}", soft_wrap=True)
                if r.next_revisions:
                    console.print(f"Children: {', '.join(r.next_revisions)}", soft_wrap=True)
                if r.branch_labels:
                    console.print(f"Branch names: {', '.join(r.branch_labels)}", soft_wrap=True)
                if r.depends_on:
                    console.print(f"Depends on: {r.depends_on}", soft_wrap=True)
                console.print(f"Path: {r.path}", soft_wrap=True, markup=False)
                if r.doc:
                    console.print("", r.doc, sep="\n", soft_wrap=True, markup=False)

        out.emit({"revisions": [r.to_dict() for r in found]}, human)

    run(action, json_mode=_json(ctx, json_output), read_only=True)


@app.command("merge", cls=RevisionCommand)
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
            _project(shared["config"], out), loaded.settings, revisions_, message
        )

        def human(console: Console) -> None:
            console.print(f"created {path} (merge revision {revision})", soft_wrap=True)

        out.emit({"revision": revision, "path": str(path), "merged": revisions_}, human)

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
    wait: WaitOption = None,
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
        project = _project(shared["config"], out)
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


@app.command("check")
def check(
    ctx: typer.Context,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    metadata: MetadataOption = None,
    json_output: JsonOption = False,
    wait: WaitOption = None,
) -> None:
    """Compare the models with the database; exit 5 listing the differences."""

    async def action(out: Output) -> None:
        from myfy_db.cli.output import table
        from myfy_db.metadata import load_metadata
        from myfy_db.migrations import autogenerate as auto

        loaded = load(url, env_file, metadata=metadata)
        models = load_metadata(loaded.settings.metadata)
        report = await auto.check(loaded, models.metadata, models.spec)

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

    run(action, json_mode=_json(ctx, json_output), read_only=True)


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


app.command("upgrade", cls=RevisionCommand, help="Alias of `migrate up`: upgrade to REV.")(up)
app.command("downgrade", cls=RevisionCommand, help="Alias of `migrate down`: downgrade to REV.")(
    down
)

__all__ = ["app"]
