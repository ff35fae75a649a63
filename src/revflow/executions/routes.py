"""Enrollments, executions, version statistics and the outbox (SPEC §4)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from revflow.deps import Editor, Now, ReadSession, Viewer, WriteSession, costs, wake_worker
from revflow.engine import store
from revflow.errors import ExecutionFinished, NotPublished, WorkflowPaused
from revflow.executions import service
from revflow.executions.enrollment import enroll
from revflow.executions.schemas import (
    MAX_ENROLLMENT,
    EnrollmentIn,
    EnrollmentOut,
    ExecutionDetail,
    ExecutionList,
    ExecutionOut,
    ExecutionStatus,
    MessageList,
    MessageOut,
    VersionStats,
)
from revflow.kit.ids import INT32_MAX
from revflow.kit.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    time_id_after,
    time_id_next,
)
from revflow.kit.transactions import commit
from revflow.models import Execution
from revflow.problems import raises
from revflow.workflows.deps import Change
from revflow.workflows.service import require_version, require_workflow

router = APIRouter(prefix="/api/v1", tags=["executions"])
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


def execution_out(execution: Execution) -> dict[str, Any]:
    return ExecutionOut.model_validate(execution, from_attributes=True).model_dump(mode="json")


async def contacts_to_enroll(request: Request) -> int:
    """An enrollment costs one rate-limit token per contact; a body that will not validate
    (the route answers 400 or 422) costs one."""
    try:
        body = await request.json()
    except ValueError:
        return 1
    ids = body.get("contact_ids") if isinstance(body, dict) else None
    if isinstance(ids, list) and 0 < len(ids) <= MAX_ENROLLMENT:
        return len(ids)
    return 1


@router.post("/workflows/{workflow_id}/enrollments", status_code=201, response_model=EnrollmentOut)
@raises(NotPublished, WorkflowPaused)
@costs(contacts_to_enroll)
async def enroll_contacts(
    request: Request, body: EnrollmentIn, change: Change, now: Now
) -> JSONResponse:
    if change.replay:
        return change.replay
    workflow = change.workflow
    if workflow.current_version is None:
        raise NotPublished(f"Workflow {workflow.id} has no published version to enroll into")
    if workflow.status == "paused":
        raise WorkflowPaused("Resume the workflow to enroll contacts")
    key = (workflow.id, workflow.current_version)
    definition = (await store.definitions(change.session, [workflow.account_id], [key]))[key]
    result = await enroll(change.session, workflow, definition, body.contact_ids, now)
    response = await change.respond(result.as_dict(), 201)
    wake_worker(request)
    return response


@router.get("/workflows/{workflow_id}/executions", response_model=ExecutionList)
async def list_executions(
    workflow_id: str,
    principal: Viewer,
    session: ReadSession,
    version: Annotated[int | None, Query(ge=1, le=INT32_MAX)] = None,
    status: Annotated[list[ExecutionStatus] | None, Query()] = None,
    step: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> dict[str, Any]:
    workflow = await require_workflow(session, principal.account_id, workflow_id)
    filters = {
        "list": f"executions:{workflow.id}",
        "version": version,
        "status": sorted(status or []),
        "step": step,
    }
    after = time_id_after(cursor, filters)
    rows = await service.list_executions(
        session,
        principal.account_id,
        workflow.id,
        version=version,
        statuses=status,
        step=step,
        after=after,
        limit=limit + 1,
    )
    next_cursor = time_id_next(rows, limit, filters, "started_at")
    return {"items": [execution_out(e) for e in rows[:limit]], "next_cursor": next_cursor}


async def _detail(session: Any, account_id: uuid.UUID, execution: Execution) -> dict[str, Any]:
    answer = execution_out(execution)
    answer["history"] = [
        {
            "at": h.at.isoformat(),
            "step": h.step,
            "result": h.result,
            "detail": h.detail,
            "error": h.error,
        }
        for h in await service.history(session, account_id, execution.id)
    ]
    answer["history_pruned"] = execution.history_pruned_at is not None
    return answer


@router.get("/executions/{execution_id}", response_model=ExecutionDetail)
async def get_execution(
    execution_id: str, principal: Viewer, session: ReadSession
) -> dict[str, Any]:
    execution = await service.require_execution(session, principal.account_id, execution_id)
    return await _detail(session, principal.account_id, execution)


@router.post("/executions/{execution_id}/cancel", response_model=ExecutionDetail)
@raises(ExecutionFinished)
async def cancel_execution(
    execution_id: str, principal: Editor, session: WriteSession, now: Now
) -> dict[str, Any]:
    execution = await service.require_execution(session, principal.account_id, execution_id)
    await service.cancel(session, principal.account_id, execution, now)
    answer = await _detail(session, principal.account_id, execution)
    await commit(session)
    return answer


@router.get("/workflows/{workflow_id}/versions/{number}/stats", response_model=VersionStats)
async def version_stats(
    workflow_id: str, number: str, principal: Viewer, session: ReadSession
) -> dict[str, Any]:
    workflow = await require_workflow(session, principal.account_id, workflow_id)
    version = await require_version(
        session, workflow, int(number) if number.isascii() and number.isdigit() else -1
    )
    return await service.version_stats(session, principal.account_id, workflow.id, version.number)


@router.get("/messages", response_model=MessageList)
async def list_messages(
    principal: Viewer,
    session: ReadSession,
    contact_id: uuid.UUID | None = None,
    execution_id: uuid.UUID | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> dict[str, Any]:
    filters = {
        "list": "messages",
        "contact_id": str(contact_id) if contact_id else None,
        "execution_id": str(execution_id) if execution_id else None,
    }
    after = time_id_after(cursor, filters)
    rows = await service.list_messages(
        session,
        principal.account_id,
        contact_id=contact_id,
        execution_id=execution_id,
        after=after,
        limit=limit + 1,
    )
    next_cursor = time_id_next(rows, limit, filters)
    items = [
        MessageOut.model_validate(m, from_attributes=True).model_dump(mode="json")
        for m in rows[:limit]
    ]
    return {"items": items, "next_cursor": next_cursor}
