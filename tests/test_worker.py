"""The worker loop survives any failure of a round, and a worker task that dies inside
``revflow serve`` is restarted and reported on ``/readyz``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, MutableMapping
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

from revflow import worker as worker_module
from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database, autovacuum_off
from revflow.engine.runner import BatchResult
from revflow.retention.service import Batch
from revflow.worker import Round, Worker
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


async def test_pruning_takes_its_share_of_a_busy_worker_and_runs_free_when_idle(
    engine: Engine,
) -> None:
    """While executions are due a pruning run spends at most ``prune_busy_share`` of the
    worker's time (a credit that grows with the time and is spent by its batches, saved up to
    PRUNE_BURST_SECONDS while idle); with nothing due it runs a batch every round."""
    worker = engine.worker
    worker.settings = worker.settings.model_copy(update={"prune_busy_share": 0.1})
    now = {"t": 0.0}
    worker.monotonic = lambda: now["t"]

    async def batches() -> AsyncGenerator[Batch]:
        while True:
            now["t"] += 1.0  # each batch takes a second
            yield Batch("history", uuid.uuid4(), 10)

    worker._pruning = batches()
    worker._prune_credit, worker._prune_checked = 0.0, 0.0

    async def turn(busy: bool, at: float | None = None) -> bool:
        if at is not None:
            now["t"] = at
        worker._engine_busy = busy
        return await worker._pruning_batch() > 0

    assert await turn(True), "the first batch of a run goes at once"
    assert not await turn(True), "it spent a second: the next waits"
    assert not await turn(True, at=6.0)
    assert await turn(True, at=11.0), "ten seconds at 0.1 earned it back"
    ran = [await turn(False) for _ in range(5)]
    assert ran == [True] * 5, "nothing due: a batch every round, free"
    assert not await turn(True), "the idle batches saved nothing up beyond what the time gave"
    assert await turn(True, at=1000.0)
    assert await turn(True), "the second saved up goes too"
    assert not await turn(True), "a long idle time saves up one second, not more"
    assert worker._pruned["history"] == 10 * 9


async def test_a_busy_worker_looks_for_migration_batches_once_per_poll_interval(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = engine.worker
    worker.settings = worker.settings.model_copy(update={"worker_poll_seconds": 60.0})
    looks: list[int] = []
    found = {"settled": 0}

    async def look(_db: Database, _now: object) -> int:
        looks.append(found["settled"])
        return found["settled"]

    busy = BatchResult(executions=200, steps=1000)

    async def engine_batch(*, wait_external: bool = False) -> BatchResult:
        return busy

    monkeypatch.setattr(worker_module, "run_migration_batch", look)
    monkeypatch.setattr(worker.engine, "run_once", engine_batch)
    for _ in range(3):
        await worker.round()
    assert len(looks) == 1, "while the engine is busy, an empty look waits a poll interval"

    busy = BatchResult()
    await worker.round()
    assert len(looks) == 2, "a round that found no due executions always looks"

    found["settled"] = 5
    await worker.round()
    busy = BatchResult(executions=200, steps=1000)
    for _ in range(3):
        await worker.round()
    assert len(looks) == 6, "a migration with more to move is looked for every round"


async def _logs_until_first_round(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> list[MutableMapping[str, Any]]:
    """What ``worker.run()`` logs from its start until its first round is done (then it is
    stopped): the check at start comes before every round."""
    rounds = asyncio.Event()
    original = worker.round

    async def counted(*, wait_external: bool = False) -> Round:
        done = await original(wait_external=wait_external)
        rounds.set()
        return done

    monkeypatch.setattr(worker, "round", counted)
    with capture_logs() as logs:
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(rounds.wait(), 30)
            assert not task.done()
        finally:
            worker.stop()
            await task
    return logs


async def test_a_worker_says_at_start_where_postgresql_will_not_vacuum(
    backend: str, fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each step rewrites an execution's row: a worker warns once, at start, when the server
    or one of revflow's tables is not vacuumed on its own (every spelling of "off" the storage
    parameter takes), and says nothing of a table switched on or on SQLite."""
    db = Database(fresh_database_url, pool_size=2)
    settings = Settings(database_url=fresh_database_url, log_json=False, worker_poll_seconds=0.05)
    worker = Worker(db, settings)
    try:
        server_off: list[str] = []
        if backend == "postgresql":
            async with db.session() as session:
                switches = (
                    (await session.execute(text("SHOW autovacuum"))).scalar_one(),
                    (await session.execute(text("SHOW track_counts"))).scalar_one(),
                )
                server_off = [] if switches == ("on", "on") else ["server"]
                await session.execute(text("ALTER TABLE executions SET (autovacuum_enabled = off)"))
                await session.execute(text("ALTER TABLE contacts SET (autovacuum_enabled = 'No')"))
                await session.execute(text("ALTER TABLE messages SET (autovacuum_enabled = on)"))
                await session.commit()
        logs = await _logs_until_first_round(worker, monkeypatch)
        warnings = [entry for entry in logs if entry["event"] == "autovacuum_off"]
        if backend == "sqlite":
            assert warnings == []
            assert await autovacuum_off(db) == []
            return
        assert len(warnings) == 1, logs
        assert warnings[0]["log_level"] == "warning"
        assert warnings[0]["where"] == [*server_off, "contacts", "executions"]
        assert "README" in warnings[0]["detail"]

        async with db.session() as session:
            for table in ("executions", "contacts", "messages"):
                await session.execute(text(f"ALTER TABLE {table} RESET (autovacuum_enabled)"))
            await session.commit()
        assert await autovacuum_off(db) == server_off
    finally:
        await worker.sender.aclose()
        await db.dispose()


async def test_a_worker_whose_vacuum_check_fails_runs_its_rounds(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check at start meets whatever the database answers first (here a server that is
    still starting): the worker goes on to its rounds, which meet it too and are retried."""
    worker = engine.worker

    async def starting(_db: Database) -> list[str]:
        raise asyncpg.CannotConnectNowError("the database system is starting up")

    monkeypatch.setattr(worker_module, "autovacuum_off", starting)
    logs = await _logs_until_first_round(worker, monkeypatch)
    assert not [entry for entry in logs if entry["event"] == "autovacuum_off"]
