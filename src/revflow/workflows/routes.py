"""HTTP routes of workflows and versions (SPEC §4)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from revflow.deps import (
    Editor,
    Now,
    ReadSession,
    SettingsDep,
    Viewer,
    WriteSession,
    wake_worker,
)
from revflow.diff import render_text
from revflow.errors import (
    CanaryActive,
    InvalidCursor,
    InvalidDefinition,
    NoCanary,
    NoChanges,
    NotFound,
    NotPublished,
    StaleBase,
    StaleDraft,
    UseRollback,
    VersionLimit,
)
from revflow.kit import idempotency, strictjson
from revflow.kit.checkedjson import CheckedJSONRoute
from revflow.kit.etag import make_etag
from revflow.kit.ids import INT32_MAX, parse_id
from revflow.kit.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    cursor_int,
    decode_cursor,
    encode_cursor,
    time_id_after,
    time_id_next,
)
from revflow.kit.responses import FastJSONResponse, WrittenJSON
from revflow.kit.transactions import commit
from revflow.problems import raises
from revflow.releases import service as releases
from revflow.workflows import drafts, service
from revflow.workflows import repository as repo
from revflow.workflows.compare import compare_versions as compare_versions_with_impact
from revflow.workflows.deps import Change, VersionChange
from revflow.workflows.schemas import (
    CanaryAbortBody,
    CompareOut,
    PublishBody,
    TagsBody,
    VersionCreate,
    VersionDetail,
    VersionList,
    VersionOut,
    VersionStatus,
    WorkflowCreate,
    WorkflowDetail,
    WorkflowList,
    WorkflowOut,
    WorkflowUpdate,
    version_out,
    workflow_out,
)

# Its routes carry definitions: their bodies are parsed once, by the JSON check.
router = APIRouter(prefix="/api/v1", tags=["workflows"], route_class=CheckedJSONRoute)

# A listed version's fields, in the answer's order.
_LISTED_FIELDS = tuple(VersionOut.model_fields)

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


@router.post(
    "/workflows",
    status_code=201,
    response_model=WorkflowOut,
    dependencies=[Depends(idempotency.key_header)],
)
@raises(InvalidDefinition)
async def create_workflow(
    request: Request,
    body: WorkflowCreate,
    principal: Editor,
    session: WriteSession,
    settings: SettingsDep,
    now: Now,
) -> JSONResponse:
    claim = await idempotency.claim(session, request, principal.account_id)
    if claim is not None and claim.replay is not None:
        return claim.replay
    workflow, _version = await service.create_workflow(
        session, principal, body, settings, now=now, parsed=True
    )
    answer = workflow_out(workflow)
    headers = {"ETag": answer["etag"], "Location": f"/api/v1/workflows/{workflow.id}"}
    if claim is not None:
        await claim.save(session, 201, answer, headers)
    await commit(session)
    return JSONResponse(answer, status_code=201, headers=headers)


@router.get("/workflows", response_model=WorkflowList)
async def list_workflows(
    principal: Viewer,
    session: ReadSession,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> dict[str, Any]:
    after = time_id_after(cursor, {"list": "workflows"})
    rows = await repo.list_workflows(session, principal.account_id, after=after, limit=limit + 1)
    items = [workflow_out(w) for w in rows[:limit]]
    return {"items": items, "next_cursor": time_id_next(rows, limit, {"list": "workflows"})}


@router.get("/workflows/{workflow_id}", response_model=WorkflowDetail)
async def get_workflow(workflow_id: str, principal: Viewer, session: ReadSession) -> JSONResponse:
    workflow = await service.require_workflow(session, principal.account_id, workflow_id)
    answer = workflow_out(workflow)
    answer["versions_by_status"] = await repo.version_status_counts(
        session, principal.account_id, workflow.id
    )
    return JSONResponse(answer, headers={"ETag": answer["etag"]})


@router.patch("/workflows/{workflow_id}", response_model=WorkflowOut)
async def update_workflow(body: WorkflowUpdate, change: Change) -> JSONResponse:
    if change.replay:
        return change.replay
    await service.update_workflow(
        change.session, change.principal, change.workflow, body, now=change.now
    )
    return await change.respond(workflow_out(change.workflow))


@router.post("/workflows/{workflow_id}/versions", status_code=201, response_model=VersionDetail)
@raises(InvalidDefinition, StaleBase, NoChanges, VersionLimit, CanaryActive)
async def create_version(
    body: VersionCreate, change: Change, settings: SettingsDep
) -> JSONResponse:
    if change.replay:
        return change.replay
    version, written = await service.create_version(
        change.session,
        change.principal,
        change.workflow,
        body,
        settings,
        now=change.now,
        parsed=True,
    )
    # A version made by this request has no executions yet: nothing to count.
    answer = version_out(version, 0, with_definition=True)
    if change.claim is None:
        # The canonical JSON the version was stored from, written into the answer as it is
        # rather than encoded again; an answer kept for idempotent retries stays a value.
        answer["definition"] = WrittenJSON(written)
    response = await change.respond(answer, 201)
    service.remember_committed(version)
    return response


@router.get("/workflows/{workflow_id}/versions", response_model=VersionList)
async def list_versions(
    workflow_id: str,
    principal: Viewer,
    session: ReadSession,
    status: Annotated[list[VersionStatus] | None, Query()] = None,
    tag: str | None = None,
    include_archived: bool = False,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> JSONResponse:
    parsed = parse_id(workflow_id)
    if parsed is None:
        raise NotFound(f"No workflow {workflow_id}")
    filters = {
        "list": f"versions:{parsed}",
        "status": sorted(status or []),
        "tag": tag,
        "archived": include_archived,
    }
    try:
        after = decode_cursor(cursor, filters, 1)
        before_number = cursor_int(after[0], bits=32) if after else None
    except InvalidCursor:
        # 404 comes before 422 (SPEC §4): only a bad cursor pays for a lookup of its own.
        await service.require_workflow(session, principal.account_id, workflow_id)
        raise
    # The workflow's lookup, the page and its live executions: one statement.
    found, rows = await repo.version_page(
        session,
        principal.account_id,
        parsed,
        statuses=status,
        tag=tag,
        include_archived=include_archived,
        before_number=before_number,
        limit=limit + 1,
        fields=_LISTED_FIELDS,
    )
    if not found:
        raise NotFound(f"No workflow {workflow_id}")
    page = rows[:limit]
    next_cursor = encode_cursor([page[-1].number], filters) if len(rows) > limit else None
    # The rows hold a listed version's fields in the answer's order, as the database keeps
    # them: taken as they are (no model in between) and written as the response model would.
    items = [dict(zip(_LISTED_FIELDS, row, strict=True)) for row in page]
    return FastJSONResponse({"items": items, "next_cursor": next_cursor})


@router.get(
    "/workflows/{workflow_id}/versions/compare",
    response_model=CompareOut,
    responses={200: {"content": {"text/plain": {}}}},
)
async def compare_versions(
    workflow_id: str,
    principal: Viewer,
    session: ReadSession,
    from_: Annotated[int, Query(alias="from", ge=1)],
    to: Annotated[int, Query(ge=1)],
    format: Literal["json", "text"] = "json",
) -> Response:
    """Structured diff of two versions (either order, archived included) with live impact."""
    workflow = await service.require_workflow(session, principal.account_id, workflow_id)
    # The definitions are read only when this process has not compared the two versions yet.
    source, target = await service.require_versions_without_definitions(
        session, workflow, [from_, to]
    )
    comparison, answer = await compare_versions_with_impact(session, source, target)
    if format == "text":
        text = render_text(
            comparison,
            f"v{source.number} ({source.semver})",
            f"v{target.number} ({target.semver})",
            affected=[b["executions_affected"] for b in answer["breaking"]],
        )
        return PlainTextResponse(text)
    return JSONResponse(answer)


@router.get("/workflows/{workflow_id}/versions/{number}", response_model=VersionDetail)
async def get_version(
    workflow_id: str, number: str, principal: Viewer, session: ReadSession
) -> JSONResponse:
    workflow = await service.require_workflow(session, principal.account_id, workflow_id)
    version = await service.require_version(
        session, workflow, service.version_number(workflow, number)
    )
    live = await repo.live_executions(session, principal.account_id, workflow.id, [version.number])
    return FastJSONResponse(
        version_out(version, live.get(version.number, 0), with_definition=True),
        headers={"ETag": make_etag(workflow.id, workflow.revision)},
    )


@router.post("/workflows/{workflow_id}/versions/{number}/publish", response_model=VersionDetail)
@raises(UseRollback, CanaryActive, NotPublished)
async def publish_version(change: VersionChange, body: PublishBody | None = None) -> JSONResponse:
    """Make a draft current; with ``canary_percent``, make it the workflow's canary."""
    if change.replay:
        return change.replay
    version = await service.publish(
        change.session,
        change.principal,
        change.workflow,
        change.require_version(),
        canary_percent=body.canary_percent if body else None,
        now=change.now,
    )
    return await change.respond(
        await service.version_detail(change.session, change.workflow, version)
    )


