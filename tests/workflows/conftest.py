"""Fixtures of the workflow-lifecycle tests: drafts, canaries and archival.

``engine`` (an API client + an in-process worker + a manual clock) is the engine tests' own;
``workflow_engine`` builds the same thing on settings of the test's choosing (archival rules,
canary thresholds, retries) and also hands out the database, for the tests that look at rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
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
from tests.engine.conftest import Engine, engine, engine_settings

__all__ = [
    "Engine",
    "WorkflowEngine",
    "engine",
    "engine_settings",
    "make_engine",
    "manual_workflow",
]


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


@pytest.fixture
def make_engine() -> EngineFactory:
    """``async with make_engine(database_url, **settings) as e:`` — an engine on those settings.

    Retries are fast (``retry_base_seconds`` 0.01, ``max_attempts`` 3) unless overridden.
    """

    @asynccontextmanager
    async def build(database_url: str, **overrides: Any) -> AsyncIterator[WorkflowEngine]:
        values: dict[str, Any] = {"retry_base_seconds": 0.01, "max_attempts": 3, **overrides}
        settings = Settings(database_url=database_url, log_json=False, **values)
        clock = ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
        db = Database(settings.database_url, pool_size=5)
        app = create_app(settings, db, clock=clock)
        worker = Worker(db, settings, clock=clock, worker_id="worker-1")
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(
                transport=transport, base_url="http://revflow.test"
            ) as client:
                tenant: Tenant = await make_tenant(db, client, "lifecycle")
                yield WorkflowEngine(tenant, worker, clock, db, settings)
        finally:
            await worker.sender.aclose()
            await db.dispose()

    return build


def manual_workflow(*steps: dict[str, Any], trigger: str = "manual") -> dict[str, Any]:
    """A definition with a manual trigger (re-enrolment after finishing allowed)."""
    return {"trigger": {"type": trigger}, "steps": list(steps)}
