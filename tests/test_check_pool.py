"""``myfy-db check-pool``: measurements, output, thresholds, replicas, failures and leaks."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from helpers import CANARY, backend_of, free_port, invoke, run_process, server_for, with_password
from myfy_db.errors import CannotConnect
from myfy_db.pool.measure import check_pool
from myfy_db.pool.report import histogram, latency_stats
from myfy_db.settings import DatabaseSettings

# The check's own bound, and a generous bound on the whole process around it.
CHECK_TIMEOUT = "2"
PROCESS_BOUND = 30.0


def _json(result: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def _check(*args: str, env: dict[str, str] | None = None) -> Any:
    return invoke("check-pool", "--samples", "3", *args, env=env)


# -- measurements on each backend ---------------------------------------------------------


def test_reports_connect_round_trip_checkout_server_and_pool(db_url: str) -> None:
    result = _check("--url", db_url, "--connections", "2", "--json")
    assert result.exit_code == 0, result.stderr
    document = _json(result)
    assert document["ok"] is True
    assert document["connections"] == 2
    (target,) = document["targets"]
    assert target["role"] == "primary"
    assert target["backend"] == backend_of(db_url)
    assert target["connect"]["n"] == 2
    assert target["round_trip"]["n"] == 2 * 3
    assert target["checkout"]["n"] == 3
    stats = target["round_trip"]
    assert 0 < stats["min_ms"] <= stats["p50_ms"] <= stats["p95_ms"] <= stats["max_ms"]
    assert sum(bucket["count"] for bucket in target["histogram"]) == 6
    assert target["server"]["version"]
    assert target["pool"]["checked_out"] == 0
    assert target["pool"]["checked_in"] == 2


def test_server_limits_and_connections_in_use_are_reported(server_url: str) -> None:
    document = _json(_check("--url", server_url, "--connections", "3", "--json"))
    server = document["targets"][0]["server"]
    assert server["max_connections"] > 0
    # Counted while our three connections were open.
    assert server["connections_in_use"] >= 3


def test_connections_default_to_pool_size(sqlite_url: str) -> None:
    result = invoke("check-pool", "--url", sqlite_url, "--json", env={"MYFY_DATA_POOL_SIZE": "3"})
    assert result.exit_code == 0, result.stderr
    assert _json(result)["targets"][0]["connect"]["n"] == 3


def test_in_memory_sqlite_checks_its_one_shared_connection() -> None:
    result = _check("--url", "sqlite+aiosqlite://", "--json")
    assert result.exit_code == 0, result.stderr
    assert _json(result)["targets"][0]["connections"] == 1


def test_more_connections_than_the_pool_allows_is_a_usage_error(sqlite_url: str) -> None:
    result = invoke(
        "check-pool",
        "--url",
        sqlite_url,
        "--connections",
        "4",
        env={"MYFY_DATA_POOL_SIZE": "2", "MYFY_DATA_MAX_OVERFLOW": "1"},
    )
    assert result.exit_code == 2
    assert "at most 3" in result.stderr


# -- output ------------------------------------------------------------------------------


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item, f"{path}[]")
    else:
        yield path, value


def test_json_is_one_document_with_every_time_in_ms_keys(sqlite_url: str) -> None:
    result = _check("--url", sqlite_url, "--json", "--max-latency-ms", "10000")
    document = _json(result)  # the whole of stdout parses as one document
    floats = [path for path, value in _walk(document) if isinstance(value, float)]
    assert floats
    timeless = [p for p in floats if not p.endswith(("_ms", ".timeout_s"))]
    assert timeless == []
    assert document["max_latency_ms"] == 10000
    for key in ("n", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms"):
        assert key in document["targets"][0]["round_trip"]


def test_human_output_is_a_table_and_a_histogram(sqlite_url: str) -> None:
    result = _check("--url", sqlite_url)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for text in ("physical connect", "pooled checkout", "round trip", "p95", "p99"):
        assert text in out
    assert "round-trip histogram" in out
    assert " ms | #" in out
    assert "server: SQLite" in out
    assert "1 database(s) checked" in out


def test_stats_and_histogram_of_known_values() -> None:
    values = [float(v) for v in range(1, 101)]
    stats = latency_stats(values)
    assert (stats.n, stats.min_ms, stats.max_ms, stats.mean_ms) == (100, 1.0, 100.0, 50.5)
    assert stats.p50_ms == pytest.approx(50.5)
    assert stats.p95_ms == pytest.approx(95.05)
    assert stats.p99_ms == pytest.approx(99.01)
    buckets = histogram(values)
    assert sum(b.count for b in buckets) == 100
    assert buckets[0].from_ms == 1.0
    assert buckets[-1].to_ms == 100.0


# -- threshold ---------------------------------------------------------------------------


def test_p95_over_max_latency_exits_5_after_the_report(db_url: str) -> None:
    result = _check("--url", db_url, "--connections", "1", "--max-latency-ms", "0", "--json")
    assert result.exit_code == 5
    document = _json(result)
    assert document["ok"] is False
    assert document["over_threshold"][0].startswith("primary")
    assert "above --max-latency-ms 0" in result.stderr


def test_p95_within_max_latency_exits_0(sqlite_url: str) -> None:
    result = _check("--url", sqlite_url, "--max-latency-ms", "60000")
    assert result.exit_code == 0, result.stderr
    assert "within 60000 ms" in result.stdout


# -- replicas ----------------------------------------------------------------------------


def test_every_replica_is_checked_beside_the_primary(server_url: str) -> None:
    server = server_for(backend_of(server_url))
    with server.fresh_database() as replica_url:
        result = _check(
            "--url",
            server_url,
            "--connections",
            "2",
            "--json",
            env={"MYFY_DATA_REPLICA_URLS": replica_url},
        )
    assert result.exit_code == 0, result.stderr
    primary, replica = _json(result)["targets"]
    assert primary["role"] == "primary"
    assert replica["role"] == "replica 1"
    assert replica["target"].endswith(make_url(replica_url).database)
    assert replica["round_trip"]["n"] == 2 * 3


def test_replicas_appear_in_the_human_report(sqlite_url: str, tmp_path: Any) -> None:
    (tmp_path / "replica.db").touch()  # check-pool only reads: it creates no database
    replica = f"sqlite+aiosqlite:///{tmp_path / 'replica.db'}"
    result = _check("--url", sqlite_url, env={"MYFY_DATA_REPLICA_URLS": replica})
    assert result.exit_code == 0, result.stderr
    assert "primary: " in result.stdout
    assert "replica 1: " in result.stdout
    assert "2 database(s) checked" in result.stdout


def test_an_unreachable_replica_is_named(sqlite_url: str) -> None:
    replica = f"postgresql+asyncpg://u@127.0.0.1:{free_port()}/db"
    result = _check("--url", sqlite_url, env={"MYFY_DATA_REPLICA_URLS": replica})
    assert result.exit_code == 4
    assert "replica 1: connection refused" in result.stderr


# -- failures: exit 4 within the bound, naming what failed, no password ------------------


def _failing(url: str) -> subprocess.CompletedProcess[str]:
    """Run the check as a process with a short bound; the process must end well inside it."""
    return run_process(
        "check-pool", "--url", url, "--timeout", CHECK_TIMEOUT, timeout=PROCESS_BOUND
    )


SCHEMES = ["postgresql+asyncpg", "mysql+aiomysql"]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_refused_port_exits_4(scheme: str) -> None:
    result = _failing(f"{scheme}://u:{CANARY}@127.0.0.1:{free_port()}/db")
    assert result.returncode == 4
    assert "primary: connection refused by 127.0.0.1" in result.stderr
    assert CANARY not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.wall_clock
@pytest.mark.parametrize("scheme", SCHEMES)
def test_hung_server_exits_4_within_the_timeout(scheme: str, silent_port: int) -> None:
    result = _failing(f"{scheme}://u:{CANARY}@127.0.0.1:{silent_port}/db")
    assert result.returncode == 4
    assert f"did not finish within {CHECK_TIMEOUT} s" in result.stderr
    assert f"connecting to primary 127.0.0.1:{silent_port}/db" in result.stderr
    assert CANARY not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("scheme", SCHEMES)
def test_unknown_host_exits_4(scheme: str) -> None:
    result = _failing(f"{scheme}://u@no-such-host.invalid/db")
    assert result.returncode == 4
    assert "cannot resolve host 'no-such-host.invalid'" in result.stderr


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_missing_database_exits_4_naming_it(backend: str) -> None:
    server = server_for(backend)
    server.require()
    result = _failing(server.url_for("myfy_no_such_database"))
    assert result.returncode == 4
    assert "database 'myfy_no_such_database' does not exist" in result.stderr


def test_wrong_password_exits_4_without_the_password() -> None:
    server = server_for("mysql")
    server.require()
    result = _failing(with_password(server.url))
    assert result.returncode == 4
    assert "authentication failed for user 'root'" in result.stderr
    assert CANARY not in result.stderr + result.stdout


@pytest.mark.wall_clock
def test_timeout_is_reported_by_the_library_as_cannot_connect(silent_port: int) -> None:
    settings = DatabaseSettings(database_url=f"postgresql+asyncpg://u@127.0.0.1:{silent_port}/d")
    report = asyncio.run(check_pool(settings, timeout=0.5))
    (target,) = report.targets
    assert (target.ok, target.exit_code, report.exit_code) == (False, 4, 4)
    assert target.error is not None
    assert "did not finish within 0.5 s" in target.error
    failure = report.failure()
    assert isinstance(failure, CannotConnect)
    assert failure.message.startswith("primary: check-pool did not finish within 0.5 s")


# -- no leaks ----------------------------------------------------------------------------


def _connections_to(url: str) -> int:
    backend = backend_of(url)
    database = make_url(url).database
    if backend == "postgresql":
        sql = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}'"
    else:
        sql = f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '{database}'"
    return int(server_for(backend).admin(sql)[0][0][0])


def _wait_for_count(url: str, wanted: Any, bound: float = 15.0) -> int:
    """Poll the server's count until ``wanted(count)``; the last count seen."""
    deadline = time.monotonic() + bound
    count = _connections_to(url)
    while not wanted(count) and time.monotonic() < deadline:
        time.sleep(0.05)
        count = _connections_to(url)
    return count


