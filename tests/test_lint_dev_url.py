"""`migrate lint --dev-url`: what the online capture sees that the offline one cannot, and
that it sees it exactly once; offline, SQL sent through ``op.get_bind()`` is judged too."""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from helpers import invoke, server_for, start_process
from migrate_project import write_env_shape, write_project
from myfy_db.urls import DatabaseUrl
from scratch_support import record_scratch_databases, scratch_exists

ITEMS = (
    "r1",
    "create items",
    'op.create_table("items", sa.Column("id", sa.Integer, primary_key=True),'
    ' sa.Column("name", sa.String(50), nullable=False), sa.Column("note", sa.String(100)))',
    "pass",
)

#: r2's lines (migrate_project.REVISION: the body starts at line 13).
BIND_REVISION = """\
op.execute("UPDATE items SET name = 'a'")
bind = op.get_bind()
bind.execute(sa.text("UPDATE items SET name = 'b'"))
def helper(connection):
    connection.execute(sa.text("DELETE FROM items"))
helper(bind)
bind.execute(sa.text("UPDATE items SET note = 'n' WHERE id = 1"))
total = bind.execute(sa.text("SELECT count(*) FROM items")).scalar()"""
OP_EXECUTE_LINE, BIND_LINE, HELPER_LINE, COUNT_LINE = 13, 15, 17, 20
FIRST = 13


def backend_of(url: str) -> str:
    return make_url(url).get_backend_name().replace("mariadb", "mysql")


def dev_url_for(url: str, tmp_path: Path) -> str:
    backend = backend_of(url)
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'dev.db'}"
    return server_for(backend).url


def lint(ini: Path, url: str, *args: str) -> dict[str, Any]:
    result = invoke(
        "migrate", "lint", "--url", url, "--config", str(ini), "--json", "--fail-on", "never", *args
    )
    assert result.exit_code == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def rules_at(report: dict[str, Any]) -> list[tuple[str, str, int]]:
    return sorted((f["rule"], f["revision"], f["line"]) for f in report["findings"])