@router.post("/workflows/{workflow_id}/canary/promote", response_model=VersionDetail)
@raises(NoCanary)
async def promote_canary(change: Change) -> JSONResponse:
    """The canary becomes the current version (the old one is retired)."""
    if change.replay:
        return change.replay
    version = await service.promote_canary(
        change.session, change.principal, change.workflow, now=change.now
    )
    return await change.respond(
        await service.version_detail(change.session, change.workflow, version)
    )


@router.post("/workflows/{workflow_id}/canary/abort", response_model=VersionDetail)
@raises(NoCanary)
async def abort_canary(change: Change, body: CanaryAbortBody | None = None) -> JSONResponse:
    """Stop routing new enrollments to the canary; its executions run on, on it."""
    if change.replay:
        return change.replay
    version = await service.abort_canary(
        change.session,
        change.principal.actor,
        change.workflow,
        body.reason if body else "aborted by an operator",
        now=change.now,
    )
    return await change.respond(
        await service.version_detail(change.session, change.workflow, version)
    )


@router.put("/workflows/{workflow_id}/versions/{number}/tags", response_model=VersionDetail)
async def set_version_tags(body: TagsBody, change: VersionChange) -> JSONResponse:
    if change.replay:
        return change.replay
    version = change.require_version()
    await service.set_tags(
        change.session, change.principal, change.workflow, version, body.tags, now=change.now
    )
    return await change.respond(
        await service.version_detail(change.session, change.workflow, version)
    )