def test_connections_are_closed_after_a_run(server_url: str) -> None:
    before = _connections_to(server_url)
    result = _check("--url", server_url, "--connections", "3")
    assert result.exit_code == 0, result.stderr
    assert _wait_for_count(server_url, lambda n: n == before) == before


def test_connections_are_closed_after_a_failed_check(server_url: str) -> None:
    before = _connections_to(server_url)
    result = _check("--url", server_url, "--connections", "3", "--max-latency-ms", "0")
    assert result.exit_code == 5
    assert _wait_for_count(server_url, lambda n: n == before) == before


def test_primary_connections_are_closed_when_a_replica_fails(server_url: str) -> None:
    before = _connections_to(server_url)
    replica = f"postgresql+asyncpg://u@127.0.0.1:{free_port()}/db"
    result = _check(
        "--url", server_url, "--connections", "3", env={"MYFY_DATA_REPLICA_URLS": replica}
    )
    assert result.exit_code == 4
    assert _wait_for_count(server_url, lambda n: n == before) == before


def test_connections_are_closed_when_the_check_is_cancelled(server_url: str) -> None:
    before = _connections_to(server_url)

    async def scenario() -> None:
        settings = DatabaseSettings(database_url=server_url)
        task = asyncio.create_task(check_pool(settings, connections=3, samples=10_000_000))
        deadline = time.monotonic() + 15
        while await asyncio.to_thread(_connections_to, server_url) < before + 3:
            assert time.monotonic() < deadline, "the check never opened its connections"
            assert not task.done()
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert _wait_for_count(server_url, lambda n: n == before) == before


