"""``myfy-db diff``'s promises beyond the comparison itself: it only reads, it never shows a
password, each failure has its exit code, the models and the project are sides and targets
too."""

from __future__ import annotations

import asyncio
import json
import signal
import textwrap
import time
from pathlib import Path

import pytest

from diff_support import diff_json, execute, kinds, sql_of, statements_of, two_databases
from helpers import CANARY, Running, free_port, invoke, server_for, with_password
from migrate_project import query, write_project
from myfy_db.diff.kinds import KINDS

PG_PAIR_FROM = [
    "CREATE TABLE keep (id int PRIMARY KEY, name varchar(20), ref int)",
    "CREATE TABLE other_t (id int PRIMARY KEY)",
    "ALTER TABLE keep ADD CONSTRAINT keep_ref_fk FOREIGN KEY (ref) REFERENCES other_t (id)",
    "ALTER TABLE keep ADD CONSTRAINT keep_name_check CHECK (name <> '')",
    "CREATE INDEX keep_name_idx ON keep (name)",
]
PG_PAIR_TO = [
    "CREATE TABLE keep (id int PRIMARY KEY, name varchar(80), ref int, gone int)",
    "CREATE TABLE other_t (id int PRIMARY KEY)",
    "CREATE TABLE dropped (id int)",
]


@pytest.fixture
def pg_pair(tmp_path: Path) -> tuple[str, str]:
    with two_databases("postgresql", tmp_path) as (from_url, to_url):
        execute(from_url, PG_PAIR_FROM)
        execute(to_url, PG_PAIR_TO)
        yield from_url, to_url


def test_json_is_the_only_stdout_and_every_kind_is_documented(pg_pair: tuple[str, str]) -> None:
    result = invoke("diff", *pg_pair, "--json")
    document = json.loads(result.stdout)  # nothing else on stdout
    assert result.exit_code == 5
    assert set(kinds(document)) <= set(KINDS)
    assert kinds(document) == sorted(
        [
            "check_missing",
            "column_extra",
            "column_type",
            "foreign_key_missing",
            "index_missing",
            "table_extra",
        ]
    )
    by_kind = {d["kind"]: d for d in document["differences"]}
    assert by_kind["column_type"] == {
        "kind": "column_type",
        "table": "keep",
        "name": "name",
        "from": "VARCHAR(20)",
        "to": "VARCHAR(80)",
    }
    assert document["counts"]["table_extra"] == 1


def test_the_report_is_grouped_by_table_a_line_per_difference(pg_pair: tuple[str, str]) -> None:
    result = invoke("diff", *pg_pair)
    assert result.exit_code == 5
    lines = result.stdout.splitlines()
    keep = lines.index("table keep")
    assert "  column_type name: FROM VARCHAR(20) | TO VARCHAR(80)" in lines[keep:]
    assert "  column_extra gone: FROM (none) | TO INTEGER" in lines[keep:]
    assert "table dropped" in lines
    assert "6 difference(s) in 2 table(s)" in lines


def test_sql_marks_destructive_steps_and_uses_the_non_blocking_forms(
    pg_pair: tuple[str, str],
) -> None:
    code, script = sql_of(*pg_pair)
    assert code == 5
    lines = script.splitlines()
    for statement, reason in [
        ("DROP TABLE dropped;", "-- destructive: drops table dropped"),
        ("ALTER TABLE keep DROP COLUMN gone;", "-- destructive: drops column keep.gone"),
    ]:
        at = lines.index(statement)
        assert lines[at - 2] == reason, script
    narrowing = next(i for i, line in enumerate(lines) if "TYPE VARCHAR(20)" in line)
    assert lines[narrowing - 2].startswith("-- destructive: changes the type of keep.name")
    assert "CREATE INDEX CONCURRENTLY keep_name_idx ON keep (name);" in lines
    assert any(line.endswith("NOT VALID;") and "keep_ref_fk" in line for line in lines)
    assert "ALTER TABLE keep VALIDATE CONSTRAINT keep_ref_fk;" in lines
    assert "ALTER TABLE keep VALIDATE CONSTRAINT keep_name_check;" in lines
    execute(pg_pair[1], statements_of(script))
    assert diff_json(*pg_pair)[:2] == (0, diff_json(*pg_pair)[1])
    assert diff_json(*pg_pair)[1]["differences"] == []


def _catalog(url: str) -> list[tuple[object, ...]]:
    return query(
        url,
        "SELECT c.relname, c.relkind, n.nspname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 3",
    )


