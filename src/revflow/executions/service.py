"""Reading and cancelling executions, version statistics, the outbox."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.engine import store
from revflow.engine.interpreter import Effects
from revflow.errors import Conflict, NotFound
from revflow.models import LIVE_STATUSES, Execution, HistoryEntry, Message


class ExecutionFinished(Conflict):
    code = "execution_finished"
    title = "The execution has already finished"


def parse_uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"No {what} {value}") from None


async def require_execution(
    session: AsyncSession, account_id: uuid.UUID, execution_id: str
) -> Execution:
    execution = await session.scalar(
        select(Execution).where(
            Execution.account_id == account_id,
            Execution.id == parse_uuid(execution_id, "execution"),
        )
    )
    if execution is None:
        raise NotFound(f"No execution {execution_id}")
    return execution


async def history(
    session: AsyncSession, account_id: uuid.UUID, execution_id: uuid.UUID
) -> Sequence[HistoryEntry]:
    return (
        await session.scalars(
            select(HistoryEntry)
            .where(HistoryEntry.account_id == account_id, HistoryEntry.execution_id == execution_id)
            .order_by(HistoryEntry.id)
        )
    ).all()


async def list_executions(
    session: AsyncSession,
    account_id: uuid.UUID,
    workflow_id: uuid.UUID,
    *,
    version: int | None,
    statuses: Sequence[str] | None,
    step: str | None,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[Execution]:
    query = select(Execution).where(
        Execution.account_id == account_id, Execution.workflow_id == workflow_id
    )
    if version is not None:
        query = query.where(Execution.version == version)
    if statuses:
        query = query.where(Execution.status.in_(statuses))
    if step is not None:
        query = query.where(Execution.current_step == step)
    if after is not None:
        query = query.where(tuple_(Execution.started_at, Execution.id) < tuple_(*after))
    query = query.order_by(Execution.started_at.desc(), Execution.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def cancel(
    session: AsyncSession, account_id: uuid.UUID, execution: Execution, now: dt.datetime
) -> None:
    locked = await store.lock_executions(session, [execution.id])
    if not locked:
        raise ExecutionFinished(f"Execution {execution.id} is {execution.status}")
    _, ex = locked[0]
    effects = Effects()
    ex.status = "cancelled"
    ex.outcome = "cancelled"
    ex.finished_at = now
    ex.wake_at = None
    effects.record(ex, now, ex.current_step or "", "cancelled", {"reason": "cancelled by API"})
    await store.write_effects(session, {ex.id: account_id}, [ex], [], effects, now)
    await session.refresh(execution)


async def version_stats(
    session: AsyncSession, account_id: uuid.UUID, workflow_id: uuid.UUID, number: int
) -> dict[str, Any]:
    where = (
        Execution.account_id == account_id,
        Execution.workflow_id == workflow_id,
        Execution.version == number,
    )
    by_status = {
        status: count
        for status, count in (
            await session.execute(
                select(Execution.status, func.count()).where(*where).group_by(Execution.status)
            )
        ).all()
    }
    by_step = {
        step or "": count
        for step, count in (
            await session.execute(
                select(Execution.current_step, func.count())
                .where(*where, Execution.status.in_(LIVE_STATUSES))
                .group_by(Execution.current_step)
            )
        ).all()
    }
    # Every goal reached counts, whether it ended the execution (outcome goal:<id>) or jumped
    # to its `then` step: each writes one history entry under the goal's id.
    goals = {
        goal: count
        for goal, count in (
            await session.execute(
                select(HistoryEntry.step, func.count(HistoryEntry.execution_id.distinct()))
                .join(Execution, Execution.id == HistoryEntry.execution_id)
                .where(*where, HistoryEntry.account_id == account_id, HistoryEntry.result == "goal")
                .group_by(HistoryEntry.step)
            )
        ).all()
    }
    completed = by_status.get("completed", 0)
    failed = by_status.get("failed", 0)
    return {
        "workflow_id": str(workflow_id),
        "version": number,
        "total": sum(by_status.values()),
        "by_status": by_status,
        "by_step": by_step,
        "completions": completed,
        "goal_conversions": goals,
        "failed": failed,
        "failure_rate": failed / (completed + failed) if completed + failed else None,
    }


async def list_messages(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    contact_id: uuid.UUID | None,
    execution_id: uuid.UUID | None,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[Message]:
    query = select(Message).where(Message.account_id == account_id)
    if contact_id is not None:
        query = query.where(Message.contact_id == contact_id)
    if execution_id is not None:
        query = query.where(Message.execution_id == execution_id)
    if after is not None:
        query = query.where(tuple_(Message.created_at, Message.id) < tuple_(*after))
    query = query.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit)
    return (await session.scalars(query)).all()