@pytest.mark.wall_clock
def test_ctrl_c_exits_130_and_closes_every_connection(server_url: str) -> None:
    before = _connections_to(server_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))}
    argv = [sys.executable, "-m", "myfy_db", "check-pool", "--url", server_url]
    argv += ["--connections", "3", "--samples", "10000000", "--timeout", "600"]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        opened = _wait_for_count(server_url, lambda n: n >= before + 3)
        assert opened >= before + 3, "the check never opened its connections"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=PROCESS_BOUND)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert b"interrupted (SIGINT)" in stderr
    assert b"Traceback" not in stderr
    assert _wait_for_count(server_url, lambda n: n == before) == before


# -- small things: the pool's numbers, the server's name -----------------------------------


def test_pool_status_never_shows_a_negative_overflow(sqlite_url: str) -> None:
    result = _check("--url", sqlite_url, "--connections", "2")
    assert result.exit_code == 0, result.stderr
    assert "overflow -" not in result.stdout
    assert "QueuePool: size 5, 2 open (2 idle, 0 checked out), overflow 0" in result.stdout
    document = _json(_check("--url", sqlite_url, "--connections", "2", "--json"))
    pool = document["targets"][0]["pool"]
    assert (pool["size"], pool["opened"], pool["overflow"]) == (5, 2, 0)


