"""``myfy-db profile-pool``: tiers, findings, server limits and a measured load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import invoke, server_for
from myfy_db.pool.profile import (
    LoadReport,
    Traffic,
    assess_tiers,
    find_issues,
    histogram,
    load_findings,
    percentile,
    shortfall,
)
from myfy_db.pool.report import PoolStatus
from myfy_db.settings import DatabaseSettings

UNREACHABLE_PG = "postgresql+asyncpg://app@127.0.0.1:1/shop"
UNREACHABLE_MYSQL = "mysql+aiomysql://app@127.0.0.1:1/shop"

# The three configurations of the seed's table (seeds/002_*), as flags.
SEED_TIERS = {
    "low": ["--pool-size", "5", "--max-overflow", "10", "--pool-timeout", "60",
            "--pool-recycle", "7200", "--no-pre-ping", "--no-lifo"],
    "medium": ["--pool-size", "10", "--max-overflow", "20", "--pool-timeout", "30",
               "--pool-recycle", "3600", "--pre-ping", "--no-lifo"],
    "high": ["--pool-size", "20", "--max-overflow", "40", "--pool-timeout", "15",
             "--pool-recycle", "1800", "--pre-ping", "--lifo"],
}  # fmt: skip


def profile(*args: str) -> tuple[int, dict[str, Any], str]:
    result = invoke("profile-pool", "--json", *args)
    return result.exit_code, json.loads(result.stdout), result.stderr


def rules(document: dict[str, Any]) -> dict[str, str]:
    return {f["id"]: f["severity"] for f in document["findings"]}


def settings(**values: Any) -> DatabaseSettings:
    values.setdefault("database_url", UNREACHABLE_PG)
    return DatabaseSettings(**values)


# -- tiers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", ["low", "medium", "high"])
def test_each_seed_configuration_fits_its_own_tier(tier: str) -> None:
    code, document, _ = profile("--url", UNREACHABLE_PG, "--offline", *SEED_TIERS[tier])
    assert code == 0
    assert document["tier"] == tier
    for entry in document["settings"].values():
        assert entry["source"] == "command-line flag"
        assert entry["tiers"][tier]["meets"] is True


@pytest.mark.parametrize("tier", ["low", "medium", "high"])
def test_each_seed_configuration_passes_its_own_tier_assertion(tier: str) -> None:
    code, document, _ = profile(
        "--url", UNREACHABLE_PG, "--offline", "--tier", tier, *SEED_TIERS[tier]
    )
    assert code == 0
    assert document["asserted_tier"] == {"name": tier, "meets": True, "shortfall": []}


def test_more_than_a_tier_asks_still_fits_it() -> None:
    fitted = assess_tiers(
        settings(
            pool_size=50,
            max_overflow=100,
            pool_timeout=5,
            pool_recycle=600,
            pool_pre_ping=True,
            pool_use_lifo=True,
        )
    )
    assert fitted.fits == "high"


def test_configuration_short_of_low_fits_no_tier() -> None:
    assert assess_tiers(settings(pool_timeout=120)).fits is None
    assert assess_tiers(settings(pool_size=4)).fits is None


def test_pool_recycle_never_meets_no_tier() -> None:
    assessment = assess_tiers(settings(pool_recycle=-1))
    recycle = next(v for v in assessment.verdicts if v.setting == "pool_recycle")
    assert recycle.meets == {"low": False, "medium": False, "high": False}
    assert recycle.gaps["low"] == "never recycles"


def test_defaults_fit_low_and_each_setting_shows_every_tier() -> None:
    code, document, _ = profile("--url", UNREACHABLE_PG, "--offline")
    assert code == 0
    assert document["tier"] == "low"
    assert document["settings"]["pool_size"]["tiers"]["high"] == {
        "required": "20+",
        "meets": False,
        "short_by": "15 too few",
    }
    assert document["settings"]["pool_timeout"]["value_ms"] == 30000
    assert document["settings"]["pool_timeout"]["tiers"]["high"]["short_by"] == "15 s too long"


def test_shortfall_names_each_setting_and_how_far() -> None:
    short = shortfall(settings(), "high")
    gaps = {s.setting: s.gap for s in short}
    assert gaps == {
        "pool_size": "15 too few",
        "max_overflow": "30 too few",
        "pool_timeout": "15 s too long",
        "pool_recycle": "1800 s too long",
        "pool_use_lifo": "off",
    }
    assert shortfall(settings(), "low") == []


def test_tier_shortfall_renders_then_exits_5() -> None:
    result = invoke("profile-pool", "--url", UNREACHABLE_PG, "--offline", "--tier", "medium")
    assert result.exit_code == 5
    assert "Short of the medium tier" in result.stdout
    assert "falls short of the medium tier" in result.stderr
    assert "pool_size 5 needs 10+ (5 too few)" in result.stderr
    assert "max_overflow 10 needs 20+ (10 too few)" in result.stderr


def test_tier_shortfall_json_lists_the_gaps_and_exits_5() -> None:
    code, document, _ = profile("--url", UNREACHABLE_PG, "--offline", "--tier", "HIGH")
    assert code == 5
    assert document["asserted_tier"]["name"] == "high"
    assert document["asserted_tier"]["meets"] is False
    assert {s["setting"] for s in document["asserted_tier"]["shortfall"]} == {
        "pool_size",
        "max_overflow",
        "pool_timeout",
        "pool_recycle",
        "pool_use_lifo",
    }


def test_unknown_tier_exits_2_before_connecting() -> None:
    result = invoke("profile-pool", "--url", UNREACHABLE_PG, "--tier", "huge")
    assert result.exit_code == 2
    assert "unknown tier 'huge'; choose one of: low, medium, high" in result.stderr


def test_configuration_comes_from_env_file_with_its_source(tmp_path: Path) -> None:
    env = tmp_path / "prod.env"
    env.write_text(
        "MYFY_DATA_POOL_SIZE=10\nMYFY_DATA_MAX_OVERFLOW=20\nMYFY_DATA_POOL_PRE_PING=true\n"
    )
    code, document, _ = profile("--url", UNREACHABLE_PG, "--offline", "--env-file", str(env))
    assert code == 0
    assert document["tier"] == "medium"
    assert document["settings"]["pool_size"]["source"] == f"env file {env}"


def test_invalid_setting_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYFY_DATA_POOL_SIZE", "many")
    result = invoke("profile-pool", "--offline")
    assert result.exit_code == 2
    assert "pool_size" in result.stderr


# -- offline and reachability --------------------------------------------------------------


def test_offline_needs_no_server_even_with_an_unreachable_url() -> None:
    code, document, _ = profile("--url", UNREACHABLE_PG, "--offline", "--workers", "50")
    assert code == 0
    assert document["server"] is None
    assert document["server_checked"] is False
    assert "max_connections" not in rules(document)


def test_offline_human_output_says_server_findings_were_skipped() -> None:
    result = invoke("profile-pool", "--url", UNREACHABLE_PG, "--offline")
    assert result.exit_code == 0
    assert "Server not consulted (--offline)" in result.stdout
    assert "Fits tier: low" in result.stdout


def test_unreachable_server_without_offline_exits_4() -> None:
    result = invoke("profile-pool", "--url", UNREACHABLE_PG)
    assert result.exit_code == 4
    assert "connection refused by 127.0.0.1:1/shop" in result.stderr


def test_load_with_offline_is_a_usage_error() -> None:
    result = invoke("profile-pool", "--url", UNREACHABLE_PG, "--offline", "--load")
    assert result.exit_code == 2
    assert "--load needs the database" in result.stderr


# -- rules that need no server -------------------------------------------------------------


def test_lifo_without_pre_ping_or_recycle_warns() -> None:
    risky = find_issues(
        settings(pool_use_lifo=True, pool_pre_ping=False, pool_recycle=-1), Traffic(), None
    )
    assert [(f.id, f.severity) for f in risky] == [("lifo_without_pre_ping_or_recycle", "warning")]
    for safe in (
        settings(pool_use_lifo=True, pool_pre_ping=True, pool_recycle=-1),
        settings(pool_use_lifo=True, pool_pre_ping=False, pool_recycle=1800),
        settings(pool_use_lifo=False, pool_pre_ping=False, pool_recycle=-1),
    ):
        assert find_issues(safe, Traffic(), None) == []


def test_littles_law_beyond_pool_capacity_is_an_error() -> None:
    # 1000 req/s x 40 ms = 40 connections busy; 2 workers x (5 + 10) = 30 at peak.
    code, document, _ = profile(
        "--url", UNREACHABLE_PG, "--offline", "--workers", "2", "--rps", "1000",
        "--query-ms", "40",
    )  # fmt: skip
    assert code == 5
    assert document["ok"] is False
    assert rules(document)["littles_law"] == "error"
    assert document["traffic"]["needed_connections"] == 40
    assert document["traffic"]["peak_connections"] == 30
    reason = next(f["reason"] for f in document["findings"] if f["id"] == "littles_law")
    assert "20.0 per worker" in reason


def test_littles_law_living_on_overflow_warns() -> None:
    # 15 connections busy, pool_size 5 x 2 workers = 10 steady, 30 at peak.
    found = find_issues(settings(), Traffic(workers=2, rps=300, query_ms=50), None)
    assert [(f.id, f.severity) for f in found] == [("littles_law", "warning")]
    assert "Raise pool_size to 8" in found[0].reason


def test_littles_law_within_pool_size_is_info() -> None:
    found = find_issues(settings(), Traffic(workers=2, rps=100, query_ms=20), None)
    assert [(f.id, f.severity) for f in found] == [("littles_law", "info")]
    assert "2.0 connections busy" in found[0].reason


def test_littles_law_needs_both_rps_and_query_ms() -> None:
    result = invoke("profile-pool", "--url", UNREACHABLE_PG, "--offline", "--rps", "100")
    assert result.exit_code == 2
    assert "needs both --rps and --query-ms" in result.stderr


def test_in_memory_sqlite_names_explicit_pool_settings_that_do_not_apply() -> None:
    code, document, _ = profile(
        "--url", "sqlite+aiosqlite:///:memory:", "--pool-size", "20", "--lifo"
    )
    assert code == 0
    finding = next(f for f in document["findings"] if f["id"] == "sqlite_settings_ignored")
    assert finding["severity"] == "warning"
    assert "pool_size, pool_use_lifo are set but do not apply" in finding["reason"]


def test_file_sqlite_notes_pre_ping_and_recycle_protect_nothing(sqlite_url: str) -> None:
    code, document, _ = profile("--url", sqlite_url, "--pre-ping")
    assert code == 0
    assert document["server"] is None
    found = rules(document)
    assert found["sqlite_settings_ignored"] == "warning"
    assert found["sqlite_single_writer"] == "info"
    assert "max_connections" not in found


def test_mysql_offline_checks_recycle_against_the_default_wait_timeout() -> None:
    code, document, _ = profile(
        "--url", UNREACHABLE_MYSQL, "--offline", "--pool-recycle", "-1", "--no-pre-ping"
    )
    assert code == 5
    assert document["ok"] is False
    finding = next(f for f in document["findings"] if f["id"] == "pool_recycle_vs_wait_timeout")
    assert finding["severity"] == "error"
    assert "wait_timeout 28800 s (the server default, assumed" in finding["reason"]


# -- rules against the real servers --------------------------------------------------------


def _usable_connections(backend: str) -> int:
    server = server_for(backend)
    if backend == "postgresql":
        rows = server.admin(
            "SELECT setting::int FROM pg_settings WHERE name IN "
            "('max_connections', 'superuser_reserved_connections', 'reserved_connections') "
            "ORDER BY name = 'max_connections' DESC"
        )[0]
        values = [r[0] for r in rows]
        return int(values[0] - sum(values[1:]))
    return int(server.admin("SELECT @@GLOBAL.max_connections")[0][0][0])


def test_workers_times_pool_beyond_usable_connections_is_an_error(server_url: str) -> None:
    backend = "postgresql" if server_url.startswith("postgresql") else "mysql"
    usable = _usable_connections(backend)
    # 4 workers whose pools together exceed the usable slots by one.
    per_worker = usable // 4 + 1
    code, document, _ = profile(
        "--url", server_url, "--workers", "4", "--pool-size", "1",
        "--max-overflow", str(per_worker - 1),
    )  # fmt: skip
    assert code == 5
    assert document["ok"] is False
    assert document["server"]["usable_connections"] == usable
    assert rules(document)["max_connections"] == "error"
    reason = next(f["reason"] for f in document["findings"] if f["id"] == "max_connections")
    assert f"= {4 * per_worker} connections at peak, but the server allows {usable}" in reason


def test_workers_times_pool_near_usable_connections_warns(server_url: str) -> None:
    backend = "postgresql" if server_url.startswith("postgresql") else "mysql"
    usable = _usable_connections(backend)
    code, document, _ = profile(
        "--url", server_url, "--pool-size", "1", "--max-overflow", str(usable - 1)
    )
    assert code == 0
    assert rules(document)["max_connections"] == "warning"


def test_workers_times_pool_well_within_usable_connections_is_info(server_url: str) -> None:
    code, document, _ = profile("--url", server_url, "--workers", "2")
    assert code == 0
    assert rules(document)["max_connections"] == "info"


def test_postgres_usable_connections_exclude_reserved_slots(postgres_url: str) -> None:
    code, document, _ = profile("--url", postgres_url)
    assert code == 0
    server = document["server"]
    reserved = server_for("postgresql").admin(
        "SELECT sum(setting::int) FROM pg_settings WHERE name IN "
        "('superuser_reserved_connections', 'reserved_connections')"
    )[0][0][0]
    assert server["reserved_connections"] == reserved
    assert server["usable_connections"] == server["max_connections"] - reserved


def test_mariadb_pool_recycle_at_wait_timeout_is_reported(mysql_url: str) -> None:
    wait = int(server_for("mysql").admin("SELECT @@GLOBAL.wait_timeout")[0][0][0])
    code, document, _ = profile("--url", mysql_url, "--pool-recycle", str(wait))
    assert code == 0
    assert document["server"]["wait_timeout_ms"] == wait * 1000
    assert rules(document)["pool_recycle_vs_wait_timeout"] == "warning"
    _, without_ping, _ = profile("--url", mysql_url, "--pool-recycle", str(wait), "--no-pre-ping")
    assert rules(without_ping)["pool_recycle_vs_wait_timeout"] == "error"
    _, below, _ = profile("--url", mysql_url, "--pool-recycle", str(wait - 1), "--no-pre-ping")
    assert "pool_recycle_vs_wait_timeout" not in rules(below)


def test_postgres_pre_ping_off_where_idle_sessions_are_cut_is_an_error(postgres_url: str) -> None:
    # A per-database setting on the test's own database: no server global changes.
    database = postgres_url.rsplit("/", 1)[1]
    server_for("postgresql").admin(f"ALTER DATABASE \"{database}\" SET idle_session_timeout = '5s'")
    code, document, _ = profile("--url", postgres_url, "--no-pre-ping")
    assert code == 5
    assert document["server"]["idle_session_timeout_ms"] == 5000
    assert rules(document)["pre_ping_off_idle_cut"] == "error"
    for safe in (["--pre-ping"], ["--no-pre-ping", "--pool-recycle", "4"]):
        _, other, _ = profile("--url", postgres_url, *safe)
        assert "pre_ping_off_idle_cut" not in rules(other)


def test_postgres_without_idle_cut_has_no_pre_ping_finding(postgres_url: str) -> None:
    _, document, _ = profile("--url", postgres_url, "--no-pre-ping")
    assert document["server"]["idle_session_timeout_ms"] == 0
    assert "pre_ping_off_idle_cut" not in rules(document)


# -- load ----------------------------------------------------------------------------------


def test_load_measures_checkout_wait_and_throughput(db_url: str) -> None:
    code, document, stderr = profile(
        "--url", db_url, "--load", "--concurrency", "6", "--duration", "0.5",
        "--pool-size", "2", "--max-overflow", "1",
    )  # fmt: skip
    assert code == 0, stderr
    load = document["load"]
    assert load["concurrency"] == 6
    assert load["queries"] > 0
    assert load["errors"] == 0
    assert load["timeouts"] == 0
    assert load["throughput_per_s"] > 0
    assert load["duration_ms"] >= 500
    assert 0 <= load["wait_p50_ms"] <= load["wait_p95_ms"] <= load["wait_p99_ms"]
    assert load["wait_p99_ms"] <= load["wait_max_ms"]
    assert load["pool_timeout_ms"] == 30000
    assert sum(b["count"] for b in load["histogram"]) == load["checkouts"]
    assert "load_wait" in rules(document)


def test_load_human_output_has_figures_and_histogram(sqlite_url: str) -> None:
    result = invoke(
        "profile-pool", "--url", sqlite_url, "--load", "--concurrency", "3", "--duration", "0.2"
    )
    assert result.exit_code == 0, result.stderr
    assert "Load: 3 task(s)" in result.stdout
    assert "Checkout wait:" in result.stdout
    assert "pool_timeout 30 s" in result.stdout
    # No terminal: no progress bar, one line of progress on stderr instead.
    assert "load: 3 task(s) for 0.2 s" in result.stderr


def test_load_on_unreachable_server_exits_4() -> None:
    result = invoke("profile-pool", "--url", UNREACHABLE_PG, "--load", "--duration", "0.2")
    assert result.exit_code == 4


def _report(waits: list[float], timeouts: int = 0, errors: int = 0) -> LoadReport:
    return LoadReport(
        concurrency=4,
        duration_s=1.0,
        queries=len(waits),
        timeouts=timeouts,
        errors=errors,
        error_samples=["boom"] if errors else [],
        waits_ms=waits,
        pool_timeout_s=1.0,
        pool_status=PoolStatus("QueuePool", 4, 4, 4, 0, 0),
    )


def test_load_timeouts_are_an_error() -> None:
    found = {f.id: f.severity for f in load_findings(_report([1.0], timeouts=2))}
    assert found == {"load_timeouts": "error"}


def test_load_wait_past_half_pool_timeout_warns() -> None:
    found = load_findings(_report([600.0] * 10))
    assert [(f.id, f.severity) for f in found] == [("load_wait", "warning")]
    assert "60% of pool_timeout" in found[0].reason


def test_load_errors_are_reported_with_a_sample() -> None:
    found = {f.id: f for f in load_findings(_report([1.0], errors=3))}
    assert found["load_errors"].severity == "error"
    assert "boom" in found["load_errors"].reason


def test_percentiles_and_histogram() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([], 50) == 0.0
    buckets = histogram(values)
    assert sum(n for _, _, n in buckets) == 100
    assert buckets[0][0] == 1.0
    assert buckets[-1][1] == 100.0


def test_load_reports_progress_until_the_duration(sqlite_url: str) -> None:
    import asyncio

    from myfy_db.pool.profile import run_load

    calls: list[tuple[float, int]] = []
    report = asyncio.run(
        run_load(
            settings(database_url=sqlite_url), 2, 0.3, on_progress=lambda e, q: calls.append((e, q))
        )
    )
    assert len(calls) >= 2
    assert calls[-1] == (0.3, report.queries)
    assert [q for _, q in calls] == sorted(q for _, q in calls)


def test_load_on_in_memory_sqlite_shares_its_one_connection() -> None:
    code, document, stderr = profile(
        "--url", "sqlite+aiosqlite:///:memory:", "--load", "--concurrency", "4",
        "--duration", "0.2",
    )  # fmt: skip
    assert code == 0, stderr
    assert document["load"]["errors"] == 0
    assert document["load"]["queries"] > 0
    assert document["load"]["pool"]["pool_class"] == "StaticPool"


def test_load_counts_checkouts_that_hit_pool_timeout(sqlite_url: str) -> None:
    # Four tasks share one connection and may wait a microsecond at most: most time out.
    code, document, stderr = profile(
        "--url", sqlite_url, "--load", "--concurrency", "4", "--duration", "0.3",
        "--pool-size", "1", "--max-overflow", "0", "--pool-timeout", "0.000001",
    )  # fmt: skip
    assert code == 5, stderr
    assert document["load"]["timeouts"] > 0
    assert document["load"]["queries"] > 0
    assert rules(document)["load_timeouts"] == "error"


def test_default_file_sqlite_notes_pre_ping_as_info(sqlite_url: str) -> None:
    found = find_issues(settings(database_url=sqlite_url, pool_size=1, max_overflow=0),
                        Traffic(), None, {"pool_size": "command-line flag"})  # fmt: skip
    assert [(f.id, f.severity) for f in found] == [("sqlite_settings_ignored", "info")]


# -- verdicts: severities, --fail-on, ok ----------------------------------------------------


def test_every_finding_has_an_id_and_a_severity_and_the_json_has_ok() -> None:
    code, document, stderr = profile(
        "--url", UNREACHABLE_PG, "--offline", "--workers", "8", "--max-connections", "97"
    )
    assert code == 5
    assert document["ok"] is False
    assert document["fail_on"] == "error"
    assert document["findings"]
    for finding in document["findings"]:
        assert finding["id"]
        assert finding["severity"] in ("info", "warning", "error")
    reason = next(f["reason"] for f in document["findings"] if f["id"] == "max_connections")
    assert "8 worker(s) x (pool_size 5 + max_overflow 10) = 120 connections" in reason
    assert "the server allows 97" in reason
    assert "at or above --fail-on error: max_connections (error)" in stderr


def test_offline_ci_step_passes_a_configuration_that_fits() -> None:
    code, document, stderr = profile(
        "--url", UNREACHABLE_PG, "--offline", "--workers", "5", "--max-connections", "97"
    )
    assert code == 0, stderr
    assert document["ok"] is True
    assert rules(document)["max_connections"] == "info"


def test_fail_on_never_reports_errors_but_exits_0() -> None:
    code, document, _ = profile(
        "--url", UNREACHABLE_PG, "--offline", "--workers", "8", "--max-connections", "97",
        "--fail-on", "never",
    )  # fmt: skip
    assert code == 0
    assert document["ok"] is True
    assert rules(document)["max_connections"] == "error"


def test_fail_on_warning_fails_on_a_warning_that_error_lets_pass() -> None:
    # 6 x 15 = 90 of 100: a warning (over 80%), no error.
    args = ["--url", UNREACHABLE_PG, "--offline", "--workers", "6", "--max-connections", "100"]
    code, document, _ = profile(*args)
    assert rules(document)["max_connections"] == "warning"
    assert code == 0
    code, document, stderr = profile(*args, "--fail-on", "warning")
    assert code == 5
    assert document["ok"] is False
    assert "max_connections (warning)" in stderr


def test_unknown_fail_on_level_exits_2() -> None:
    result = invoke("profile-pool", "--url", UNREACHABLE_PG, "--fail-on", "fatal")
    assert result.exit_code == 2
    assert "unknown --fail-on level 'fatal'" in result.stderr


def test_human_report_renders_before_the_exit_5() -> None:
    result = invoke(
        "profile-pool", "--url", UNREACHABLE_PG, "--offline", "--workers", "8",
        "--max-connections", "97",
    )  # fmt: skip
    assert result.exit_code == 5
    assert "Findings" in result.stdout
    assert "max_connections" in result.stdout


def test_mariadb_never_recycling_without_pre_ping_exits_5(mysql_url: str) -> None:
    code, document, _ = profile("--url", mysql_url, "--pool-recycle", "-1", "--no-pre-ping")
    assert code == 5
    assert document["ok"] is False
    assert rules(document)["pool_recycle_vs_wait_timeout"] == "error"


def test_pooler_client_limit_replaces_max_connections_offline() -> None:
    code, document, _stderr = profile(
        "--url", UNREACHABLE_PG, "--offline", "--workers", "8", "--pooler-max-client-conn", "100"
    )
    assert code == 5
    found = rules(document)
    assert found["pooler_max_client_conn"] == "error"
    assert "max_connections" not in found
    reason = next(f["reason"] for f in document["findings"] if f["id"] == "pooler_max_client_conn")
    assert "= 120 connections at peak, but the pooler accepts 100 client connections" in reason
    code, document, _ = profile(
        "--url", UNREACHABLE_PG, "--offline", "--workers", "8", "--pooler-max-client-conn", "1000"
    )
    assert code == 0
    assert rules(document)["pooler_max_client_conn"] == "info"


def test_pooler_client_limit_is_judged_instead_of_the_servers(postgres_url: str) -> None:
    # 8 x 15 = 120: beyond the server's slots, within the pooler's 1000 client connections.
    code, document, _ = profile(
        "--url", postgres_url, "--workers", "8", "--pooler-max-client-conn", "1000"
    )
    assert code == 0
    assert "max_connections" not in rules(document)
    assert rules(document)["pooler_max_client_conn"] == "info"


@pytest.mark.wall_clock
def test_load_with_failed_queries_exits_5(postgres_url: str) -> None:
    import threading

    database = postgres_url.rsplit("/", 1)[1]
    server = server_for("postgresql")
    stop = threading.Event()

    def terminate_backends() -> None:
        while not stop.is_set():
            server.admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{database}' AND query = 'SELECT 1' AND state = 'idle' "
                "AND backend_start < now() - interval '300 milliseconds'"
            )
            stop.wait(0.05)

    # Only the load's idle pooled connections (their last query was SELECT 1), once they
    # have served a while: not the first one, which pings and then reads the limits (killed
    # between the two, the run rightly ends as a server that went away), nor a query in
    # flight.
    killer = threading.Thread(target=terminate_backends)
    killer.start()
    try:
        code, document, stderr = profile(
            "--url", postgres_url, "--load", "--duration", "1", "--concurrency", "2",
            "--no-pre-ping",
        )  # fmt: skip
    finally:
        stop.set()
        killer.join()
    assert document.get("load") is not None, stderr
    assert document["load"]["errors"] > 0
    assert code == 5, stderr
    assert document["ok"] is False
    assert rules(document)["load_errors"] == "error"


def test_load_report_ends_with_the_pools_numbers_not_sqlalchemys_status(sqlite_url: str) -> None:
    result = invoke(
        "profile-pool", "--url", sqlite_url, "--load", "--concurrency", "2", "--duration", "0.1"
    )
    assert result.exit_code == 0, result.stderr
    assert "Pool size:" not in result.stdout
    assert "Current Overflow" not in result.stdout
    assert "QueuePool: size 5, 2 open (2 idle, 0 checked out), overflow 0" in result.stdout


def test_load_keeps_its_checkout_waits_in_bounded_memory(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from myfy_db.pool.profile import load as load_module

    monkeypatch.setattr(load_module, "WAIT_SAMPLE", 5)
    report = asyncio.run(load_module.run_load(settings(database_url=sqlite_url), 2, 0.5))
    assert report.checkouts > 5
    assert len(report.waits_ms) == 5
    figures = report.as_dict()
    assert figures["checkouts"] == report.checkouts
    assert figures["wait_max_ms"] >= max(report.waits_ms)


# -- behind a transaction pooler (a real PgBouncer) -----------------------------------------


@pytest.fixture
def transaction_bouncer(pgbouncer: Any) -> Any:
    return pgbouncer("transaction")


def test_behind_pgbouncer_the_servers_max_connections_is_not_the_limit(
    transaction_bouncer: Any,
) -> None:
    url = transaction_bouncer.url_with(prepared_statement_cache_size="0")
    # 8 x 15 = 120 connections: beyond the server's slots, but the pooler is what they meet.
    code, document, stderr = profile("--url", url, "--workers", "8")
    assert document["pooler"]["detected"] is True
    found = rules(document)
    assert found["transaction_pooler"] == "info"
    assert found["pooler_max_client_conn"] == "warning"
    assert "max_connections" not in found
    assert code == 0, stderr
    code, document, _ = profile(
        "--url", url, "--workers", "8", "--pooler-max-client-conn", "100"
    )  # fmt: skip
    assert code == 5
    assert rules(document)["pooler_max_client_conn"] == "error"


def test_behind_pgbouncer_unsafe_driver_settings_exit_5(transaction_bouncer: Any) -> None:
    code, document, stderr = profile("--url", transaction_bouncer.url)
    assert code == 5
    assert rules(document)["pooler_unsafe_settings"] == "error"
    assert "?prepared_statement_cache_size=0" in stderr + json.dumps(document)
