"""A small Alembic project written into a test's directory, and ways to look at its database.

Revisions r1..r3 build a schema and each inserts its own id into ``runs``, so counting the
rows of ``runs`` proves how many times each revision ran.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text

from myfy_db import DatabaseSettings, open_engine
from myfy_db.migrations.scaffold import init_project

REVISION = '''\
"""{message}"""

import sqlalchemy as sa
from alembic import op

revision = {revision!r}
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
{upgrade}


def downgrade():
{downgrade}
'''


def _record(revision: str) -> str:
    return f"op.execute(\"INSERT INTO runs (rev) VALUES ('{revision}')\")"


def _forget(revision: str) -> str:
    return f"op.execute(\"DELETE FROM runs WHERE rev = '{revision}'\")"


STANDARD: list[tuple[str, str, str, str]] = [
    (
        "r1",
        "create items and runs",
        "\n".join(
            [
                'op.create_table("runs", sa.Column("rev", sa.String(32), nullable=False))',
                'op.create_table("items", sa.Column("id", sa.Integer, primary_key=True),'
                ' sa.Column("name", sa.String(50), nullable=False))',
                _record("r1"),
            ]
        ),
        'op.drop_table("items")\nop.drop_table("runs")',
    ),
    (
        "r2",
        "add items.note",
        'op.add_column("items", sa.Column("note", sa.String(100)))\n' + _record("r2"),
        _forget("r2") + '\nwith op.batch_alter_table("items") as batch:\n'
        '    batch.drop_column("note")',
    ),
    (
        "r3",
        "create tags",
        'op.create_table("tags", sa.Column("id", sa.Integer, primary_key=True))\n' + _record("r3"),
        _forget("r3") + '\nop.drop_table("tags")',
    ),
]

FAILING = (
    "r4",
    "a revision that fails half-way",
    'op.create_table("half", sa.Column("id", sa.Integer, primary_key=True))\n'
    + _record("r4")
    + '\nop.execute("SELECT * FROM no_such_table")',
    'op.drop_table("half")',
)


def write_project(root: Path, revisions: list[tuple[str, str, str, str]] | None = None) -> Path:
    """An Alembic project scaffolded by ``migrate init`` in ``root``, with ``revisions``."""
    init_project(root / "migrations", root / "alembic.ini")
    down = None
    for revision, message, upgrade, downgrade in revisions if revisions is not None else STANDARD:
        body = REVISION.format(
            message=message,
            revision=revision,
            down=down,
            upgrade=textwrap.indent(upgrade, "    "),
            downgrade=textwrap.indent(downgrade, "    "),
        )
        (root / "migrations" / "versions" / f"{revision}.py").write_text(body)
        down = revision
    return root / "alembic.ini"


def query(url: str, sql: str) -> list[Any]:
    """Rows of ``sql`` on the database at ``url``."""

    async def go() -> list[Any]:
        settings = DatabaseSettings(database_url=url)
        async with open_engine(settings) as engine, engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(sql))).all()]

    return asyncio.run(go())


def tables(url: str) -> set[str]:
    """The table names the database has."""

    async def go() -> set[str]:
        settings = DatabaseSettings(database_url=url)
        async with open_engine(settings) as engine, engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))

    return asyncio.run(go())


def runs(url: str) -> list[str]:
    """The revision ids recorded in ``runs``, sorted."""
    return sorted(row[0] for row in query(url, "SELECT rev FROM runs"))


def add_revision(
    root: Path,
    revision: str,
    down: str | tuple[str, ...] | None,
    message: str = "",
    upgrade: str = "pass",
    downgrade: str = "pass",
) -> Path:
    """Write one more revision (any parent(s): branches and merges) into ``root``'s project."""
    body = REVISION.format(
        message=message or f"revision {revision}",
        revision=revision,
        down=down,
        upgrade=textwrap.indent(upgrade, "    "),
        downgrade=textwrap.indent(downgrade, "    "),
    )
    path = root / "migrations" / "versions" / f"{revision}.py"
    path.write_text(body)
    return path


def branched_project(root: Path) -> Path:
    """r1..r3, and a second branch b1 from r1: two heads, r3 and b1."""
    ini = write_project(root)
    add_revision(
        root,
        "b1",
        "r1",
        "create branch_items",
        'op.create_table("branch_items", sa.Column("id", sa.Integer, primary_key=True))\n'
        + _record("b1"),
        _forget("b1") + '\nop.drop_table("branch_items")',
    )
    return ini


# -- the env.py shapes real projects have ------------------------------------------------

_ENV_HEAD = """\
import asyncio
from logging.config import fileConfig

from sqlalchemy import engine_from_config, pool
from sqlalchemy.ext.asyncio import async_engine_from_config

from alembic import context

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)
target_metadata = None


def run_migrations_offline():
    url = config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection):
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


def own_engine():
    return engine_from_config(config.get_section(config.config_ini_section, {}),
                              prefix="sqlalchemy.", poolclass=pool.NullPool)

"""

_ENV_TAIL = """

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"""

ENV_SHAPES = {
    # Alembic's generic template: a sync engine from sqlalchemy.url.
    "generic": """
def run_migrations_online():
    with own_engine().connect() as connection:
        do_run_migrations(connection)
""",
    # Alembic's async template: asyncio.run on an async engine from sqlalchemy.url.
    "async": """
async def run_async_migrations():
    connectable = async_engine_from_config(config.get_section(config.config_ini_section, {}),
                                           prefix="sqlalchemy.", poolclass=pool.NullPool)
    async with connectable.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await connectable.dispose()


def run_migrations_online():
    asyncio.run(run_async_migrations())
""",
    # Alembic's cookbook: the connection a caller passes in config.attributes.
    "attributes": """
def run_migrations_online():
    connectable = config.attributes.get("connection", None)
    if connectable is None:
        with own_engine().connect() as connection:
            do_run_migrations(connection)
    else:
        do_run_migrations(connectable)
""",
    # A real project's: a new connection from the passed connection's engine.
    "engine": """
def run_migrations_online():
    passed = config.attributes.get("connection", None)
    connectable = passed.engine if passed is not None else own_engine()
    with connectable.connect() as connection:
        do_run_migrations(connection)
""",
    # One that cannot be driven: a database of its own, whatever it is given.
    "elsewhere": """
def run_migrations_online():
    from sqlalchemy import create_engine

    with create_engine("sqlite:///elsewhere.db").connect() as connection:
        do_run_migrations(connection)
""",
}


def write_env_shape(root: Path, shape: str) -> Path:
    """The standard project with the ``env.py`` of ``shape`` (``scaffold``: myfy-db's own)."""
    ini = write_project(root)
    if shape != "scaffold":
        (root / "migrations" / "env.py").write_text(_ENV_HEAD + ENV_SHAPES[shape] + _ENV_TAIL)
    return ini
