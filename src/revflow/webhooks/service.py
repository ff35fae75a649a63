"""Webhooks (SPEC §8): subscriptions, and the transactional outbox every event goes through.

:func:`emit` is what the other features call inside the transaction of the change that causes
an event: it writes one delivery row per subscriber in that same transaction, so a change that
rolls back sends nothing and a committed one is never forgotten. The worker sends them
(``revflow.webhooks.delivery``). Like every service here, these functions flush and leave the
commit to the caller. No secret is ever written to an audit entry or a log line.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.audit import service as audit
from revflow.audit.service import Actor
from revflow.errors import NotFound, ValidationFailed
from revflow.kit.egress import EgressPolicy, EgressRefused
from revflow.models import WebhookDelivery, WebhookSubscription
from revflow.webhooks import repository as repo
from revflow.webhooks.schemas import SubscriptionCreate, SubscriptionUpdate

# How long the previous secret keeps signing after a rotation.
ROTATION_OVERLAP = dt.timedelta(hours=24)
PING = "ping"

Data = dict[str, Any]
DataBuilder = Callable[[], Awaitable[Data]]


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def delivery_body(event: str, data: Data, at: dt.datetime) -> str:
    """The delivery's JSON body; fixed when the event happens, identical on every attempt."""
    body = {
        "type": event,
        "timestamp": at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "data": data,
    }
    return json.dumps(body, separators=(",", ":"), default=str)


async def emit(
    session: AsyncSession,
    account_id: uuid.UUID,
    event: str,
    data: Data | DataBuilder,
    *,
    now: dt.datetime,
) -> int:
    """Queue ``event`` for every enabled subscription of the account to it, in the caller's
    transaction. ``data`` may be a coroutine function, built only when someone listens.
    Answers how many deliveries were queued."""
    return await emit_many(session, event, [(account_id, data)], now=now)


async def emit_many(
    session: AsyncSession,
    event: str,
    items: Sequence[tuple[uuid.UUID, Data | DataBuilder]],
    *,
    now: dt.datetime,
) -> int:
    """:func:`emit` for several objects of one event type at once (one subscriber query)."""
    subscribers = await repo.subscribers(session, {account for account, _ in items}, event)
    if not subscribers:
        return 0
    by_account: dict[uuid.UUID, list[uuid.UUID]] = {}
    for account, subscription in subscribers:
        by_account.setdefault(account, []).append(subscription)
    at = now
    rows = []
    for account_id, data in items:
        subscriptions = by_account.get(account_id)
        if not subscriptions:
            continue
        payload = await data() if callable(data) else data
        body = delivery_body(event, {"account_id": str(account_id), **payload}, at)
        rows += [_delivery_row(account_id, s, event, body, at) for s in subscriptions]
    await repo.insert_deliveries(session, rows)
    return len(rows)


def _delivery_row(
    account_id: uuid.UUID, subscription_id: uuid.UUID, event: str, body: str, at: dt.datetime
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "account_id": account_id,
        "subscription_id": subscription_id,
        "event": event,
        "body": body,
        "status": "pending",
        "attempts": [],
        "attempt_count": 0,
        "next_attempt_at": at,
        "created_at": at,
    }


async def check_url(url: str, policy: EgressPolicy) -> None:
    """422 for a URL the egress policy refuses now (it is judged again on every delivery)."""
    try:
        await policy.check_url(url)
    except EgressRefused as exc:
        raise ValidationFailed([{"pointer": "/url", "message": str(exc)}]) from None


def parse_id(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"No {what} {value}") from None


async def require_subscription(
    session: AsyncSession, account_id: uuid.UUID, subscription_id: str, *, lock: bool = False
) -> WebhookSubscription:
    found = await repo.get_subscription(
        session, account_id, parse_id(subscription_id, "webhook"), lock=lock
    )
    if found is None:
        raise NotFound(f"No webhook {subscription_id}")
    return found


async def require_delivery(
    session: AsyncSession,
    subscription: WebhookSubscription,
    delivery_id: str,
    *,
    lock: bool = False,
) -> WebhookDelivery:
    found = await repo.get_delivery(
        session,
        subscription.account_id,
        subscription.id,
        parse_id(delivery_id, "delivery"),
        lock=lock,
    )
    if found is None:
        raise NotFound(f"Webhook {subscription.id} has no delivery {delivery_id}")
    return found


def _shown(subscription: WebhookSubscription) -> dict[str, Any]:
    """What the audit trail keeps of a subscription: never its secret."""
    return {
        "url": subscription.url,
        "events": list(subscription.events),
        "description": subscription.description,
        "enabled": subscription.enabled,
    }


async def _audit(
    session: AsyncSession,
    actor: Actor,
    subscription: WebhookSubscription,
    action: str,
    details: dict[str, Any],
    now: dt.datetime,
) -> None:
    await audit.record(
        session,
        subscription.account_id,
        actor,
        action,
        object_type="webhook",
        object_id=subscription.id,
        details=details,
        now=now,
    )


