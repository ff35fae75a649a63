"""The version view, the compare view, and the actions that change what contacts run —
publish, canary, promote, abort, rollback — each behind a page that shows its impact first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query
from fastapi.responses import HTMLResponse, Response

from revflow.engine import store
from revflow.errors import NoCanary, RevflowError, ValidationFailed
from revflow.executions.service import version_stats
from revflow.kit.etag import check_if_match, make_etag
from revflow.models import Version, Workflow
from revflow.ui.graph import to_dot
from revflow.ui.page import EditorPage, Page, PageRoute, ViewerPage, commit, see_other
from revflow.workflows import repository as repo
from revflow.workflows import service
from revflow.workflows.compare import compare_versions

router = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)


async def _version(page: Page, workflow_id: str, number: str, *, lock: bool = False) -> Version:
    workflow = await service.require_workflow(
        page.db, page.principal.account_id, workflow_id, lock=lock
    )
    return await service.require_version(
        page.db, workflow, service.version_number(workflow, number)
    )


async def _live_by_step(page: Page, version: Version) -> dict[str, int]:
    return await store.live_by_step(
        page.db, version.account_id, version.workflow_id, version.number
    )


async def comparison(page: Page, source: Version, target: Version) -> dict[str, Any]:
    """The compare answer (SPEC §5) with both graphs drawn, coloured by the changes."""
    _, answer = await compare_versions(page.db, source, target)
    marks: dict[str, dict[str, str]] = {"from": {}, "to": {}}
    goal_marks: dict[str, dict[str, str]] = {"from": {}, "to": {}}
    for change in answer["changes"]:
        into = marks if change["entity"] == "step" else goal_marks
        if change["entity"] not in ("step", "goal") or change["id"] is None:
            continue
        if change["kind"] in ("removed", "modified"):
            into["from"][change["id"]] = change["kind"]
        if change["kind"] in ("added", "modified"):
            into["to"][change["id"]] = change["kind"]
    answer["dot_from"] = to_dot(
        source.definition,
        live=await _live_by_step(page, source),
        marks=marks["from"],
        goal_marks=goal_marks["from"],
    )
    answer["dot_to"] = to_dot(
        target.definition,
        live=await _live_by_step(page, target),
        marks=marks["to"],
        goal_marks=goal_marks["to"],
    )
    answer["source"] = source
    answer["target"] = target
    return answer


@router.get("/workflows/{workflow_id}/versions/{number}")
async def version_view(workflow_id: str, number: str, page: ViewerPage) -> HTMLResponse:
    version = await _version(page, workflow_id, number)
    workflow = await service.require_workflow(page.db, page.principal.account_id, workflow_id)
    live = await _live_by_step(page, version)
    return page.render(
        "version.html",
        workflow=workflow,
        version=version,
        live_total=sum(live.values()),
        dot=to_dot(version.definition, live=live),
        stats=await version_stats(page.db, page.principal.account_id, workflow.id, version.number),
        now=page.now,
    )


@router.get("/workflows/{workflow_id}/compare")
async def compare_view(
    workflow_id: str,
    page: ViewerPage,
    from_: Annotated[str, Query(alias="from")] = "",
    to: str = "",
) -> HTMLResponse:
    workflow = await service.require_workflow(page.db, page.principal.account_id, workflow_id)
    numbers = list(range(workflow.version_count, 0, -1))
    if not numbers:
        raise ValidationFailed([{"pointer": "", "message": "this workflow has no versions yet"}])
    latest = numbers[0]
    source_number = int(from_) if from_.isdigit() else (workflow.current_version or latest)
    target_number = int(to) if to.isdigit() else latest
    source = await service.require_version(page.db, workflow, source_number)
    target = await service.require_version(page.db, workflow, target_number)
    return page.render(
        "compare.html",
        workflow=workflow,
        numbers=numbers,
        diff=await comparison(page, source, target),
    )


# --- actions behind an impact page --------------------------------------------------------------


@dataclass
class Action:
    """One change that contacts feel: what it is called, what it compares, what it does."""

    verb: str  # the button: "Publish version 3"
    url: str
    source: Version | None  # what runs now
    target: Version  # what will run
    fields: tuple[str, ...] = ()  # extra inputs: "canary_percent", "reason"
    note: str = ""


async def _impact(
    page: Page,
    workflow: Workflow,
    action: Action,
    *,
    error: RevflowError | None = None,
    **form: Any,
) -> HTMLResponse:
    diff = None
    if action.source is not None and action.source.number != action.target.number:
        diff = await comparison(page, action.source, action.target)
    live = await repo.live_executions(
        page.db,
        workflow.account_id,
        workflow.id,
        [v.number for v in (action.source, action.target) if v is not None],
    )
    return page.render(
        "confirm.html",
        status=error.status if error else 200,
        workflow=workflow,
        action=action,
        diff=diff,
        live=live,
        etag=make_etag(workflow.id, workflow.revision),
        error=error,
        form=form,
    )


async def _current(page: Page, workflow: Workflow) -> Version | None:
    if workflow.current_version is None:
        return None
    return await service.require_version(page.db, workflow, workflow.current_version)


async def _canary(page: Page, workflow: Workflow) -> Version:
    canary = await repo.get_version_by_status(page.db, workflow.account_id, workflow.id, "canary")
    if canary is None:
        raise NoCanary("No canary is running on this workflow")
    return canary


async def _publish_action(page: Page, workflow: Workflow, number: str, canary: bool) -> Action:
    target = await service.require_version(
        page.db, workflow, service.version_number(workflow, number)
    )
    base = f"/ui/workflows/{workflow.id}/versions/{target.number}"
    if canary:
        return Action(
            f"Start canary of version {target.number}",
            f"{base}/publish?canary=1",
            await _current(page, workflow),
            target,
            fields=("canary_percent",),
            note="New enrollments are split between the current version and the canary; "
            "running executions stay on the version they started on.",
        )
    return Action(
        f"Publish version {target.number}",
        f"{base}/publish",
        await _current(page, workflow),
        target,
        note="New enrollments run this version; running executions stay on theirs.",
    )


async def _rollback_action(page: Page, workflow: Workflow, number: str) -> Action:
    target = await service.require_version(
        page.db, workflow, service.version_number(workflow, number)
    )
    return Action(
        f"Roll back to version {target.number}",
        f"/ui/workflows/{workflow.id}/versions/{target.number}/rollback",
        await _current(page, workflow),
        target,
        fields=("reason",),
        note="New enrollments run this version again; a running canary is aborted. "
        "Executions of the current version stay on it unless you migrate them afterwards.",
    )


async def _promote_action(page: Page, workflow: Workflow) -> Action:
    return Action(
        "Promote the canary",
        f"/ui/workflows/{workflow.id}/canary/promote",
        await _current(page, workflow),
        await _canary(page, workflow),
        note="Every new enrollment runs the canary version; the current one is retired.",
    )


async def _abort_action(page: Page, workflow: Workflow) -> Action:
    canary = await _canary(page, workflow)
    current = await _current(page, workflow)
    return Action(
        "Abort the canary",
        f"/ui/workflows/{workflow.id}/canary/abort",
        canary,
        current or canary,
        fields=("reason",),
        note="New enrollments go back to the current version; the canary's executions run "
        "on, on it.",
    )


Act = Callable[[Page, Workflow, Action, dict[str, str]], Awaitable[None]]


async def _confirmed(
    page: EditorPage,
    workflow_id: str,
    build: Callable[[Workflow], Awaitable[Action]],
    act: Act,
    form: dict[str, str],
) -> Response:
    workflow = await service.require_workflow(
        page.db, page.principal.account_id, workflow_id, lock=True
    )
    action = await build(workflow)
    try:
        # The page showed the impact on the workflow as it was; refuse if it changed since.
        check_if_match(form.get("etag") or None, make_etag(workflow.id, workflow.revision))
        await act(page, workflow, action, form)
        await commit(page)
    except RevflowError as error:
        await page.db.rollback()
        workflow = await service.require_workflow(page.db, page.principal.account_id, workflow_id)
        return await _impact(page, workflow, await build(workflow), error=error, **form)
    return see_other(f"/ui/workflows/{workflow.id}")


@router.get("/workflows/{workflow_id}/versions/{number}/publish")
async def publish_page(
    workflow_id: str, number: str, page: EditorPage, canary: bool = False
) -> HTMLResponse:
    workflow = await service.require_workflow(page.db, page.principal.account_id, workflow_id)
    action = await _publish_action(page, workflow, number, canary)
    return await _impact(page, workflow, action, canary_percent="20")


async def _publish(page: Page, workflow: Workflow, action: Action, form: dict[str, str]) -> None:
    percent = None
    if "canary_percent" in action.fields:
        raw = form.get("canary_percent", "").strip()
        if not (raw.isdigit() and 1 <= int(raw) <= 99):
            raise ValidationFailed(
                [{"pointer": "/canary_percent", "message": "a whole number from 1 to 99"}]
            )
        percent = int(raw)
    await service.publish(
        page.db, page.principal, workflow, action.target, canary_percent=percent, now=page.now
    )


@router.post("/workflows/{workflow_id}/versions/{number}/publish")
async def publish(
    workflow_id: str,
    number: str,
    page: EditorPage,
    canary: bool = False,
    etag: Annotated[str, Form()] = "",
    canary_percent: Annotated[str, Form()] = "",
) -> Response:
    async def build(workflow: Workflow) -> Action:
        return await _publish_action(page, workflow, number, canary)

    form = {"etag": etag, "canary_percent": canary_percent}
    return await _confirmed(page, workflow_id, build, _publish, form)


@router.get("/workflows/{workflow_id}/versions/{number}/rollback")
async def rollback_page(workflow_id: str, number: str, page: EditorPage) -> HTMLResponse:
    workflow = await service.require_workflow(page.db, page.principal.account_id, workflow_id)
    return await _impact(page, workflow, await _rollback_action(page, workflow, number))


async def _rollback(page: Page, workflow: Workflow, action: Action, form: dict[str, str]) -> None:
    reason = form.get("reason", "").strip()
    if not reason:
        raise ValidationFailed([{"pointer": "/reason", "message": "say why you roll back"}])
    await service.rollback(
        page.db, page.principal, workflow, action.target, reason[:500], now=page.now
    )


@router.post("/workflows/{workflow_id}/versions/{number}/rollback")
async def rollback(
    workflow_id: str,
    number: str,
    page: EditorPage,
    etag: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    async def build(workflow: Workflow) -> Action:
        return await _rollback_action(page, workflow, number)

    return await _confirmed(page, workflow_id, build, _rollback, {"etag": etag, "reason": reason})


@router.get("/workflows/{workflow_id}/canary/promote")
async def promote_page(workflow_id: str, page: EditorPage) -> HTMLResponse:
    workflow = await service.require_workflow(page.db, page.principal.account_id, workflow_id)
    return await _impact(page, workflow, await _promote_action(page, workflow))


async def _promote(page: Page, workflow: Workflow, action: Action, form: dict[str, str]) -> None:
    await service.promote_canary(page.db, page.principal, workflow, page.now)


@router.post("/workflows/{workflow_id}/canary/promote")
async def promote(
    workflow_id: str, page: EditorPage, etag: Annotated[str, Form()] = ""
) -> Response:
    async def build(workflow: Workflow) -> Action:
        return await _promote_action(page, workflow)

    return await _confirmed(page, workflow_id, build, _promote, {"etag": etag})


@router.get("/workflows/{workflow_id}/canary/abort")
async def abort_page(workflow_id: str, page: EditorPage) -> HTMLResponse:
    workflow = await service.require_workflow(page.db, page.principal.account_id, workflow_id)
    return await _impact(page, workflow, await _abort_action(page, workflow))


async def _abort(page: Page, workflow: Workflow, action: Action, form: dict[str, str]) -> None:
    reason = form.get("reason", "").strip() or "aborted by an operator"
    await service.abort_canary(page.db, page.principal.actor, workflow, reason[:500], page.now)


@router.post("/workflows/{workflow_id}/canary/abort")
async def abort(
    workflow_id: str,
    page: EditorPage,
    etag: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    async def build(workflow: Workflow) -> Action:
        return await _abort_action(page, workflow)

    return await _confirmed(page, workflow_id, build, _abort, {"etag": etag, "reason": reason})
