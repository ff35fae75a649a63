"""Pruning's SQL, one account at a time: what may go, and the batched deletes.

Every delete first picks its rows' keys with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite
runs one writer at a time), then deletes those keys, so runs that overlap split the rows
between them and none is deleted twice. The pick is its own statement: as a subquery of the
DELETE, PostgreSQL may rescan a locking ``LIMIT`` sub-select, which then skips the rows the
DELETE already removed and hands out more, so one statement deleted more than its batch.
Each statement is bounded by ``limit`` and committed by the caller as its own transaction: a
run that dies leaves whole batches behind, and the next one goes on from there.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    ColumnElement,
    delete,
    exists,
    func,
    literal_column,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from revflow.models import (
    FINISHED_STATUSES,
    HISTORY_UNPRUNED,
    MIGRATION_UNFINISHED,
    Account,
    Execution,
    HistoryEntry,
    IdempotencyRecord,
    Message,
    Migration,
    MigrationItem,
    WebhookDelivery,
    WebhookSubscription,
    is_live,
)

DELIVERY_FINISHED = ("delivered", "failed")
# Written as the partial index's own predicate, so that PostgreSQL uses that index.
_UNPRUNED = literal_column(HISTORY_UNPRUNED, Boolean())


async def _deleted(session: AsyncSession, statement: Any) -> int:
    result = cast(CursorResult[Any], await session.execute(statement))
    return int(result.rowcount or 0)


async def _count(session: AsyncSession, query: Any) -> int:
    return int(await session.scalar(query) or 0)


async def account_ids(session: AsyncSession) -> list[uuid.UUID]:
    return list(await session.scalars(select(Account.id).order_by(Account.id)))


# -- finished executions' history --------------------------------------------------------


def _history_prunable(account_id: uuid.UUID, before: dt.datetime) -> list[ColumnElement[bool]]:
    return [Execution.account_id == account_id, _UNPRUNED, Execution.finished_at < before]


async def pick_executions(
    session: AsyncSession, account_id: uuid.UUID, before: dt.datetime, limit: int
) -> list[uuid.UUID]:
    """Finished executions, finished before ``before``, whose history is still there
    (locked, oldest first)."""
    query = (
        select(Execution.id)
        .where(*_history_prunable(account_id, before))
        .order_by(Execution.finished_at, Execution.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(await session.scalars(query))


async def history_sizes(
    session: AsyncSession, account_id: uuid.UUID, execution_ids: list[uuid.UUID]
) -> dict[uuid.UUID, int]:
    rows = await session.execute(
        select(HistoryEntry.execution_id, func.count())
        .where(HistoryEntry.account_id == account_id, HistoryEntry.execution_id.in_(execution_ids))
        .group_by(HistoryEntry.execution_id)
    )
    return {row[0]: int(row[1]) for row in rows.all()}


async def delete_history(
    session: AsyncSession, account_id: uuid.UUID, execution_ids: list[uuid.UUID], now: dt.datetime
) -> int:
    """Delete these executions' whole history and mark them pruned; answers the rows."""
    deleted = await _deleted(
        session,
        delete(HistoryEntry).where(
            HistoryEntry.account_id == account_id, HistoryEntry.execution_id.in_(execution_ids)
        ),
    )
    await session.execute(
        update(Execution)
        .where(Execution.account_id == account_id, Execution.id.in_(execution_ids))
        .values(history_pruned_at=now)
    )
    return deleted


async def count_history(session: AsyncSession, account_id: uuid.UUID, before: dt.datetime) -> int:
    return await _count(
        session,
        select(func.count())
        .select_from(HistoryEntry)
        .join(
            Execution,
            (Execution.account_id == HistoryEntry.account_id)
            & (Execution.id == HistoryEntry.execution_id),
        )
        .where(HistoryEntry.account_id == account_id, *_history_prunable(account_id, before)),
    )


# -- messages ------------------------------------------------------------------------------


def _messages_prunable(account_id: uuid.UUID, before: dt.datetime) -> list[ColumnElement[bool]]:
    # A message of an execution that is still live stays with it until it finishes.
    live = exists().where(
        Execution.account_id == Message.account_id,
        Execution.id == Message.execution_id,
        is_live(Execution.status),
    )
    return [Message.account_id == account_id, Message.created_at < before, ~live]


MessageKey = tuple[dt.datetime, uuid.UUID]


async def delete_messages(
    session: AsyncSession,
    account_id: uuid.UUID,
    before: dt.datetime,
    after: MessageKey | None,
    limit: int,
) -> tuple[int, MessageKey | None]:
    """Delete up to ``limit`` messages, oldest first after ``after``; answers how many and
    the last one's key, where the next batch starts (past messages that must stay), or None
    when none was left."""
    pick = select(Message.id, Message.created_at).where(*_messages_prunable(account_id, before))
    if after is not None:
        pick = pick.where(tuple_(Message.created_at, Message.id) > tuple_(*after))
    pick = (
        pick.order_by(Message.created_at, Message.id)
        .limit(limit)
        .with_for_update(of=Message, skip_locked=True)
    )
    picked = (await session.execute(pick)).all()
    if not picked:
        return 0, None
    ids = [row[0] for row in picked]
    deleted = await _deleted(
        session, delete(Message).where(Message.account_id == account_id, Message.id.in_(ids))
    )
    return deleted, (picked[-1][1], picked[-1][0])