def test_postgres_version_names_postgresql(postgres_url: str) -> None:
    document = _json(_check("--url", postgres_url, "--connections", "1", "--json"))
    assert document["targets"][0]["server"]["version"].startswith("PostgreSQL ")
    result = _check("--url", postgres_url, "--connections", "1")
    assert "server: PostgreSQL " in result.stdout


# -- one bad target never hides the others --------------------------------------------------


def test_a_dead_replica_does_not_hide_the_primarys_figures(server_url: str) -> None:
    dead = f"postgresql+asyncpg://u:{CANARY}@127.0.0.1:{free_port()}/db"
    result = _check("--url", server_url, "--connections", "2", "--replica", dead, "--json")
    assert result.exit_code == 4
    document = _json(result)
    assert (document["ok"], document["exit_code"]) == (False, 4)
    primary, replica = document["targets"]
    assert (primary["role"], primary["ok"], primary["exit_code"]) == ("primary", True, 0)
    assert primary["round_trip"]["n"] == 2 * 3
    assert primary["server"]["version"]
    assert (replica["role"], replica["ok"], replica["exit_code"]) == ("replica 1", False, 4)
    assert replica["error"].startswith("connection refused by 127.0.0.1")
    assert replica["round_trip"] is None
    assert "replica 1: connection refused" in result.stderr
    assert CANARY not in result.stdout + result.stderr


def test_a_dead_replica_in_the_human_report_beside_the_primarys_table(server_url: str) -> None:
    dead = f"mysql+aiomysql://u@127.0.0.1:{free_port()}/db"
    result = _check("--url", server_url, "--connections", "1", "--replica", dead)
    assert result.exit_code == 4
    out = result.stdout
    assert "round trip" in out
    assert "round-trip histogram" in out
    assert "replica 1: mysql+aiomysql://u@127.0.0.1:" in out
    assert "not measured (exit 4): connection refused by 127.0.0.1" in out
    assert "2 database(s) checked" in out
    assert "primary ok; replica 1 FAILED (exit 4)" in out


def test_replica_flags_replace_the_setting_and_each_is_reported(server_url: str) -> None:
    server = server_for(backend_of(server_url))
    dead = f"postgresql+asyncpg://u@127.0.0.1:{free_port()}/db"
    with server.fresh_database() as replica_url:
        result = _check(
            "--url", server_url, "--connections", "1", "--replica", replica_url,
            "--replica", dead, "--json",
            env={"MYFY_DATA_REPLICA_URLS": "sqlite+aiosqlite:///never-checked.db"},
        )  # fmt: skip
    assert result.exit_code == 4
    primary, first, second = _json(result)["targets"]
    assert primary["ok"]
    assert first["ok"]
    assert first["target"].endswith(make_url(replica_url).database)
    assert (second["role"], second["exit_code"]) == ("replica 2", 4)


