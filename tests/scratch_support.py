"""Test support for scratch databases: is one still there, and which ones did a run create."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from helpers import server_for
from myfy_db.urls import DatabaseUrl


def scratch_exists(url: DatabaseUrl) -> bool:
    """Whether the server's catalog (``pg_database``, ``information_schema.SCHEMATA``) still
    lists the database ``url`` names; for SQLite, whether its file or directory remains."""
    if url.backend == "sqlite":
        assert url.sqlite_file is not None
        return Path(url.sqlite_file).exists() or Path(url.sqlite_file).parent.exists()
    server = server_for(url.backend)
    if url.backend == "postgresql":
        sql = f"SELECT 1 FROM pg_database WHERE datname = '{url.database}'"
    else:
        sql = f"SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{url.database}'"
    return bool(server.admin(sql)[0])


def record_scratch_databases(monkeypatch: pytest.MonkeyPatch) -> list[DatabaseUrl]:
    """The URL of every scratch database created from now on in this process (the real
    :func:`~myfy_db.migrations.scratch.scratch_database` runs; its yield is noted)."""
    from myfy_db.migrations import scratch

    made: list[DatabaseUrl] = []
    original = scratch.scratch_database

    @asynccontextmanager
    async def noting(*args: Any, **kw: Any) -> AsyncIterator[DatabaseUrl]:
        async with original(*args, **kw) as url:
            made.append(url)
            yield url

    monkeypatch.setattr(scratch, "scratch_database", noting)
    return made
