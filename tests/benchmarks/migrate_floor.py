"""The floor under ``myfy-db migrate``: the stack it must load, imported, and nothing done.

``python migrate_floor.py sqlite|postgresql`` imports what the mission fixes for the command
and what Alembic's generic ``env.py`` needs, then exits as the console script does (the
cyclic collector paused from the first line, a direct exit): Typer with one command
converted to Click, a pydantic-settings model of three fields read from the environment,
SQLAlchemy's asyncio extension (the shared async engine factory), Alembic's configuration,
script and runtime modules (loaded as myfy-db loads them, without Mako's Pygments
highlighter), and the async and sync drivers of the backend. It opens no connection, reads
no revision file and parses no argument.

``bench_migrate`` times this process beside ``alembic upgrade head``. No ``migrate`` built on
this stack can take less time than this process, whatever else it does or leaves out.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys

gc.disable()


def main(backend: str) -> None:
    import typer
    from typer.main import get_command

    app = typer.Typer()

    @app.command()
    def migrate(target: str = "head", timeout: float = 5.0, json: bool = False) -> None:
        """Apply revisions."""

    get_command(app)

    from pydantic_settings import BaseSettings, SettingsConfigDict

    class Settings(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="MYFY_DATA_", extra="ignore")
        database_url: str = "sqlite+aiosqlite:///./myfy.db"
        environment: str = "development"
        pool_size: int = 5

    Settings()

    import myfy_db.migrations  # noqa: F401  (Alembic as myfy-db imports it: without Pygments)

    drivers = ("asyncpg", "psycopg2") if backend == "postgresql" else ("aiosqlite", "sqlite3")
    for module in ("alembic.config", "alembic.script", "sqlalchemy.ext.asyncio", *drivers):
        importlib.import_module(module)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sqlite")
    sys.stdout.flush()
    os._exit(0)
