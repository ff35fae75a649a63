"""The webhook event of executions (SPEC §8): ``execution.failed``, queued in the transaction
that failed them, with the execution as the API shows it."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.db import of_accounts
from revflow.executions.schemas import ExecutionOut
from revflow.models import Execution
from revflow.webhooks import repository as webhooks_repo
from revflow.webhooks.service import Data, emit_many


async def executions_failed(
    session: AsyncSession,
    failed: Sequence[tuple[uuid.UUID, uuid.UUID]],
    now: dt.datetime,
) -> None:
    """``execution.failed`` for each (account, execution) that failed in this transaction;
    the executions are read only when one of their accounts listens."""
    if not failed:
        return
    listening = {
        a
        for a, _ in await webhooks_repo.subscribers(
            session, {a for a, _ in failed}, "execution.failed"
        )
    }
    wanted = [(account, execution) for account, execution in failed if account in listening]
    if not wanted:
        return
    rows = (await session.scalars(select(Execution).where(of_accounts(Execution, wanted)))).all()
    items: list[tuple[uuid.UUID, Data]] = []
    for execution in rows:
        shown = ExecutionOut.model_validate(execution, from_attributes=True)
        items.append(
            (
                execution.account_id,
                {
                    "workflow_id": str(execution.workflow_id),
                    "execution": shown.model_dump(mode="json"),
                },
            )
        )
    await emit_many(session, "execution.failed", items, now=now)
