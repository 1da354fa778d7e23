"""``myfy-db migrate`` against ``alembic upgrade head``: 10 and 100 revisions, a fresh database.

Both run the same project as whole processes, alternating, each on a database of its own
created before the clock starts: SQLite (a new file) and PostgreSQL (a new database). The
project's ``env.py`` is Alembic's generic (sync) template, as an existing Alembic project has
it, with the same revisions: plain Alembic reads the URL (a sync driver: sqlite, psycopg2)
from its ini; myfy-db reads ``MYFY_DATA_DATABASE_URL`` (the async driver) and drives the same
``env.py``, also taking the migration lock, applying the production guard and recording the
environment. The ratio shows what all that costs; 10 revisions is where start-up dominates.
Before each timed run the installed modules are read into the page cache, for both sides
alike (``common.warm_page_cache``), so that neither pays a disk read the other did not.

Beside the 10-revision runs it also times ``migrate_floor.py``: a process that only imports
the stack ``migrate`` must load (Typer, pydantic-settings, SQLAlchemy's asyncio extension,
Alembic, the drivers) and does nothing. No ``migrate`` on that stack can take less; the
lines "floor" and "above the floor" show how much of the ratio that stack accounts for.

The PostgreSQL reference needs a sync driver for plain Alembic: ``pip install psycopg2-binary``
(with it installed, myfy-db also hands the generic env.py psycopg2, as Alembic does).
Without it the PostgreSQL comparisons are skipped, with a line saying so.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from common import BIN, Comparison, sized, skip, warm_page_cache, warm_ups

CHAINS = sized((10, 100), (2, 5))
ROUNDS = sized(9, 1)
FLOOR = Path(__file__).resolve().parent / "migrate_floor.py"
POSTGRES_URL = os.environ.get(
    "MYFY_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)

REVISION = '''"""step {n}"""
import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("t{n:03d}", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("name", sa.String(40)))


def downgrade():
    op.drop_table("t{n:03d}")
'''


GENERIC_ENV = """from logging.config import fileConfig

from sqlalchemy import engine_from_config
from sqlalchemy import pool

from alembic import context

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)
target_metadata = None


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"""

LOGGING = """
[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console
qualname =

[logger_sqlalchemy]
level = WARNING
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
"""


def write_chain(root: Path, count: int) -> None:
    """An Alembic project (generic template env.py) with a linear chain of ``count`` revisions.

    ``alembic.ini`` (for myfy-db) holds no URL; ``alembic_ref.ini`` (for plain Alembic) gets
    the sync URL of each round's database.
    """
    from myfy_db.migrations.scaffold import init_project

    init_project(root / "migrations", root / "alembic.ini")
    (root / "migrations" / "env.py").write_text(GENERIC_ENV)
    (root / "alembic.ini").write_text(
        f"[alembic]\nscript_location = {root / 'migrations'}\npath_separator = os\n{LOGGING}"
    )
    down = None
    for n in range(1, count + 1):
        rev = f"{n:04d}"
        text = REVISION.format(n=n, rev=rev, down=down)
        (root / "migrations" / "versions" / f"{rev}_step.py").write_text(text)
        down = rev


def _pg_admin(sql: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(POSTGRES_URL)

    async def go() -> None:
        conn = await asyncpg.connect(
            host=u.host,
            port=u.port or 5432,
            user=u.username,
            password=u.password,
            database=u.database,
        )
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


@contextmanager
def fresh_sqlite(root: Path) -> Iterator[str]:
    path = root / f"bench_{uuid.uuid4().hex[:8]}.db"
    try:
        yield f"sqlite+aiosqlite:///{path}"
    finally:
        for leftover in root.glob(f"{path.name}*"):
            leftover.unlink()


@contextmanager
def fresh_postgres(root: Path) -> Iterator[str]:
    from sqlalchemy.engine import make_url

    name = f"myfy_bench_{uuid.uuid4().hex[:8]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _sync_url(url: str) -> str:
    return url.replace("sqlite+aiosqlite", "sqlite").replace(
        "postgresql+asyncpg", "postgresql+psycopg2"
    )


def _timed(argv: list[str], url: str, cwd: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))}
    env["MYFY_DATA_DATABASE_URL"] = url
    if "alembic_ref.ini" in argv:  # plain Alembic: the sync URL in its ini
        ini = (cwd / "alembic.ini").read_text()
        sync = _sync_url(url).replace("%", "%%")
        (cwd / "alembic_ref.ini").write_text(
            ini.replace("[alembic]\n", f"[alembic]\nsqlalchemy.url = {sync}\n", 1)
        )
    warm_page_cache()
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{argv} failed: {done.stderr.decode()[-800:]}")
    return elapsed


def compare(
    root: Path,
    fresh: Callable[[Path], AbstractContextManager[str]],
    rounds: int = ROUNDS,
    floor_argv: list[str] | None = None,
) -> tuple[float, float, float | None]:
    """Medians of ours, plain Alembic and (given ``floor_argv``) the floor process, alternated."""
    ours_argv = [str(BIN / "myfy-db"), "migrate"]
    alembic_argv = [str(BIN / "alembic"), "-c", "alembic_ref.ini", "upgrade", "head"]
    runs: list[tuple[list[str], list[float]]] = [(ours_argv, []), (alembic_argv, [])]
    if floor_argv is not None:
        runs.append((floor_argv, []))
    skipped = warm_ups()  # round 0 warms the caches (bytecode, page cache); none in quick mode
    for i in range(skipped + rounds):
        order = runs if i % 2 == 0 else runs[::-1]
        for argv, times in order:
            with fresh(root) as url:
                elapsed = _timed(argv, url, root)
            if i >= skipped:
                times.append(elapsed)
    ours, theirs = (statistics.median(times) for _, times in runs[:2])
    floor = statistics.median(runs[2][1]) if floor_argv is not None else None
    return ours, theirs, floor


def _backends() -> list[tuple[str, Callable[[Path], AbstractContextManager[str]]]]:
    backends: list[tuple[str, Callable[[Path], AbstractContextManager[str]]]] = [
        ("SQLite", fresh_sqlite)
    ]
    if importlib.util.find_spec("psycopg2") is None:
        skip(
            "migrate on PostgreSQL",
            "plain Alembic's reference needs a sync driver: pip install psycopg2-binary",
        )
    else:
        backends.append(("PostgreSQL", fresh_postgres))
    return backends


def run() -> list[Comparison]:
    results = []
    backends = _backends()
    for count in CHAINS:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_chain(root, count)
            for label, fresh in backends:
                backend = "postgresql" if fresh is fresh_postgres else "sqlite"
                # The floor is measured where start-up dominates, beside the 10-revision runs.
                floor_argv = [sys.executable, str(FLOOR), backend] if count == CHAINS[0] else None
                ours, theirs, floor = compare(root, fresh, floor_argv=floor_argv)
                results.append(
                    Comparison(
                        f"myfy-db migrate, {count} revisions, {label}",
                        ours,
                        theirs,
                        "alembic upgrade head",
                        target=1.0,
                    )
                )
                if floor is not None:
                    reference = f"alembic upgrade head, {count} revisions"
                    results.append(
                        Comparison(f"  floor (migrate_floor.py), {label}", floor, theirs, reference)
                    )
                    results.append(
                        Comparison(
                            f"  myfy-db migrate above the floor, {label}",
                            ours,
                            floor,
                            "the floor",
                        )
                    )
    return results
