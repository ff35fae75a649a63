"""A webhook rig: an app, a worker and a manual clock on a database of the module's own (so no
delivery queued by another module is sent to these receivers, nor the other way round)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from revflow.engine.clock import ManualClock
from revflow.worker import Worker
from tests.support.databases import DatabaseFactory
from tests.support.tenants import Tenant, make_tenant

API = "/api/v1"


@dataclass
class Rig:
    tenant: Tenant
    worker: Worker
    clock: ManualClock
    db: Database
    settings: Settings

    async def subscribe(self, url: str, events: list[str] | None = None) -> dict[str, Any]:
        from revflow.models import WEBHOOK_EVENTS

        response = await self.tenant.request(
            "POST", f"{API}/webhooks", json={"url": url, "events": events or list(WEBHOOK_EVENTS)}
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def deliveries(self, webhook_id: str) -> list[dict[str, Any]]:
        response = await self.tenant.request(
            "GET", f"{API}/webhooks/{webhook_id}/deliveries", params={"limit": 200}
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def send(self) -> int:
        """Run the engine, then send every due delivery and wait for the answers."""
        await self.worker.drain()
        return await self.worker.deliveries.drain()

    async def advance(self, seconds: float) -> int:
        self.clock.advance(dt.timedelta(seconds=seconds))
        return await self.send()


RigFactory = Callable[..., Any]


@pytest.fixture(scope="module")
def webhook_database_url(backend: str, database_factories: dict[str, DatabaseFactory]) -> str:
    return database_factories[backend].create()


@pytest.fixture
def make_rig(webhook_database_url: str) -> RigFactory:
    @asynccontextmanager
    async def build(**overrides: Any) -> AsyncIterator[Rig]:
        values: dict[str, Any] = {
            "log_json": False,
            "egress_allow": "127.0.0.0/8",
            "webhook_retry_base_seconds": 1.0,
            "webhook_timeout_seconds": 5.0,
            "retry_base_seconds": 0.01,
            "max_attempts": 2,
            **overrides,
        }
        settings = Settings(database_url=webhook_database_url, **values)
        clock = ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
        db = Database(webhook_database_url, pool_size=5)
        app = create_app(settings, db, clock=clock)
        worker = Worker(db, settings, clock=clock)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as c:
                tenant = await make_tenant(db, c, "hooks")
                yield Rig(tenant, worker, clock, db, settings)
        finally:
            # Leave nothing due for the next test's worker.
            async with db.session(write=True) as session:
                await session.execute(
                    text("UPDATE webhook_deliveries SET status = 'failed' WHERE status = 'pending'")
                )
                await session.commit()
            await worker.deliveries.sender.aclose()
            await worker.sender.aclose()
            await db.dispose()

    return build


@pytest.fixture
async def rig(make_rig: RigFactory) -> AsyncIterator[Rig]:
    async with make_rig() as the_rig:
        yield the_rig
