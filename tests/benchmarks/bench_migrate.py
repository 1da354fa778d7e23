"""``myfy-db migrate`` against ``alembic upgrade head``: a 100-revision chain, a fresh database.

Both run the same scaffolded project (the same ``env.py``, the same revisions) as whole
processes, alternating, each on a database of its own created before the clock starts:
SQLite (a new file) and PostgreSQL (a new database). myfy-db also takes the migration lock,
applies the production guard and records the environment; the ratio shows what that costs.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from common import BIN, Comparison

REVISIONS = 100
ROUNDS = 9
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


def write_chain(root: Path, count: int = REVISIONS) -> None:
    """A scaffolded project with a linear chain of ``count`` revisions."""
    from myfy_db.migrations.scaffold import init_project

    init_project(root / "migrations", root / "alembic.ini")
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


def _timed(argv: list[str], url: str, cwd: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))}
    env["MYFY_DATA_DATABASE_URL"] = url
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{argv} failed: {done.stderr.decode()[-800:]}")
    return elapsed


def compare(
    root: Path, fresh: Callable[[Path], AbstractContextManager[str]], rounds: int = ROUNDS
) -> tuple[float, float]:
    ours_argv = [str(BIN / "myfy-db"), "migrate"]
    alembic_argv = [str(BIN / "alembic"), "upgrade", "head"]
    ours: list[float] = []
    theirs: list[float] = []
    for i in range(rounds + 1):  # round 0 warms the caches (bytecode, page cache)
        order = [(ours_argv, ours), (alembic_argv, theirs)]
        if i % 2:
            order.reverse()
        for argv, times in order:
            with fresh(root) as url:
                elapsed = _timed(argv, url, root)
            if i:
                times.append(elapsed)
    return statistics.median(ours), statistics.median(theirs)


def run() -> list[Comparison]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_chain(root)
        for label, fresh in (("SQLite", fresh_sqlite), ("PostgreSQL", fresh_postgres)):
            ours, theirs = compare(root, fresh)
            results.append(
                Comparison(
                    f"myfy-db migrate, {REVISIONS} revisions, {label}",
                    ours,
                    theirs,
                    "alembic upgrade head",
                    target=1.0,
                )
            )
    return results
