"""The SQL of webhooks: subscriptions, the delivery outbox, and the workers' claims on it."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.db import of_accounts
from revflow.models import WebhookDelivery, WebhookSubscription

DELIVERIES = cast(Table, WebhookDelivery.__table__)
# Built once: every change of a workflow or version asks it.
_SUBSCRIBERS = select(
    WebhookSubscription.account_id, WebhookSubscription.id, WebhookSubscription.events
).where(
    WebhookSubscription.account_id.in_(bindparam("accounts", expanding=True)),
    WebhookSubscription.enabled.is_(True),
)


Subscription = tuple[uuid.UUID, list[str] | None]
"""An enabled subscription and the events it takes."""


@dataclass
class _ReadAlong:
    """The enabled subscriptions of accounts, read by another statement of ``transaction``
    (kept in ``session.info``)."""

    transaction: object
    by_account: dict[uuid.UUID, list[Subscription]]


_READ_ALONG = "webhook_subscriptions_read_along"


def read_along(
    session: AsyncSession, account_id: uuid.UUID, subscriptions: Iterable[Subscription]
) -> None:
    """Keep the account's enabled subscriptions, read by another statement of the session's
    current transaction, so that :func:`subscribers` asks nothing more in that transaction.
    Rows whose id is None (an outer join that found none) are left out."""
    transaction = session.sync_session.get_transaction()
    known = session.info.get(_READ_ALONG)
    if not isinstance(known, _ReadAlong) or known.transaction is not transaction:
        known = session.info[_READ_ALONG] = _ReadAlong(transaction, {})
    known.by_account[account_id] = [(id_, events) for id_, events in subscriptions if id_]


def forget_read_along(session: AsyncSession) -> None:
    """A subscription changes in this transaction: what was read along no longer holds."""
    session.info.pop(_READ_ALONG, None)


def _read_along(
    session: AsyncSession, accounts: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Subscription]] | None:
    known = session.info.get(_READ_ALONG)
    if not isinstance(known, _ReadAlong):
        return None
    if known.transaction is not session.sync_session.get_transaction():
        return None
    if any(account not in known.by_account for account in accounts):
        return None
    return known.by_account


async def subscribers(
    session: AsyncSession, account_ids: Iterable[uuid.UUID], event: str
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(account, subscription) of the enabled subscriptions to ``event`` of these accounts;
    read again unless this transaction read them already (:func:`read_along`).

    An account has a handful of subscriptions: their event lists are filtered here rather
    than with JSON operators that differ between the two databases."""
    accounts = sorted(set(account_ids))
    if not accounts:
        return []
    known = _read_along(session, accounts)
    if known is not None:
        return [
            (account, id_)
            for account in accounts
            for id_, events in known[account]
            if event in (events or [])
        ]
    rows = await session.execute(_SUBSCRIBERS, {"accounts": accounts})
    return [(row.account_id, row.id) for row in rows.all() if event in (row.events or [])]


async def insert_deliveries(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(DELIVERIES), list(rows))


async def get_subscription(
    session: AsyncSession, account_id: uuid.UUID, subscription_id: uuid.UUID, *, lock: bool = False
) -> WebhookSubscription | None:
    query = select(WebhookSubscription).where(
        WebhookSubscription.account_id == account_id, WebhookSubscription.id == subscription_id
    )
    if lock:
        query = query.with_for_update()
    return await session.scalar(query)


