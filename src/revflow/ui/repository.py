"""The console's own read queries (everything else goes through the features' services)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.models import AuditEntry, Execution, Workflow, is_live


async def workflows(session: AsyncSession, account_id: uuid.UUID, limit: int) -> Sequence[Workflow]:
    query = (
        select(Workflow)
        .where(Workflow.account_id == account_id)
        .order_by(Workflow.updated_at.desc(), Workflow.id)
        .limit(limit)
    )
    return (await session.scalars(query)).all()


async def live_by_workflow(session: AsyncSession, account_id: uuid.UUID) -> dict[uuid.UUID, int]:
    rows = await session.execute(
        select(Execution.workflow_id, func.count())
        .where(Execution.account_id == account_id, is_live(Execution.status))
        .group_by(Execution.workflow_id)
    )
    return {workflow_id: count for workflow_id, count in rows.all()}


async def audit_entries(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    workflow_id: uuid.UUID | None,
    action: str | None,
    before_seq: int | None,
    limit: int,
) -> Sequence[AuditEntry]:
    query = select(AuditEntry).where(AuditEntry.account_id == account_id)
    if workflow_id is not None:
        query = query.where(AuditEntry.workflow_id == workflow_id)
    if action:
        query = query.where(AuditEntry.action == action)
    if before_seq is not None:
        query = query.where(AuditEntry.seq < before_seq)
    return (await session.scalars(query.order_by(AuditEntry.seq.desc()).limit(limit))).all()


async def audit_actions(session: AsyncSession, account_id: uuid.UUID) -> list[str]:
    rows = await session.scalars(
        select(AuditEntry.action).where(AuditEntry.account_id == account_id).distinct()
    )
    return sorted(rows.all())
