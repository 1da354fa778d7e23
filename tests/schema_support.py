"""Helpers for the create-tables / drop-tables tests: inspect a real database, write models."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, inspect

from myfy_db import DatabaseSettings, open_engine

EXAMPLE = "myfy_db.example:Base"

#: Three tables where ``parents`` and ``children`` reference each other (the cycle is closed
#: by a use_alter foreign key) and ``toys`` references ``children``.
CYCLE_MODELS = """
from sqlalchemy import ForeignKey, Integer
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Parent(Base):
    __tablename__ = "parents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    favourite_id: Mapped[int | None] = mapped_column(
        ForeignKey("children.id", use_alter=True, name="fk_parent_favourite")
    )


class Child(Base):
    __tablename__ = "children"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("parents.id", name="fk_child_parent"))


class Toy(Base):
    __tablename__ = "toys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    child_id: Mapped[int] = mapped_column(ForeignKey("children.id", name="fk_toy_child"))
"""


def on(url: str, fn: Callable[[Connection], Any]) -> Any:
    """Run ``fn`` on a connection to ``url`` in a committed transaction."""

    async def scenario() -> Any:
        settings = DatabaseSettings(database_url=url)
        async with open_engine(settings) as engine, engine.begin() as conn:
            return await conn.run_sync(fn)

    return asyncio.run(scenario())


def tables(url: str) -> list[str]:
    """The database's table names, sorted."""
    return sorted(on(url, lambda c: inspect(c).get_table_names()))


def execute(url: str, *statements: str) -> None:
    def run(conn: Connection) -> None:
        for sql in statements:
            conn.exec_driver_sql(sql)

    on(url, run)


def write_module(directory: Path, name: str, source: str) -> str:
    """Write ``name``.py into ``directory``; return its name."""
    (directory / f"{name}.py").write_text(source, encoding="utf-8")
    return name


def process(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    stdin: Any = subprocess.DEVNULL,
) -> subprocess.CompletedProcess[str]:
    """``python -m myfy_db ARGS`` as a real process with no terminal on stdin."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MYFY_DATA_", "MYFY_DB_"))}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "myfy_db", *args],
        cwd=cwd,
        env=full,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