async def list_subscriptions(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[WebhookSubscription]:
    query = select(WebhookSubscription).where(WebhookSubscription.account_id == account_id)
    if after is not None:
        query = query.where(
            tuple_(WebhookSubscription.created_at, WebhookSubscription.id) < tuple_(*after)
        )
    query = query.order_by(
        WebhookSubscription.created_at.desc(), WebhookSubscription.id.desc()
    ).limit(limit)
    return (await session.scalars(query)).all()


async def get_delivery(
    session: AsyncSession,
    account_id: uuid.UUID,
    subscription_id: uuid.UUID,
    delivery_id: uuid.UUID,
    *,
    lock: bool = False,
) -> WebhookDelivery | None:
    query = select(WebhookDelivery).where(
        WebhookDelivery.account_id == account_id,
        WebhookDelivery.subscription_id == subscription_id,
        WebhookDelivery.id == delivery_id,
    )
    if lock:
        query = query.with_for_update()
    return await session.scalar(query)


async def list_deliveries(
    session: AsyncSession,
    account_id: uuid.UUID,
    subscription_id: uuid.UUID,
    *,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[WebhookDelivery]:
    query = select(WebhookDelivery).where(
        WebhookDelivery.account_id == account_id,
        WebhookDelivery.subscription_id == subscription_id,
    )
    if after is not None:
        query = query.where(tuple_(WebhookDelivery.created_at, WebhookDelivery.id) < tuple_(*after))
    query = query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(
        limit
    )
    return (await session.scalars(query)).all()


@dataclass
class Claimed:
    """A delivery a worker holds under lease, with what it needs to send it."""

    id: uuid.UUID
    account_id: uuid.UUID
    subscription_id: uuid.UUID
    event: str
    body: str
    attempts: list[dict[str, Any]]
    attempt_count: int
    url: str
    enabled: bool
    secrets: list[str]


async def claim_due(
    session: AsyncSession,
    now: dt.datetime,
    limit: int,
    owner: str,
    lease_until: dt.datetime,
) -> list[Claimed]:
    """Lock up to ``limit`` due deliveries (skipping rows other workers hold) and lease them
    to ``owner``, oldest first; the caller commits, then sends them outside any transaction.

    One ``UPDATE … WHERE (account_id, id) IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING``
    leases and reads them (its text does not depend on how many it finds, so it is prepared
    once per connection), and one query reads their few subscriptions."""
    due = (
        select(DELIVERIES.c.account_id, DELIVERIES.c.id)
        .where(
            DELIVERIES.c.status == "pending",
            DELIVERIES.c.next_attempt_at <= now,
            or_(DELIVERIES.c.lease_expires_at.is_(None), DELIVERIES.c.lease_expires_at < now),
        )
        .order_by(DELIVERIES.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    leased = (
        await session.execute(
            update(DELIVERIES)
            .where(tuple_(DELIVERIES.c.account_id, DELIVERIES.c.id).in_(due))
            .values(lease_owner=owner, lease_expires_at=lease_until)
            .returning(
                DELIVERIES.c.id,
                DELIVERIES.c.account_id,
                DELIVERIES.c.subscription_id,
                DELIVERIES.c.event,
                DELIVERIES.c.body,
                DELIVERIES.c.attempts,
                DELIVERIES.c.attempt_count,
                DELIVERIES.c.next_attempt_at,
            )
        )
    ).all()
    if not leased:
        return []
    subs = WebhookSubscription
    pairs = sorted({(row.account_id, row.subscription_id) for row in leased})
    found = {
        (row.account_id, row.id): row
        for row in await session.execute(
            select(
                subs.account_id,
                subs.id,
                subs.url,
                subs.enabled,
                subs.secret,
                subs.previous_secret,
                subs.previous_secret_expires_at,
            ).where(tuple_(subs.account_id, subs.id).in_(pairs))
        )
    }
    claimed = []
    for row in sorted(leased, key=lambda row: (row.next_attempt_at, row.id)):
        sub = found.get((row.account_id, row.subscription_id))
        if sub is None:
            continue  # deleted with its deliveries meanwhile
        secrets = [sub.secret]
        if (
            sub.previous_secret
            and sub.previous_secret_expires_at
            and (sub.previous_secret_expires_at > now)
        ):
            secrets.append(sub.previous_secret)
        claimed.append(
            Claimed(
                id=row.id,
                account_id=row.account_id,
                subscription_id=row.subscription_id,
                event=row.event,
                body=row.body,
                attempts=list(row.attempts or []),
                attempt_count=row.attempt_count,
                url=sub.url,
                enabled=sub.enabled,
                secrets=secrets,
            )
        )
    return claimed


async def record_results(
    session: AsyncSession, owner: str, results: Sequence[dict[str, Any]]
) -> int:
    """Write the outcome of sent deliveries, each only if ``owner`` still holds its lease
    (a worker whose lease expired meanwhile records nothing: another one has it now).
    Answers how many were written."""
    if not results:
        return 0
    result = await session.execute(
        update(DELIVERIES)
        .where(
            DELIVERIES.c.account_id == bindparam("_account"),
            DELIVERIES.c.id == bindparam("_id"),
            DELIVERIES.c.lease_owner == owner,
            DELIVERIES.c.status == "pending",
        )
        .values(
            status=bindparam("status"),
            attempts=bindparam("attempts"),
            attempt_count=bindparam("attempt_count"),
            next_attempt_at=bindparam("next_attempt_at"),
            finished_at=bindparam("finished_at"),
            lease_owner=None,
            lease_expires_at=None,
        ),
        list(results),
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def release(
    session: AsyncSession, owner: str, keys: Sequence[tuple[uuid.UUID, uuid.UUID]]
) -> None:
    """Hand back ``owner``'s leases on deliveries, given as (account, id), it claimed but will
    not send (it is stopping): they are due again at once for any worker."""
    if keys:
        await session.execute(
            update(DELIVERIES)
            .where(
                of_accounts(WebhookDelivery, keys),
                DELIVERIES.c.lease_owner == owner,
                DELIVERIES.c.status == "pending",
            )
            .values(lease_owner=None, lease_expires_at=None)
        )


async def disable_subscription(
    session: AsyncSession,
    account_id: uuid.UUID,
    subscription_id: uuid.UUID,
    reason: str,
    now: dt.datetime,
) -> bool:
    """Disable an enabled subscription; answers whether this call disabled it."""
    result = await session.execute(
        update(WebhookSubscription)
        .where(
            WebhookSubscription.account_id == account_id,
            WebhookSubscription.id == subscription_id,
            WebhookSubscription.enabled.is_(True),
        )
        .values(enabled=False, disabled_reason=reason, updated_at=now)
        .returning(WebhookSubscription.id)
    )
    return result.first() is not None
