"""``myfy-db migrate``: Alembic in-process, one async URL, under the migration lock.

The Typer layer parses, calls one function of :mod:`myfy_db.migrations.commands` inside
:func:`~myfy_db.cli.runtime.run`, and renders through :class:`~myfy_db.cli.output.Output`.
Options given before a subcommand (``myfy-db migrate --url X status``) apply to it too.

This module holds the group and the commands that write (``migrate``, ``up``, ``down``,
``reset``, ``stamp``); it registers the others from :mod:`.migrate_look` (they only read),
:mod:`.migrate_author` (they write files) and :mod:`.migrate_lint`. A writing command's
flags become one :class:`~myfy_db.migrations.options.RunOptions`, built once in
:func:`_write` from the command's parsed parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from myfy_db.cli import migrate_author, migrate_lint, migrate_look
from myfy_db.cli.migrate_options import (
    AtomicOption,
    ChunkTimeOption,
    ConfigOption,
    ConnectingRevisionCommand,
    CriticalLoadOption,
    DdlLockTimeoutOption,
    DryRunOption,
    LockTimeoutOption,
    MaxLagOption,
    OnlineDdlOption,
    RetriesOption,
    RevisionArgument,
    RevisionCommand,
    SafeOption,
    SqlOption,
    StatementTimeoutOption,
    _json,
    _project,
    _shared,
)
from myfy_db.cli.options import (
    ConnectingCommand,
    ConnectingGroup,
    EnvFileOption,
    JsonOption,
    UrlOption,
    YesOption,
)
from myfy_db.cli.runtime import load, run

if TYPE_CHECKING:
    from myfy_db.cli.output import Output
    from myfy_db.migrations.options import RunOptions
    from myfy_db.migrations.results import AppliedRevision, MigrationRun
    from myfy_db.migrations.revisions import RevisionInfo
    from myfy_db.settings import LoadedSettings

app = typer.Typer(
    name="migrate",
    cls=ConnectingGroup,
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
    if run_result.command == "redo":
        return [
            f"{database}: redo: undid and re-applied {end}, {count} step(s) in "
            f"{run_result.duration_ms:.0f} ms"
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


def _run_options(ctx: typer.Context, out: Output) -> RunOptions:
    """The run's options, from the flags this command was given (or ``migrate`` before it)."""
    from myfy_db.migrations.options import DEFAULT_LOCK_TIMEOUT, PtOscOptions, RunOptions

    given = ctx.params
    online_ddl = given.get("online_ddl")
    return RunOptions(
        lock_timeout=given.get("lock_timeout", DEFAULT_LOCK_TIMEOUT),
        atomic=given.get("atomic", False),
        retries=given.get("retries", 0),
        dry_run=given.get("dry_run", False),
        progress=_progress(out),
        report=out.info,
        safe=given.get("safe"),
        online_ddl=None
        if online_ddl is None or online_ddl.strip().lower() == "none"
        else online_ddl,
        pt_osc=PtOscOptions(
            max_lag=given.get("max_lag"),
            chunk_time=given.get("chunk_time"),
            critical_load=given.get("critical_load"),
        ),
    )


def _write(ctx: typer.Context, kind: str, revision: str) -> None:
    """Run a writing command (``up``, ``down``, ``reset``, ``stamp``) with its flags."""
    given = ctx.params
    shared = _shared(
        ctx, url=given.get("url"), env_file=given.get("env_file"), config=given.get("config")
    )

    async def action(out: Output) -> None:
        from myfy_db.migrations import commands

        loaded = load(
            shared["url"], shared["env_file"], ddl_lock_timeout=given.get("ddl_lock_timeout")
        )
        project = _project(shared["config"], out, loaded.settings.database_url)
        options = _run_options(ctx, out)
        if given.get("sql"):
            commands.render_sql(
                project,
                loaded.settings,
                revision,
                downgrade=kind == "down",
                statement_timeout=given.get("statement_timeout"),
                options=options,
            )
            return
        if kind == "up":
            result = await commands.upgrade(project, loaded, revision, options)
        elif kind == "reset":
            from myfy_db.cli.drop_tables import drop_confirmation

            url = loaded.settings.database_url
            confirm_drop = drop_confirmation(out, "migrate reset", url, yes=given.get("yes", False))
            result = await commands.reset(project, loaded, options, confirm=confirm_drop)
        elif kind == "redo":
            confirm = _confirm_down(out, loaded, "-1", yes=given.get("yes", False), redo=True)
            result = await commands.redo(project, loaded, options, confirm=confirm)
        elif kind == "down":
            confirm = _confirm_down(out, loaded, revision, yes=given.get("yes", False))
            result = await commands.downgrade(project, loaded, revision, options, confirm=confirm)
        else:
            result = await commands.stamp(project, loaded, revision, options)
        _render_run(out, result)

    run(action, json_mode=_json(ctx, given.get("json_output", False)))


def _revision_table(title: str | None, revisions: list[RevisionInfo]) -> Any:
    from myfy_db.cli.output import table

    rows = [[n, r.revision, r.message or ""] for n, r in enumerate(revisions, 1)]
    return table(title, ["#", "revision", "message"], rows)


