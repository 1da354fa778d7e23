"""Issue 22, poolers and busy servers: PgBouncer in statement mode, ``profile-pool --load`` on
a server with few free slots, and check-pool's pooler probe on the connections it opens.

The busy server is a throwaway one: a role of this test's own with a CONNECTION LIMIT, most
of whose slots a holder takes, so the shared server keeps its slots for everyone else.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from helpers import invoke, server_for
from myfy_db.pool.measure import check_pool
from myfy_db.settings import DatabaseSettings

STATEMENT_MODE = "statement pooling mode"


def _json(result: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def _findings(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["id"]: f for f in document["findings"]}


# -- PgBouncer in statement mode -------------------------------------------------------------


def test_check_pool_behind_a_statement_pooler_is_a_finding_not_a_lost_connection(
    pgbouncer: Any,
) -> None:
    url = pgbouncer("statement").url
    result = invoke("check-pool", "--samples", "3", "--connections", "2", "--json", "--url", url)
    assert result.exit_code == 5, result.stderr
    (target,) = _json(result)["targets"]
    assert target["exit_code"] == 5
    finding = _findings(target)["statement_pooler"]
    assert finding["severity"] == "error"
    assert "statement pooling mode" in finding["reason"]
    assert "pool_mode = transaction" in finding["reason"]
    assert "session" in finding["reason"]
    assert STATEMENT_MODE in result.stderr
    assert "lost" not in result.stderr
    assert "check that it is running" not in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["check-pool", "--samples", "2"],
        ["profile-pool"],
        ["shell", "-c", "print(1)"],
    ],
    ids=["check-pool", "profile-pool", "shell"],
)
@pytest.mark.parametrize("safe", [False, True], ids=["default-url", "safe-url"])
def test_every_command_that_connects_names_statement_pooling_and_exits_5(
    pgbouncer: Any, argv: list[str], safe: bool
) -> None:
    bouncer = pgbouncer("statement")
    url = bouncer.url_with(prepared_statement_cache_size="0") if safe else bouncer.url
    result = invoke(*argv, "--url", url)
    assert result.exit_code == 5, result.stderr
    assert STATEMENT_MODE in result.stderr
    assert "use pool_mode = transaction" in result.stderr
    assert "lost" not in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_behind_a_statement_pooler_exits_5(pgbouncer: Any, project: Any) -> None:
    url = pgbouncer("statement").url
    for argv in (["migrate", "current"], ["migrate"]):
        result = invoke(*argv, "--url", url)
        assert result.exit_code == 5, result.stderr
        assert STATEMENT_MODE in result.stderr


def test_statement_pooling_is_classified_once_and_never_waited_for(pgbouncer: Any) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from myfy_db.driver_errors import StatementPooling, classify_connect_error, is_permanent

    url = pgbouncer("statement").url

    async def connect() -> BaseException:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            return exc
        finally:
            await engine.dispose()
        raise AssertionError("a statement pooler ran a transaction")

    exc = asyncio.run(connect())
    error = classify_connect_error(exc, url)
    assert isinstance(error, StatementPooling)
    assert int(error.exit_code) == 5
    assert is_permanent(exc)  # --wait does not retry it


# -- profile-pool --load on a busy server ------------------------------------------------------

#: The role's CONNECTION LIMIT, and the connections a holder keeps open during the run:
#: 2 free (the run's reading connection counted), less a margin of 2: 1 allowed.
ROLE_LIMIT = 6
HELD = 3


@pytest.fixture
def limited_role(postgres_url: str) -> Iterator[str]:
    """``postgres_url`` as a fresh role (not a superuser) with CONNECTION LIMIT 6."""
    server = server_for("postgresql")
    name = f"myfy_t_{uuid.uuid4().hex[:12]}"
    server.admin(f'CREATE ROLE "{name}" LOGIN CONNECTION LIMIT {ROLE_LIMIT}')
    try:
        yield make_url(postgres_url).set(username=name).render_as_string(hide_password=False)
    finally:
        server.admin(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'"
        )
        server.admin(f'DROP ROLE "{name}"')


@contextmanager
def holding(url: str, count: int) -> Iterator[None]:
    """``count`` connections to ``url`` held open (on a thread's event loop) in the block."""
    import asyncpg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="slot-holder", daemon=True)
    thread.start()
    held: list[Any] = []

    def run(make: Callable[[], Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(make(), loop).result(60)

    async def open_all() -> None:
        for _ in range(count):
            held.append(await asyncpg.connect(dsn))

    async def close_all() -> None:
        for conn in held:
            await conn.close()

    try:
        run(open_all)
        yield
    finally:
        run(close_all)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


#: 2 + 2 connections at peak: within the role's 6 (a fit), more than its 2 free slots.
LOAD = ("--load", "--concurrency", "9", "--duration", "0.5", "--pool-size", "2")


def test_load_on_a_busy_server_stays_within_the_free_slots_and_says_so(
    limited_role: str,
) -> None:
    with holding(limited_role, HELD):
        result = invoke(
            "profile-pool", "--url", limited_role, *LOAD, "--max-overflow", "2", "--json"
        )
        human = invoke("profile-pool", "--url", limited_role, *LOAD, "--max-overflow", "2")
    assert result.exit_code == 0, result.stderr
    document = _json(result)
    load = document["load"]
    slots = load["slots"]
    assert slots["limited_by"].startswith(f"the role's CONNECTION LIMIT {ROLE_LIMIT} less ")
    # 6 less 3 held less the reading connection (or one still closing): 2 free at most,
    # less the margin of 2, plus the reading connection: 1.
    assert slots["free"] <= ROLE_LIMIT - HELD - 1
    assert load["requested_concurrency"] == 9
    assert load["capped"] is True
    assert load["concurrency"] == slots["allowed"] == 1
    assert load["refusals"] == 0
    assert load["errors"] == 0
    assert load["queries"] > 0
    findings = _findings(document)
    assert findings["load_capped"]["severity"] == "warning"
    assert "not the 9 asked for" in findings["load_capped"]["reason"]
    assert "load_refused" not in findings
    assert human.exit_code == 0, human.stderr
    assert "Capped at" in human.stdout


def test_refusals_during_a_load_run_are_refusals_and_the_pool_never_fits(
    limited_role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server whose free slots cannot be read: the run opens what the pool allows, and the
    # server refuses what does not fit.
    async def unreadable(_backend: str, _driver: Any) -> None:
        return None

    monkeypatch.setattr("myfy_db.pool.profile.load._read_slots", unreadable, raising=False)
    with holding(limited_role, HELD):
        result = invoke(
            "profile-pool", "--url", limited_role, *LOAD, "--max-overflow", "2", "--json"
        )
    assert result.exit_code == 5, result.stderr
    document = _json(result)
    load = document["load"]
    assert load["refusals"] > 0
    assert load["errors"] == 0
    assert any("too many connections" in text for text in load["refusal_samples"])
    findings = _findings(document)
    assert findings["load_refused"]["severity"] == "error"
    # 2 + 2 = 4 connections at peak is within the role's 6, but the run saw refusals.
    assert "max_connections" not in findings
    assert not any("fits" in f["reason"] for f in document["findings"])
    assert document["ok"] is False


# -- check-pool's pooler probe on its own connections ------------------------------------------


@contextmanager
def counting_connects(backend: str) -> Iterator[list[int]]:
    """Every physical connect the driver makes in the block, counted."""
    module: Any
    if backend == "postgresql":
        import asyncpg as module
    else:
        import aiomysql as module
    made: list[int] = []
    original = module.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        made.append(1)
        return original(*args, **kwargs)

    module.connect = connect
    try:
        yield made
    finally:
        module.connect = original


def test_check_pool_opens_only_its_own_connections_on_a_server(server_url: str) -> None:
    settings = DatabaseSettings(database_url=server_url, pool_size=2)
    backend = make_url(server_url).get_backend_name()
    with counting_connects(backend) as made:
        report = asyncio.run(check_pool(settings, samples=2))
    (target,) = report.targets
    assert target.ok, target.error
    assert target.connections == 2
    assert len(made) == 2  # no probe engine, no extra connection
    if backend == "postgresql":
        assert target.pooler is not None
        assert target.pooler.detected is False
        assert "the server's own backend" in target.pooler.evidence


def test_check_pool_looks_for_a_pooler_on_its_own_connections(pgbouncer: Any) -> None:
    url = pgbouncer("transaction").url_with(prepared_statement_cache_size="0")
    settings = DatabaseSettings(database_url=url, pool_size=3)
    with counting_connects("postgresql") as made:
        report = asyncio.run(check_pool(settings, samples=2))
    (target,) = report.targets
    assert target.ok, target.error
    assert target.pooler is not None
    assert target.pooler.detected is True
    assert len(made) == 3
