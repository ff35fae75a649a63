"""Webhook routes (SPEC §8): admins only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from revflow.deps import Admin, Now, ReadSession, SettingsDep, WriteSession, wake_worker
from revflow.kit.egress import EgressPolicy
from revflow.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, time_id_after, time_id_next
from revflow.kit.transactions import commit
from revflow.models import WebhookDelivery, WebhookSubscription
from revflow.webhooks import repository as repo
from revflow.webhooks import service
from revflow.webhooks.schemas import (
    DeliveryList,
    DeliveryOut,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionList,
    SubscriptionOut,
    SubscriptionUpdate,
)

router = APIRouter(prefix="/api/v1", tags=["webhooks"])

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


async def _subscription(
    webhook_id: str, principal: Admin, session: ReadSession
) -> WebhookSubscription:
    """The path's subscription, resolved as a dependency so that its 404 comes before the
    body's 422 (SPEC §4's order)."""
    return await service.require_subscription(session, principal.account_id, webhook_id)


async def _subscription_to_change(
    webhook_id: str, principal: Admin, session: WriteSession
) -> WebhookSubscription:
    """The path's subscription, locked for a change (404 before the body's 422)."""
    return await service.require_subscription(session, principal.account_id, webhook_id, lock=True)


async def _delivery(
    delivery_id: str,
    subscription: Annotated[WebhookSubscription, Depends(_subscription_to_change)],
    session: WriteSession,
) -> WebhookDelivery:
    return await service.require_delivery(session, subscription, delivery_id, lock=True)


Subscription = Annotated[WebhookSubscription, Depends(_subscription)]
ChangedSubscription = Annotated[WebhookSubscription, Depends(_subscription_to_change)]
Delivery = Annotated[WebhookDelivery, Depends(_delivery)]


@router.post("/webhooks", status_code=201, response_model=SubscriptionCreated)
async def create_webhook(
    body: SubscriptionCreate,
    principal: Admin,
    session: WriteSession,
    settings: SettingsDep,
    now: Now,
    response: Response,
) -> dict[str, Any]:
    """Subscribe a URL to events; the answer carries the signing secret, shown only here."""
    subscription = await service.create(
        session,
        principal.account_id,
        principal.actor,
        body,
        EgressPolicy.parse(settings.egress_allow),
        now,
    )
    answer = {**service.subscription_out(subscription, now), "secret": subscription.secret}
    await commit(session)
    response.headers["Location"] = f"/api/v1/webhooks/{subscription.id}"
    return answer


@router.get("/webhooks", response_model=SubscriptionList)
async def list_webhooks(
    principal: Admin,
    session: ReadSession,
    now: Now,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The account's subscriptions, newest first (never their secrets)."""
    filters = {"list": "webhooks"}
    rows = await repo.list_subscriptions(
        session, principal.account_id, after=time_id_after(cursor, filters), limit=limit + 1
    )
    return {
        "items": [service.subscription_out(s, now) for s in rows[:limit]],
        "next_cursor": time_id_next(rows, limit, filters),
    }


@router.get("/webhooks/{webhook_id}", response_model=SubscriptionOut)
async def get_webhook(webhook_id: str, subscription: Subscription, now: Now) -> dict[str, Any]:
    return service.subscription_out(subscription, now)


@router.patch("/webhooks/{webhook_id}", response_model=SubscriptionOut)
async def update_webhook(
    webhook_id: str,
    body: SubscriptionUpdate,
    subscription: ChangedSubscription,
    principal: Admin,
    session: WriteSession,
    settings: SettingsDep,
    now: Now,
) -> dict[str, Any]:
    """Change ``url``, ``events``, ``description`` or ``enabled`` (enabling clears the reason
    it was disabled)."""
    await service.update(
        session,
        principal.actor,
        subscription,
        body,
        EgressPolicy.parse(settings.egress_allow),
        now,
    )
    answer = service.subscription_out(subscription, now)
    await commit(session)
    return answer


@router.delete("/webhooks/{webhook_id}", status_code=204)
async def delete_webhook(
    webhook_id: str,
    subscription: ChangedSubscription,
    principal: Admin,
    session: WriteSession,
    now: Now,
) -> Response:
    """Delete the subscription and its deliveries."""
    await service.remove(session, principal.actor, subscription, now)
    await commit(session)
    return Response(status_code=204)


@router.post(
    "/webhooks/{webhook_id}/rotate-secret",
    response_model=SubscriptionCreated,
)
async def rotate_webhook_secret(
    webhook_id: str,
    subscription: ChangedSubscription,
    principal: Admin,
    session: WriteSession,
    now: Now,
) -> dict[str, Any]:
    """A new secret (in this answer only); the previous one keeps signing for 24 hours, so
    deliveries carry both signatures meanwhile."""
    await service.rotate_secret(session, principal.actor, subscription, now)
    answer = {**service.subscription_out(subscription, now), "secret": subscription.secret}
    await commit(session)
    return answer


@router.post("/webhooks/{webhook_id}/test", status_code=202, response_model=DeliveryOut)
async def test_webhook(
    request: Request,
    webhook_id: str,
    subscription: ChangedSubscription,
    session: WriteSession,
    now: Now,
) -> dict[str, Any]:
    """Queue a ``ping`` delivery due now; follow it in the deliveries list."""
    delivery = await service.ping(session, subscription, now)
    answer = service.delivery_out(delivery)
    await commit(session)
    wake_worker(request)
    return answer


@router.get("/webhooks/{webhook_id}/deliveries", response_model=DeliveryList)
async def list_deliveries(
    webhook_id: str,
    subscription: Subscription,
    principal: Admin,
    session: ReadSession,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The subscription's deliveries, newest first, each with every attempt."""
    filters = {"list": "webhook_deliveries", "webhook": str(subscription.id)}
    rows = await repo.list_deliveries(
        session,
        principal.account_id,
        subscription.id,
        after=time_id_after(cursor, filters),
        limit=limit + 1,
    )
    return {
        "items": [service.delivery_out(d) for d in rows[:limit]],
        "next_cursor": time_id_next(rows, limit, filters),
    }


@router.post(
    "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryOut,
)
async def redeliver(
    request: Request,
    webhook_id: str,
    delivery_id: str,
    delivery: Delivery,
    session: WriteSession,
    now: Now,
) -> dict[str, Any]:
    """Send the delivery again now, with the same ``webhook-id``."""
    await service.redeliver(session, delivery, now)
    answer = service.delivery_out(delivery)
    await commit(session)
    wake_worker(request)
    return answer
