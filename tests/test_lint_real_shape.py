"""`migrate lint` on a chain in the shape of the real ones (mlflow, optuna, prefect):

- a1 creates ``events``;
- a2 reads the database through ``op.get_bind()`` (a row count, an inspector), adds a column
  when missing, backfills it through the bind, and narrows a column in batch mode without
  ``existing_type``;
- a3 creates a dollar-quoted plpgsql function (PostgreSQL only);
- a4 indexes ``events`` (created in a1) without CONCURRENTLY;
- env.py calls ``fileConfig(config.config_file_name)`` unguarded, and the ini has the
  logging sections.

It is linted offline, with ``--dev-url`` (a scratch database, on each backend) and in pending
mode; the findings are asserted exactly, rule ids per revision.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from helpers import CANARY, free_port, invoke, server_for, with_password
from migrate_project import query, tables
from myfy_db.migrations.scaffold import init_project
from scratch_support import record_scratch_databases, scratch_exists

ENV = """\
from logging.config import fileConfig

from sqlalchemy import engine_from_config, pool

from alembic import context

config = context.config
fileConfig(config.config_file_name)
target_metadata = None


def run_migrations_offline():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=None,
                      literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connectable = config.attributes.get("connection", None)
    if connectable is None:
        connectable = engine_from_config(config.get_section(config.config_ini_section, {}),
                                         prefix="sqlalchemy.", poolclass=pool.NullPool)
        with connectable.connect() as connection:
            _run(connection)
    else:
        _run(connectable)


def _run(connection):
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"""

REVISION = '''\
"""{doc}"""
import sqlalchemy as sa
from alembic import op

revision = {rev!r}
down_revision = {down!r}
branch_labels = None
depends_on = None
{extra}

def upgrade():
{body}


def downgrade():
    pass
'''

FUNCTION = """
FUNCTION = '''CREATE FUNCTION touch_events() RETURNS trigger AS $$
BEGIN
    NEW.kind := lower(NEW.kind);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql'''
"""

CHAIN = [
    (
        "a1",
        "create events",
        "",
        """\
op.create_table(
    "events",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("payload", sa.Text),
)""",
    ),
    (
        "a2",
        "reads the database",
        "",
        """\
bind = op.get_bind()
existing = bind.execute(sa.text("SELECT count(*) FROM events")).scalar()
columns = {c["name"] for c in sa.inspect(bind).get_columns("events")}
if "note" not in columns:
    op.add_column("events", sa.Column("note", sa.String(100)))
bind.execute(sa.text("UPDATE events SET note = 'imported'"))
with op.batch_alter_table("events") as batch:
    batch.alter_column("kind", type_=sa.String(10))""",
    ),
    (
        "a3",
        "a dollar-quoted function",
        FUNCTION,
        """\
if op.get_context().dialect.name == "postgresql":
    op.execute(FUNCTION)""",
    ),
    (
        "a4",
        "index the table a1 created",
        "",
        'op.create_index("ix_events_kind", "events", ["kind"])',
    ),
]

#: Lines of the revisions above (as written by write_chain).
COUNT_LINE, UPDATE_LINE, ALTER_LINE, INDEX_LINE = 13, 17, 19, 12


def write_chain(root: Path) -> Path:
    """The chain in ``root``: the scaffold's alembic.ini (it has the logging sections),
    the unguarded-fileConfig env.py, revisions a1..a4."""
    ini = root / "alembic.ini"
    init_project(root / "migrations", ini)
    assert "[loggers]" in ini.read_text()
    assert "[handler_console]" in ini.read_text()
    (root / "migrations" / "env.py").write_text(ENV)
    down = None
    for revision, doc, extra, body in CHAIN:
        text = REVISION.format(
            doc=doc, rev=revision, down=down, extra=extra, body=textwrap.indent(body, "    ")
        )
        (root / "migrations" / "versions" / f"{revision}.py").write_text(text)
        down = revision
    return ini


def dev_url_for(backend: str, tmp_path: Path) -> str:
    """A dev URL on the backend's server that is not the test's database."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'dev.db'}"
    return server_for(backend).url


