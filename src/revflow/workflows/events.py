"""The webhook events of workflows and versions (SPEC §8), queued inside the change's
transaction: ``data`` carries ``account_id``, ``workflow_id`` and the version or workflow as the
API shows it, plus what the change says (e.g. ``previous``, ``reason``)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from revflow.kit.etag import make_etag
from revflow.models import WEBHOOK_EVENTS, Version, Workflow
from revflow.webhooks.service import Data, emit
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
    version = await session.get(Version, (account_id, version_id))
    if version is not None:
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
