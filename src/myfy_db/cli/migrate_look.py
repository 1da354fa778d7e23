"""The ``migrate`` commands that only look: status, history, current, heads, branches, show,
check. Each reads; none changes the database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from myfy_db.cli.migrate_options import ConfigOption, RevisionArgument, _json, _project, _shared
from myfy_db.cli.options import EnvFileOption, JsonOption, MetadataOption, UrlOption
from myfy_db.cli.runtime import load, run
from myfy_db.errors import CheckFailed

if TYPE_CHECKING:
    from rich.console import Console

    from myfy_db.cli.output import Output


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
        from myfy_db.cli.output import table
        from myfy_db.migrations import commands
        from myfy_db.migrations.revisions import SEVERAL_HEADS_HINT, several_heads

        loaded = load(shared["url"], shared["env_file"])
        result = await commands.status(
            _project(shared["config"], out, loaded.settings.database_url), loaded
        )

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
        revisions = await commands.history(
            _project(shared["config"], out, loaded.settings.database_url), loaded, out.warn
        )
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


def current(
    ctx: typer.Context,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """The revision(s) the database is at (base when it has none)."""
    shared = _shared(ctx, url=url, env_file=env_file, config=config)

    async def action(out: Output) -> None:
        from myfy_db.migrations import commands

        loaded = load(shared["url"], shared["env_file"])
        result = await commands.current(
            _project(shared["config"], out, loaded.settings.database_url), loaded
        )

        def human(console: Console) -> None:
            if not result.current:
                console.print(f"{result.database}: base (no revision)", soft_wrap=True)
            for r in result.current:
                head = " (head)" if r.is_head else ""
                message = f" {r.message}" if r.message else ""
                console.print(f"{r.revision}{head}{message}", soft_wrap=True)

        out.emit(result.to_dict(), human)

    run(action, json_mode=_json(ctx, json_output), read_only=True)


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


def check(
    ctx: typer.Context,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    metadata: MetadataOption = None,
    json_output: JsonOption = False,
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
