"""Every event of SPEC §8 reaches a receiver on loopback, signed so that the reference
``standardwebhooks`` library verifies it; the outbox is transactional."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import event, func, select, update

from revflow.audit.service import Actor
from revflow.kit.egress import EgressPolicy
from revflow.models import WEBHOOK_EVENTS, Version, WebhookDelivery
from revflow.webhooks import service as webhooks
from revflow.webhooks.schemas import SubscriptionCreate
from revflow.workflows import repository as workflows_repo
from tests.webhooks.conftest import API, Rig, RigFactory
from tests.webhooks.receiver import Receiver


def definition(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"trigger": {"type": "manual"}, "steps": list(steps)}


PAUSE = {"id": "pause", "type": "wait", "duration": "1d", "next": "call"}
# 10.0.0.0/8 stays refused: the rig only allows loopback. The step fails at once.
CALL = {"id": "call", "type": "http_request", "url": "http://10.0.0.1/x", "method": "POST"}
V1 = definition(PAUSE, CALL)
V2 = definition({"id": "pause", "type": "wait", "duration": "1d"})
V3 = definition({"id": "pause", "type": "wait", "duration": "2d"})


async def ok(rig: Rig, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    response = await rig.tenant.request(method, url, **kwargs)
    assert response.status_code < 300, f"{method} {url}: {response.text}"
    body: dict[str, Any] = response.json() if response.content else {}
    return body


async def version(rig: Rig, wf: str, body: dict[str, Any], base: int | None) -> None:
    await ok(
        rig,
        "POST",
        f"{API}/workflows/{wf}/versions",
        json={"definition": body, "change_summary": "change", "base_version": base},
    )


async def enroll(rig: Rig, wf: str) -> str:
    contact = await ok(rig, "POST", f"{API}/contacts", json={"email": "a@example.com"})
    await ok(
        rig, "POST", f"{API}/workflows/{wf}/enrollments", json={"contact_ids": [contact["id"]]}
    )
    return str(contact["id"])


async def cause_every_event(rig: Rig) -> str:
    wf = (await ok(rig, "POST", f"{API}/workflows", json={"name": "Hooked"}))["id"]
    w = f"{API}/workflows/{wf}"
    await version(rig, wf, V1, None)  # version.created
    await ok(rig, "POST", f"{w}/versions/1/publish")  # version.published
    await enroll(rig, wf)
    await rig.send()  # the contact waits on v1's pause
    await version(rig, wf, V2, 1)
    await ok(rig, "POST", f"{w}/versions/2/publish", json={"canary_percent": 50})  # canary.started
    await ok(rig, "POST", f"{w}/canary/promote")  # canary.promoted
    await version(rig, wf, V3, 2)
    await ok(rig, "POST", f"{w}/versions/3/publish", json={"canary_percent": 10})
    await ok(rig, "POST", f"{w}/canary/abort", json={"reason": "enough"})  # canary.aborted
    await ok(rig, "POST", f"{w}/versions/1/rollback", json={"reason": "back"})  # rolled_back
    await ok(rig, "POST", f"{w}/pause")  # workflow.paused
    await ok(rig, "POST", f"{w}/resume")  # workflow.resumed
    # migration.started, then .completed by the worker.
    body = {"from_version": 1, "strategy": "immediate"}
    await ok(rig, "POST", f"{w}/versions/2/migrate", json=body)
    await rig.send()
    # A migration whose target version is archived before it runs cannot run: migration.failed.
    await enroll(rig, wf)
    await rig.send()
    broken = await ok(rig, "POST", f"{w}/versions/2/migrate", json=body)
    async with rig.db.session(write=True) as session:
        await session.execute(
            update(Version)
            .where(Version.workflow_id == uuid.UUID(wf), Version.number == 2)
            .values(status="archived")
        )
        await session.commit()
    await rig.send()
    assert (await ok(rig, "GET", f"{API}/migrations/{broken['id']}"))["status"] == "failed"
    # The second contact's wait ends on v1's refused call: execution.failed.
    await rig.advance(2 * 86400)
    # Version 3 (an aborted canary, nothing running on it) is archived: version.archived.
    archived = await rig.worker.run_scheduled(force=True)
    assert archived and {a.number for a in archived} >= {3}
    return str(wf)


async def test_every_event_is_delivered_and_verifies(make_rig: RigFactory) -> None:
    async with make_rig(archive_after_days=0, keep_versions=0) as rig, Receiver() as receiver:
        hook = await rig.subscribe(receiver.url)
        receiver.secrets = [hook["secret"]]
        workflow_id = await cause_every_event(rig)
        await rig.send()
        seen = {r.json()["type"] for r in receiver.verified()}
        assert seen == set(WEBHOOK_EVENTS), set(WEBHOOK_EVENTS) - seen
        assert len(receiver.verified()) == len(receiver.requests), "a signature did not verify"
        for request in receiver.requests:
            body = request.json()
            assert body["data"]["account_id"] == rig.tenant.account_id
            assert body["data"]["workflow_id"] == workflow_id
            assert body["timestamp"].endswith("Z")
            kind = body["type"].split(".")[0]
            shown = {"canary": "version"}.get(kind, kind)
            assert isinstance(body["data"][shown], dict), body
        failed = [r.json() for r in receiver.requests if r.json()["type"] == "execution.failed"]
        assert "egress" in failed[0]["data"]["execution"]["error"]
        deliveries = await rig.deliveries(hook["id"])
        assert {d["status"] for d in deliveries} == {"delivered"}
        assert {d["id"] for d in deliveries} == {r.id for r in receiver.requests}
        assert all(len(d["attempts"]) == 1 for d in deliveries)
        assert all(d["attempts"][0]["status_code"] == 200 for d in deliveries)


async def test_a_subscription_gets_only_its_events(rig: Rig) -> None:
    async with Receiver() as receiver:
        hook = await rig.subscribe(receiver.url, ["workflow.paused"])
        receiver.secrets = [hook["secret"]]
        wf = (await ok(rig, "POST", f"{API}/workflows", json={"name": "Few"}))["id"]
        await version(rig, wf, V1, None)
        await ok(rig, "POST", f"{API}/workflows/{wf}/pause")
        await ok(rig, "POST", f"{API}/workflows/{wf}/resume")
        await rig.send()
        assert [r.json()["type"] for r in receiver.verified()] == ["workflow.paused"]


async def test_a_rolled_back_change_queues_nothing_and_a_committed_one_is_kept(rig: Rig) -> None:
    async with Receiver() as receiver:
        hook = await rig.subscribe(receiver.url)
        account = uuid.UUID(rig.tenant.account_id)
        subscription = uuid.UUID(hook["id"])

        async def count() -> int:
            async with rig.db.session() as session:
                found = await session.scalar(
                    select(func.count())
                    .select_from(WebhookDelivery)
                    .where(WebhookDelivery.subscription_id == subscription)
                )
                return int(found or 0)

        async with rig.db.session(write=True) as session:
            queued = await webhooks.emit(
                session, account, "workflow.paused", {"workflow_id": "w"}, now=rig.clock.now()
            )
            assert queued == 1
            await session.rollback()
        assert await count() == 0
        async with rig.db.session(write=True) as session:
            await webhooks.emit(
                session, account, "workflow.paused", {"workflow_id": "w"}, now=rig.clock.now()
            )
            await session.commit()
        assert await count() == 1
        # A request that fails after its change was made (a conflict) queues nothing either.
        wf = (await ok(rig, "POST", f"{API}/workflows", json={"name": "Conflicted"}))["id"]
        await version(rig, wf, V1, None)
        stale = await rig.tenant.request(
            "POST",
            f"{API}/workflows/{wf}/versions",
            json={"definition": V2, "change_summary": "stale", "base_version": None},
        )
        assert stale.status_code == 409
        assert await count() == 2  # the one above and version 1's version.created


async def test_a_change_reads_the_subscriptions_with_the_workflows_lock(rig: Rig) -> None:
    """The workflow's locking statement brings the account's enabled subscriptions along: a
    change asks nothing more of them, and each subscription still gets exactly its events."""
    async with Receiver() as receiver:
        created = await rig.subscribe(receiver.url, ["version.created"])
        published = await rig.subscribe(receiver.url, ["version.published"])
        disabled = await rig.subscribe(receiver.url)
        await ok(rig, "PATCH", f"{API}/webhooks/{disabled['id']}", json={"enabled": False})
        wf = (await ok(rig, "POST", f"{API}/workflows", json={"name": "Along"}))["id"]
        asked: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if "webhook_subscriptions" in statement:
                asked.append(statement)

        engine = rig.db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", seen)
        try:
            await version(rig, wf, V1, None)
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        assert len(asked) == 1 and "FROM workflows" in asked[0], asked
        events = {
            name: [d["event"] for d in await rig.deliveries(hook["id"])]
            for name, hook in (("created", created), ("published", published), ("off", disabled))
        }
        assert events == {"created": ["version.created"], "published": [], "off": []}


async def test_subscriptions_read_along_hold_for_their_transaction_only(rig: Rig) -> None:
    """A subscription made after the workflow's lock read them, in the same transaction or a
    later one, is not missed."""
    account = uuid.UUID(rig.tenant.account_id)
    wf = uuid.UUID((await ok(rig, "POST", f"{API}/workflows", json={"name": "Fresh"}))["id"])
    policy = EgressPolicy.parse(rig.settings.egress_allow)
    body = SubscriptionCreate(url="http://127.0.0.1:9/hook", events=["workflow.paused"])
    async with rig.db.session(write=True) as session:
        assert await workflows_repo.get_workflow(session, account, wf, lock=True) is not None
        now = rig.clock.now()
        # None yet: the lock read that the account has no subscription.
        assert await webhooks.emit(session, account, "workflow.paused", {}, now=now) == 0
        await webhooks.create(session, account, Actor(user="t"), body, policy, now)
        assert await webhooks.emit(session, account, "workflow.paused", {}, now=now) == 1
        await session.commit()
        # What a transaction read along does not outlive it.
        assert await workflows_repo.get_workflow(session, account, wf, lock=True) is not None
        await session.commit()
        async with rig.db.session(write=True) as other:
            await webhooks.create(other, account, Actor(user="t"), body, policy, now)
            await other.commit()
        assert await webhooks.emit(session, account, "workflow.paused", {}, now=now) == 2
        await session.rollback()
