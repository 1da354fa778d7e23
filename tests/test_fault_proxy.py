"""The test fixture itself: a proxy that forwards, freezes, thaws and kills for real."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from fault_proxy import FaultProxy
from helpers import backend_of, server_for


async def _select_one(url: str, timeout: float) -> object:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with asyncio.timeout(timeout):
            async with engine.connect() as conn:
                return (await conn.execute(text("SELECT 1"))).scalar()
    finally:
        await engine.dispose()


def test_forwards_to_the_real_server(
    server_url: str, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    proxy = fault_proxy(server_url)
    assert proxy.port != make_url(server_url).port
    assert asyncio.run(_select_one(proxy.url, 5)) == 1
    assert proxy.accepted == 1


def test_frozen_proxy_stalls_and_thaw_resumes(
    server_url: str, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    proxy = fault_proxy(server_url)
    proxy.freeze()
    with pytest.raises(TimeoutError):
        asyncio.run(_select_one(proxy.url, 0.5))
    proxy.thaw()
    assert asyncio.run(_select_one(proxy.url, 5)) == 1


def test_killed_proxy_refuses_and_drops_connections(
    server_url: str, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    proxy = fault_proxy(server_url)
    server = server_for(backend_of(server_url))
    database = make_url(server_url).database or ""

    seen: list[int] = []

    async def hold_then_lose() -> BaseException | None:
        engine = create_async_engine(proxy.url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                seen.append(await asyncio.to_thread(server.connection_count, database))
                proxy.kill()
                try:
                    await conn.execute(text("SELECT 1"))
                except Exception as exc:
                    return exc
                return None
        except Exception as exc:  # closing the lost connection may fail as well
            return exc
        finally:
            await engine.dispose()

    assert asyncio.run(asyncio.wait_for(hold_then_lose(), 10)) is not None
    assert seen == [1]
    assert server.wait_for_connections(database, 0) == 0
    with pytest.raises(Exception):  # noqa: B017,PT011 - each driver words a refusal its own way
        asyncio.run(_select_one(proxy.url, 5))