def test_postgresql_sides_are_only_read(pg_pair: tuple[str, str]) -> None:
    before = [_catalog(url) for url in pg_pair]
    for flags in ([], ["--json"], ["--sql"]):
        assert invoke("diff", *pg_pair, *flags).exit_code == 5
    assert [_catalog(url) for url in pg_pair] == before


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mysql"])
def test_each_side_is_read_in_a_read_only_transaction(tmp_path: Path, backend: str) -> None:
    """The connection diff reads with refuses a write: the server (or SQLite's read-only
    file) is the boundary, and nothing is created."""
    from myfy_db import DatabaseSettings
    from myfy_db.diff.sides import read_database
    from myfy_db.errors import MyfyDbError
    from myfy_db.urls import DatabaseUrl

    with two_databases(backend, tmp_path) as (url, _):
        execute(url, ["CREATE TABLE present (id int)"])
        settings = DatabaseSettings(database_url=url)

        def write(connection: object) -> None:
            connection.exec_driver_sql("CREATE TABLE intruder (id int)")  # type: ignore[attr-defined]

        with pytest.raises(MyfyDbError):
            asyncio.run(read_database(settings, DatabaseUrl.parse(url), write))

        def insert(connection: object) -> None:
            connection.exec_driver_sql("INSERT INTO present VALUES (1)")  # type: ignore[attr-defined]

        with pytest.raises(MyfyDbError):
            asyncio.run(read_database(settings, DatabaseUrl.parse(url), insert))
        names = {r[0] for r in query(url, _TABLES[backend])}
        assert "intruder" not in names
        assert query(url, "SELECT count(*) FROM present") == [(0,)]


_TABLES = {
    "sqlite": "SELECT name FROM sqlite_master",
    "postgresql": "SELECT tablename FROM pg_tables",
    "mysql": "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()",
}


def test_a_missing_sqlite_file_is_exit_4_and_is_not_created(tmp_path: Path) -> None:
    (tmp_path / "there.db").touch()
    missing = tmp_path / "missing.db"
    for args in (
        (f"sqlite+aiosqlite:///{missing}", f"sqlite+aiosqlite:///{tmp_path / 'there.db'}"),
        (f"sqlite+aiosqlite:///{tmp_path / 'there.db'}", f"sqlite+aiosqlite:///{missing}"),
    ):
        result = invoke("diff", *args)
        assert result.exit_code == 4, result.stderr
        assert "no such database file" in result.stderr
        assert not missing.exists()


@pytest.mark.parametrize("closed_side", ["FROM", "TO"])
def test_an_unreachable_side_is_exit_4_with_one_line(postgres_url: str, closed_side: str) -> None:
    closed = f"postgresql+asyncpg://postgres:{CANARY}@127.0.0.1:{free_port()}/nothing"
    args = (closed, postgres_url) if closed_side == "FROM" else (postgres_url, closed)
    result = invoke("diff", *args)
    assert result.exit_code == 4
    assert "Traceback" not in result.stderr
    assert CANARY not in result.stdout + result.stderr
    assert result.stderr.count("Error:") == 1


