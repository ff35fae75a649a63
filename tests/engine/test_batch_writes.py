"""A batch's writes: every row as the steps made it, and on PostgreSQL one statement for every
kind of row whatever the batch's size (each kind's rows one JSON array, its keys arrays)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, select

from revflow.db import Database
from revflow.engine import store
from revflow.engine.interpreter import Effects
from revflow.models import Execution
from tests.support.engine import Engine


@contextmanager
def statements(db: Database) -> Iterator[list[tuple[str, bool]]]:
    """The statements run meanwhile, each with whether it ran once per row (executemany)."""
    seen: list[tuple[str, bool]] = []

    def record(_conn: Any, _cursor: Any, sql: str, _params: Any, _ctx: Any, many: bool) -> None:
        seen.append((" ".join(sql.split()), many))

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)


async def test_a_batch_writes_each_kind_of_row_once_and_every_value_as_the_steps_made_it(
    engine: Engine,
) -> None:
    wf = await engine.workflow(
        {
            "trigger": {"type": "manual"},
            "steps": [
                {
                    "id": "stage",
                    "type": "update_field",
                    "field": "fields.stage",
                    "value": "ö",
                    "next": "tag",
                },
                {"id": "tag", "type": "add_tag", "tag": "vip", "next": "hello"},
                {
                    "id": "hello",
                    "type": "send_email",
                    "subject": "Hi {{contact.fields.name}}",
                    "body": "{{contact.email}} — {{contact.tags}}",
                    "next": "pause",
                },
                {"id": "pause", "type": "wait", "duration": "1d", "next": "done"},
                {"id": "done", "type": "end"},
            ],
        }
    )
    people = {
        await engine.contact(email=f"w{i}-{uuid.uuid4().hex[:6]}@x.com", fields={"name": f"N{i}"})
        for i in range(3)
    }
    executions = (await engine.enroll(wf, *people))["executions"]
    db = engine.worker.db
    with statements(db) as seen:
        await engine.run()
    if not db.is_sqlite:
        # The worker's batch: one statement writes every kind of row (the goals' and
        # triggers' reactions write nothing here).
        parts = (
            "INSERT INTO execution_history",
            "INSERT INTO messages",
            "UPDATE executions",
            "UPDATE contacts",
        )
        [(sql, many)] = [(sql, many) for sql, many in seen if all(p in sql for p in parts)]
        assert sql.count("jsonb_array_elements(") == 4 and not many, sql
        assert not [sql for sql, _ in seen if sql.startswith(parts)], "written on their own"

    for execution_id in executions:
        ex = await engine.execution(execution_id)
        assert (ex["status"], ex["current_step"]) == ("waiting", "pause"), ex
        assert ex["wake_at"] is not None and ex["error"] is None
        steps = [(h["step"], h["result"]) for h in ex["history"]]
        assert steps[:3] == [("stage", "done"), ("tag", "done"), ("hello", "sent")], steps
        assert ex["history"][0]["detail"] == {"field": "fields.stage", "changed": True}
        contact = (
            await engine.tenant.request("GET", f"/api/v1/contacts/{ex['contact_id']}")
        ).json()
        assert contact["fields"] == {"name": contact["fields"]["name"], "stage": "ö"}
        assert contact["tags"] == ["vip"]
        [message] = [m for m in await engine.messages() if m["execution_id"] == execution_id]
        assert message["subject"] == f"Hi {contact['fields']['name']}"
        assert message["body"] == f"{contact['email']} — vip"
        assert ex["history"][2]["detail"]["message_id"] == message["id"]


async def test_a_batch_writes_every_column_of_an_execution_and_reads_a_naive_moment_as_utc(
    engine: Engine,
) -> None:
    wf = await engine.workflow(
        {
            "trigger": {"type": "manual"},
            "steps": [
                {"id": "pause", "type": "wait", "duration": "1d", "next": "done"},
                {"id": "done", "type": "end"},
            ],
        }
    )
    people = [await engine.contact(email=f"c{i}-{uuid.uuid4().hex[:6]}@x.com") for i in range(2)]
    first, second = (await engine.enroll(wf, *people))["executions"]
    db = engine.worker.db
    now = dt.datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
    lease_until = now + dt.timedelta(seconds=30)
    async with db.session(write=True) as session:
        locked = await store.lock_executions(
            session,
            [(uuid.UUID(engine.tenant.account_id), uuid.UUID(e)) for e in (first, second)],
        )
        states = {str(ex.id): ex for _, ex in locked}
        leased, failed = states[first], states[second]
        leased.current_step, leased.status = "done", "active"
        leased.wake_at = now.replace(tzinfo=None)  # naive: UTC, as UTCDateTime reads it
        leased.fired_goals = ["g1", "g2"]
        failed.status, failed.error, failed.outcome = "failed", "it broke: ö", "failed"
        failed.finished_at, failed.wake_at = now, None
        effects = Effects()
        effects.record(failed, now, "pause", "failed", error=failed.error)
        accounts = {ex.id: account for account, ex in locked}
        await store.write_effects(
            session,
            accounts,
            [leased, failed],
            [],
            effects,
            now,
            leases={leased.id: ("worker-1", lease_until)},
        )
        await session.commit()
    async with db.session() as session:
        rows = {
            str(row.id): row
            for row in (
                await session.execute(
                    select(Execution).where(Execution.id.in_([leased.id, failed.id]))
                )
            ).scalars()
        }
    written = rows[first]
    assert (written.status, written.current_step, written.wake_at) == ("active", "done", now)
    assert written.fired_goals == ["g1", "g2"] and written.error is None
    assert (written.lease_owner, written.lease_expires_at) == ("worker-1", lease_until)
    broken = rows[second]
    assert (broken.status, broken.error, broken.outcome) == ("failed", "it broke: ö", "failed")
    assert (broken.finished_at, broken.wake_at, broken.lease_owner) == (now, None, None)
    history = (await engine.execution(second))["history"]
    assert (history[-1]["step"], history[-1]["result"], history[-1]["error"]) == (
        "pause",
        "failed",
        "it broke: ö",
    )
