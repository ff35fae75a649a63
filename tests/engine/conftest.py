"""Engine fixtures: an app and a worker sharing one database and one manual clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from revflow.engine.clock import ManualClock
from revflow.worker import Worker
from tests.conftest import Tenant, make_tenant


@dataclass
class Engine:
    tenant: Tenant
    worker: Worker
    clock: ManualClock

    async def workflow(
        self, definition: dict[str, Any], *, name: str = "wf", publish: bool = True
    ) -> str:
        response = await self.tenant.request(
            "POST",
            "/api/v1/workflows",
            json={"name": name, "definition": definition, "change_summary": "first"},
        )
        assert response.status_code == 201, response.text
        workflow_id: str = response.json()["id"]
        if publish:
            published = await self.tenant.request(
                "POST", f"/api/v1/workflows/{workflow_id}/versions/1/publish"
            )
            assert published.status_code == 200, published.text
        return workflow_id

    async def new_version(
        self, workflow_id: str, definition: dict[str, Any], base: int, *, publish: bool = True
    ) -> int:
        response = await self.tenant.request(
            "POST",
            f"/api/v1/workflows/{workflow_id}/versions",
            json={
                "definition": definition,
                "change_summary": "next",
                "base_version": base,
                "publish": publish,
            },
        )
        assert response.status_code == 201, response.text
        number: int = response.json()["number"]
        return number

    async def contact(self, **fields: Any) -> str:
        response = await self.tenant.request("POST", "/api/v1/contacts", json=fields)
        assert response.status_code == 201, response.text
        contact_id: str = response.json()["id"]
        return contact_id

    async def enroll(self, workflow_id: str, *contacts: str) -> dict[str, Any]:
        response = await self.tenant.request(
            "POST",
            f"/api/v1/workflows/{workflow_id}/enrollments",
            json={"contact_ids": list(contacts)},
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def execution(self, execution_id: str) -> dict[str, Any]:
        response = await self.tenant.request("GET", f"/api/v1/executions/{execution_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def executions(self, workflow_id: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {**params, "limit": 200, **({"cursor": cursor} if cursor else {})}
            page = (
                await self.tenant.request(
                    "GET", f"/api/v1/workflows/{workflow_id}/executions", params=query
                )
            ).json()
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items

    async def messages(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.tenant.request(
            "GET", "/api/v1/messages", params={"limit": 200, **params}
        )
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def run(self) -> None:
        await self.worker.drain()

    async def advance(self, **delta: float) -> None:
        self.clock.advance(dt.timedelta(**delta))
        await self.worker.drain()


@pytest.fixture
def engine_settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url, log_json=False, retry_base_seconds=0.01, max_attempts=3
    )


@pytest.fixture
async def engine(engine_settings: Settings) -> AsyncIterator[Engine]:
    clock = ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    db = Database(engine_settings.database_url, pool_size=5)
    app = create_app(engine_settings, db, clock=clock)
    worker = Worker(db, engine_settings, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as client:
        tenant = await make_tenant(db, client, "engine")
        yield Engine(tenant, worker, clock)
    await worker.sender.aclose()
    await db.dispose()
