"""The worker loop survives any failure of a round, and a worker task that dies inside
``revflow serve`` is restarted and reported on ``/readyz``."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from revflow import worker as worker_module
from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from revflow.engine.runner import BatchResult
from tests.support.engine import Engine
from tests.support.waiting import until


async def test_a_round_that_raises_does_not_end_the_worker_loop(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = engine.worker
    worker.settings = worker.settings.model_copy(update={"worker_poll_seconds": 0.05})
    original = worker.engine.run_once
    calls = {"n": 0}

    async def flaky(*, wait_external: bool = False) -> BatchResult:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RuntimeError("a bug in one round")
        return await original(wait_external=wait_external)

    monkeypatch.setattr(worker.engine, "run_once", flaky)
    wf = await engine.workflow(
        {
            "trigger": {"type": "manual"},
            "steps": [{"id": "hi", "type": "send_email", "subject": "s", "body": "b"}],
        }
    )
    execution = (await engine.enroll(wf, await engine.contact(email="loop@example.com")))[
        "executions"
    ][0]
    task = asyncio.create_task(worker.run())
    try:

        async def completed() -> bool:
            return (await engine.execution(execution))["status"] == "completed"

        await until(completed, "the execution completes after two failed rounds")
        assert calls["n"] >= 3 and not task.done()
    finally:
        worker.stop()
        await task


async def test_a_dead_worker_task_is_restarted_and_reported_on_readyz(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = worker_module.Worker.run
    runs = {"n": 0}

    async def dies_once(self: worker_module.Worker) -> None:
        runs["n"] += 1
        if runs["n"] == 1:
            await asyncio.sleep(0.2)
            raise RuntimeError("the loop itself broke")
        await original(self)

    monkeypatch.setattr(worker_module.Worker, "run", dies_once)
    app = create_app(settings, db, with_worker=True)
    seen: list[tuple[int, Any]] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as c:

            async def observed(status: int) -> bool:
                response = await c.get("/readyz")
                seen.append((response.status_code, response.json()))
                return response.status_code == status

            await until(lambda: observed(503), "/readyz reports the dead worker")
            down = seen[-1][1]
            assert down["status"] == "worker_down"
            assert down["worker"]["last_error"] == "RuntimeError: the loop itself broke"
            await until(lambda: observed(200), "the worker is restarted")
            up = seen[-1][1]
            assert up["worker"] == {
                "running": True,
                "restarts": 1,
                "last_error": "RuntimeError: the loop itself broke",
            }
            assert runs["n"] == 2