async def count_messages(session: AsyncSession, account_id: uuid.UUID, before: dt.datetime) -> int:
    return await _count(
        session,
        select(func.count()).select_from(Message).where(*_messages_prunable(account_id, before)),
    )


# -- finished migrations' records --------------------------------------------------------


async def spent_migrations(
    session: AsyncSession, account_id: uuid.UUID, before: dt.datetime
) -> list[uuid.UUID]:
    """Migrations finished before ``before`` that still have items but can no longer put
    anything back: no execution they moved is live (a revert moves back only live
    executions still where the migration put them, and a finished execution never runs
    again), and no revert of them is still running (its batches read these items)."""
    revert = aliased(Migration)
    revert_running = exists().where(
        revert.account_id == Migration.account_id,
        revert.reverts == Migration.id,
        revert.status.in_(MIGRATION_UNFINISHED),
    )
    moved_live = exists().where(
        MigrationItem.account_id == Migration.account_id,
        MigrationItem.migration_id == Migration.id,
        MigrationItem.state == "migrated",
        Execution.account_id == MigrationItem.account_id,
        Execution.id == MigrationItem.execution_id,
        is_live(Execution.status),
    )
    item = aliased(MigrationItem)
    has_items = exists().where(
        item.account_id == Migration.account_id, item.migration_id == Migration.id
    )
    query = (
        select(Migration.id)
        .where(
            Migration.account_id == account_id,
            Migration.status.in_(FINISHED_STATUSES),
            Migration.finished_at < before,
            has_items,
            ~revert_running,
            ~moved_live,
        )
        .order_by(Migration.finished_at, Migration.id)
    )
    return list(await session.scalars(query))


async def delete_items(
    session: AsyncSession, account_id: uuid.UUID, migration_id: uuid.UUID, limit: int
) -> int:
    where = (MigrationItem.account_id == account_id, MigrationItem.migration_id == migration_id)
    pick = (
        select(MigrationItem.execution_id)
        .where(*where)
        .order_by(MigrationItem.execution_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(await session.scalars(pick))
    if not ids:
        return 0
    return await _deleted(
        session, delete(MigrationItem).where(*where, MigrationItem.execution_id.in_(ids))
    )


async def count_items(session: AsyncSession, account_id: uuid.UUID, before: dt.datetime) -> int:
    migrations = await spent_migrations(session, account_id, before)
    if not migrations:
        return 0
    return await _count(
        session,
        select(func.count())
        .select_from(MigrationItem)
        .where(MigrationItem.account_id == account_id, MigrationItem.migration_id.in_(migrations)),
    )


# -- expired idempotency records ---------------------------------------------------------


def _records_expired(account_id: uuid.UUID, before: dt.datetime) -> list[ColumnElement[bool]]:
    return [IdempotencyRecord.account_id == account_id, IdempotencyRecord.created_at < before]


async def delete_records(
    session: AsyncSession, account_id: uuid.UUID, before: dt.datetime, limit: int
) -> int:
    pick = (
        select(IdempotencyRecord.scope, IdempotencyRecord.key)
        .where(*_records_expired(account_id, before))
        .order_by(IdempotencyRecord.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    keys = [(row[0], row[1]) for row in (await session.execute(pick)).all()]
    if not keys:
        return 0
    return await _deleted(
        session,
        delete(IdempotencyRecord).where(
            IdempotencyRecord.account_id == account_id,
            tuple_(IdempotencyRecord.scope, IdempotencyRecord.key).in_(keys),
        ),
    )


async def count_records(session: AsyncSession, account_id: uuid.UUID, before: dt.datetime) -> int:
    return await _count(
        session,
        select(func.count())
        .select_from(IdempotencyRecord)
        .where(*_records_expired(account_id, before)),
    )


# -- finished webhook deliveries ---------------------------------------------------------


async def subscription_ids(session: AsyncSession, account_id: uuid.UUID) -> list[uuid.UUID]:
    return list(
        await session.scalars(
            select(WebhookSubscription.id)
            .where(WebhookSubscription.account_id == account_id)
            .order_by(WebhookSubscription.id)
        )
    )


def _deliveries_finished(
    account_id: uuid.UUID, subscription_id: uuid.UUID | None, before: dt.datetime
) -> list[ColumnElement[bool]]:
    where = [
        WebhookDelivery.account_id == account_id,
        WebhookDelivery.status.in_(DELIVERY_FINISHED),
        WebhookDelivery.created_at < before,
    ]
    if subscription_id is not None:
        where.append(WebhookDelivery.subscription_id == subscription_id)
    return where


async def delete_deliveries(
    session: AsyncSession,
    account_id: uuid.UUID,
    subscription_id: uuid.UUID,
    before: dt.datetime,
    limit: int,
) -> int:
    pick = (
        select(WebhookDelivery.id)
        .where(*_deliveries_finished(account_id, subscription_id, before))
        .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(await session.scalars(pick))
    if not ids:
        return 0
    return await _deleted(
        session,
        delete(WebhookDelivery).where(
            WebhookDelivery.account_id == account_id, WebhookDelivery.id.in_(ids)
        ),
    )


async def count_deliveries(
    session: AsyncSession, account_id: uuid.UUID, before: dt.datetime
) -> int:
    return await _count(
        session,
        select(func.count())
        .select_from(WebhookDelivery)
        .where(*_deliveries_finished(account_id, None, before)),
    )
