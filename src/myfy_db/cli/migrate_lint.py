"""``myfy-db migrate lint``: parse, call :func:`myfy_db.migrations.lint.lint`, render."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from myfy_db.cli.migrate_options import ConfigOption, _json, _project, _shared
from myfy_db.cli.options import EnvFileOption, JsonOption, MetadataOption, UrlOption
from myfy_db.cli.runtime import load, run
from myfy_db.errors import CheckFailed

if TYPE_CHECKING:
    from myfy_db.cli.output import Output
    from myfy_db.migrations.lint import LintReport

RangeArgument = Annotated[
    str | None,
    typer.Argument(
        help="FROM:TO, as in `migrate up --sql` (default: the pending revisions when the "
        "database can be reached, every revision otherwise).",
        metavar="RANGE",
        show_default=False,
    ),
]
FailOnOption = Annotated[
    str,
    typer.Option(
        "--fail-on",
        metavar="LEVEL",
        help="Exit 5 when a finding not accepted is at least this severe: error, warning, "
        "info or never.",
    ),
]


def _lines(report: LintReport) -> list[str]:
    """One line per finding (``file:line RULE severity detail``), each rule's recipe once,
    then a per-rule summary."""
    count = len(report.revisions)
    lines = [f"{report.database}: {count} revision(s) linted for {report.dialect} ({report.scope})"]
    recipes: dict[str, tuple[str, str, str]] = {}
    tally: dict[str, list[int]] = {}
    for finding in report.findings:
        mark = f"accepted {finding.severity.label}" if finding.accepted else finding.severity.label
        if finding.made_safe:
            mark += " (made safe by --safe)"
        line = (
            f"{finding.path}:{finding.line} {finding.rule} {mark} {finding.detail} "
            f"(revision {finding.revision})"
        )
        if finding.accepted:
            line += f"; accepted: {finding.reason}"
        lines.append(line)
        recipes.setdefault(finding.rule, (finding.name, finding.breaks, finding.safe))
        counts = tally.setdefault(finding.rule, [0, 0, 0])
        counts[0] += 1
        counts[1] += int(finding.accepted)
        counts[2] += int(finding.made_safe and not finding.accepted)
    if recipes:
        lines.append("")
        for rule, (name, breaks, safe) in recipes.items():
            lines.append(f"{rule} {name}: {breaks}")
            lines.append(f"  safe form: {safe}")
        summary = ", ".join(
            f"{rule} x{n}"
            + (f" ({accepted} accepted)" if accepted else "")
            + (f" ({fixed} made safe by --safe)" if fixed else "")
            for rule, (n, accepted, fixed) in tally.items()
        )
        lines.append(f"{len(report.findings)} finding(s): {summary}")
    else:
        lines.append("no findings")
    return lines


def lint(
    ctx: typer.Context,
    revision_range: RangeArgument = None,
    fail_on: FailOnOption = "error",
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    config: ConfigOption = None,
    metadata: MetadataOption = None,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="Lint without the database: the given range, or every revision (otherwise "
            "an unreachable database is exit 4).",
        ),
    ] = False,
    dev_url: Annotated[
        str | None,
        typer.Option(
            "--dev-url",
            metavar="URL",
            help="Replay the chain on a scratch database created (and dropped) on this "
            "server, so revisions that read the database are judged too; never the database "
            "itself.",
            show_default=False,
        ),
    ] = None,
    explain: Annotated[
        str | None,
        typer.Option(
            "--explain",
            metavar="RULE",
            help="Print what rule RULE flags, what breaks and the safe form, and exit "
            "(--explain '' lists every rule).",
            show_default=False,
        ),
    ] = None,
    safe: Annotated[
        bool,
        typer.Option(
            "--safe",
            help="Mark the findings that `migrate --safe` makes safe as it runs (made safe by "
            "--safe); they no longer fail --fail-on.",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Judge what each revision will do on the URL's dialect: locks, rewrites, renames, drops.

    Each finding names its rule, severity, revision, file and line, what breaks in
    production and the safe form. A comment `# myfy-db: allow RULE-ID -- reason` beside an
    operation accepts its finding (still shown). Exit 5 at --fail-on (default error).
    """
    shared = _shared(ctx, url=url, env_file=env_file, config=config)
    if explain is not None:

        def explained(out: Output) -> None:
            from myfy_db.migrations.lint.docs import explain as explain_rule

            lines = explain_rule(explain)
            out.emit_text({"explain": lines}, ["\n".join(lines)])

        run(explained, json_mode=_json(ctx, json_output), read_only=True)
        return

    async def action(out: Output) -> None:
        from myfy_db.metadata import load_metadata
        from myfy_db.migrations.lint import lint as lint_revisions
        from myfy_db.migrations.lint import parse_fail_on
        from myfy_db.urls import DatabaseUrl

        threshold = parse_fail_on(fail_on)
        dev = DatabaseUrl.parse(dev_url) if dev_url is not None else None
        loaded = load(shared["url"], shared["env_file"], metadata=metadata)
        project = _project(shared["config"], out, loaded.settings.database_url)
        models = None
        if loaded.settings.metadata:
            models = load_metadata(loaded.settings.metadata).metadata
        report = await lint_revisions(
            project,
            loaded,
            revision_range,
            metadata=models,
            offline=offline,
            dev_url=dev,
            safe=safe,
        )
        out.emit_text(report.to_dict(), _lines(report))
        failing = report.failing(threshold)
        if failing:
            worst = max(f.severity for f in failing)
            raise CheckFailed(
                f"{len(failing)} finding(s) at or above {fail_on.lower()} (worst: {worst.label})",
                hint="rewrite the revision the safe way, or accept a finding on purpose with "
                "`# myfy-db: allow RULE-ID -- reason` beside the operation",
            )

    run(action, json_mode=_json(ctx, json_output), read_only=True)


# `migrate lint` joins the migrate group when this module is first imported (once).
