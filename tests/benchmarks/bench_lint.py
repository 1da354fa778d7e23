"""``myfy-db migrate lint --offline`` against ``alembic upgrade --sql`` over the same 60 revisions.

Lint runs the chain offline exactly as ``alembic upgrade --sql`` does (the project's own
env.py, each revision's ``upgrade()``), and on top of that captures every operation, parses
its raw SQL with PostgreSQL's own parser and judges it with every rule. The ratio shows what
the judging costs over rendering the SQL alone; the target is that it costs nothing that
shows (at most 1.0x). Both run as whole processes, alternating, with no database: the
chain is rendered for PostgreSQL.
"""

from __future__ import annotations

import resource
import subprocess
import tempfile
from pathlib import Path

from common import BIN, Comparison, interleaved, median_process_time, sized

REVISIONS = sized(60, 6)
URL = "postgresql+asyncpg://lint@127.0.0.1:1/nowhere"

REVISION = '''"""step {n}"""
import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
{body}


def downgrade():
    pass
'''

ENV = """from alembic import context

config = context.config
context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
with context.begin_transaction():
    context.run_migrations()
"""


def _body(n: int) -> str:
    """A mix of what real chains do: tables, columns, indexes, raw SQL, a data fix."""
    table = f"t{n // 4 * 4:03d}"
    shapes = [
        f'    op.create_table("{table}", sa.Column("id", sa.Integer, primary_key=True),\n'
        '                    sa.Column("name", sa.String(40)))',
        f'    op.add_column("{table}", sa.Column("c{n}", sa.Integer))',
        f'    op.create_index("ix_{table}_{n}", "{table}", ["name"])',
        f"    op.execute(\"UPDATE {table} SET name = 'x' WHERE id < 10\")",
    ]
    return shapes[n % 4]


def _project(root: Path) -> Path:
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True)
    (root / "migrations" / "env.py").write_text(ENV)
    (root / "migrations" / "script.py.mako").write_text("")
    down = None
    for n in range(REVISIONS):
        rev = f"r{n:03d}"
        text = REVISION.format(n=n, rev=rev, down=down, body=_body(n))
        (versions / f"{rev}.py").write_text(text)
        down = rev
    ini = root / "alembic.ini"
    ini.write_text(
        "[alembic]\nscript_location = migrations\n"
        "sqlalchemy.url = postgresql://lint@127.0.0.1:1/nowhere\n"
    )
    return ini


def run() -> list[Comparison]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ini = _project(root)
        ours = [
            str(BIN / "myfy-db"),
            "migrate",
            "lint",
            "--offline",
            "--fail-on",
            "never",
            "--config",
            str(ini),
            "--url",
            URL,
            "base:head",
        ]
        reference = [str(BIN / "alembic"), "-c", str(ini), "upgrade", "--sql", "base:head"]
        lint, alembic = interleaved(
            lambda: median_process_time(ours, runs=3, cwd=tmp),
            lambda: median_process_time(reference, runs=3, cwd=tmp),
            rounds=3,
        )
        lint_cpu, alembic_cpu = interleaved(
            lambda: _cpu_time(ours, tmp), lambda: _cpu_time(reference, tmp), rounds=7
        )
    return [
        Comparison(
            f"migrate lint --offline, {REVISIONS} revisions (PostgreSQL)",
            lint,
            alembic,
            "alembic upgrade --sql",
            target=1.0,
        ),
        # CPU time is what the two processes cost; wall time on a shared machine also
        # carries whatever else runs beside them.
        Comparison(
            f"migrate lint --offline, {REVISIONS} revisions (PostgreSQL), CPU user+sys",
            lint_cpu,
            alembic_cpu,
            "alembic upgrade --sql",
            unit="s CPU",
            target=1.0,
        ),
    ]


def _cpu_time(argv: list[str], cwd: str) -> float:
    """User + system CPU seconds of one run of ``argv`` as a process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, cwd=cwd, capture_output=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 5):
        raise RuntimeError(f"{argv[:3]} failed: {done.stderr.decode()[-500:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