def test_sql_sent_through_the_bind_is_captured_once_online(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """op.execute() once (Alembic's own statement is not counted again); the bind's
    UPDATE and the helper's DELETE, each at its own line (the revision frame nearest the
    statement); the UPDATE with a WHERE and the SELECT are no backfill."""
    ini = write_project(tmp_path, [ITEMS, ("r2", "bind", BIND_REVISION, "pass")])
    made = record_scratch_databases(monkeypatch)
    report = lint(ini, db_url, "--offline", "--dev-url", dev_url_for(db_url, tmp_path))
    assert rules_at(report) == [
        ("DB005", "r2", OP_EXECUTE_LINE),
        ("DB005", "r2", BIND_LINE),
        ("DB005", "r2", HELPER_LINE),
    ]
    details = [f["detail"] for f in report["findings"]]
    assert details[2].startswith("DELETE of every row of items")
    assert not scratch_exists(made[0])


def test_sql_sent_through_the_mock_bind_is_judged_offline(db_url: str, tmp_path: Path) -> None:
    """Offline, Alembic's bind writes what it is given to the output: it is judged as
    op.execute() text is, and the row count, which cannot run, is DB006."""
    ini = write_project(tmp_path, [ITEMS, ("r2", "bind", BIND_REVISION, "pass")])
    report = lint(ini, db_url, "--offline")
    assert rules_at(report) == [
        ("DB005", "r2", OP_EXECUTE_LINE),
        ("DB005", "r2", BIND_LINE),
        ("DB005", "r2", HELPER_LINE),
        ("DB006", "r2", COUNT_LINE),
    ]


def test_an_index_built_through_the_bind_is_judged(postgres_url: str, tmp_path: Path) -> None:
    body = 'op.get_bind().execute(sa.text("CREATE INDEX ix_items_name ON items (name)"))'
    ini = write_project(tmp_path, [ITEMS, ("r2", "index", body, "pass")])
    for args in (("--offline",), ("--offline", "--dev-url", server_for("postgresql").url)):
        assert rules_at(lint(ini, postgres_url, *args)) == [("PG001", "r2", FIRST)]


def test_types_before_the_range_come_from_the_scratch_database(
    postgres_url: str, tmp_path: Path
) -> None:
    """r2:heads offline knows no type for items.name and items.note; replayed, the scratch
    database says VARCHAR(50) (to TEXT: no rewrite) and VARCHAR(100) (to INTEGER: a rewrite)."""
    body = (
        'op.alter_column("items", "name", type_=sa.Text())\n'
        'op.alter_column("items", "note", type_=sa.Integer(), postgresql_using="note::integer")'
    )
    add_note = ("r2", "nothing", "pass", "pass")
    ini = write_project(tmp_path, [ITEMS, add_note, ("r3", "types", body, "pass")])
    offline = lint(ini, postgres_url, "r2:heads", "--offline")
    assert rules_at(offline) == [("PG006", "r3", FIRST), ("PG006", "r3", FIRST + 1)]
    assert all("unknown type" in f["detail"] for f in offline["findings"])

    dev = lint(
        ini, postgres_url, "r2:heads", "--offline", "--dev-url", server_for("postgresql").url
    )
    assert dev["revisions"] == ["r3"]
    assert rules_at(dev) == [("PG006", "r3", FIRST + 1)]
    assert "from VARCHAR(100) to INTEGER" in dev["findings"][0]["detail"]


def test_revisions_before_the_range_are_replayed_unjudged(db_url: str, tmp_path: Path) -> None:
    """r2's backfill is before the range: the scratch database holds its result, and no
    finding names r2."""
    backfill = ("r2", "backfill", "op.execute(\"UPDATE items SET name = 'x'\")", "pass")
    later = ("r3", "later", 'op.execute("DELETE FROM items")', "pass")
    ini = write_project(tmp_path, [ITEMS, backfill, later])
    report = lint(ini, db_url, "r2:heads", "--offline", "--dev-url", dev_url_for(db_url, tmp_path))
    assert report["revisions"] == ["r3"]
    assert rules_at(report) == [("DB005", "r3", FIRST)]


def test_an_async_env_py_is_captured_on_its_own_thread(sqlite_url: str, tmp_path: Path) -> None:
    ini = write_env_shape(tmp_path, "async")
    body = "op.get_bind().execute(sa.text(\"UPDATE items SET name = 'z'\"))"
    from migrate_project import add_revision

    add_revision(tmp_path, "r4", "r3", "bind", body)
    report = lint(ini, sqlite_url, "--offline", "--dev-url", dev_url_for(sqlite_url, tmp_path))
    assert ("DB005", "r4", FIRST) in rules_at(report)


def test_sqlite_operations_alembic_cannot_run_are_reported_online_as_offline(
    sqlite_url: str, tmp_path: Path
) -> None:
    body = (
        'op.create_unique_constraint("uq_items_name", "items", ["name"])\n'
        'op.drop_column("items", "note")'
    )
    ini = write_project(tmp_path, [ITEMS, ("r2", "outside batch", body, "pass")])
    offline = lint(ini, sqlite_url, "--offline")
    online = lint(ini, sqlite_url, "--offline", "--dev-url", dev_url_for(sqlite_url, tmp_path))
    assert ("SQ002", "r2", FIRST) in rules_at(offline)
    assert rules_at(online) == rules_at(offline)


def test_a_revision_the_dev_database_refuses_is_reported_and_lint_goes_on(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """r2 fails on the scratch database: DB006 at the failing call, in the server's words;
    r3 after it is still judged (offline, as without --dev-url); nothing is left behind."""
    failing = ("r2", "fails", 'op.execute("UPDATE no_such_table SET x = 1")', "pass")
    later = ("r3", "later", 'op.execute("DELETE FROM items")', "pass")
    ini = write_project(tmp_path, [ITEMS, failing, later])
    made = record_scratch_databases(monkeypatch)
    report = lint(ini, db_url, "--offline", "--dev-url", dev_url_for(db_url, tmp_path))
    # r2's UPDATE is judged as offline (it was captured as it was sent), then refused.
    assert rules_at(report) == [
        ("DB005", "r2", FIRST),
        ("DB005", "r3", FIRST),
        ("DB006", "r2", FIRST),
    ]
    (refused,) = [f for f in report["findings"] if f["rule"] == "DB006"]
    assert "fails on the dev database" in refused["detail"]
    assert "no_such_table" in refused["detail"]
    assert len(made) == 1
    assert not scratch_exists(made[0])


def test_a_revision_before_the_range_failing_on_the_dev_database_is_exit_1(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The revisions before the range build the scratch database's schema: one that fails
    there leaves nothing to judge the range on."""
    failing = ("r2", "fails", 'op.execute("UPDATE no_such_table SET x = 1")', "pass")
    later = ("r3", "later", 'op.execute("DELETE FROM items")', "pass")
    ini = write_project(tmp_path, [ITEMS, failing, later])
    made = record_scratch_databases(monkeypatch)
    result = invoke(
        "migrate",
        "lint",
        "r2:heads",
        "--url",
        db_url,
        "--config",
        str(ini),
        "--offline",
        "--dev-url",
        dev_url_for(db_url, tmp_path),
    )
    assert result.exit_code == 1, result.stderr
    assert "revision r2" in result.stderr
    assert "scratch database" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(made) == 1
    assert not scratch_exists(made[0])


def _scratch_running(backend: str, marker: str) -> str | None:
    """The scratch database a session runs the marked statement on, if any."""
    server = server_for(backend)
    if backend == "postgresql":
        sql = (
            "SELECT datname FROM pg_stat_activity WHERE datname LIKE 'myfy_scratch_%' "
            f"AND query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
        )
    else:
        sql = (
            "SELECT DB FROM information_schema.PROCESSLIST WHERE DB LIKE 'myfy_scratch_%' "
            f"AND INFO LIKE '%{marker}%' AND ID <> CONNECTION_ID()"
        )
    rows = server.admin(sql)[0]
    return str(rows[0][0]) if rows else None


@pytest.mark.wall_clock
def test_ctrl_c_during_the_replay_drops_the_scratch_database(
    server_url: str, tmp_path: Path
) -> None:
    backend = backend_of(server_url)
    marker = f"m{uuid.uuid4().hex[:12]}"
    sleep = "pg_sleep(30)" if backend == "postgresql" else "SLEEP(30)"
    body = f'op.execute("SELECT {sleep} AS {marker}")'
    ini = write_project(tmp_path, [ITEMS, ("r2", "slow", body, "pass")])
    process = start_process(
        "migrate",
        "lint",
        "--url",
        server_url,
        "--config",
        str(ini),
        "--offline",
        "--dev-url",
        server_for(backend).url,
        cwd=str(tmp_path),
    )
    try:
        deadline = time.monotonic() + 30
        name = None
        while name is None and time.monotonic() < deadline and process.poll() is None:
            name = _scratch_running(backend, marker)
            time.sleep(0.1)
        assert name is not None, process.communicate(timeout=5)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "interrupted" in err
    url = DatabaseUrl.of(make_url(server_url).set(database=name))
    assert not scratch_exists(url)


def _parity_cases() -> list[object]:
    from test_migrate_lint import CASES

    return [
        pytest.param(rule, backend, which, text, id=f"{rule}-{backend}-{which}-{index}")
        for index, (rule, backends, bad, safe) in enumerate(CASES)
        for backend in backends
        for which, text in (("bad", bad), ("safe", safe))
    ]


@pytest.mark.parametrize(("rule", "backend", "which", "upgrade"), _parity_cases())
def test_online_capture_judges_as_the_offline_one(
    rule: str,
    backend: str,
    which: str,
    upgrade: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Every case of test_migrate_lint, pending from r1: replayed on a scratch database, the
    same findings at the same lines as the offline capture. DB006 aside: offline it marks
    the revision that needs a connection; online it marks a revision the server refuses to
    run (CONCURRENTLY inside a transaction, an ALTER SQLite cannot do), in the server's
    words."""
    from test_migrate_lint import BASE

    fixture = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mysql": "mysql_url"}
    url = str(request.getfixturevalue(fixture[backend]))
    ini = write_project(tmp_path, [BASE, ("r2", "under test", upgrade, "pass")])
    applied = invoke("migrate", "up", "r1", "--url", url, "--config", str(ini))
    assert applied.exit_code == 0, applied.stderr
    offline = [f for f in rules_at(lint(ini, url)) if f[0] != "DB006"]
    report = lint(ini, url, "--dev-url", dev_url_for(url, tmp_path))
    assert [f for f in rules_at(report) if f[0] != "DB006"] == offline
    refused = [f["detail"] for f in report["findings"] if f["rule"] == "DB006"]
    if (rule, which) in (("PG010", "bad"), ("SQ002", "bad")):
        (detail,) = refused
        assert "fails on the dev database" in detail
    else:
        assert refused == []


#: An env.py that migrates the database an environment variable names, whatever myfy-db
#: gives it (as a project's own env.py reading DATABASE_URL does).
OWN_URL_ENV = """
def run_migrations_online():
    import os

    connectable = async_engine_from_config(
        {"sqlalchemy.url": os.environ["MYFY_TEST_OWN_URL"]}, prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )

    async def go():
        async with connectable.connect() as connection:
            await connection.run_sync(do_run_migrations)
        await connectable.dispose()

    asyncio.run(go())
"""


def test_an_env_py_migrating_its_own_url_never_touches_the_target(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lint --dev-url replays on a scratch database; an env.py that connects to the target
    instead (from its own setting) is refused before a revision runs: exit 2, the target
    untouched, the scratch database dropped."""
    from migrate_project import _ENV_HEAD, _ENV_TAIL, tables

    ini = write_project(tmp_path, [ITEMS])
    (tmp_path / "migrations" / "env.py").write_text(_ENV_HEAD + OWN_URL_ENV + _ENV_TAIL)
    server = server_for("postgresql")
    created = record_scratch_databases(monkeypatch)
    result = invoke(
        "migrate",
        "lint",
        "--url",
        postgres_url,
        "--config",
        str(ini),
        "--dev-url",
        server.url,
        env={"MYFY_TEST_OWN_URL": postgres_url},
    )
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "env.py migrates a different database" in result.stderr
    assert tables(postgres_url) == set()
    assert created, "the replay never started"
    for url in created:
        assert not scratch_exists(url)


def test_an_env_py_failing_online_is_named_as_env_py_not_a_revision(
    sqlite_url: str, tmp_path: Path
) -> None:
    ini = write_project(tmp_path, [ITEMS])
    env_py = tmp_path / "migrations" / "env.py"
    env_py.write_text(
        "from alembic import context\n"
        "if not context.is_offline_mode():\n"
        "    raise RuntimeError('env.py needs a setting this run does not have')\n"
        + env_py.read_text()
    )
    dev = f"sqlite+aiosqlite:///{tmp_path / 'dev.db'}"
    result = invoke(
        "migrate", "lint", "--offline", "--url", sqlite_url, "--config", str(ini),
        "--dev-url", dev,
    )  # fmt: skip
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "env.py itself fails" in result.stderr
    assert "the revision fails" not in result.stderr
