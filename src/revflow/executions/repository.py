"""Queries of the executions feature: executions, their history, version statistics and the
outbox, always scoped by account. (The engine's own reads and writes of execution state are
in ``engine/store.py``.)"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Sequence

from sqlalchemy import Select, bindparam, delete, func, insert, literal_column, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.db import any_of_parameter
from revflow.models import Execution, HeldReaction, HistoryEntry, Message, Workflow


async def get_execution(
    session: AsyncSession, account_id: uuid.UUID, execution_id: uuid.UUID
) -> Execution | None:
    return await session.scalar(
        select(Execution).where(Execution.account_id == account_id, Execution.id == execution_id)
    )


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


async def status_counts(
    session: AsyncSession, account_id: uuid.UUID, workflow_id: uuid.UUID, version: int
) -> dict[str, int]:
    """Executions of one version by status."""
    rows = await session.execute(
        select(Execution.status, func.count())
        .where(
            Execution.account_id == account_id,
            Execution.workflow_id == workflow_id,
            Execution.version == version,
        )
        .group_by(Execution.status)
    )
    return {str(status): int(count) for status, count in rows.all()}


async def goal_conversions(
    session: AsyncSession, account_id: uuid.UUID, workflow_id: uuid.UUID, version: int
) -> dict[str, int]:
    """Executions of one version that reached each goal.

    Every goal reached counts, whether it ended the execution (outcome goal:<id>) or jumped to
    its ``then`` step: each writes one history entry under the goal's id."""
    rows = await session.execute(
        select(HistoryEntry.step, func.count(HistoryEntry.execution_id.distinct()))
        .join(
            Execution,
            (Execution.account_id == HistoryEntry.account_id)
            & (Execution.id == HistoryEntry.execution_id),
        )
        .where(
            Execution.account_id == account_id,
            Execution.workflow_id == workflow_id,
            Execution.version == version,
            HistoryEntry.account_id == account_id,
            HistoryEntry.result == "goal",
        )
        .group_by(HistoryEntry.step)
    )
    return {str(goal): int(count) for goal, count in rows.all()}


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


async def paused_among(
    session: AsyncSession, account_id: uuid.UUID, workflow_ids: set[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of these workflows of the account are paused."""
    if not workflow_ids:
        return set()
    query = _paused_among(session.get_bind().dialect.name == "postgresql")
    return set(await session.scalars(query, {"account": account_id, "ids": list(workflow_ids)}))


@functools.cache
def _paused_among(arrays: bool) -> Select[uuid.UUID]:
    """The paused workflows among ``:ids`` of ``:account`` (``ix_workflows_paused``, whose
    condition is written into the statement), built once."""
    return select(Workflow.id).where(
        Workflow.account_id == bindparam("account", type_=Workflow.account_id.type),
        any_of_parameter(Workflow.id, "ids", arrays=arrays),
        Workflow.status == literal_column("'paused'"),
    )


async def hold(session: AsyncSession, rows: list[dict[str, object]]) -> None:
    """Keep reactions of paused workflows' executions (applied on resume)."""
    if rows:
        await session.execute(insert(HeldReaction), rows)


async def held_reactions(
    session: AsyncSession, account_id: uuid.UUID, workflow_id: uuid.UUID
) -> Sequence[HeldReaction]:
    """The reactions held for a workflow's executions, in arrival order."""
    return (
        await session.scalars(
            select(HeldReaction)
            .where(HeldReaction.account_id == account_id, HeldReaction.workflow_id == workflow_id)
            .order_by(HeldReaction.id)
        )
    ).all()


async def drop_held(session: AsyncSession, account_id: uuid.UUID, ids: Sequence[int]) -> None:
    if ids:
        await session.execute(
            delete(HeldReaction).where(
                HeldReaction.account_id == account_id, HeldReaction.id.in_(ids)
            )
        )
