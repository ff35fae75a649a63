"""Pruning (both databases): what finished past its retention goes, in batches; what is live,
recent, or could still be put back by a revert stays; a second run finds nothing; the worker
claims a run once across workers."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from revflow.db import Database
from revflow.models import (
    Execution,
    HistoryEntry,
    IdempotencyRecord,
    Message,
    MigrationItem,
    WebhookDelivery,
    WebhookSubscription,
)
from revflow.retention.service import KINDS, Batch, Run, prunable
from tests.support.engine import EngineFactory, WorkflowEngine
from tests.support.workflows import manual_workflow

DAY = dt.timedelta(days=1)

SENT = manual_workflow({"id": "hi", "type": "send_email", "subject": "s", "body": "b"})
WAITING = manual_workflow(
    {"id": "hi", "type": "send_email", "subject": "s", "body": "b", "next": "long"},
    {"id": "long", "type": "wait", "duration": "400d"},
)


async def prune(e: WorkflowEngine) -> list[Batch]:
    return [batch async for batch in Run(e.db, e.settings, e.clock.now()).batches()]


def by_kind(batches: list[Batch]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for batch in batches:
        counts[batch.kind] += batch.rows
    return {kind: counts[kind] for kind in KINDS}


async def rows(db: Database, model: Any, *where: Any) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def enrolled(e: WorkflowEngine, workflow_id: str, n: int, tag: str) -> list[str]:
    contacts = [await e.contact(email=f"{tag}{i}@example.com") for i in range(n)]
    executions: list[str] = (await e.enroll(workflow_id, *contacts))["executions"]
    await e.run()
    return executions


async def test_old_finished_history_and_messages_go_while_live_and_recent_ones_stay(
    make_engine: EngineFactory, fresh_database_url: str
) -> None:
    async with make_engine(fresh_database_url, prune_batch_size=2) as e:
        sent, waiting = await e.workflow(SENT, name="sent"), await e.workflow(WAITING, name="wait")
        old = await enrolled(e, sent, 3, "old")
        live = await enrolled(e, waiting, 2, "live")
        keyed = await e.tenant.request(
            "POST",
            "/api/v1/contacts",
            json={"email": "k@example.com"},
            headers={"Idempotency-Key": "k1"},
        )
        assert keyed.status_code == 201
        e.clock.advance(200 * DAY)
        await e.run()
        recent = await enrolled(e, sent, 1, "recent")
        live_before = {x: (await e.execution(x))["history"] for x in live}
        old_history = await rows(
            e.db, HistoryEntry, HistoryEntry.execution_id.in_([uuid.UUID(x) for x in old])
        )
        assert old_history >= 3

        expected = await prunable(e.db, e.settings, e.clock.now())
        assert expected["history"] == old_history
        assert expected["messages"] == 3  # the old executions' emails, not the live ones'
        assert expected["idempotency_records"] >= 1
        batches = await prune(e)
        assert by_kind(batches) == expected
        assert all(0 < b.rows <= 2 for b in batches if b.kind != "history")

        for x in old:
            gone = await e.execution(x)
            assert gone["status"] == "completed"
            assert gone["history"] == [] and gone["history_pruned"] is True
        for x in live:
            kept = await e.execution(x)
            assert kept["status"] == "waiting" and kept["history_pruned"] is False
            assert kept["history"] == live_before[x]
        assert (await e.execution(recent[0]))["history"] != []
        left = {m["execution_id"] for m in await e.messages()}
        assert left == {*live, *recent}
        assert await rows(e.db, IdempotencyRecord) == 0
        # The contact created with the key is still there; only the replay record went.
        assert (
            await e.tenant.request("GET", f"/api/v1/contacts/{keyed.json()['id']}")
        ).status_code == 200

        assert await prune(e) == [], "a second run finds nothing more"
        assert await prunable(e.db, e.settings, e.clock.now()) == dict.fromkeys(KINDS, 0)


async def test_a_retention_of_zero_keeps_that_kind(
    make_engine: EngineFactory, fresh_database_url: str
) -> None:
    async with make_engine(
        fresh_database_url, history_retention_days=0, message_retention_days=0
    ) as e:
        await enrolled(e, await e.workflow(SENT), 2, "z")
        e.clock.advance(3650 * DAY)
        assert by_kind(await prune(e)) == dict.fromkeys(KINDS, 0)
        assert len(await e.messages()) == 2


async def migrate(e: WorkflowEngine, workflow_id: str, subject: str) -> str:
    changed = manual_workflow(
        {"id": "hi", "type": "send_email", "subject": subject, "body": "b", "next": "long"},
        {"id": "long", "type": "wait", "duration": "400d"},
    )
    number = await e.new_version(workflow_id, changed, 1)
    started = await e.post(
        f"/api/v1/workflows/{workflow_id}/versions/{number}/migrate", {"from_version": 1}, 202
    )
    await e.run()
    migration_id: str = started["id"]
    assert (await e.get(f"/api/v1/migrations/{migration_id}"))["status"] == "completed"
    return migration_id


async def test_a_migration_that_can_still_be_reverted_keeps_its_records(
    make_engine: EngineFactory, fresh_database_url: str
) -> None:
    async with make_engine(fresh_database_url, prune_batch_size=1) as e:
        revertible, spent = await e.workflow(WAITING, name="r"), await e.workflow(WAITING, name="s")
        await enrolled(e, revertible, 2, "r")
        finishing = await enrolled(e, spent, 3, "s")
        kept_id, spent_id = await migrate(e, revertible, "r2"), await migrate(e, spent, "s2")
        for x in finishing:
            await e.post(f"/api/v1/executions/{x}/cancel")
        e.clock.advance(200 * DAY)

        batches = await prune(e)
        assert by_kind(batches)["migration_items"] == 3
        assert [b.rows for b in batches if b.kind == "migration_items"] == [1, 1, 1]
        items = MigrationItem.migration_id
        assert await rows(e.db, MigrationItem, items == uuid.UUID(kept_id)) == 2
        assert await rows(e.db, MigrationItem, items == uuid.UUID(spent_id)) == 0
        # The migration itself stays readable; a revert of it has nothing left to move.
        assert (await e.get(f"/api/v1/migrations/{spent_id}"))["migrated"] == 3
        refused = await e.tenant.request("POST", f"/api/v1/migrations/{spent_id}/revert")
        assert refused.status_code == 409 and refused.json()["code"] == "nothing_to_revert"
        back = await e.post(f"/api/v1/migrations/{kept_id}/revert", expect=202)
        await e.run()
        assert (await e.get(f"/api/v1/migrations/{back['id']}"))["migrated"] == 2


async def test_a_running_revert_keeps_the_records_it_reads(
    make_engine: EngineFactory, fresh_database_url: str
) -> None:
    async with make_engine(fresh_database_url) as e:
        wf = await e.workflow(WAITING)
        executions = await enrolled(e, wf, 2, "rv")
        moved = await migrate(e, wf, "v2")
        back = await e.post(f"/api/v1/migrations/{moved}/revert", expect=202)
        for x in executions:  # finished before the revert's batch ran: it has nothing to move
            await e.post(f"/api/v1/executions/{x}/cancel")
        e.clock.advance(200 * DAY)
        assert by_kind(await prune(e))["migration_items"] == 0
        await e.run()
        assert (await e.get(f"/api/v1/migrations/{back['id']}"))["status"] == "completed"
        e.clock.advance(200 * DAY)
        assert by_kind(await prune(e))["migration_items"] == 4  # both migrations' records


async def test_finished_webhook_deliveries_past_retention_go_pending_ones_stay(
    make_engine: EngineFactory, fresh_database_url: str
) -> None:
    async with make_engine(fresh_database_url, prune_batch_size=2) as e:
        account = uuid.UUID(e.tenant.account_id)
        now = e.clock.now()
        subscription = WebhookSubscription(
            account_id=account,
            url="https://example.com/hook",
            events=[],
            secret="whsec_x",
            created_by="t",
        )
        ages = {"delivered": [200, 200, 200, 10], "failed": [190], "pending": [300]}
        async with e.db.session(write=True) as session:
            session.add(subscription)
            await session.flush()
            for status, days in ages.items():
                for age in days:
                    session.add(
                        WebhookDelivery(
                            account_id=account,
                            subscription_id=subscription.id,
                            event="version.created",
                            body="{}",
                            status=status,
                            created_at=now - age * DAY,
                        )
                    )
            await session.commit()
        assert (await prunable(e.db, e.settings, now))["webhook_deliveries"] == 4
        batches = [b for b in await prune(e) if b.kind == "webhook_deliveries"]
        assert [b.rows for b in batches] == [2, 2]
        left = await e.get(f"/api/v1/webhooks/{subscription.id}/deliveries")
        assert sorted(d["status"] for d in left["items"]) == ["delivered", "pending"]


async def test_the_worker_claims_a_pruning_run_once_across_workers(
    make_engine: EngineFactory, fresh_database_url: str
) -> None:
    async with make_engine(fresh_database_url, prune_batch_size=2) as e:
        old = await enrolled(e, await e.workflow(SENT), 5, "w")
        e.clock.advance(200 * DAY)
        other = e.new_worker("worker-2")
        now = e.clock.now()
        claims = [await e.worker.claim_pruning(now), await other.claim_pruning(now)]
        assert claims == [True, False]
        await e.worker.drain()  # pruning goes on one batch a round, beside the other duties
        assert await rows(e.db, Message) == 0
        assert await rows(e.db, Execution, Execution.history_pruned_at.is_not(None)) == len(old)
        assert not await other.claim_pruning(now + DAY / 2), "once per interval"
        assert await other.claim_pruning(now + DAY)