async def create(
    session: AsyncSession,
    account_id: uuid.UUID,
    actor: Actor,
    body: SubscriptionCreate,
    policy: EgressPolicy,
    now: dt.datetime,
) -> WebhookSubscription:
    await check_url(body.url, policy)
    subscription = WebhookSubscription(
        account_id=account_id,
        url=body.url,
        events=sorted(set(body.events)),
        description=body.description,
        enabled=True,
        secret=new_secret(),
        created_by=actor.user,
        created_at=now,
        updated_at=now,
    )
    session.add(subscription)
    repo.forget_read_along(session)
    await session.flush()
    await _audit(session, actor, subscription, "webhook.created", _shown(subscription), now)
    return subscription


async def update(
    session: AsyncSession,
    actor: Actor,
    subscription: WebhookSubscription,
    body: SubscriptionUpdate,
    policy: EgressPolicy,
    now: dt.datetime,
) -> WebhookSubscription:
    changes = body.model_dump(exclude_unset=True)
    for name in [n for n, v in changes.items() if v is None]:
        raise ValidationFailed([{"pointer": f"/{name}", "message": "must not be null"}])
    if "url" in changes and changes["url"] != subscription.url:
        await check_url(changes["url"], policy)
    if "events" in changes:
        changes["events"] = sorted(set(changes["events"]))
    before = _shown(subscription)
    for name, value in changes.items():
        setattr(subscription, name, value)
    if changes.get("enabled") is True:
        subscription.disabled_reason = None
    after = _shown(subscription)
    changed = {k: {"before": before[k], "after": after[k]} for k in after if before[k] != after[k]}
    if changed:
        subscription.updated_at = now
        repo.forget_read_along(session)
        await session.flush()
        await _audit(session, actor, subscription, "webhook.updated", changed, now)
    return subscription


async def remove(
    session: AsyncSession, actor: Actor, subscription: WebhookSubscription, now: dt.datetime
) -> None:
    """Delete the subscription and its deliveries (pending ones are not sent)."""
    await session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.account_id == subscription.account_id,
            WebhookDelivery.subscription_id == subscription.id,
        )
    )
    await _audit(session, actor, subscription, "webhook.deleted", _shown(subscription), now)
    await session.delete(subscription)
    repo.forget_read_along(session)
    await session.flush()


async def rotate_secret(
    session: AsyncSession, actor: Actor, subscription: WebhookSubscription, now: dt.datetime
) -> WebhookSubscription:
    """A new secret; the one it replaces keeps signing beside it for 24 hours."""
    subscription.previous_secret = subscription.secret
    subscription.previous_secret_expires_at = now + ROTATION_OVERLAP
    subscription.secret = new_secret()
    subscription.updated_at = now
    await session.flush()
    await _audit(
        session,
        actor,
        subscription,
        "webhook.secret_rotated",
        {"previous_secret_signs_until": subscription.previous_secret_expires_at.isoformat()},
        now,
    )
    return subscription


async def ping(
    session: AsyncSession, subscription: WebhookSubscription, now: dt.datetime
) -> WebhookDelivery:
    """Queue a ``ping`` delivery due now (sent whether or not the subscription lists it)."""
    data = {"account_id": str(subscription.account_id), "webhook_id": str(subscription.id)}
    row = _delivery_row(
        subscription.account_id, subscription.id, PING, delivery_body(PING, data, now), now
    )
    await repo.insert_deliveries(session, [row])
    delivery = await repo.get_delivery(session, subscription.account_id, subscription.id, row["id"])
    assert delivery is not None
    return delivery


async def redeliver(session: AsyncSession, delivery: WebhookDelivery, now: dt.datetime) -> None:
    """Send the delivery again now: same ``webhook-id`` and body, its attempts kept, and a
    fresh retry schedule."""
    delivery.status = "pending"
    delivery.next_attempt_at = now
    delivery.finished_at = None
    delivery.attempt_count = 0
    delivery.lease_owner = None
    delivery.lease_expires_at = None
    await session.flush()


def rotated_until(subscription: WebhookSubscription, now: dt.datetime) -> dt.datetime | None:
    expires = subscription.previous_secret_expires_at
    return expires if subscription.previous_secret and expires and expires > now else None


def subscription_out(subscription: WebhookSubscription, now: dt.datetime) -> dict[str, Any]:
    return {
        "id": str(subscription.id),
        "url": subscription.url,
        "events": list(subscription.events),
        "description": subscription.description,
        "enabled": subscription.enabled,
        "disabled_reason": subscription.disabled_reason,
        "created_by": subscription.created_by,
        "created_at": subscription.created_at.isoformat(),
        "updated_at": subscription.updated_at.isoformat(),
        "secret_rotated_until": _iso(rotated_until(subscription, now)),
    }


def delivery_out(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": str(delivery.id),
        "subscription_id": str(delivery.subscription_id),
        "event": delivery.event,
        "status": delivery.status,
        "attempts": list(delivery.attempts),
        "next_attempt_at": _iso(delivery.next_attempt_at if delivery.status == "pending" else None),
        "created_at": delivery.created_at.isoformat(),
        "finished_at": _iso(delivery.finished_at),
    }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
