"""Driver errors read through SQLAlchemy's wrappers, from real servers (myfy_db.driver_errors)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from myfy_db import DatabaseSettings, open_engine
from myfy_db.driver_errors import (
    driver_exception,
    mysql_code,
    server_error,
    sqlstate,
    walk,
)


async def _missing_table_error(url: str) -> BaseException:
    async with open_engine(DatabaseSettings(database_url=url)) as engine, engine.connect() as conn:
        try:
            await conn.execute(text("SELECT * FROM no_such_table"))
        except Exception as exc:
            return exc
    raise AssertionError("the query did not fail")


def test_postgresql_error_gives_its_sqlstate_and_the_drivers_exception(postgres_url: str) -> None:
    exc = asyncio.run(_missing_table_error(postgres_url))
    assert sqlstate(exc) == "42P01"
    assert mysql_code(exc) is None
    assert type(driver_exception(exc)).__module__.startswith("asyncpg")
    found = server_error(exc)
    assert found is not None
    assert found[0].startswith("undefined table (42P01): ")


def test_mysql_error_gives_its_error_number_and_the_drivers_exception(mysql_url: str) -> None:
    exc = asyncio.run(_missing_table_error(mysql_url))
    assert mysql_code(exc) == 1146
    assert sqlstate(exc) == "42S02"
    assert type(driver_exception(exc)).__module__.startswith("pymysql")
    found = server_error(exc)
    assert found is not None
    assert found[0].startswith("MySQL error 1146: ")


def test_walk_follows_orig_cause_and_context_once_each() -> None:
    inner = ValueError("inner")
    middle = KeyError("middle")
    try:
        try:
            raise inner
        except ValueError:
            raise middle from inner
    except KeyError as exc:
        outer = RuntimeError("outer")
        outer.__context__ = exc
        outer.orig = inner  # type: ignore[attr-defined]
    assert list(walk(outer)) == [outer, inner, middle]
    assert list(walk(outer, implicit=False)) == [outer, inner]


@pytest.mark.parametrize("code", [1205, 2013])
def test_mysql_code_is_read_only_from_the_mysql_driver(code: int) -> None:
    assert mysql_code(OSError(code, "not MySQL")) is None