def test_primary_only_skips_the_replicas(sqlite_url: str) -> None:
    dead = f"postgresql+asyncpg://u@127.0.0.1:{free_port()}/db"
    env = {"MYFY_DATA_REPLICA_URLS": dead}
    result = _check("--url", sqlite_url, "--primary-only", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    assert [t["role"] for t in _json(result)["targets"]] == ["primary"]


def test_unreachable_outranks_a_latency_finding(sqlite_url: str) -> None:
    dead = f"postgresql+asyncpg://u@127.0.0.1:{free_port()}/db"
    result = _check(
        "--url", sqlite_url, "--replica", dead, "--max-latency-ms", "0", "--json"
    )  # fmt: skip
    assert result.exit_code == 4
    primary, replica = _json(result)["targets"]
    assert primary["exit_code"] == 5
    assert primary["findings"][0]["id"] == "max_latency"
    assert replica["exit_code"] == 4
    assert "primary: round-trip p95" in result.stderr
    assert "replica 1: connection refused" in result.stderr


# -- never more connections than the server has free ----------------------------------------


def _max_connections(backend: str) -> int:
    sql = "SHOW max_connections" if backend == "postgresql" else "SELECT @@GLOBAL.max_connections"
    return int(server_for(backend).admin(sql)[0][0][0])


@pytest.mark.all_server_slots
def test_asking_for_more_than_the_free_slots_is_a_finding(server_url: str) -> None:
    limit = _max_connections(backend_of(server_url))
    env = {"MYFY_DATA_POOL_SIZE": str(limit + 5)}
    result = _check("--url", server_url, "--json", env=env)
    assert result.exit_code == 5, result.stderr
    (target,) = _json(result)["targets"]
    slots = target["slots"]
    assert slots["max_connections"] == limit
    assert slots["free"] <= limit - slots["reserved"] - 1
    assert target["requested"] == limit + 5
    assert target["connections"] == slots["allowed"] <= slots["free"] - slots["margin"] + 1
    assert target["connect"]["n"] == slots["allowed"]
    (finding,) = [f for f in target["findings"] if f["id"] == "free_slots"]
    assert finding["severity"] == "error"
    assert (
        f"asked for {limit + 5} connections, but the server has {slots['free']} free"
        in (finding["reason"])
    )
    assert f"max_connections {limit} less {slots['reserved']} reserved" in finding["reason"]
    assert "asked for" in result.stderr
    assert "Traceback" not in result.stderr


def _run_measured(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, int]:
    """Run the CLI as a process: its exit code, stderr and peak memory (KiB, its own)."""
    import tempfile

    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))}
    full_env.update(env or {})
    with tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "myfy_db", *args],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
        deadline = time.monotonic() + PROCESS_BOUND
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return process.returncode, err.read(), int(usage.ru_maxrss)


@pytest.mark.wall_clock
@pytest.mark.parametrize(
    "backend",
    [
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.all_server_slots),
        pytest.param("mysql", marks=pytest.mark.all_server_slots),
    ],
)
def test_a_million_pool_size_stays_bounded(backend: str, sqlite_url: str) -> None:
    if backend == "sqlite":
        url = sqlite_url
    else:
        server = server_for(backend)
        server.require()
        url = server.url
    started = time.monotonic()
    code, stderr, peak_kib = _run_measured(
        "check-pool", "--url", url, "--samples", "1", "--timeout", "20",
        env={"MYFY_DATA_POOL_SIZE": "1000000"},
    )  # fmt: skip
    assert code == 5, stderr
    assert "asked for 1000000 connections" in stderr
    assert time.monotonic() - started < PROCESS_BOUND
    assert peak_kib < 600 * 1024


