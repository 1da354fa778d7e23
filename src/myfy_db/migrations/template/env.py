"""Alembic environment for myfy-db: the shared async engine factory, no URL on disk.

The database URL comes from MYFY_DATA_DATABASE_URL (or `myfy-db migrate --url`), never from
alembic.ini; the target metadata from the `metadata` setting (MYFY_DATA_METADATA, or
[tool.myfy-db] in pyproject.toml). `myfy-db migrate` runs this file in its own process on the
connection that holds its migration lock; plain `alembic` commands work on it too.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from myfy_db import create_engine
from myfy_db.migrations.environment import (
    migration_options,
    offline_options,
    settings_for,
    shared_connection,
    target_metadata_for,
)

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

settings, url = settings_for(config)
target_metadata = target_metadata_for(config, settings)


def run_migrations_offline() -> None:
    """Write the SQL for the URL's dialect to stdout; no database is touched."""
    context.configure(target_metadata=target_metadata, **offline_options(config, url))
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        **migration_options(config, connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    """Connect through myfy-db's engine factory and migrate through run_sync."""
    engine = create_engine(settings, url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
elif (connection := shared_connection(config)) is not None:
    do_run_migrations(connection)
else:
    asyncio.run(run_async_migrations())
