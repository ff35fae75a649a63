"""Reverting a migration (SPEC §4 ``/migrations/{id}/revert``, §6 "reverted").

A revert is a new ``manual`` migration from ``to_version`` back to ``from_version`` that moves
the executions still where the reverted migration put them back to where they were; the others
are skipped as ``advanced_since_move``. Its ``report`` has the dry-run shape.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from revflow.db import Database
from revflow.models import MigrationItem
from tests.support.engine import Engine
from tests.support.workflows import manual_workflow


def v1() -> dict[str, Any]:
    return manual_workflow(
        {"id": "hello", "type": "send_email", "subject": "v1", "body": "b", "next": "hold"},
        {"id": "hold", "type": "wait", "duration": "2d", "next": "done"},
        {"id": "done", "type": "end"},
    )


def v2() -> dict[str, Any]:
    """``hold`` is renamed ``pause``; a ``purchase`` moves an execution on to ``thanks``."""
    definition = manual_workflow(
        {"id": "hello", "type": "send_email", "subject": "v2", "body": "b", "next": "pause"},
        {"id": "pause", "type": "wait", "duration": "2d", "next": "done"},
        {"id": "done", "type": "end"},
        {"id": "thanks", "type": "wait", "duration": "30d"},
    )
    definition["goals"] = [{"id": "bought", "event": "purchase", "then": "thanks"}]
    return definition


async def migrated(engine: Engine, n: int, **body: Any) -> tuple[str, list[str], list[str], str]:
    """``n`` executions waiting on ``hold`` of version 1, moved onto ``pause`` of version 2 by a
    migration started with ``body``; answers (workflow, executions, contacts, migration)."""
    wf = await engine.workflow(v1())
    contacts = [await engine.contact(email=f"rv{i}@example.com") for i in range(n)]
    executions = (await engine.enroll(wf, *contacts))["executions"]
    await engine.run()
    await engine.new_version(wf, v2(), 1)
    started = await engine.tenant.request(
        "POST",
        f"/api/v1/workflows/{wf}/versions/2/migrate",
        json={"from_version": 1, "mapping": {"hold": "pause"}, **body},
    )
    assert started.status_code == 202, started.text
    await engine.run()
    return wf, executions, contacts, started.json()["id"]


async def purchase(engine: Engine, contact_id: str) -> None:
    response = await engine.tenant.request(
        "POST", "/api/v1/events", json={"contact_id": contact_id, "name": "purchase"}
    )
    assert response.status_code < 300, response.text


async def migration(engine: Engine, migration_id: str) -> dict[str, Any]:
    response = await engine.tenant.request("GET", f"/api/v1/migrations/{migration_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def revert(engine: Engine, migration_id: str) -> dict[str, Any]:
    response = await engine.tenant.request("POST", f"/api/v1/migrations/{migration_id}/revert")
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_reverts_report_has_the_dry_run_shape(engine: Engine) -> None:
    _, executions, contacts, mid = await migrated(engine, 3)
    await purchase(engine, contacts[0])  # moves on, on version 2, to "thanks"
    assert (await engine.execution(executions[0]))["current_step"] == "thanks"

    back = await revert(engine, mid)

    assert (back["from_version"], back["to_version"], back["strategy"]) == (2, 1, "manual")
    assert back["total"] == 3
    assert back["report"] == {
        "total": 3,
        "movable": 2,
        "unmovable": 1,
        "groups": [
            # Still where the migration put them: back to the step they came from.
            {"step": "pause", "count": 2, "target": "hold", "reason": None},
            {"step": "thanks", "count": 1, "target": None, "reason": "advanced_since_move"},
        ],
    }
    # The stored migration shows the same report.
    assert (await migration(engine, back["id"]))["report"] == back["report"]


async def test_revert_skips_executions_that_advanced_since_the_move(
    engine: Engine, db: Database
) -> None:
    _, executions, contacts, mid = await migrated(engine, 3)
    moved = {e: await engine.execution(e) for e in executions}
    await purchase(engine, contacts[0])
    await engine.run()

    back = await revert(engine, mid)
    await engine.run()

    done = await migration(engine, back["id"])
    assert (done["status"], done["migrated"], done["skipped"], done["failed"]) == (
        "completed",
        2,
        1,
        0,
    )
    advanced = await engine.execution(executions[0])
    assert (advanced["version"], advanced["current_step"], advanced["status"]) == (
        2,
        "thanks",
        "waiting",
    )
    assert "migrated" not in [h["result"] for h in advanced["history"][-2:]]
    for e in executions[1:]:
        ex = await engine.execution(e)
        assert (ex["version"], ex["current_step"], ex["status"]) == (1, "hold", "waiting")
        assert ex["wake_at"] == moved[e]["wake_at"]
    async with db.session() as session:
        items = (
            await session.execute(
                select(MigrationItem.execution_id, MigrationItem.state, MigrationItem.reason).where(
                    MigrationItem.migration_id == uuid.UUID(back["id"])
                )
            )
        ).all()
    states = {str(i.execution_id): (i.state, i.reason) for i in items}
    assert states[executions[0]] == ("skipped", "advanced_since_move")
    assert {states[e][0] for e in executions[1:]} == {"migrated"}


async def test_reverting_a_paused_migration_cancels_it_then_reverts(engine: Engine) -> None:
    wf, executions, _, mid = await migrated(
        engine, 3, strategy="gradual", batch_size=1, interval_seconds=3600
    )
    assert (await migration(engine, mid))["migrated"] == 1  # one batch; the next in an hour
    paused = await engine.tenant.request("POST", f"/api/v1/migrations/{mid}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused", paused.text

    back = await revert(engine, mid)

    original = await migration(engine, mid)
    assert original["status"] == "cancelled" and original["finished_at"] is not None
    assert (back["status"], back["total"], back["reverts"]) == ("pending", 1, mid)
    await engine.advance(hours=2)  # the cancelled migration moves nothing more
    assert (await migration(engine, mid))["migrated"] == 1
    assert (await migration(engine, back["id"]))["status"] == "completed"
    versions = [(await engine.execution(e))["version"] for e in executions]
    assert versions == [1, 1, 1]
    audit = (
        await engine.tenant.request(
            "GET", "/api/v1/audit", params={"workflow_id": wf, "limit": 200}
        )
    ).json()["items"]
    actions = [a["action"] for a in reversed(audit) if a["object_id"] == mid]
    assert actions[-3:] == ["migration.paused", "migration.cancelled", "migration.reverted"]
