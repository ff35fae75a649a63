"""Reading and cancelling executions, version statistics, the outbox."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from revflow.engine import store
from revflow.engine.interpreter import Effects
from revflow.errors import ExecutionFinished, NotFound
from revflow.executions import repository as repo
from revflow.kit.ids import require_id
from revflow.models import Execution, HistoryEntry, Message


async def require_execution(
    session: AsyncSession, account_id: uuid.UUID, execution_id: str
) -> Execution:
    execution = await repo.get_execution(session, account_id, require_id(execution_id, "execution"))
    if execution is None:
        raise NotFound(f"No execution {execution_id}")
    return execution


async def history(
    session: AsyncSession, account_id: uuid.UUID, execution_id: uuid.UUID
) -> Sequence[HistoryEntry]:
    return await repo.history(session, account_id, execution_id)


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
    return await repo.list_executions(
        session,
        account_id,
        workflow_id,
        version=version,
        statuses=statuses,
        step=step,
        after=after,
        limit=limit,
    )


async def cancel(
    session: AsyncSession, account_id: uuid.UUID, execution: Execution, now: dt.datetime
) -> None:
    locked = await store.lock_executions(session, [(account_id, execution.id)])
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
    by_status = await repo.status_counts(session, account_id, workflow_id, number)
    by_step = await store.live_by_step(session, account_id, workflow_id, number)
    goals = await repo.goal_conversions(session, account_id, workflow_id, number)
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
    return await repo.list_messages(
        session,
        account_id,
        contact_id=contact_id,
        execution_id=execution_id,
        after=after,
        limit=limit,
    )
