"""One batch settles every kind of item at once: moved, skipped as finished, skipped as on
another version, skipped on a step the plan cannot move — each with its reason, its restore
record and (when moved) one history entry. On PostgreSQL a forward migration's batch is one
statement."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, select, update

from revflow.db import Database
from revflow.migrations.runner import run_next
from revflow.models import Execution, MigrationItem
from tests.support.engine import Engine


def definition(wait_id: str) -> dict[str, Any]:
    return {
        "trigger": {"type": "manual"},
        "steps": [
            {"id": "hello", "type": "send_email", "subject": "hi", "body": "b", "next": wait_id},
            {"id": wait_id, "type": "wait", "duration": "5d", "next": "done"},
            {"id": "done", "type": "end"},
        ],
    }


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        seen.append(" ".join(sql.split()))

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)


async def test_one_batch_settles_moved_finished_other_version_and_unmovable_items(
    engine: Engine,
) -> None:
    wf = await engine.workflow(definition("hold"))
    people = [await engine.contact(email=f"b{i}-{uuid.uuid4().hex[:6]}@x.com") for i in range(5)]
    stays, stays_too, moves, finished, elsewhere = (await engine.enroll(wf, *people))["executions"]
    await engine.run()  # every execution waits on "hold", which version 2 no longer has
    await engine.new_version(wf, definition("rest"), 1)
    response = await engine.tenant.request(
        "POST", f"/api/v1/workflows/{wf}/versions/2/migrate", json={"from_version": 1}
    )
    assert response.status_code == 202, response.text
    migration_id = response.json()["id"]
    db = engine.worker.db
    async with db.session(write=True) as session:
        for execution, change in (
            (moves, {"current_step": "hello"}),  # a step version 2 still has
            (finished, {"status": "completed", "wake_at": None}),
            (elsewhere, {"version": 2}),
        ):
            await session.execute(
                update(Execution).where(Execution.id == uuid.UUID(execution)).values(**change)
            )
        await session.commit()

    with statements(db) as seen:
        assert await run_next(db, engine.clock.now()) == 5
    if not db.is_sqlite:
        [move] = [sql for sql in seen if "UPDATE executions" in sql]
        assert "UPDATE migration_items" in move and "INSERT INTO execution_history" in move

    migration = (await engine.tenant.request("GET", f"/api/v1/migrations/{migration_id}")).json()
    assert (migration["status"], migration["migrated"], migration["skipped"]) == (
        "completed",
        1,
        4,
    )
    assert {(s["execution_id"], s["step"], s["reason"]) for s in migration["skips"]} == {
        (stays, "hold", "step_removed"),
        (stays_too, "hold", "step_removed"),
        (finished, "hold", "finished"),
        (elsewhere, "hold", "version_changed"),
    }
    moved = await engine.execution(moves)
    assert (moved["version"], moved["current_step"], moved["status"]) == (2, "hello", "waiting")
    assert [h["result"] for h in moved["history"]].count("migrated") == 1
    for other in (stays, stays_too, elsewhere):
        assert [h["result"] for h in (await engine.execution(other))["history"]].count(
            "migrated"
        ) == 0
    async with db.session() as session:
        items = {
            str(row[0]): tuple(row)[1:]
            for row in await session.execute(
                select(
                    MigrationItem.execution_id,
                    MigrationItem.state,
                    MigrationItem.reason,
                    MigrationItem.from_step,
                    MigrationItem.from_status,
                    MigrationItem.to_step,
                ).where(MigrationItem.migration_id == uuid.UUID(migration_id))
            )
        }
    assert items[moves] == ("migrated", None, "hello", "waiting", "hello")
    assert items[finished] == ("skipped", "finished", "hold", None, None)
    assert items[elsewhere] == ("skipped", "version_changed", "hold", None, None)
    assert items[stays] == ("skipped", "step_removed", "hold", None, None)
