"""Two real ``revflow worker`` processes deliver webhooks from one PostgreSQL outbox; one is
SIGKILLed mid-way. Nothing is lost, and nothing is sent twice beyond at-least-once: only the
deliveries the killed worker had sent (or was sending) without recording them may arrive twice,
with the same webhook-id; what it had claimed but not sent arrives once, from the other.

Every wait is bounded by a deadline; no assertion is made on durations.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from revflow.audit.service import Actor
from revflow.auth import service as auth_service
from revflow.db import Database
from revflow.kit.egress import EgressPolicy
from revflow.models import WebhookDelivery
from revflow.webhooks import service as webhooks
from revflow.webhooks.schemas import SubscriptionCreate
from tests.support.waiting import until
from tests.support.workers import WorkerProcess
from tests.webhooks.receiver import Answer, Delivered, Receiver

DELIVERIES = 400
CONCURRENCY = 16
BATCH = 16
DEADLINE_S = 120.0


@pytest.fixture
def pg_url(backend: str, fresh_database_url: str) -> str:
    if backend != "postgresql":
        pytest.skip("several worker processes share the outbox on PostgreSQL only")
    return fresh_database_url


async def test_sigkill_of_a_worker_mid_delivery_loses_nothing(pg_url: str, tmp_path: Path) -> None:
    db = Database(pg_url, pool_size=3)

    def slowly(_n: int, _r: Delivered) -> Answer:
        return Answer(200, delay=0.02)

    env = {
        "REVFLOW_EGRESS_ALLOW": "127.0.0.0/8",
        "REVFLOW_WEBHOOK_CONCURRENCY": str(CONCURRENCY),
        "REVFLOW_WEBHOOK_BATCH_SIZE": str(BATCH),
        "REVFLOW_WEBHOOK_LEASE_SECONDS": "1",
        "REVFLOW_WEBHOOK_TIMEOUT_SECONDS": "2",
    }
    workers = [WorkerProcess(pg_url, tmp_path, f"hooks-{i}", env=env) for i in range(2)]
    try:
        async with Receiver(slowly) as receiver:
            now = dt.datetime.now(dt.UTC)
            async with db.session(write=True) as session:
                account, _key = await auth_service.create_account(session, "kill", Actor("t"), now)
                hook = await webhooks.create(
                    session,
                    account.id,
                    Actor("t"),
                    SubscriptionCreate(url=receiver.url, events=["workflow.paused"]),
                    EgressPolicy.parse("127.0.0.0/8"),
                    now,
                )
                receiver.secrets = [hook.secret]
                for i in range(DELIVERIES):
                    await webhooks.emit(session, account.id, "workflow.paused", {"n": i}, now=now)
                await session.commit()

            for worker in workers:
                worker.start()

            async def some_delivered() -> bool:
                return len(receiver.requests) >= DELIVERIES // 4

            await until(
                some_delivered,
                "the first deliveries",
                limit=DEADLINE_S,
                poll=0.05,
                diagnostics=lambda: "\n".join(w.log_tail() for w in workers),
            )
            workers[0].kill()
            assert len(receiver.requests) < DELIVERIES, "the kill came too late to matter"

            async def all_delivered() -> bool:
                async with db.session() as session:
                    pending = await session.scalar(
                        select(func.count())
                        .select_from(WebhookDelivery)
                        .where(WebhookDelivery.status != "delivered")
                    )
                return pending == 0

            await until(
                all_delivered,
                "every delivery",
                limit=DEADLINE_S,
                poll=0.05,
                diagnostics=lambda: "\n".join(w.log_tail() for w in workers[1:]),
            )
            workers[1].check_alive()
            async with db.session() as session:
                rows = (
                    await session.execute(
                        select(WebhookDelivery.id, WebhookDelivery.attempts).where(
                            WebhookDelivery.account_id == account.id
                        )
                    )
                ).all()
            ids = {str(row.id) for row in rows}
            received = Counter(r.id for r in receiver.requests)
            assert len(ids) == DELIVERIES
            assert set(received) == ids, "a delivery was lost, or one was invented"
            assert all(r.verified_with for r in receiver.requests)
            twice = {i for i, n in received.items() if n > 1}
            # Only what the killed worker had sent and not recorded may arrive again: its sends
            # in flight, and those that ended while its last turn claimed and recorded (at most
            # a batch: it claims only when its queue is down to half a batch).
            assert len(twice) <= CONCURRENCY + BATCH, len(twice)
            assert all(n <= 2 for n in received.values())
            # The list accounts for every send but those the killed worker could not record.
            recorded = {str(row.id): len(row.attempts) for row in rows}
            assert all(recorded[i] >= 1 for i in ids)
    finally:
        for worker in workers:
            worker.stop()
        await db.dispose()