def by_revision(report: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for finding in report["findings"]:
        found.setdefault(finding["revision"], []).append(finding["rule"])
    return found


def lint(ini: Path, url: str, *args: str) -> tuple[int, dict[str, Any], str]:
    result = invoke(
        "migrate", "lint", "--url", url, "--config", str(ini), "--json", "--fail-on", "never", *args
    )
    assert result.exit_code == 0, result.stderr
    return result.exit_code, json.loads(result.stdout), result.stderr


#: What --dev-url finds on each backend. a2's backfill through the bind is DB005; its
#: narrowing (no existing_type: VARCHAR(20) read from the scratch database) rewrites the
#: table on PostgreSQL (PG006) and copies it on MariaDB (MY001); SQLite's batch mode is its
#: safe form. a4 builds a blocking index on PostgreSQL. a3's function is one statement that
#: pglast reads: nothing to report.
DEV_FINDINGS = {
    "postgresql": {"a2": ["DB005", "PG006"], "a4": ["PG001"]},
    "mysql": {"a2": ["DB005", "MY001"]},
    "sqlite": {"a2": ["DB005"]},
}
#: Offline, a2 stops at its row count: DB006 names the file, the line and the call.
OFFLINE_FINDINGS = {
    "postgresql": {"a2": ["DB006"], "a4": ["PG001"]},
    "mysql": {"a2": ["DB006"]},
    "sqlite": {"a2": ["DB006"]},
}


def test_offline_lints_every_revision_and_reports_the_one_that_reads(
    db_url: str, tmp_path: Path
) -> None:
    ini = write_chain(tmp_path)
    backend = make_url(db_url).get_backend_name().replace("mariadb", "mysql")
    _, report, _ = lint(ini, db_url, "--offline")
    assert report["revisions"] == ["a1", "a2", "a3", "a4"]
    assert by_revision(report) == OFFLINE_FINDINGS[backend]
    (db006,) = [f for f in report["findings"] if f["rule"] == "DB006"]
    assert db006["file"] == "migrations/versions/a2.py"
    assert db006["line"] == COUNT_LINE
    assert "SELECT count(*) FROM events" in db006["detail"]
    if backend == "postgresql":
        (pg001,) = [f for f in report["findings"] if f["rule"] == "PG001"]
        assert (pg001["file"], pg001["line"]) == ("migrations/versions/a4.py", INDEX_LINE)


def test_dev_url_judges_every_revision_on_a_scratch_database_and_drops_it(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ini = write_chain(tmp_path)
    backend = make_url(db_url).get_backend_name().replace("mariadb", "mysql")
    made = record_scratch_databases(monkeypatch)
    _, report, _ = lint(ini, db_url, "--offline", "--dev-url", dev_url_for(backend, tmp_path))
    assert report["revisions"] == ["a1", "a2", "a3", "a4"]
    assert by_revision(report) == DEV_FINDINGS[backend]
    assert not [f for f in report["findings"] if f["rule"] in ("DB006", "DB001")]
    lines = {(f["rule"], f["file"], f["line"]) for f in report["findings"]}
    assert ("DB005", "migrations/versions/a2.py", UPDATE_LINE) in lines
    if backend != "sqlite":
        type_rule = "PG006" if backend == "postgresql" else "MY001"
        (narrowing,) = [f for f in report["findings"] if f["rule"] == type_rule]
        assert narrowing["line"] == ALTER_LINE
        assert "VARCHAR(20) to VARCHAR(10)" in narrowing["detail"]
    assert "scratch" in report["scope"]
    assert len(made) == 1
    assert not scratch_exists(made[0])
    # The target was never touched: offline, with its tables as they were (none).
    assert tables(db_url) == set()


def test_pending_mode_reads_the_target_and_replays_from_its_revision(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ini = write_chain(tmp_path)
    backend = make_url(db_url).get_backend_name().replace("mariadb", "mysql")
    applied = invoke("migrate", "up", "a1", "--url", db_url, "--config", str(ini))
    assert applied.exit_code == 0, applied.stderr

    # Without --dev-url: the pending revisions, captured offline.
    _, report, _ = lint(ini, db_url)
    assert report["scope"] == "pending revisions"
    assert report["revisions"] == ["a2", "a3", "a4"]
    assert by_revision(report) == OFFLINE_FINDINGS[backend]

    made = record_scratch_databases(monkeypatch)
    _, report, _ = lint(ini, db_url, "--dev-url", dev_url_for(backend, tmp_path))
    assert report["revisions"] == ["a2", "a3", "a4"]
    assert report["scope"].startswith("pending revisions; replayed on a scratch")
    assert by_revision(report) == DEV_FINDINGS[backend]
    assert len(made) == 1
    assert not scratch_exists(made[0])
    # The target is still at a1: lint only read it.
    assert query(db_url, "SELECT version_num FROM alembic_version") == [("a1",)]


@pytest.mark.parametrize(
    "spelling",
    [lambda url: url, lambda url: url.replace("127.0.0.1", "localhost")],
    ids=["same", "localhost"],
)
def test_dev_url_naming_the_target_is_refused_before_anything_runs(
    server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: Any
) -> None:
    ini = write_chain(tmp_path)
    made = record_scratch_databases(monkeypatch)
    result = invoke(
        "migrate",
        "lint",
        "--url",
        server_url,
        "--config",
        str(ini),
        "--dev-url",
        spelling(server_url),
    )
    assert result.exit_code == 2, result.stderr
    assert "--dev-url names the database itself" in result.stderr
    assert made == []


def test_sqlite_dev_url_naming_the_target_file_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    ini = write_chain(tmp_path)
    result = invoke(
        "migrate",
        "lint",
        "--url",
        sqlite_url,
        "--config",
        str(ini),
        "--offline",
        "--dev-url",
        "sqlite+aiosqlite:///./test.db",
    )
    assert result.exit_code == 2, result.stderr
    assert "--dev-url names the database itself" in result.stderr


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_unreachable_dev_url_is_exit_4_and_never_shows_the_password(
    backend: str, tmp_path: Path
) -> None:
    ini = write_chain(tmp_path)
    scheme = "postgresql+asyncpg" if backend == "postgresql" else "mysql+aiomysql"
    dev = f"{scheme}://u:{CANARY}@127.0.0.1:{free_port()}/dev"
    target = f"{scheme}://u:{CANARY}@127.0.0.1:{free_port()}/app"
    result = invoke(
        "migrate", "lint", "--url", target, "--config", str(ini), "--offline", "--dev-url", dev
    )
    assert result.exit_code == 4, result.stderr
    assert "127.0.0.1" in result.stderr
    assert CANARY not in result.stdout + result.stderr


def test_the_canary_password_never_shows_in_a_dev_url_run(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server trusts local connections, so the canary password is sent and accepted;
    it must appear nowhere: report, scope, the env.py's logging, the finding details."""
    ini = write_chain(tmp_path)
    target = with_password(postgres_url)
    dev = with_password(server_for("postgresql").url)
    made = record_scratch_databases(monkeypatch)
    for args in ((), ("--json",)):
        result = invoke(
            "migrate",
            "lint",
            "--url",
            target,
            "--config",
            str(ini),
            "--dev-url",
            dev,
            "--fail-on",
            "never",
            *args,
        )
        assert result.exit_code == 0, result.stderr
        assert CANARY not in result.stdout + result.stderr
        assert "PG006" in result.stdout
    assert len(made) == 2
    assert all(url.sqlalchemy_url.password == CANARY for url in made)
    assert not any(scratch_exists(url) for url in made)


def test_dev_url_of_another_dialect_is_refused(postgres_url: str, tmp_path: Path) -> None:
    ini = write_chain(tmp_path)
    result = invoke(
        "migrate",
        "lint",
        "--url",
        postgres_url,
        "--config",
        str(ini),
        "--offline",
        "--dev-url",
        "sqlite+aiosqlite://",
    )
    assert result.exit_code == 2, result.stderr
    assert "dialect" in result.stderr