def test_timings_are_kept_in_bounded_memory() -> None:
    from myfy_db.pool.report import reservoir_stats
    from myfy_db.pool.stats import Reservoir

    reservoir = Reservoir(capacity=1000)
    for value in range(1, 200_001):
        reservoir.add(float(value))
    assert len(reservoir.values) == 1000
    stats = reservoir_stats(reservoir)
    assert (stats.n, stats.min_ms, stats.max_ms) == (200_000, 1.0, 200_000.0)
    assert stats.mean_ms == pytest.approx(100_000.5)
    assert stats.p50_ms == pytest.approx(100_000, rel=0.1)


@pytest.mark.wall_clock
def test_huge_samples_end_at_the_timeout_in_bounded_memory(sqlite_url: str) -> None:
    code, stderr, peak_kib = _run_measured(
        "check-pool", "--url", sqlite_url, "--connections", "1", "--samples", "1000000000",
        "--timeout", "3",
    )  # fmt: skip
    assert code == 4
    assert "did not finish within 3 s: timed out measuring round trips" in stderr
    assert peak_kib < 400 * 1024


# -- transaction poolers: a real PgBouncer in front of the shared PostgreSQL ----------------


POOLER_DETECTED = (
    "transaction pooler detected: consecutive transactions on one connection ran on "
    "different server backends"
)


def test_transaction_pooler_with_default_settings_is_an_unsafe_settings_error(
    pgbouncer: Any,
) -> None:
    bouncer = pgbouncer("transaction")
    result = _check("--url", bouncer.url, "--connections", "2", "--json")
    assert result.exit_code == 5, result.stderr
    (target,) = _json(result)["targets"]
    assert target["pooler"]["detected"] is True
    ids = {f["id"]: f for f in target["findings"]}
    assert POOLER_DETECTED in ids["transaction_pooler"]["reason"]
    unsafe = ids["pooler_unsafe_settings"]
    assert unsafe["severity"] == "error"
    assert "Use ?prepared_statement_cache_size=0 in the database URL" in unsafe["reason"]
    assert "statement_cache_size=0" in unsafe["reason"]
    assert "prepared_statement_name_func" in unsafe["reason"]
    assert "?prepared_statement_cache_size=0" in result.stderr
    human = _check("--url", bouncer.url, "--connections", "2")
    assert human.exit_code == 5
    assert POOLER_DETECTED in human.stdout


def test_transaction_pooler_with_the_safe_url_passes(pgbouncer: Any) -> None:
    bouncer = pgbouncer("transaction")
    url = bouncer.url_with(prepared_statement_cache_size="0")
    result = _check("--url", url, "--connections", "3", "--json")
    assert result.exit_code == 0, result.stderr
    (target,) = _json(result)["targets"]
    assert target["pooler"]["detected"] is True
    assert target["pooler"]["unsafe"] == []
    assert [f["id"] for f in target["findings"]] == ["transaction_pooler"]
    assert target["round_trip"]["n"] == 3 * 3
    assert target["server"]["version"].startswith("PostgreSQL ")


def test_session_pooler_is_not_reported(pgbouncer: Any) -> None:
    bouncer = pgbouncer("session")
    result = _check("--url", bouncer.url, "--connections", "2", "--json")
    assert result.exit_code == 0, result.stderr
    (target,) = _json(result)["targets"]
    assert target["pooler"]["detected"] is False
    assert target["findings"] == []
    assert POOLER_DETECTED not in result.stdout + result.stderr


def test_a_plain_server_is_not_a_pooler(postgres_url: str) -> None:
    result = _check("--url", postgres_url, "--connections", "2", "--json")
    assert result.exit_code == 0, result.stderr
    pooler = _json(result)["targets"][0]["pooler"]
    assert pooler["detected"] is False
    assert pooler["first_pids"][0] == pooler["first_pids"][1]


