"""``myfy-db check-pool``: connect, ping and time the pool the application uses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from myfy_db.cli.options import EnvFileOption, FiniteFloat, JsonOption, UrlOption
from myfy_db.cli.runtime import load, run

if TYPE_CHECKING:
    from rich.console import Console

    from myfy_db.cli.output import Output
    from myfy_db.pool.report import LatencyStats, PoolReport, TargetReport
    from myfy_db.pool.watch import WatchLine


ConnectionsOption = Annotated[
    int | None,
    typer.Option(
        "--connections",
        min=1,
        help="Connections to open concurrently on each database (default: pool_size).",
        show_default=False,
        metavar="N",
    ),
]
SamplesOption = Annotated[
    int,
    typer.Option("--samples", min=1, help="Round trips timed on each connection.", metavar="N"),
]
MaxLatencyOption = Annotated[
    FiniteFloat | None,
    typer.Option(
        "--max-latency-ms",
        min=0,
        help="Exit 5 when a database's round-trip p95 is above this many milliseconds.",
        show_default=False,
        metavar="MS",
    ),
]
TimeoutOption = Annotated[
    FiniteFloat,
    typer.Option(
        "--timeout",
        min=0.001,
        help="Seconds each database's check may take; past it, that database is reported "
        "as not answering (exit 4), naming what did not finish.",
        metavar="SECONDS",
    ),
]
ReplicaOption = Annotated[
    list[str] | None,
    typer.Option(
        "--replica",
        help="A replica to check (repeatable; replaces MYFY_DATA_REPLICA_URLS).",
        show_default=False,
        metavar="URL",
    ),
]
WatchOption = Annotated[
    FiniteFloat | None,
    typer.Option(
        "--watch",
        min=0.001,
        help="Repeat the check every SECONDS: one line per round and database (time, p50, "
        "p95, errors, connections in use; --json: one JSON object per line), until Ctrl-C "
        "or --count rounds.",
        show_default=False,
        metavar="SECONDS",
    ),
]
CountOption = Annotated[
    int | None,
    typer.Option(
        "--count",
        min=1,
        help="With --watch: stop after N rounds (exit code: the worst round's).",
        show_default=False,
        metavar="N",
    ),
]
PrimaryOnlyOption = Annotated[
    bool,
    typer.Option("--primary-only", help="Check the primary only, not the replicas."),
]


def check_pool(
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    connections: ConnectionsOption = None,
    samples: SamplesOption = 20,
    max_latency_ms: MaxLatencyOption = None,
    timeout: TimeoutOption = 30.0,
    replica: ReplicaOption = None,
    primary_only: PrimaryOnlyOption = False,
    watch: WatchOption = None,
    count: CountOption = None,
    json_output: JsonOption = False,
) -> None:
    """Open the pool's connections concurrently, ping each, and time them; replicas too.

    Reports physical connect time, round-trip latency of SELECT 1 on the driver's own
    connection (n, mean, p50, p95, p99, max), the cost of a pooled checkout, the server's
    version and connection limits, and the pool's status, for the primary and each replica
    on its own. Never opens more connections than the server has free (less a margin);
    detects a transaction pooler (PgBouncer) and checks the driver settings are safe for
    it. Exits with the worst target's code: 4 when a database cannot be reached within
    --timeout, 5 for a finding (more connections than free slots, unsafe pooler settings,
    --max-latency-ms exceeded).
    """

    async def action(out: Output) -> None:
        from myfy_db.errors import ConfigError
        from myfy_db.pool.measure import check_pool as run_check

        if count is not None and watch is None:
            raise ConfigError("--count needs --watch SECONDS")
        settings = load(url, env_file, replicas=replica).settings
        check: dict[str, Any] = {
            "connections": connections,
            "samples": samples,
            "timeout": timeout,
            "max_latency_ms": max_latency_ms,
            "replicas": replica,
            "primary_only": primary_only,
        }
        if watch is not None:
            await _watch(out, settings, watch, count, check)
            return
        with out.status("checking the pool..."):
            report = await run_check(settings, **check)
        out.emit(report.to_dict(), lambda console: _render(console, report))
        failure = report.failure()
        if failure is not None:
            raise failure

    run(action, json_mode=json_output, read_only=True)


async def _watch(
    out: Output, settings: Any, interval: float, count: int | None, check: dict[str, Any]
) -> None:
    from myfy_db.pool.watch import watch_pool

    def on_round(lines: list[WatchLine], _report: PoolReport) -> None:
        for line in lines:
            out.emit_line(line.to_dict(), line.describe())

    worst = await watch_pool(settings, interval, on_round, count=count, **check)
    if worst:
        from myfy_db.errors import CannotConnect, CheckFailed, OperationFailed

        error = {4: CannotConnect, 5: CheckFailed}.get(worst, OperationFailed)
        raise error(f"a round of --watch ended with exit {worst} (see its lines above)")


def _fmt(value: float) -> str:
    return f"{value:.3f}"


def _stats_row(label: str, stats: LatencyStats) -> list[str]:
    if stats.n == 0:
        return [label, "0", "-", "-", "-", "-", "-"]
    values = (stats.mean_ms, stats.p50_ms, stats.p95_ms, stats.p99_ms, stats.max_ms)
    return [label, str(stats.n), *(_fmt(v) for v in values)]


def _render_target(console: Console, target: TargetReport) -> None:
    from myfy_db.cli.output import table
    from myfy_db.pool.stats import histogram_lines

    title = f"{target.role}: {target.url}"
    if target.round_trip is None or target.connect is None or target.checkout is None:
        console.print(
            f"{title}\n  not measured (exit {target.exit_code}): {target.error}", markup=False
        )
        if target.hint:
            console.print(f"  {target.hint}", markup=False)
        _render_findings(console, target)
        return
    rows = [
        _stats_row("physical connect", target.connect),
        _stats_row("pooled checkout" + (" +ping" if target.pre_ping else ""), target.checkout),
        _stats_row("round trip", target.round_trip),
    ]
    columns = ["measure (ms)", "n", "mean", "p50", "p95", "p99", "max"]
    console.print(table(title, columns, rows))
    server = target.server
    if server is not None:
        console.print(f"server: {server.version or 'version unknown'}", markup=False)
        if server.max_connections is not None or server.connections_in_use is not None:
            in_use = "?" if server.connections_in_use is None else str(server.connections_in_use)
            limit = "?" if server.max_connections is None else str(server.max_connections)
            console.print(
                f"server connections: {in_use} in use (with our {target.connections}) "
                f"of max_connections {limit}",
                markup=False,
            )
    if target.slots is not None:
        slots = target.slots
        console.print(
            f"free slots before the check: {slots.free} ({slots.describe()}); "
            f"margin {slots.margin}",
            markup=False,
        )
    if target.pool is not None:
        console.print(
            f"pool: {target.connections} opened concurrently; at the end {target.pool.describe()}",
            markup=False,
        )
    console.print("round trip: SELECT 1 timed on the driver's own connection", markup=False)
    if target.pre_ping:
        console.print("pooled checkout includes the pre-ping (pool_pre_ping on)", markup=False)
    console.print("round-trip histogram:", markup=False)
    for line in histogram_lines([(b.from_ms, b.to_ms, b.count) for b in target.histogram]):
        console.print(line, markup=False, highlight=False)
    _render_findings(console, target)


def _render_findings(console: Console, target: TargetReport) -> None:
    for finding in target.findings:
        console.print(f"{finding.severity}: [{finding.id}] {finding.reason}", markup=False)


def _render(console: Console, report: PoolReport) -> None:
    for index, target in enumerate(report.targets):
        if index:
            console.print()
        _render_target(console, target)
    console.print()
    verdicts = "; ".join(
        f"{t.role} " + ("ok" if t.ok else f"FAILED (exit {t.exit_code})") for t in report.targets
    )
    if report.max_latency_ms is not None and not report.over_threshold:
        verdicts += f"; every round-trip p95 within {report.max_latency_ms:g} ms"
    console.print(
        f"{len(report.targets)} database(s) checked in {report.elapsed_ms:.0f} ms: {verdicts}",
        markup=False,
    )


__all__ = ["check_pool"]