def test_a_canary_password_never_shows(tmp_path: Path) -> None:
    with two_databases("postgresql", tmp_path) as (from_url, to_url):
        execute(from_url, PG_PAIR_FROM)
        execute(to_url, PG_PAIR_TO)
        secret_from, secret_to = with_password(from_url), with_password(to_url)
        outputs = []
        for flags in ([], ["--json"], ["--sql"], ["--sql", "--json"], ["--schema", "x y"]):
            result = invoke("diff", secret_from, secret_to, *flags)
            assert result.exit_code in (5, 2)
            outputs.append(result.stdout + result.stderr)
        assert all(CANARY not in text for text in outputs)
        assert "***" in outputs[0]  # the URLs are there, masked
    mysql = server_for("mysql")
    mysql.require()
    wrong = with_password(mysql.url_for("test"))  # a wrong password: refused, exit 4
    result = invoke("diff", wrong, secret_to, "--json")
    assert result.exit_code == 4
    assert CANARY not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["not a side!", "models"], "neither a database URL"),
        (["models", "models"], "both `models`"),
        (["postgresql://u@h/db", "models"], "postgresql+asyncpg"),
        (["sqlite+aiosqlite:///same.db", "sqlite+aiosqlite:///./same.db"], "the same database"),
        (["models", "sqlite+aiosqlite:///x.db", "--revision"], "--revision needs -m"),
        (["models", "sqlite+aiosqlite:///x.db", "-m", "msg"], "-m is for --revision"),
        (["sqlite+aiosqlite:///x.db", "models", "--sql"], "TO is models, not a database"),
        (["sqlite+aiosqlite:///x.db", "models"], "no metadata is configured"),
        (["head", "sqlite+aiosqlite:///x.db"], "pass --dev-url URL"),
        (["models", "head", "--sql"], "TO is revision head, not a database"),
    ],
)
def test_bad_input_is_exit_2_with_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    (tmp_path / "same.db").touch()
    (tmp_path / "x.db").touch()
    result = invoke("diff", *args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert says in result.stderr
    assert "Traceback" not in result.stderr


MODELS = """
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(120), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(50), server_default="anon")
    score: Mapped[int] = mapped_column(
        sa.Integer, sa.CheckConstraint("score >= 0", name="users_score_check")
    )
    __table_args__ = (sa.Index("users_name_idx", "name"),)


class Post(Base):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(sa.Text)
{extra}
"""


def _models(tmp_path: Path, name: str, extra: str = "") -> str:
    (tmp_path / f"{name}.py").write_text(MODELS.format(extra=textwrap.indent(extra, "    ")))
    return f"{name}:Base"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_models_are_a_side(tmp_path: Path, backend: str) -> None:
    with two_databases(backend, tmp_path) as (url, _):
        spec = _models(tmp_path, "models_v1")
        assert invoke("create-tables", "--url", url, "--metadata", spec).exit_code == 0
        code, document, stderr = diff_json("models", url, "--metadata", spec)
        assert (code, document["differences"]) == (0, []), stderr
        assert document["from"] == f"models {spec}"
        newer = _models(
            tmp_path,
            "models_v2",
            'title: Mapped[str] = mapped_column(sa.String(200), server_default="t", index=True)',
        )
        code, document, _ = diff_json("models", url, "--metadata", newer)
        assert (code, kinds(document)) == (5, ["column_missing", "index_missing"])
        code, document, _ = diff_json(url, "models", "--metadata", newer)
        assert (code, kinds(document)) == (5, ["column_extra", "index_extra"])
        if backend == "postgresql":
            code, script = sql_of("models", url, "--metadata", newer)
            execute(url, statements_of(script))
            assert diff_json("models", url, "--metadata", newer)[0] == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_revision_writes_what_migrate_then_applies(tmp_path: Path, backend: str) -> None:
    project = write_project(tmp_path)
    with two_databases(backend, tmp_path) as (from_url, to_url):
        for url in (from_url, to_url):
            assert invoke("migrate", "--url", url).exit_code == 0
        execute(
            from_url,
            [
                "CREATE TABLE extra_t (id INTEGER PRIMARY KEY, v TEXT)",
                "CREATE INDEX extra_v ON extra_t (v)",
                "ALTER TABLE items ADD COLUMN qty INTEGER DEFAULT 1",
            ],
        )
        result = invoke(
            "diff",
            from_url,
            to_url,
            "--revision",
            "-m",
            "catch up",
            "--config",
            str(project),
            "--json",
        )
        assert result.exit_code == 0, result.stderr
        written = json.loads(result.stdout)
        path = Path(written["path"])
        assert path.is_file()
        assert "op.create_table('extra_t'" in path.read_text()
        assert written["differences"] == 2  # the index is part of its new table
        assert invoke("migrate", "--url", to_url, "--config", str(project)).exit_code == 0
        code, document, _ = diff_json(from_url, to_url)
        assert (code, document["differences"]) == (0, [])
        again = invoke(
            "diff", from_url, to_url, "--revision", "-m", "none", "--config", str(project)
        )
        assert again.exit_code == 0
        assert "no differences: no revision written" in again.stdout
        assert len(list(path.parent.glob("*.py"))) == 4


def test_schema_adds_a_schema_to_compare(tmp_path: Path) -> None:
    with two_databases("postgresql", tmp_path) as (from_url, to_url):
        execute(from_url, ["CREATE SCHEMA other", "CREATE TABLE other.t (id int PRIMARY KEY)"])
        execute(to_url, ["CREATE SCHEMA other"])
        assert diff_json(from_url, to_url)[0] == 0
        code, document, _ = diff_json(from_url, to_url, "--schema", "other")
        assert code == 5
        assert [(d["kind"], d["table"]) for d in document["differences"]] == [
            ("table_missing", "other.t")
        ]
        code, script = sql_of(from_url, to_url, "--schema", "other")
        assert "CREATE TABLE other.t" in script
        execute(to_url, statements_of(script))
        assert diff_json(from_url, to_url, "--schema", "other")[0] == 0


@pytest.mark.parametrize("dev_backend", ["sqlite", "postgresql"])
def test_a_revision_side_is_the_chain_replayed_on_a_scratch_database(
    tmp_path: Path, dev_backend: str
) -> None:
    project = write_project(tmp_path)
    with two_databases(dev_backend, tmp_path) as (url, dev):
        if dev_backend == "sqlite":
            dev = f"sqlite+aiosqlite:///{tmp_path / 'dev.db'}"
        assert invoke("migrate", "--url", url, "--config", str(project)).exit_code == 0
        before = _catalog(url) if dev_backend == "postgresql" else None
        flags = ("--dev-url", dev, "--config", str(project))
        code, document, stderr = diff_json("head", url, *flags)
        assert (code, document["differences"]) == (0, []), stderr
        assert document["from"] == "revision head"
        code, document, _ = diff_json("r1", url, *flags)
        assert code == 5
        assert kinds(document) == ["column_extra", "table_extra"]  # r2 and r3's changes
        code, document, _ = diff_json("r1", "head", *flags)
        assert (code, kinds(document)) == (5, ["column_extra", "table_extra"])
        assert document["to"] == "revision head"
        if before is not None:
            assert _catalog(url) == before  # the real database is only read
        refused = invoke("diff", "head", url, "--dev-url", url, "--config", str(project))
        assert refused.exit_code == 2, refused.stderr
        closed = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/dev"
        unreachable = invoke("diff", "head", url, "--dev-url", closed, "--config", str(project))
        assert unreachable.exit_code == 4, unreachable.stderr


def test_the_readme_documents_every_kind() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Comparing schemas: `diff`", 1)[1].split("\n## ", 1)[0]
    for kind, meaning in KINDS.items():
        assert f"| `{kind}` | {meaning} |" in section


@pytest.mark.parametrize("to_backend", ["sqlite", "mysql"])
def test_across_dialects_what_to_cannot_say_is_a_manual_line(
    tmp_path: Path, postgres_url: str, to_backend: str
) -> None:
    execute(
        postgres_url,
        [
            "CREATE TYPE mood AS ENUM ('a', 'b')",
            "CREATE TABLE t (id serial PRIMARY KEY, m mood, j jsonb, n varchar(20))",
            "CREATE TABLE plain (id int PRIMARY KEY, n varchar(20) NOT NULL)",
        ],
    )
    with two_databases(to_backend, tmp_path) as (to_url, _):
        code, document, _ = diff_json(postgres_url, to_url)
        assert (code, kinds(document)) == (5, ["enum_missing", "table_missing", "table_missing"])
        code, script = sql_of(postgres_url, to_url)
        assert code == 5
        assert f"-- manual: enum mood: {to_backend} has no enum types" in script
        if to_backend == "mysql":  # SQLite takes any type name, JSONB included
            assert "-- manual: CreateTable on t: mysql cannot say it:" in script
        assert "object at 0x" not in script
        plain = [s for s in statements_of(script) if "plain" in s]
        execute(to_url, plain)
        code, document, _ = diff_json(postgres_url, to_url)
        assert [d["table"] for d in document["differences"] if d["table"]] == ["t"]


@pytest.mark.wall_clock
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_one_signal_ends_a_diff_held_by_a_hung_server(
    postgres_url: str, silent_port: int, tmp_path: Path, sig: signal.Signals
) -> None:
    hung = f"postgresql+asyncpg://postgres:{CANARY}@127.0.0.1:{silent_port}/db"
    run = Running("diff", postgres_url, hung, env={}, cwd=tmp_path)
    time.sleep(1.5)  # connecting to the hung server, which never answers
    assert run.process.poll() is None, run.err
    elapsed = run.stop(sig)
    run.assert_interrupted(elapsed, sig)
    assert CANARY not in run.err + "".join(run.out)


def test_myfy_db_and_alembic_bookkeeping_tables_are_no_difference(tmp_path: Path) -> None:
    """The version table, the environment record and migrate --safe's record of a half-done
    revision are myfy-db's and Alembic's, not the application's schema."""
    import sqlite3

    plain, kept = tmp_path / "plain.db", tmp_path / "kept.db"
    for path in (plain, kept):
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY)")
    with sqlite3.connect(kept) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        db.execute("CREATE TABLE myfy_db_meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("CREATE TABLE myfy_db_safe_progress (revision TEXT PRIMARY KEY, done INT)")
    result = invoke("diff", f"sqlite+aiosqlite:///{plain}", f"sqlite+aiosqlite:///{kept}")
    assert result.exit_code == 0, result.stdout + result.stderr