def _confirm_down(
    out: Output, loaded: LoadedSettings, revision: str, *, yes: bool, redo: bool = False
) -> Any:
    """Ask for the database name, after listing the revisions the downgrade will undo."""
    import sys

    from myfy_db.cli.confirm import confirm_by_name, database_name

    url = loaded.settings.url
    target = url.target
    command = "migrate redo" if redo else "migrate down"

    def confirm(planned: list[RevisionInfo]) -> None:
        if not yes and sys.stdin.isatty():
            out.info(f"{command} will undo {len(planned)} revision(s) on {target}, in order:")
            for number, info in enumerate(planned, 1):
                out.info(
                    f"  {number}. {info.revision}" + (f" {info.message}" if info.message else "")
                )
        # The revision the database ends at, named even when REV was relative (-1).
        end = (planned[-1].down_revision or "base") if planned else revision
        action = (
            f"Undo {planned[0].revision} and apply it again on {target}"
            if redo and planned
            else f"Undo {len(planned)} revision(s) (down to {end}) on {target}"
        )
        confirm_by_name(out, action, database_name(loaded.settings.database_url), yes=yes)

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
    statement_timeout: StatementTimeoutOption = None,
    atomic: AtomicOption = False,
    safe: SafeOption = None,
    online_ddl: OnlineDdlOption = None,
    max_lag: MaxLagOption = None,
    chunk_time: ChunkTimeOption = None,
    critical_load: CriticalLoadOption = None,
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
    if ctx.invoked_subcommand is None:
        _write(ctx, "up", "head")


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
    statement_timeout: StatementTimeoutOption = None,
    atomic: AtomicOption = False,
    safe: SafeOption = None,
    online_ddl: OnlineDdlOption = None,
    max_lag: MaxLagOption = None,
    chunk_time: ChunkTimeOption = None,
    critical_load: CriticalLoadOption = None,
    json_output: JsonOption = False,
) -> None:
    """Upgrade to REV under the migration lock (--sql: print the SQL; REV may be FROM:TO)."""
    _write(ctx, "up", revision)


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
    statement_timeout: StatementTimeoutOption = None,
    atomic: AtomicOption = False,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    json_output: JsonOption = False,
) -> None:
    """Downgrade to REV: lists the revisions to undo and asks for the database name.

    Refused in a protected environment. --dry-run lists them and changes nothing. With
    --sql, REV must be a range such as head:base, and only the SQL is printed.
    """
    _write(ctx, "down", revision)


def reset(
    ctx: typer.Context,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    config: ConfigOption = None,
    lock_timeout: LockTimeoutOption = 60.0,
    ddl_lock_timeout: DdlLockTimeoutOption = None,
    retries: RetriesOption = 0,
    atomic: AtomicOption = False,
    yes: YesOption = False,
    json_output: JsonOption = False,
) -> None:
    """Drop every table, then re-apply every revision to head, under the migration lock.

    Guarded like drop-tables --all: asks for the database name; refused (exit 3) in a
    protected environment, when the database is recorded as another environment, and with no
    terminal unless --yes. The myfy_db_meta environment record is kept.
    """
    _write(ctx, "reset", "head")


def redo(
    ctx: typer.Context,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    config: ConfigOption = None,
    lock_timeout: LockTimeoutOption = 60.0,
    ddl_lock_timeout: DdlLockTimeoutOption = None,
    retries: RetriesOption = 0,
    yes: YesOption = False,
    json_output: JsonOption = False,
) -> None:
    """Undo the latest revision, then apply it again, under the migration lock.

    Guarded like down: refused in a protected environment, asks for the database name (no
    terminal: exit 3 unless --yes).
    """
    _write(ctx, "redo", "-1")


def stamp(
    ctx: typer.Context,
    revision: RevisionArgument,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    config: ConfigOption = None,
    lock_timeout: LockTimeoutOption = 60.0,
    ddl_lock_timeout: DdlLockTimeoutOption = None,
    json_output: JsonOption = False,
) -> None:
    """Record REV as the database's revision without running any migration."""
    _write(ctx, "stamp", revision)


# The subcommands, in the order --help lists them; those that connect take --wait.
app.command("up", cls=ConnectingRevisionCommand)(up)
app.command("down", cls=ConnectingRevisionCommand)(down)
app.command("redo", cls=ConnectingCommand)(redo)
app.command("reset", cls=ConnectingCommand)(reset)
app.command("stamp", cls=ConnectingRevisionCommand)(stamp)
app.command("status", cls=ConnectingCommand)(migrate_look.status)
app.command("history")(migrate_look.history)
app.command("current", cls=ConnectingCommand)(migrate_look.current)
app.command("heads")(migrate_look.heads)
app.command("branches")(migrate_look.branches)
app.command("show", cls=RevisionCommand)(migrate_look.show)
app.command("merge", cls=RevisionCommand)(migrate_author.merge)
app.command("new", cls=ConnectingCommand)(migrate_author.new)
app.command("check", cls=ConnectingCommand)(migrate_look.check)
app.command("init")(migrate_author.init)
app.command(
    "upgrade", cls=ConnectingRevisionCommand, help="Alias of `migrate up`: upgrade to REV."
)(up)
app.command(
    "downgrade", cls=ConnectingRevisionCommand, help="Alias of `migrate down`: downgrade to REV."
)(down)
app.command("lint")(migrate_lint.lint)

__all__ = ["app"]
