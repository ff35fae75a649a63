"""Migrations: plan one with a dry run (mapping pre-filled from the compare's suggestion), start
it, watch it move, and pause / resume / cancel / revert it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from revflow.deps import wake_worker
from revflow.errors import RevflowError, ValidationFailed
from revflow.migrations import service
from revflow.migrations.schemas import MigrationIn, migration_out
from revflow.models import Workflow
from revflow.ui.page import EditorPage, Page, PageRoute, ViewerPage, commit, see_other
from revflow.workflows import service as workflows
from revflow.workflows.compare import compare_versions

router = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)

MAP_PREFIX = "map:"


def _int(value: Any, default: int) -> int:
    text = str(value or "").strip()
    return int(text) if text.isdigit() else default


def _body(fields: dict[str, str], *, dry_run: bool) -> MigrationIn:
    mapping = {
        key[len(MAP_PREFIX) :]: value
        for key, value in fields.items()
        if key.startswith(MAP_PREFIX) and value
    }
    strategy = fields.get("strategy") or "immediate"
    try:
        return MigrationIn(
            from_version=_int(fields.get("from"), 0),
            mapping=mapping,
            strategy=strategy,
            wait_policy=fields.get("wait_policy") or "keep",
            batch_size=_int(fields.get("batch_size"), 500),
            interval_seconds=float(_int(fields.get("interval_seconds"), 60)),
            allow_unreleased=fields.get("allow_unreleased") == "true",
            dry_run=dry_run,
        )
    except ValidationError as exc:
        raise ValidationFailed(
            [{"pointer": f"/{e['loc'][0]}", "message": e["msg"]} for e in exc.errors()]
        ) from None


async def _plan(
    page: Page,
    workflow: Workflow,
    fields: dict[str, str],
    status: int = 200,
    error: RevflowError | None = None,
) -> HTMLResponse:
    """The plan page: both versions, the dry-run report, a mapping input per group."""
    numbers = list(range(workflow.version_count, 0, -1))
    to_number = _int(fields.get("to"), workflow.current_version or workflow.version_count)
    from_number = _int(fields.get("from"), 0)
    target = await workflows.require_version(page.db, workflow, to_number)
    if from_number == 0:
        raise ValidationFailed([{"pointer": "/from_version", "message": "choose a version"}])
    source = await workflows.require_version(page.db, workflow, from_number)
    _, diff = await compare_versions(page.db, source, target)
    if not any(key.startswith(MAP_PREFIX) for key in fields) and not fields.get("checked"):
        # First visit: the compare's suggestion, ready to start.
        fields = {
            **fields,
            **{
                MAP_PREFIX + step: to_step
                for step, to_step in diff["suggested_mapping"].items()
                if to_step
            },
        }
    report = None
    if error is None:
        try:
            report, _ = await service.start(
                page.db, page.principal, workflow, target, _body(fields, dry_run=True), page.now
            )
        except RevflowError as exc:
            error, status = exc, exc.status
    target_steps = [s["id"] for s in target.definition.get("steps", [])]
    return page.render(
        "migration_plan.html",
        status=status,
        workflow=workflow,
        numbers=numbers,
        source=source,
        target=target,
        target_steps=target_steps,
        diff=diff,
        report=report,
        fields=fields,
        mapping={k[len(MAP_PREFIX) :]: v for k, v in fields.items() if k.startswith(MAP_PREFIX)},
        error=error,
    )


@router.get("/workflows/{workflow_id}/migrate")
async def plan(workflow_id: str, page: EditorPage) -> HTMLResponse:
    workflow = await workflows.require_workflow(page.db, page.principal.account_id, workflow_id)
    return await _plan(page, workflow, dict(page.request.query_params))


@router.post("/workflows/{workflow_id}/migrate")
async def start(workflow_id: str, page: EditorPage) -> Response:
    form = await page.request.form()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    if fields.get("intent") == "check":  # a new dry run with the edited mapping
        workflow = await workflows.require_workflow(page.db, page.principal.account_id, workflow_id)
        return await _plan(page, workflow, fields)
    workflow = await workflows.require_workflow(
        page.db, page.principal.account_id, workflow_id, lock=True
    )
    try:
        target = await workflows.require_version(
            page.db, workflow, _int(fields.get("to"), workflow.current_version or 0)
        )
        _, migration = await service.start(
            page.db, page.principal, workflow, target, _body(fields, dry_run=False), page.now
        )
        assert migration is not None
        await commit(page)
    except RevflowError as error:
        await page.db.rollback()
        workflow = await workflows.require_workflow(page.db, page.principal.account_id, workflow_id)
        return await _plan(page, workflow, {**fields, "checked": "1"}, error.status, error)
    _wake(page)
    return see_other(f"/ui/migrations/{migration.id}")


def _wake(page: Page) -> None:
    wake_worker(page.request)


async def _view(page: Page, migration_id: str, error: RevflowError | None = None) -> HTMLResponse:
    migration = await service.require_migration(page.db, page.principal.account_id, migration_id)
    workflow = await workflows.require_workflow(
        page.db, page.principal.account_id, str(migration.workflow_id)
    )
    return page.render(
        "migration.html",
        status=error.status if error else 200,
        workflow=workflow,
        migration=migration_out(migration),
        error=error,
        now=page.now,
    )


@router.get("/migrations/{migration_id}")
async def migration_view(migration_id: str, page: ViewerPage) -> HTMLResponse:
    return await _view(page, migration_id)


@router.get("/migrations/{migration_id}/progress")
async def progress(migration_id: str, page: ViewerPage) -> dict[str, Any]:
    """The live numbers the migration view polls (no reload)."""
    migration = await service.require_migration(page.db, page.principal.account_id, migration_id)
    answer = migration_out(migration)
    return {
        key: answer[key]
        for key in ("id", "status", "status_reason", "total", "migrated", "skipped", "failed")
    }


async def _control(migration_id: str, action: str, page: Page) -> Response:
    migration = await service.require_migration(
        page.db, page.principal.account_id, migration_id, lock=True
    )
    try:
        if action == "pause":
            await service.pause(page.db, page.principal, migration, page.now)
        elif action == "resume":
            await service.resume(page.db, page.principal, migration, page.now)
        elif action == "cancel":
            await service.cancel(page.db, page.principal, migration, page.now)
        else:
            migration = await service.revert(page.db, page.principal, migration, page.now)
        await commit(page)
    except RevflowError as error:
        await page.db.rollback()
        return await _view(page, migration_id, error)
    _wake(page)
    return see_other(f"/ui/migrations/{migration.id}")


@router.post("/migrations/{migration_id}/pause")
async def pause(migration_id: str, page: EditorPage) -> Response:
    return await _control(migration_id, "pause", page)


@router.post("/migrations/{migration_id}/resume")
async def resume(migration_id: str, page: EditorPage) -> Response:
    return await _control(migration_id, "resume", page)


@router.post("/migrations/{migration_id}/cancel")
async def cancel(migration_id: str, page: EditorPage) -> Response:
    return await _control(migration_id, "cancel", page)


@router.post("/migrations/{migration_id}/revert")
async def revert(migration_id: str, page: EditorPage) -> Response:
    """Move back what the migration moved (a new migration, whose page this opens)."""
    return await _control(migration_id, "revert", page)
