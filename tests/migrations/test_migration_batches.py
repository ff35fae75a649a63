"""One batch settles every kind of item at once: moved, skipped as finished, skipped as on
another version, skipped on a step the plan cannot move — each with its reason, its restore
record and (when moved) one history entry. On PostgreSQL a forward migration's batch is one
statement."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from revflow.db import Database
from revflow.migrations.runner import run_next
from revflow.models import Execution, MigrationItem
from tests.support.engine import Engine
from tests.support.schema import read_index_shapes


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


async def test_batches_pick_in_key_order_and_come_back_for_an_execution_a_worker_held(
    engine: Engine,
) -> None:
    wf = await engine.workflow(definition("hold"))
    people = [await engine.contact(email=f"k{i}-{uuid.uuid4().hex[:6]}@x.com") for i in range(5)]
    ids = sorted(uuid.UUID(e) for e in (await engine.enroll(wf, *people))["executions"])
    await engine.run()
    changed = definition("hold")
    changed["steps"][0]["subject"] = "hello"  # version 2 keeps the wait: every execution moves
    await engine.new_version(wf, changed, 1)
    response = await engine.tenant.request(
        "POST",
        f"/api/v1/workflows/{wf}/versions/2/migrate",
        json={"from_version": 1, "batch_size": 2},
    )
    assert response.status_code == 202, response.text
    migration_id = uuid.UUID(response.json()["id"])
    db = engine.worker.db
    now = engine.clock.now()
    held = update(Execution).where(Execution.id == ids[0])
    async with db.session(write=True) as session:
        await session.execute(held.values(lease_expires_at=now + dt.timedelta(hours=1)))
        await session.commit()

    async def moved() -> list[uuid.UUID]:
        async with db.session() as session:
            return sorted(
                await session.scalars(
                    select(MigrationItem.execution_id).where(
                        MigrationItem.migration_id == migration_id,
                        MigrationItem.state == "migrated",
                    )
                )
            )

    assert await run_next(db, now) == 1  # the first two items, the held one left
    assert await moved() == ids[1:2]
    with statements(db) as seen:
        assert await run_next(db, now) == 2
    assert await moved() == ids[1:4]
    if not db.is_sqlite:
        # Claim the migration, its target, the next pending items, lock their executions, the
        # one settling statement (in a savepoint), the counts and where the pick got to: the
        # counts say whether items remain, no statement asks the items.
        assert [sql.split()[0] for sql in seen] == [
            "SELECT",
            "SELECT",
            "SELECT",
            "SELECT",
            "SAVEPOINT",
            "WITH",
            "RELEASE",
            "UPDATE",
        ], "\n".join(sql[:90] for sql in seen)
        assert "picked_through" in seen[-1] and "migrated" in seen[-1]
    assert await run_next(db, now) == 1
    assert await moved() == ids[1:]
    # Nothing is left after the last id picked, and the held one is still held.
    await run_next(db, now)
    migration = (await engine.tenant.request("GET", f"/api/v1/migrations/{migration_id}")).json()
    assert (migration["status"], migration["migrated"]) == ("in_progress", 4)

    async with db.session(write=True) as session:
        await session.execute(held.values(lease_expires_at=None))
        await session.commit()
    assert await run_next(db, now + dt.timedelta(seconds=1)) == 1  # retried a moment later
    assert await moved() == ids
    migration = (await engine.tenant.request("GET", f"/api/v1/migrations/{migration_id}")).json()
    assert (migration["status"], migration["migrated"], migration["skipped"]) == (
        "completed",
        5,
        0,
    )


# What a batch writes into an item that was pending (``_settle_statement``).
REWRITTEN = {"state", "reason", "from_step", "from_status", "from_wake_at", "to_step", "moved_at"}


async def test_no_index_of_the_items_names_a_column_a_batch_rewrites(database_url: str) -> None:
    """So that a batch's rewrite of its items touches no index: on PostgreSQL, with the room
    the table's fillfactor leaves on each page, each is a HOT update."""
    shapes = (await read_index_shapes(database_url))["migration_items"]
    for name, columns, condition in shapes:
        assert not REWRITTEN & set(columns), name
        assert not any(column in condition for column in REWRITTEN), name
    if make_url(database_url).get_backend_name() == "postgresql":
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as conn:
                options = await conn.scalar(
                    text("SELECT reloptions FROM pg_class WHERE relname = 'migration_items'")
                )
        finally:
            await engine.dispose()
        assert "fillfactor=40" in (options or [])
