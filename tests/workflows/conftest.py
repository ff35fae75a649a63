"""Fixtures of the workflow-lifecycle tests: drafts, canaries and archival.

``engine`` (tests/conftest.py) is an API client + an in-process worker + a manual clock;
``make_engine`` builds the same thing on settings of the test's choosing (archival rules,
canary thresholds, retries) and also hands out the database, for the tests that look at rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from revflow.engine.clock import ManualClock
from revflow.worker import Worker
from tests.support.engine import EngineFactory, WorkflowEngine
from tests.support.tenants import Tenant, make_tenant


@pytest.fixture
def make_engine() -> EngineFactory:
    """``async with make_engine(database_url, **settings) as e:`` — an engine on those settings.

    Retries are fast (``retry_base_seconds`` 0.01, ``max_attempts`` 3) unless overridden.
    """

    @asynccontextmanager
    async def build(database_url: str, **overrides: Any) -> AsyncIterator[WorkflowEngine]:
        # Steps call servers on loopback: the egress policy must let them.
        values: dict[str, Any] = {
            "retry_base_seconds": 0.01,
            "max_attempts": 3,
            "egress_allow": "127.0.0.0/8",
            **overrides,
        }
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
