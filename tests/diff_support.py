"""What the diff tests share: two fresh databases per test, DDL run on them, the CLI."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine

from helpers import invoke, server_for


@contextmanager
def two_databases(backend: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """FROM and TO: two new empty databases on ``backend``, dropped afterwards."""
    if backend == "sqlite":
        urls = []
        for name in ("from.db", "to.db"):
            (tmp_path / name).touch()
            urls.append(f"sqlite+aiosqlite:///{tmp_path / name}")
        yield urls[0], urls[1]
        return
    server = server_for(backend)
    server.require()
    with server.fresh_database() as first, server.fresh_database() as second:
        yield first, second


def execute(url: str, statements: Sequence[str]) -> None:
    """Run ``statements`` on ``url``, each committed on its own (CONCURRENTLY needs it)."""

    async def go() -> None:
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                for statement in statements:
                    await connection.exec_driver_sql(statement)
        finally:
            await engine.dispose()

    if statements:
        asyncio.run(go())


def statements_of(script: str) -> list[str]:
    """The statements of a ``--sql`` script (its comment lines dropped)."""
    body = "\n".join(line for line in script.splitlines() if not line.startswith("--"))
    return [s.strip() for s in re.split(r";\s*\n", body + "\n") if s.strip()]


def diff_json(*args: str) -> tuple[int, dict[str, Any], str]:
    result = invoke("diff", *args, "--json")
    return result.exit_code, json.loads(result.stdout), result.stderr


def kinds(document: dict[str, Any]) -> list[str]:
    return sorted(d["kind"] for d in document["differences"])


def sql_of(*args: str) -> tuple[int, str]:
    result = invoke("diff", *args, "--sql")
    return result.exit_code, result.stdout