@router.post("/workflows/{workflow_id}/pause", response_model=WorkflowOut)
async def pause_workflow(change: Change) -> JSONResponse:
    """The kill switch: no execution of the workflow advances and nobody is enrolled."""
    if change.replay:
        return change.replay
    await service.set_status(
        change.session, change.principal, change.workflow, "paused", now=change.now
    )
    return await change.respond(workflow_out(change.workflow))


@router.post("/workflows/{workflow_id}/resume", response_model=WorkflowOut)
async def resume_workflow(request: Request, change: Change) -> JSONResponse:
    if change.replay:
        return change.replay
    await releases.resume(change.session, change.principal, change.workflow, change.now)
    response = await change.respond(workflow_out(change.workflow))
    wake_worker(request)
    return response


class DraftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    definition: Any = Field(description="Any content: a draft is a scratch pad.")
    base_version: int | None = Field(default=None, ge=1, le=INT32_MAX)
    revision: int | None = Field(
        default=None,
        ge=1,
        le=INT32_MAX,
        description="The revision this save was made from; null for a new draft.",
    )


class DraftOut(BaseModel):
    workflow_id: str
    user: str
    definition: Any
    base_version: int | None
    revision: int
    saved_at: str
    valid: bool
    problems: list[dict[str, Any]]
    warnings: list[dict[str, Any]]


_UNPARSED = object()


async def _workflow_to_edit(
    request: Request, workflow_id: str, principal: Editor, session: WriteSession
) -> drafts.WorkflowKey:
    """The workflow of a draft save. A valid body is saved without reading the workflow first
    (the save's own statement finds out whether it exists: one round trip fewer per
    auto-save); an invalid one looks it up here, a dependency, so that its 404 comes before
    the framework's 422 for the body (SPEC §4 check order)."""
    parsed = parse_id(workflow_id)
    if parsed is None:
        raise NotFound(f"No workflow {workflow_id}")
    try:
        if "json" not in request.headers.get("content-type", ""):
            raise ValueError("not read as JSON by the framework")
        parsed_body = getattr(request.state, strictjson.PARSED_BODY, _UNPARSED)
        if parsed_body is _UNPARSED:
            DraftIn.model_validate_json(await request.body())
        else:
            # What the framework validates next: the body's JSON value, in Python mode.
            DraftIn.model_validate(parsed_body)
    except (ValueError, ValidationError):
        return await service.require_workflow(session, principal.account_id, workflow_id)
    return drafts.WorkflowRef(principal.account_id, parsed)


@router.put("/workflows/{workflow_id}/draft", response_model=DraftOut)
@raises(StaleDraft)
async def save_draft(
    workflow: Annotated[drafts.WorkflowKey, Depends(_workflow_to_edit)],
    body: DraftIn,
    principal: Editor,
    session: WriteSession,
    settings: SettingsDep,
    now: Now,
) -> JSONResponse:
    """Save the caller's working draft (auto-save); a stale ``revision`` answers 409."""
    draft, written = await drafts.save(
        session,
        workflow,
        principal.user,
        definition=body.definition,
        base_version=body.base_version,
        revision=body.revision,
        settings=settings,
        now=now,
        parsed=True,
    )
    answer = drafts.draft_out(draft)
    if written is not None:
        # A valid definition's canonical JSON, as it was stored: written as it is.
        answer["definition"] = WrittenJSON(written)
    await commit(session)
    # Already JSON: answered as is rather than re-validated against DraftOut on every save.
    return FastJSONResponse(answer)


@router.get("/workflows/{workflow_id}/draft", response_model=DraftOut)
async def get_draft(workflow_id: str, principal: Viewer, session: ReadSession) -> dict[str, Any]:
    workflow = await service.require_workflow(session, principal.account_id, workflow_id)
    draft = await drafts.get(session, workflow, principal.user)
    if draft is None:
        raise NotFound("You have no draft of this workflow")
    return drafts.draft_out(draft)


@router.delete("/workflows/{workflow_id}/draft", status_code=204)
async def discard_draft(workflow_id: str, principal: Editor, session: WriteSession) -> Response:
    workflow = await service.require_workflow(session, principal.account_id, workflow_id)
    await drafts.discard(session, workflow, principal.user)
    await commit(session)
    return Response(status_code=204)
