"""Pruning (README "Retention"): the history of executions that finished more than
``history_retention_days`` ago, the records of finished migrations that can no longer put
anything back, outbox messages and finished webhook deliveries older than
``message_retention_days``, and idempotency records past ``idempotency_ttl_hours``.

Live executions are never touched: not their history, not their messages, not the migration
records that could still move them back. Execution and migration rows themselves are kept
(stats, canary judgement, re-enrollment rules and the audit trail refer to them); an
execution whose history was pruned says so (``history_pruned_at``).

A run goes kind by kind, account by account, in batches of about ``prune_batch_size`` rows,
each batch its own transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal, get_args

from sqlalchemy.ext.asyncio import AsyncSession

from revflow.config import Settings
from revflow.db import Database
from revflow.retention import repository as repo

Kind = Literal[
    "history", "messages", "migration_items", "idempotency_records", "webhook_deliveries"
]
KINDS: tuple[Kind, ...] = get_args(Kind)
PRUNE_JOB = "prune"


@dataclass(frozen=True)
class Cutoffs:
    """What is older than these moments goes; None keeps that kind forever (retention 0)."""

    history: dt.datetime | None
    messages: dt.datetime | None
    idempotency: dt.datetime

    @classmethod
    def of(cls, settings: Settings, now: dt.datetime) -> Cutoffs:
        def days_ago(days: int) -> dt.datetime | None:
            return now - dt.timedelta(days=days) if days > 0 else None

        return cls(
            history=days_ago(settings.history_retention_days),
            messages=days_ago(settings.message_retention_days),
            idempotency=now - dt.timedelta(hours=settings.idempotency_ttl_hours),
        )

    def of_kind(self, kind: Kind) -> dt.datetime | None:
        if kind in ("history", "migration_items"):
            return self.history
        if kind in ("messages", "webhook_deliveries"):
            return self.messages
        return self.idempotency


@dataclass(frozen=True)
class Batch:
    """One committed transaction of a run: ``rows`` of ``kind`` deleted in one account."""

    kind: Kind
    account_id: uuid.UUID
    rows: int


_COUNTS: dict[Kind, Callable[[AsyncSession, uuid.UUID, dt.datetime], Awaitable[int]]] = {
    "history": repo.count_history,
    "messages": repo.count_messages,
    "migration_items": repo.count_items,
    "idempotency_records": repo.count_records,
    "webhook_deliveries": repo.count_deliveries,
}


async def prunable(db: Database, settings: Settings, now: dt.datetime) -> dict[Kind, int]:
    """How many rows of each kind a run at ``now`` would delete (nothing is changed)."""
    cutoffs = Cutoffs.of(settings, now)
    counts: dict[Kind, int] = dict.fromkeys(KINDS, 0)
    async with db.session() as session:
        for account_id in await repo.account_ids(session):
            for kind in KINDS:
                before = cutoffs.of_kind(kind)
                if before is not None:
                    counts[kind] += await _COUNTS[kind](session, account_id, before)
    return counts


class Run:
    """One pruning run at ``now``; iterate ``batches()`` to do it, one transaction a step."""

    def __init__(self, db: Database, settings: Settings, now: dt.datetime) -> None:
        self.db = db
        self.limit = settings.prune_batch_size
        self.now = now
        self.cutoffs = Cutoffs.of(settings, now)

    async def batches(self) -> AsyncGenerator[Batch]:
        async with self.db.session() as session:
            accounts = await repo.account_ids(session)
        for kind in KINDS:
            before = self.cutoffs.of_kind(kind)
            if before is None:
                continue
            for account_id in accounts:
                async for rows in self._prune(kind, account_id, before):
                    yield Batch(kind, account_id, rows)

    def _prune(self, kind: Kind, account_id: uuid.UUID, before: dt.datetime) -> AsyncIterator[int]:
        match kind:
            case "history":
                return self._history(account_id, before)
            case "messages":
                return self._messages(account_id, before)
            case "migration_items":
                return self._items(account_id, before)
            case "idempotency_records":
                return self._repeat(
                    lambda s: repo.delete_records(s, account_id, before, self.limit)
                )
            case "webhook_deliveries":
                return self._deliveries(account_id, before)

    async def _history(self, account_id: uuid.UUID, before: dt.datetime) -> AsyncIterator[int]:
        """Executions a batch at a time, each with its whole history: an execution's history
        is either all there or all gone, with ``history_pruned_at`` set in that transaction.
        A batch takes executions until their entries reach the batch size (at least one). It
        locks twice as many candidates as the last batch took (up to the batch size), so it
        does not lock thousands of executions to prune a few hundred."""
        pick = self.limit
        while True:
            async with self.db.session(write=True) as session:
                picked = await repo.pick_executions(session, account_id, before, pick)
                if not picked:
                    return
                sizes = await repo.history_sizes(session, account_id, picked)
                taken, rows = [picked[0]], sizes.get(picked[0], 0)
                for execution_id in picked[1:]:
                    size = sizes.get(execution_id, 0)
                    if rows + size > self.limit:
                        break
                    taken.append(execution_id)
                    rows += size
                deleted = await repo.delete_history(session, account_id, taken, self.now)
                await session.commit()
            pick = min(self.limit, 2 * len(taken))
            yield deleted

    async def _messages(self, account_id: uuid.UUID, before: dt.datetime) -> AsyncIterator[int]:
        after: repo.MessageKey | None = None
        while True:
            async with self.db.session(write=True) as session:
                deleted, last = await repo.delete_messages(
                    session, account_id, before, after, self.limit
                )
                await session.commit()
            if last is None:
                return
            yield deleted
            after = last

    async def _items(self, account_id: uuid.UUID, before: dt.datetime) -> AsyncIterator[int]:
        async with self.db.session() as session:
            migrations = await repo.spent_migrations(session, account_id, before)
        for migration_id in migrations:
            delete = partial(
                repo.delete_items,
                account_id=account_id,
                migration_id=migration_id,
                limit=self.limit,
            )
            async for rows in self._repeat(delete):
                yield rows

    async def _deliveries(self, account_id: uuid.UUID, before: dt.datetime) -> AsyncIterator[int]:
        async with self.db.session() as session:
            subscriptions = await repo.subscription_ids(session, account_id)
        for subscription_id in subscriptions:
            delete = partial(
                repo.delete_deliveries,
                account_id=account_id,
                subscription_id=subscription_id,
                before=before,
                limit=self.limit,
            )
            async for rows in self._repeat(delete):
                yield rows

    async def _repeat(
        self, delete_batch: Callable[[AsyncSession], Awaitable[int]]
    ) -> AsyncIterator[int]:
        """Run a bounded delete, one transaction each, until it deletes nothing more."""
        while True:
            async with self.db.session(write=True) as session:
                deleted = await delete_batch(session)
                await session.commit()
            if deleted == 0:
                return
            yield deleted