def test_the_engine_factory_builds_the_safe_engine_from_the_url_alone(
    pgbouncer: Any,
) -> None:
    from sqlalchemy import text

    from myfy_db.engine import create_engine, engine_options
    from myfy_db.pool.pooler import unsafe_settings

    bouncer = pgbouncer("transaction", pool_size=4)
    url = bouncer.url_with(prepared_statement_cache_size="0")
    settings = DatabaseSettings(database_url=url, pool_size=8, max_overflow=0)
    connect_args = engine_options(settings)["connect_args"]
    assert connect_args["statement_cache_size"] == 0
    names = {connect_args["prepared_statement_name_func"]() for _ in range(3)}
    assert len(names) == 3
    assert unsafe_settings(url, connect_args) == []
    assert (
        len(unsafe_settings(bouncer.url, engine_options(settings, bouncer.url)["connect_args"]))
        == 3
    )

    async def workload() -> list[int]:
        engine = create_engine(settings)
        try:

            async def one(worker: int) -> int:
                total = 0
                for round_ in range(20):
                    async with engine.connect() as conn:
                        value = await conn.scalar(
                            text("SELECT CAST(:a AS int) + CAST(:b AS int)"),
                            {"a": worker, "b": round_},
                        )
                        total += int(value)
                return total

            return list(await asyncio.gather(*(one(w) for w in range(8))))
        finally:
            await engine.dispose()

    # 8 clients over 4 server backends, each statement prepared: no name ever collides.
    assert asyncio.run(workload()) == [20 * w + sum(range(20)) for w in range(8)]


# -- --watch ------------------------------------------------------------------------------

WATCH_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (primary|replica \d+) \S+ "
    r"p50 (\d+\.\d{3} ms|-) p95 (\d+\.\d{3} ms|-) errors \d+ in use (\d+|\?)(: .+)?$"
)


@pytest.mark.wall_clock
def test_watch_prints_one_line_per_round_and_target(server_url: str) -> None:
    started = time.monotonic()
    result = _check("--url", server_url, "--connections", "1", "--watch", "0.3", "--count", "3")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert WATCH_LINE.match(line), line
        assert " primary " in line
        assert " errors 0 " in line
    assert time.monotonic() - started >= 0.6  # rounds start 0.3 s apart


def test_watch_json_is_one_object_per_line_and_counts_failed_rounds(sqlite_url: str) -> None:
    dead = f"postgresql+asyncpg://u@127.0.0.1:{free_port()}/db"
    result = _check(
        "--url", sqlite_url, "--replica", dead, "--watch", "0.1", "--count", "2", "--json"
    )  # fmt: skip
    assert result.exit_code == 4
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["round"], r["role"]) for r in records] == [
        (1, "primary"), (1, "replica 1"), (2, "primary"), (2, "replica 1"),
    ]  # fmt: skip
    primary, replica = records[2], records[3]
    assert primary["ok"] is True
    assert primary["p50_ms"] <= primary["p95_ms"]
    assert (primary["errors"], primary["error"]) == (0, None)
    assert replica["ok"] is False
    assert replica["errors"] == 2
    assert replica["error"].startswith("connection refused")
    assert replica["p50_ms"] is None
    for record in records:
        assert set(record) >= {"time", "p50_ms", "p95_ms", "errors", "connections_in_use"}


def test_count_without_watch_is_a_usage_error(sqlite_url: str) -> None:
    result = _check("--url", sqlite_url, "--count", "2")
    assert result.exit_code == 2
    assert "--count needs --watch" in result.stderr


@pytest.mark.wall_clock
def test_watch_runs_until_ctrl_c_then_exits_130(postgres_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))}
    argv = [sys.executable, "-m", "myfy_db", "check-pool", "--url", postgres_url]
    argv += ["--connections", "1", "--samples", "2", "--watch", "0.2"]
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        seen = [process.stdout.readline() for _ in range(3)]
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=PROCESS_BOUND)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    for line in seen:
        assert WATCH_LINE.match(line.rstrip("\n")), line
    assert "Traceback" not in stderr
    assert "interrupted" in stderr
    # The test's own fresh database: nothing but the watch ever connected to it.
    assert _wait_for_count(postgres_url, lambda n: n == 0) == 0
