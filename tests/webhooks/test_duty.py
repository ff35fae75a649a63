"""The delivery duty's queue: deliveries claimed ahead of their sends are sent only while their
lease holds, not after a 410 from their subscription, and handed back when the worker stops.

Every wait is bounded by a deadline; no assertion is made on durations.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from sqlalchemy import select

from revflow.models import WebhookDelivery
from tests.webhooks.conftest import API, Rig
from tests.webhooks.receiver import Answer, Delivered, Receiver

ONE_AT_A_TIME = {"webhook_concurrency": 1, "webhook_batch_size": 10}


async def queue_pings(rig: Rig, hook: dict[str, Any], count: int) -> list[str]:
    ids = []
    for _ in range(count):
        ping = await rig.tenant.request("POST", f"{API}/webhooks/{hook['id']}/test")
        assert ping.status_code == 202, ping.text
        ids.append(ping.json()["id"])
    return ids


async def outbox(rig: Rig, hook: dict[str, Any]) -> list[Any]:
    async with rig.db.session() as session:
        rows = await session.execute(
            select(
                WebhookDelivery.id,
                WebhookDelivery.status,
                WebhookDelivery.attempt_count,
                WebhookDelivery.lease_owner,
            ).where(WebhookDelivery.subscription_id == uuid.UUID(hook["id"]))
        )
        return list(rows.all())


async def test_a_410_stops_the_sends_claimed_before_it(make_rig: Any) -> None:
    async with (
        make_rig(**ONE_AT_A_TIME) as rig,
        Receiver(lambda _n, _r: Answer(410)) as receiver,
    ):
        hook = await rig.subscribe(receiver.url, ["workflow.paused"])
        await queue_pings(rig, hook, 3)
        await rig.worker.deliveries.drain()
        assert len(receiver.requests) == 1
        deliveries = await rig.deliveries(hook["id"])
        assert [d["status"] for d in deliveries] == ["failed"] * 3
        errors = [d["attempts"][0]["error"] for d in deliveries]
        assert errors.count("the subscription is disabled") == 2
        assert sum("410" in error for error in errors) == 1


async def test_stopping_hands_back_what_was_claimed_but_not_sent(make_rig: Any) -> None:
    async with (
        make_rig(**ONE_AT_A_TIME) as rig,
        Receiver(lambda _n, _r: Answer(200, delay=0.3)) as receiver,
    ):
        hook = await rig.subscribe(receiver.url, ["workflow.paused"])
        await queue_pings(rig, hook, 4)
        duty, stop = rig.worker.deliveries, asyncio.Event()
        running = asyncio.create_task(duty.run(stop))
        deadline = time.monotonic() + 30
        while not receiver.requests and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        assert len(duty.queue) == 3  # claimed with the first, waiting for its slot
        stop.set()
        await running
        rows = await outbox(rig, hook)
        assert sorted(row.status for row in rows) == ["delivered", "pending", "pending", "pending"]
        assert all(row.lease_owner is None for row in rows)
        assert all(row.attempt_count == 0 for row in rows if row.status == "pending")
        assert len(receiver.requests) == 1


async def test_what_waited_in_the_queue_past_its_lease_is_not_sent(make_rig: Any) -> None:
    """With one slot, the first send takes longer than the lease less its timeout: the two
    claimed with it are left to their leases' expiry, then sent once each."""

    def first_slow(n: int, _r: Delivered) -> Answer:
        return Answer(200, delay=1.0 if n == 1 else 0.0)

    async with (
        make_rig(**ONE_AT_A_TIME, webhook_lease_seconds=0.5) as rig,
        Receiver(first_slow) as receiver,
    ):
        hook = await rig.subscribe(receiver.url, ["workflow.paused"])
        ids = await queue_pings(rig, hook, 3)
        await rig.worker.deliveries.drain()
        assert len(receiver.requests) == 1
        rows = await outbox(rig, hook)
        assert sorted(row.status for row in rows) == ["delivered", "pending", "pending"]
        assert await rig.advance(1) == 0  # still leased (0.5 s + the 5 s timeout)
        assert await rig.advance(10) == 2
        assert sorted(r.id for r in receiver.requests) == sorted(ids)
        assert [row.status for row in await outbox(rig, hook)] == ["delivered"] * 3
