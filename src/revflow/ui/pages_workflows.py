"""The workflow list and a workflow's version history (with pause / resume and its draft)."""

from __future__ import annotations

from contextlib import suppress
from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from revflow.deps import wake_worker
from revflow.errors import RevflowError
from revflow.migrations import service as migrations
from revflow.releases import service as releases
from revflow.ui import repository as ui_repo
from revflow.ui.page import (
    EditorPage,
    Page,
    PageRoute,
    ViewerPage,
    commit,
    form_errors,
    see_other,
)
from revflow.workflows import drafts, service
from revflow.workflows import repository as repo
from revflow.workflows.schemas import WorkflowCreate

router = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)

LIST_LIMIT = 200
HISTORY_LIMIT = 100


async def _list(page: Page, **extra: object) -> HTMLResponse:
    rows = await ui_repo.workflows(page.db, page.principal.account_id, LIST_LIMIT)
    live = await ui_repo.live_by_workflow(page.db, page.principal.account_id)
    return page.render(
        "workflows.html",
        status=int(str(extra.pop("status", 200))),
        workflows=rows,
        live=live,
        limited=len(rows) == LIST_LIMIT,
        **extra,
    )


@router.get("/workflows")
async def workflow_list(page: ViewerPage) -> HTMLResponse:
    return await _list(page, form={}, errors={})


@router.post("/workflows")
async def create_workflow(
    page: EditorPage,
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
) -> Response:
    try:
        body = WorkflowCreate(name=name, description=description)
    except ValidationError as exc:
        return await _list(
            page,
            form={"name": name, "description": description},
            errors=form_errors(exc),
            status=422,
        )
    workflow, _ = await service.create_workflow(
        page.db, page.principal, body, page.request.app.state.settings, page.now
    )
    await commit(page)
    return see_other(f"/ui/workflows/{workflow.id}/edit")


@router.get("/workflows/{workflow_id}")
async def history(
    workflow_id: str, page: ViewerPage, archived: bool = False, error: str | None = None
) -> HTMLResponse:
    account = page.principal.account_id
    workflow = await service.require_workflow(page.db, account, workflow_id)
    versions = await repo.list_versions(
        page.db,
        account,
        workflow.id,
        statuses=None,
        tag=None,
        include_archived=archived,
        before_number=None,
        limit=HISTORY_LIMIT,
    )
    live = await repo.live_executions(page.db, account, workflow.id, [v.number for v in versions])
    current = await repo.get_version_by_status(page.db, account, workflow.id, "published")
    canary = await repo.get_version_by_status(page.db, account, workflow.id, "canary")
    pinned = sorted(
        versions, key=lambda v: (v.status not in ("canary", "published"), -int(v.number))
    )
    return page.render(
        "history.html",
        workflow=workflow,
        versions=pinned,
        live=live,
        current=current,
        canary=canary,
        draft=await drafts.get(page.db, workflow, page.principal.user),
        migrations=await migrations.list_migrations(page.db, workflow, after=None, limit=5),
        archived=archived,
        error=error,
        now=page.now,
    )


async def _set_status(page: EditorPage, workflow_id: str, status: str) -> Response:
    workflow = await service.require_workflow(
        page.db, page.principal.account_id, workflow_id, lock=True
    )
    if status == "active":
        # Resume applies what was held for the workflow's executions while it was paused.
        await releases.resume(page.db, page.principal, workflow, page.now)
    else:
        await service.set_status(page.db, page.principal, workflow, status, page.now)
    await commit(page)
    if status == "active":
        wake_worker(page.request)
    return see_other(f"/ui/workflows/{workflow.id}")


@router.post("/workflows/{workflow_id}/pause")
async def pause(workflow_id: str, page: EditorPage) -> Response:
    return await _set_status(page, workflow_id, "paused")


@router.post("/workflows/{workflow_id}/resume")
async def resume(workflow_id: str, page: EditorPage) -> Response:
    return await _set_status(page, workflow_id, "active")


@router.post("/workflows/{workflow_id}/draft/discard")
async def discard_draft(workflow_id: str, page: EditorPage) -> Response:
    workflow = await service.require_workflow(page.db, page.principal.account_id, workflow_id)
    # Already gone (discarded in another tab) is the outcome the user asked for.
    with suppress(RevflowError):
        await drafts.discard(page.db, workflow, page.principal.user)
    await commit(page)
    return see_other(f"/ui/workflows/{workflow.id}")
