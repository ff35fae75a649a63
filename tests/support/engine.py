"""An API client and an in-process worker sharing one database and one manual clock.

The ``engine`` fixture (tests/conftest.py) hands out an ``Engine``; ``make_engine``
(tests/conftest.py) a ``WorkflowEngine`` on settings of the test's choosing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from revflow.config import Settings
from revflow.db import Database
from revflow.engine.clock import ManualClock
from revflow.worker import Worker
from tests.support.tenants import Tenant


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


@dataclass
class WorkflowEngine(Engine):
    """An ``Engine`` with its database and settings."""

    db: Database
    settings: Settings

    def new_worker(self, worker_id: str) -> Worker:
        """Another worker on the same database and clock (as a second process would be)."""
        return Worker(self.db, self.settings, clock=self.clock, worker_id=worker_id)

    async def get(self, url: str, **params: Any) -> Any:
        response = await self.tenant.request("GET", url, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def post(self, url: str, body: Any = None, expect: int = 200) -> Any:
        response = await self.tenant.request("POST", url, json=body)
        assert response.status_code == expect, response.text
        return response.json()

    async def audit(self, action: str, workflow_id: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"action": action, "limit": 200}
        if workflow_id is not None:
            params["workflow_id"] = workflow_id
        items: list[dict[str, Any]] = []
        while True:
            page = await self.get("/api/v1/audit", **params)
            items += page["items"]
            if page["next_cursor"] is None:
                return items
            params["cursor"] = page["next_cursor"]


EngineFactory = Callable[..., AbstractAsyncContextManager[WorkflowEngine]]
