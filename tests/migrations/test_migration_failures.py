"""A migration's failures and skips are counted and listed (SPEC §6): an execution that cannot
be moved fails alone, skipped ones say why, a migration that cannot run at all ends
``failed``, and a gradual migration halts on the failures it caused.

Faults are injected with a database trigger that refuses to move chosen executions — the same
error, on both databases, as any statement that fails for one row.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text, update

from revflow.models import Version
from tests.support.engine import Engine
from tests.support.workflows import migration_v1 as v1
from tests.support.workflows import migration_v2 as v2

# The trigger refuses any change of version of the executions it names.
SQLITE_TRIGGER = """
CREATE TRIGGER {name} BEFORE UPDATE OF version ON executions
WHEN NEW.version != OLD.version AND {condition}
BEGIN SELECT RAISE(ABORT, 'this execution cannot be moved'); END
"""
PG_FUNCTION = """
CREATE OR REPLACE FUNCTION revflow_test_refuse_move() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'this execution cannot be moved'; END $$ LANGUAGE plpgsql
"""
PG_TRIGGER = """
CREATE TRIGGER {name} BEFORE UPDATE ON executions FOR EACH ROW
WHEN (NEW.version <> OLD.version AND {condition})
EXECUTE FUNCTION revflow_test_refuse_move()
"""


@asynccontextmanager
async def refusing_moves(engine: Engine, column: str, value: str) -> AsyncIterator[None]:
    """Executions whose ``column`` (``id`` or ``workflow_id``) is ``value`` cannot be moved."""
    db = engine.worker.db
    name = f"refuse_{uuid.uuid4().hex[:12]}"
    async with db.session(write=True) as session:
        if db.is_sqlite:
            condition = f"NEW.{column} = '{uuid.UUID(value).hex}'"
            await session.execute(text(SQLITE_TRIGGER.format(name=name, condition=condition)))
        else:
            condition = f"NEW.{column} = '{value}'::uuid"
            await session.execute(text(PG_FUNCTION))
            await session.execute(text(PG_TRIGGER.format(name=name, condition=condition)))
        await session.commit()
    try:
        yield
    finally:
        async with db.session(write=True) as session:
            drop = f"DROP TRIGGER {name}" + ("" if db.is_sqlite else " ON executions")
            await session.execute(text(drop))
            await session.commit()


async def setup(engine: Engine, n: int) -> tuple[str, list[str]]:
    wf = await engine.workflow(v1())
    contacts = [await engine.contact(email=f"f{i}-{uuid.uuid4().hex[:6]}@x.com") for i in range(n)]
    enrolled = await engine.enroll(wf, *contacts)
    await engine.run()  # every execution waits on "pause"
    await engine.new_version(wf, v2(), 1)
    return wf, enrolled["executions"]


async def start(engine: Engine, wf: str, **body: Any) -> dict[str, Any]:
    response = await engine.tenant.request(
        "POST",
        f"/api/v1/workflows/{wf}/versions/2/migrate",
        json={"from_version": 1, "mapping": {"old_offer": "offer"}, **body},
    )
    assert response.status_code == 202, response.text
    migration: dict[str, Any] = response.json()
    return migration


async def migration_now(engine: Engine, migration_id: str) -> dict[str, Any]:
    response = await engine.tenant.request("GET", f"/api/v1/migrations/{migration_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_execution_that_cannot_be_moved_fails_alone_with_its_error(
    engine: Engine,
) -> None:
    wf, executions = await setup(engine, 5)
    doomed = executions[2]
    async with refusing_moves(engine, "id", doomed):
        started = await start(engine, wf)
        await engine.run()
    migration = await migration_now(engine, started["id"])
    assert migration["status"] == "completed"
    assert (migration["total"], migration["migrated"], migration["failed"]) == (5, 4, 1)
    assert migration["skipped"] == 0
    [error] = migration["errors"]
    assert error["execution_id"] == doomed and error["step"] == "pause"
    assert "cannot be moved" in error["error"]
    # The failed one stayed where it was; the others moved.
    assert (await engine.execution(doomed))["version"] == 1
    for other in set(executions) - {doomed}:
        assert (await engine.execution(other))["version"] == 2


async def test_skipped_executions_are_listed_with_their_reason(engine: Engine) -> None:
    wf2 = await engine.workflow(
        {
            "trigger": {"type": "manual"},
            "steps": [
                {"id": "hold", "type": "wait", "duration": "5d", "next": "done"},
                {"id": "done", "type": "end"},
            ],
        },
        name="skips",
    )
    people = [await engine.contact(email=f"k{i}-{uuid.uuid4().hex[:6]}@x.com") for i in range(3)]
    enrolled = (await engine.enroll(wf2, *people))["executions"]
    await engine.run()
    await engine.new_version(
        wf2,
        {
            "trigger": {"type": "manual"},
            "steps": [
                {"id": "rest", "type": "wait", "duration": "5d", "next": "done"},
                {"id": "done", "type": "end"},
            ],
        },
        1,
    )
    response = await engine.tenant.request(
        "POST", f"/api/v1/workflows/{wf2}/versions/2/migrate", json={"from_version": 1}
    )
    assert response.status_code == 202, response.text
    await engine.run()
    migration = await migration_now(engine, response.json()["id"])
    assert (migration["status"], migration["skipped"], migration["migrated"]) == (
        "completed",
        3,
        0,
    )
    assert sorted(s["execution_id"] for s in migration["skips"]) == sorted(enrolled)
    assert {(s["step"], s["reason"]) for s in migration["skips"]} == {("hold", "step_removed")}


async def test_a_migration_whose_target_was_archived_ends_failed(engine: Engine) -> None:
    wf, executions = await setup(engine, 3)
    started = await start(engine, wf)
    paused = await engine.tenant.request("POST", f"/api/v1/migrations/{started['id']}/pause")
    assert paused.status_code == 200, paused.text
    async with engine.worker.db.session(write=True) as session:
        await session.execute(
            update(Version)
            .where(Version.workflow_id == uuid.UUID(wf), Version.number == 2)
            .values(status="archived")
        )
        await session.commit()
    resumed = await engine.tenant.request("POST", f"/api/v1/migrations/{started['id']}/resume")
    assert resumed.status_code == 200, resumed.text
    await engine.run()
    migration = await migration_now(engine, started["id"])
    assert migration["status"] == "failed"
    assert "archived" in migration["status_reason"]
    assert migration["finished_at"] is not None and migration["migrated"] == 0
    for execution_id in executions:
        assert (await engine.execution(execution_id))["version"] == 1
    audit = await engine.tenant.request(
        "GET", "/api/v1/audit", params={"workflow_id": wf, "action": "migration.failed"}
    )
    assert len(audit.json()["items"]) == 1


async def test_a_gradual_migration_halts_on_the_executions_it_failed_to_move(
    engine: Engine,
) -> None:
    wf, _executions = await setup(engine, 25)
    async with refusing_moves(engine, "workflow_id", wf):
        started = await start(engine, wf, strategy="gradual", batch_size=20, interval_seconds=0)
        await engine.run()
    migration = await migration_now(engine, started["id"])
    assert migration["failed"] == 20  # the first batch failed one by one …
    assert migration["status"] == "paused"  # … and the next one saw the rate and halted
    assert "halt_failure_rate" in migration["status_reason"]
    assert len(migration["errors"]) == 20
