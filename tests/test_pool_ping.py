"""Pooled PostgreSQL connections are pinged before use only after sitting idle: a connection the
server closed while it waited is replaced without failing anything, one used moments ago is
handed out without a round trip, and a request that draws a closed one answers 503, never 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from tests.support.tenants import make_tenant

IDLE_S = 0.2


@pytest.fixture
def pg_url(backend: str, database_url: str) -> str:
    if backend != "postgresql":
        pytest.skip("the pool's ping is PostgreSQL's")
    return database_url


@pytest.fixture
async def pooled(pg_url: str) -> AsyncIterator[Database]:
    database = Database(pg_url, pool_size=1, ping_idle_s=IDLE_S)
    yield database
    await database.dispose()


class Pings:
    """Counts the dialect's pings of one database."""

    def __init__(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        dialect = db.engine.sync_engine.dialect
        ping = dialect.do_ping

        def counted(dbapi_connection: Any) -> bool:
            self.count += 1
            return ping(dbapi_connection)

        monkeypatch.setattr(dialect, "do_ping", counted)


async def backend_pid(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)


async def terminate(url: str, pid: int) -> None:
    other = Database(url, pool_size=1)
    try:
        async with other.session() as session:
            assert await session.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await other.dispose()


async def test_a_connection_used_moments_ago_is_not_pinged(
    pooled: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await backend_pid(pooled)
    pings = Pings(pooled, monkeypatch)
    for _ in range(5):
        assert await backend_pid(pooled) == first
    assert pings.count == 0


async def test_a_connection_idle_past_the_threshold_is_pinged(
    pooled: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await backend_pid(pooled)
    pings = Pings(pooled, monkeypatch)
    await asyncio.sleep(IDLE_S * 2)
    assert await backend_pid(pooled) == first
    assert pings.count == 1
    assert await backend_pid(pooled) == first  # used just now: not pinged again
    assert pings.count == 1


async def test_an_idle_connection_the_server_closed_is_replaced(
    pooled: Database, pg_url: str
) -> None:
    first = await backend_pid(pooled)
    await terminate(pg_url, first)
    await asyncio.sleep(IDLE_S * 2)
    replacement = await backend_pid(pooled)  # no error: the ping found it closed
    assert replacement not in (0, first)


async def test_a_request_on_a_connection_closed_moments_ago_answers_503_then_recovers(
    pg_url: str,
) -> None:
    """Within the threshold the pool hands the closed connection out unpinged: the request
    answers 503 database_busy with Retry-After (never a 500), and the next one succeeds on a
    new connection."""
    db = Database(pg_url, pool_size=1, ping_idle_s=60.0)
    app = create_app(Settings(database_url=pg_url, log_json=False), db)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://revflow.test"
        ) as client:
            tenant = await make_tenant(db, client, "ping")
            assert (await tenant.request("GET", "/api/v1/workflows")).status_code == 200
            await terminate(pg_url, await backend_pid(db))

            failed = await tenant.request("GET", "/api/v1/workflows")
            assert failed.status_code == 503, failed.text
            assert failed.json()["code"] == "database_busy"
            assert "retry-after" in failed.headers

            again = await tenant.request("GET", "/api/v1/workflows")
            assert again.status_code == 200, again.text
    finally:
        await db.dispose()
