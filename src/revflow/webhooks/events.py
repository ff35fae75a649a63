"""The events of SPEC §8 and their ``data``: built by the features that cause them, inside
their transactions, through :func:`revflow.webhooks.service.emit`.

Every ``data`` carries ``account_id`` and ``workflow_id`` and the object the event is about
under its own name, as the API shows it (``version``, ``workflow``, ``migration``,
``execution``), plus what the change itself says (e.g. ``previous``, ``reason``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.executions.schemas import ExecutionOut
from revflow.kit.etag import make_etag
from revflow.models import WEBHOOK_EVENTS, Execution, Migration, Version, Workflow
from revflow.webhooks import repository as repo
from revflow.webhooks.service import Data, emit, emit_many
from revflow.workflows import repository as workflows_repo
from revflow.workflows.schemas import VersionOut, WorkflowOut

VERSION_EVENTS = frozenset(e for e in WEBHOOK_EVENTS if e.startswith(("version.", "canary.")))


async def version_event(
    session: AsyncSession,
    workflow: Workflow,
    version: Version,
    event: str,
    details: dict[str, Any],
    now: dt.datetime,
) -> None:
    """A change to a version (created, published, rolled back, archived, canary started,
    promoted or aborted); other version changes (tags) are not events."""
    if event not in VERSION_EVENTS:
        return

    async def data() -> Data:
        live = await workflows_repo.live_executions(
            session, workflow.account_id, workflow.id, [version.number]
        )
        fields = {n: getattr(version, n) for n in VersionOut.model_fields if n != "live_executions"}
        shown = VersionOut(**fields, live_executions=live.get(version.number, 0))
        extra = {k: v for k, v in details.items() if k not in ("number", "content_hash")}
        return {
            "workflow_id": str(workflow.id),
            "version": shown.model_dump(mode="json"),
            **extra,
        }

    await emit(session, workflow.account_id, event, data, now=now)


async def version_archived(
    session: AsyncSession,
    account_id: uuid.UUID,
    workflow: Workflow,
    version_id: uuid.UUID,
    now: dt.datetime,
) -> None:
    version = await session.get(Version, version_id)
    if version is not None and version.account_id == account_id:
        await version_event(session, workflow, version, "version.archived", {}, now)


def workflow_data(workflow: Workflow) -> Data:
    canary = None
    if workflow.canary_version is not None:
        canary = {"version": workflow.canary_version, "percent": workflow.canary_percent}
    shown = WorkflowOut.model_validate(
        {
            "id": workflow.id,
            "name": workflow.name,
            "description": workflow.description,
            "status": workflow.status,
            "current_version": workflow.current_version,
            "canary": canary,
            "etag": make_etag(workflow.id, workflow.revision),
            "version_count": workflow.version_count,
            "created_at": workflow.created_at,
            "updated_at": workflow.updated_at,
        }
    )
    return {"workflow_id": str(workflow.id), "workflow": shown.model_dump(mode="json")}


async def workflow_status_event(
    session: AsyncSession, workflow: Workflow, now: dt.datetime
) -> None:
    """``workflow.paused`` or ``workflow.resumed``."""
    event = "workflow.paused" if workflow.status == "paused" else "workflow.resumed"
    await emit(session, workflow.account_id, event, workflow_data(workflow), now=now)


async def migration_event(
    session: AsyncSession,
    migration: Migration,
    event: str,
    shown: dict[str, Any],
    now: dt.datetime,
) -> None:
    """``migration.started`` / ``completed`` / ``failed``; ``shown`` is the migration as the
    API shows it."""
    data = {"workflow_id": str(migration.workflow_id), "migration": shown}
    await emit(session, migration.account_id, event, data, now=now)


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
        a for a, _ in await repo.subscribers(session, {a for a, _ in failed}, "execution.failed")
    }
    wanted = [execution for account, execution in failed if account in listening]
    if not wanted:
        return
    rows = (await session.scalars(select(Execution).where(Execution.id.in_(wanted)))).all()
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
