"""The editor: the definition as text, checked and drawn as you type, auto-saved to the user's
working draft, and turned into a version. Its calls answer JSON (problems as RFC 9457)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from revflow.config import Settings
from revflow.errors import InvalidDefinition, ValidationFailed
from revflow.ui.editor_text import STARTER, as_text, locate, parse
from revflow.ui.graph import to_dot
from revflow.ui.page import EditorPage, Page, PageRoute, commit
from revflow.workflows import drafts, service
from revflow.workflows.schemas import VersionCreate

router = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)


class TextIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=4_000_000)


class DraftTextIn(TextIn):
    base_version: int | None = Field(default=None, ge=1)
    revision: int | None = Field(default=None, ge=1)


class VersionTextIn(TextIn):
    base_version: int | None = Field(default=None, ge=1)
    change_summary: str = ""


def _settings(page: Page) -> Settings:
    settings: Settings = page.request.app.state.settings
    return settings


def _checked(text: str, settings: Settings) -> dict[str, Any]:
    """Problems (with their lines), warnings and the graph of the text as typed."""
    document, parse_error = parse(text)
    if parse_error is not None:
        problems = [{"pointer": "", "message": parse_error, "line": None}]
        return {"valid": False, "problems": problems, "warnings": [], "dot": None}
    problems, warnings = drafts.check(document, settings)
    return {
        "valid": not problems,
        "problems": locate(problems, text),
        "warnings": locate(warnings, text),
        "dot": to_dot(document),
    }


def _draft_answer(draft: Any, text: str, settings: Settings) -> dict[str, Any]:
    return {
        "revision": draft.revision,
        "base_version": draft.base_version,
        "saved_at": draft.saved_at.isoformat(),
        **_checked(text, settings),
    }


@router.get("/workflows/{workflow_id}/edit")
async def editor(workflow_id: str, page: EditorPage) -> HTMLResponse:
    workflow = await service.require_workflow(page.db, page.principal.account_id, workflow_id)
    draft = await drafts.get(page.db, workflow, page.principal.user)
    latest = workflow.version_count or None
    if draft is not None:
        text, base, revision = as_text(draft.definition), draft.base_version, draft.revision
    elif latest is not None:
        version = await service.require_version(page.db, workflow, latest)
        text, base, revision = as_text(version.definition), latest, None
    else:
        text, base, revision = as_text(STARTER), None, None
    return page.render(
        "editor.html",
        workflow=workflow,
        text=text,
        base_version=base,
        latest=latest,
        revision=revision,
        draft=draft,
        checked=_checked(text, _settings(page)),
    )


@router.post("/workflows/{workflow_id}/edit/check")
async def check(workflow_id: str, body: TextIn, page: EditorPage) -> dict[str, Any]:
    """Validate and draw the text as typed; stores nothing."""
    await service.require_workflow(page.db, page.principal.account_id, workflow_id)
    return _checked(body.text, _settings(page))


@router.put("/workflows/{workflow_id}/draft")
async def save_draft(workflow_id: str, body: DraftTextIn, page: EditorPage) -> dict[str, Any]:
    """Auto-save: the parsed document, or the text itself while it does not parse (a draft is
    a scratch pad). A stale ``revision`` answers 409 ``stale_draft`` with the saved draft."""
    workflow = await service.require_workflow(page.db, page.principal.account_id, workflow_id)
    document, parse_error = parse(body.text)
    draft, _ = await drafts.save(
        page.db,
        workflow,
        page.principal.user,
        definition=body.text if parse_error is not None else document,
        base_version=body.base_version,
        revision=body.revision,
        settings=_settings(page),
        now=page.now,
    )
    answer = _draft_answer(draft, body.text, _settings(page))
    await commit(page)
    return answer


@router.post("/workflows/{workflow_id}/versions")
async def create_version(workflow_id: str, body: VersionTextIn, page: EditorPage) -> JSONResponse:
    """Create a version from the editor's text (the user's draft ends with it)."""
    document, parse_error = parse(body.text)
    if parse_error is not None:
        raise InvalidDefinition([{"pointer": "", "message": parse_error, "line": None}])
    try:
        version_body = VersionCreate(
            definition=document,
            change_summary=body.change_summary,
            base_version=body.base_version,
        )
    except ValidationError as exc:
        raise ValidationFailed(
            [{"pointer": f"/{e['loc'][0]}", "message": e["msg"]} for e in exc.errors()]
        ) from None
    workflow = await service.require_workflow(
        page.db, page.principal.account_id, workflow_id, lock=True
    )
    try:
        version, _ = await service.create_version(
            page.db, page.principal, workflow, version_body, _settings(page), page.now
        )
    except InvalidDefinition as exc:
        errors = locate(exc.extra.get("errors", []), body.text, prefix="/definition")
        raise InvalidDefinition(errors, exc.detail) from None
    await commit(page)
    url = f"/ui/workflows/{workflow.id}/versions/{version.number}"
    return JSONResponse({"number": version.number, "semver": version.semver, "url": url}, 201)
