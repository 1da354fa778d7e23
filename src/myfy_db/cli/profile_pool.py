"""``myfy-db profile-pool``: judge a pool configuration against the tiers, the server and a load."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from myfy_db.cli.options import (
    EnvFileOption,
    FiniteFloat,
    JsonOption,
    PositiveFloat,
    UrlOption,
)
from myfy_db.cli.runtime import load, run
from myfy_db.errors import CheckFailed, ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from myfy_db.cli.output import Output
    from myfy_db.pool.profile import LoadReport

_WHAT_IF = "What-if override"


def profile_pool(
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    json_output: JsonOption = False,
    tier: Annotated[
        str | None,
        typer.Option(
            "--tier",
            help="Assert a tier (low, medium, high): a shortfall exits 5.",
            metavar="NAME",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option("--workers", min=1, help="Worker processes, each with its own pool."),
    ] = 1,
    rps: Annotated[
        PositiveFloat | None,
        typer.Option(
            "--rps",
            max=1_000_000,
            help="Expected requests per second, all workers together (with --query-ms).",
            show_default=False,
        ),
    ] = None,
    query_ms: Annotated[
        PositiveFloat | None,
        typer.Option(
            "--query-ms",
            max=3_600_000,
            help="Milliseconds one request holds a connection (with --rps).",
            show_default=False,
        ),
    ] = None,
    pooler_max_client_conn: Annotated[
        int | None,
        typer.Option(
            "--pooler-max-client-conn",
            min=1,
            help="A pooler (PgBouncer) sits in between and accepts this many client "
            "connections: judge workers x (pool_size + max_overflow) against it.",
            show_default=False,
            metavar="N",
        ),
    ] = None,
    max_connections: Annotated[
        int | None,
        typer.Option(
            "--max-connections",
            min=1,
            help="The server's usable connections, for --offline (read from the server otherwise).",
            show_default=False,
            metavar="N",
        ),
    ] = None,
    fail_on: Annotated[
        str,
        typer.Option(
            "--fail-on",
            help="Exit 5 when a finding is at or above this severity: error, warning, info, never.",
            metavar="LEVEL",
        ),
    ] = "error",
    offline: Annotated[
        bool,
        typer.Option("--offline", help="Do not contact the server: skip the server findings."),
    ] = False,
    load_run: Annotated[
        bool,
        typer.Option("--load", help="Measure the pool under concurrent load (needs the server)."),
    ] = False,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            min=1,
            help="Concurrent tasks for --load (default: pool_size + max_overflow).",
            show_default=False,
        ),
    ] = None,
    duration: Annotated[
        FiniteFloat,
        typer.Option("--duration", min=0.05, help="Seconds the --load run lasts."),
    ] = 5.0,
    pool_size: Annotated[
        int | None,
        typer.Option("--pool-size", help=f"{_WHAT_IF}: pool_size.", show_default=False),
    ] = None,
    max_overflow: Annotated[
        int | None,
        typer.Option("--max-overflow", help=f"{_WHAT_IF}: max_overflow.", show_default=False),
    ] = None,
    pool_timeout: Annotated[
        FiniteFloat | None,
        typer.Option(
            "--pool-timeout", help=f"{_WHAT_IF}: pool_timeout (seconds).", show_default=False
        ),
    ] = None,
    pool_recycle: Annotated[
        int | None,
        typer.Option(
            "--pool-recycle",
            help=f"{_WHAT_IF}: pool_recycle (seconds, -1: never).",
            show_default=False,
        ),
    ] = None,
    pre_ping: Annotated[
        bool | None,
        typer.Option(
            "--pre-ping/--no-pre-ping", help=f"{_WHAT_IF}: pool_pre_ping.", show_default=False
        ),
    ] = None,
    lifo: Annotated[
        bool | None,
        typer.Option("--lifo/--no-lifo", help=f"{_WHAT_IF}: pool_use_lifo.", show_default=False),
    ] = None,
) -> None:
    """Judge the pool configuration against the traffic tiers and the server's limits.

    Names the tier the configuration fits (low, medium, high) with each setting beside each
    tier's value, and adds what the table cannot see: workers x (pool_size + max_overflow)
    against max_connections, pool_recycle against MySQL's wait_timeout, pre-ping and LIFO
    hazards, and a Little's-law estimate from --rps and --query-ms. --load measures checkout
    wait, throughput and timeouts under concurrent load. Every finding has an id and a
    severity (info, warning, error); exits 5 when a finding is at or above --fail-on or
    --tier falls short.
    """

    async def action(out: Output) -> None:
        from dataclasses import asdict

        from myfy_db.pool.profile import (
            Traffic,
            after_load,
            assess_tiers,
            failing,
            fetch_server_facts,
            find_issues,
            get_tier,
            load_findings,
            run_load,
            shortfall,
        )

        if tier is not None:
            get_tier(tier)
        failing([], fail_on)  # an unknown level is exit 2 before anything connects
        if offline and load_run:
            raise ConfigError(
                "--load needs the database and --offline forbids contacting it",
                hint="drop one of the two flags",
            )
        traffic = Traffic(
            workers=workers,
            rps=rps,
            query_ms=query_ms,
            pooler_max_client_conn=pooler_max_client_conn,
            max_connections=max_connections,
        )
        loaded = load(
            url,
            env_file,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=pool_recycle,
            pool_pre_ping=pre_ping,
            pool_use_lifo=lifo,
        )
        settings = loaded.settings
        assessment = assess_tiers(settings)
        pooler = None
        facts_from = settings
        if not offline and settings.backend == "postgresql":
            from myfy_db.pool.measure import probe_pooler
            from myfy_db.pool.pooler import safe_url

            pooler = await probe_pooler(settings)
            if pooler is not None and pooler.unsafe:
                # The application's settings fail behind this pooler: read the facts safely.
                facts_from = settings.model_copy(
                    update={"database_url": safe_url(settings.database_url)}
                )
        facts = None if offline else await fetch_server_facts(facts_from)
        findings = find_issues(settings, traffic, facts, loaded.sources, pooler)
        report = None
        if load_run:
            tasks = concurrency or settings.pool_size + settings.max_overflow
            report = await _run_load_with_progress(out, run_load, settings, tasks, duration)
            findings = after_load(findings + load_findings(report), report)
        short = shortfall(settings, tier) if tier is not None else []
        failed = failing(findings, fail_on)
        document = _document(
            loaded, assessment, tier, short, facts, traffic, findings, report, offline
        )
        document["pooler"] = None if pooler is None else asdict(pooler)
        document["fail_on"] = fail_on.strip().casefold()
        document["ok"] = not failed and not short
        out.emit(document, lambda console: _render(console, document, report))
        problems = []
        if tier is not None and short:
            gaps = "; ".join(
                f"{s.setting} {_show(s.value)} needs {s.required} ({s.gap})" for s in short
            )
            problems.append(f"the pool falls short of the {tier.strip().casefold()} tier: {gaps}")
        if failed:
            ids = ", ".join(dict.fromkeys(f"{f.id} ({f.severity})" for f in failed))
            problems.append(f"{len(failed)} finding(s) at or above --fail-on {fail_on}: {ids}")
        if problems:
            raise CheckFailed("; ".join(problems))

    run(action, json_mode=json_output, read_only=True)


async def _run_load_with_progress(
    out: Output, run_load: Any, settings: Any, tasks: int, duration: float
) -> LoadReport:
    if not out.err.is_terminal:
        out.info(f"load: {tasks} task(s) for {duration:g} s ...")
        report: LoadReport = await run_load(settings, tasks, duration)
        return report
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("load"),
        BarColumn(),
        TextColumn("{task.fields[queries]} queries"),
        TimeRemainingColumn(),
        console=out.err,
        transient=True,
    ) as progress:
        task = progress.add_task("load", total=duration, queries=0)

        def update(elapsed: float, queries: int) -> None:
            progress.update(task, completed=elapsed, queries=queries)

        report = await run_load(settings, tasks, duration, on_progress=update)
    return report


_TIME_SETTINGS = ("pool_timeout", "pool_recycle")


def _document(
    loaded: Any,
    assessment: Any,
    tier: str | None,
    short: list[Any],
    facts: Any,
    traffic: Any,
    findings: list[Any],
    report: LoadReport | None,
    offline: bool,
) -> dict[str, Any]:
    from myfy_db.pool.profile import TIERS

    settings = loaded.settings
    verdicts: dict[str, Any] = {}
    for verdict in assessment.verdicts:
        entry: dict[str, Any] = {
            "value": verdict.value,
            "source": loaded.source_of(verdict.setting),
        }
        if verdict.setting in _TIME_SETTINGS:
            entry["value_ms"] = None if verdict.value < 0 else verdict.value * 1000
        entry["tiers"] = {
            name: {
                "required": verdict.required[name],
                "meets": verdict.meets[name],
                "short_by": verdict.gaps[name],
            }
            for name in TIERS
        }
        verdicts[verdict.setting] = entry
    needed = traffic.needed_connections()
    return {
        "database": settings.masked_url,
        "backend": settings.backend,
        "tier": assessment.fits,
        "settings": verdicts,
        "asserted_tier": None
        if tier is None
        else {
            "name": tier.strip().casefold(),
            "meets": not short,
            "shortfall": [
                {"setting": s.setting, "value": s.value, "required": s.required, "gap": s.gap}
                for s in short
            ],
        },
        "server": None if facts is None else facts.as_dict(),
        "server_checked": facts is not None,
        "offline": offline,
        "traffic": {
            "workers": traffic.workers,
            "rps": traffic.rps,
            "query_ms": traffic.query_ms,
            "needed_connections": None if needed is None else round(needed, 3),
            "peak_connections": traffic.workers * (settings.pool_size + settings.max_overflow),
        },
        "findings": [f.as_dict() for f in findings],
        "load": None if report is None else report.as_dict(),
    }


_MARK = {True: "ok", False: "SHORT"}
_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _render(console: Console, document: dict[str, Any], report: LoadReport | None) -> None:
    from myfy_db.cli.output import table
    from myfy_db.pool.profile import TIER_NAMES, histogram
    from myfy_db.pool.stats import histogram_lines

    rows = []
    for name, entry in document["settings"].items():
        cells = [name, _show(entry["value"]), entry["source"]]
        for tier in TIER_NAMES:
            verdict = entry["tiers"][tier]
            cell = f"{verdict['required']} {_MARK[verdict['meets']]}"
            if verdict["short_by"]:
                # the setting's own value is what falls short, never the tier's
                cell += f" (yours: {verdict['short_by']})"
            cells.append(cell)
        rows.append(cells)
    console.print(
        table(
            f"Pool settings against the traffic tiers ({document['database']})",
            ["setting", "value", "source", *TIER_NAMES],
            rows,
        )
    )
    fits = document["tier"]
    console.print(
        f"Fits tier: [bold]{fits}[/bold]"
        if fits
        else "Fits tier: [bold red]none[/bold red] (falls short of even the low tier)"
    )
    asserted = document["asserted_tier"]
    if asserted is not None:
        if asserted["meets"]:
            console.print(f"Meets the asserted tier {asserted['name']}.")
        else:
            console.print(
                table(
                    f"Short of the {asserted['name']} tier",
                    ["setting", "value", "required", "short by"],
                    [
                        [s["setting"], _show(s["value"]), s["required"], s["gap"]]
                        for s in asserted["shortfall"]
                    ],
                )
            )
    server = document["server"]
    if server is not None:
        console.print(
            table(
                "Server",
                ["version", "max_connections", "reserved", "usable", "in use", "idle cut"],
                [
                    [
                        server["version"],
                        server["max_connections"],
                        server["reserved_connections"],
                        server["usable_connections"],
                        server["connections_in_use"],
                        _idle_cut(server),
                    ]
                ],
            )
        )
    elif document["backend"] != "sqlite":
        console.print("Server not consulted (--offline): server findings skipped.")
    if document["findings"]:
        findings = table("Findings", ["severity", "id", "reason"], [])
        for f in document["findings"]:
            findings.add_row(f["severity"], f["id"], f["reason"], style=_STYLE[f["severity"]])
        console.print(findings)
    else:
        console.print("No findings.")
    if report is not None:
        figures = document["load"]
        # One figure a row: it fits an 80-column terminal with every name whole.
        waits = ("wait_p50_ms", "wait_p95_ms", "wait_p99_ms", "wait_max_ms")
        rows = [
            ["queries", str(figures["queries"])],
            ["per second", f"{figures['throughput_per_s']:.1f}"],
            ["timeouts", str(figures["timeouts"])],
            ["refused by the server", str(figures["refusals"])],
            ["errors", str(figures["errors"])],
            [
                "checkout wait p50 / p95 / p99 / max",
                " / ".join(f"{figures[k]:.3f}" for k in waits) + " ms",
            ],
        ]
        console.print(
            table(
                f"Load: {report.concurrency} task(s) for {figures['duration_ms'] / 1000:.2f} s",
                ["figure", "value"],
                rows,
            )
        )
        if report.capped and report.slots is not None:
            console.print(
                f"Capped at {report.concurrency} task(s) of the {report.requested_concurrency} "
                f"asked for: {report.slots.free} connection(s) free "
                f"({report.slots.describe()}), margin {report.slots.margin}",
                markup=False,
            )
        if report.refusals:
            console.print(
                f"The server refused {report.refusals} connection(s) during the run: "
                + "; ".join(report.refusal_samples),
                markup=False,
            )
        buckets = histogram(report.waits_ms)
        if buckets:
            console.print("Checkout wait:")
            for line in histogram_lines(buckets, width=30):
                console.print(line, markup=False)
        console.print(
            f"pool_timeout {figures['pool_timeout_ms'] / 1000:g} s; at the end "
            f"{report.pool_status.describe()}",
            markup=False,
        )


def _idle_cut(server: dict[str, Any]) -> str:
    if server["wait_timeout_ms"] is not None:
        return f"wait_timeout {server['wait_timeout_ms'] / 1000:g} s"
    if server["idle_session_timeout_ms"]:
        return f"idle_session_timeout {server['idle_session_timeout_ms'] / 1000:g} s"
    return "never"


__all__ = ["profile_pool"]
