"""Migration routes (SPEC §4, §6)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from revflow.deps import Editor, Now, ReadSession, Viewer, WriteSession, wake_worker
from revflow.errors import MigrationNotRunning, MigrationRunning, NothingToRevert, NotReleased
from revflow.kit.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    time_id_after,
    time_id_next,
)
from revflow.kit.transactions import commit
from revflow.migrations import service
from revflow.migrations.schemas import (
    MigrationIn,
    MigrationList,
    MigrationOut,
    Report,
    migration_out,
)
from revflow.problems import raises
from revflow.workflows.deps import VersionChange
from revflow.workflows.service import require_workflow

router = APIRouter(prefix="/api/v1", tags=["migrations"])


@router.post(
    "/workflows/{workflow_id}/versions/{number}/migrate",
    status_code=202,
    response_model=MigrationOut,
    responses={200: {"model": Report, "description": "the dry-run report"}},
)
@raises(MigrationRunning, NotReleased)
async def start_migration(
    request: Request, body: MigrationIn, change: VersionChange, now: Now
) -> JSONResponse:
    """Start moving the live executions of ``from_version`` onto this version."""
    if change.replay:
        return change.replay
    report, migration = await service.start(
        change.session, change.principal, change.workflow, change.require_version(), body, now
    )
    if migration is None:  # a dry run: nothing was created, but its answer is kept for a retry
        return await change.respond(report)
    response = await change.respond(migration_out(migration), 202)
    wake_worker(request)
    return response


@router.get("/workflows/{workflow_id}/migrations", response_model=MigrationList)
async def list_migrations(
    workflow_id: str,
    principal: Viewer,
    session: ReadSession,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> dict[str, Any]:
    workflow = await require_workflow(session, principal.account_id, workflow_id)
    # The list (and its workflow) is part of the cursor's filters: another list's cursor is
    # refused.
    filters = {"list": f"migrations:{workflow.id}"}
    after = time_id_after(cursor, filters)
    rows = await service.list_migrations(
        session,
        workflow,
        after=after,
        limit=limit + 1,
    )
    next_cursor = time_id_next(rows, limit, filters)
    return {"items": [migration_out(m) for m in rows[:limit]], "next_cursor": next_cursor}


@router.get("/migrations/{migration_id}", response_model=MigrationOut)
async def get_migration(
    migration_id: str, principal: Viewer, session: ReadSession
) -> dict[str, Any]:
    return migration_out(
        await service.require_migration(session, principal.account_id, migration_id)
    )


async def _control(
    migration_id: str, principal: Any, session: Any, action: str, now: Any
) -> dict[str, Any]:
    migration = await service.require_migration(
        session, principal.account_id, migration_id, lock=True
    )
    if action == "pause":
        await service.pause(session, principal, migration, now)
    elif action == "resume":
        await service.resume(session, principal, migration, now)
    elif action == "cancel":
        await service.cancel(session, principal, migration, now)
    else:
        migration = await service.revert(session, principal, migration, now)
    answer = migration_out(migration)
    await commit(session)
    return answer


@router.post("/migrations/{migration_id}/pause", response_model=MigrationOut)
@raises(MigrationNotRunning)
async def pause_migration(
    migration_id: str, principal: Editor, session: WriteSession, now: Now
) -> dict[str, Any]:
    """Hold the migration after its current batch; what is migrated stays migrated."""
    return await _control(migration_id, principal, session, "pause", now)


@router.post("/migrations/{migration_id}/resume", response_model=MigrationOut)
@raises(MigrationNotRunning)
async def resume_migration(
    request: Request, migration_id: str, principal: Editor, session: WriteSession, now: Now
) -> dict[str, Any]:
    answer = await _control(migration_id, principal, session, "resume", now)
    wake_worker(request)
    return answer


@router.post("/migrations/{migration_id}/cancel", response_model=MigrationOut)
@raises(MigrationNotRunning)
async def cancel_migration(
    migration_id: str, principal: Editor, session: WriteSession, now: Now
) -> dict[str, Any]:
    """Stop for good after the current batch."""
    return await _control(migration_id, principal, session, "cancel", now)


@router.post("/migrations/{migration_id}/revert", status_code=202, response_model=MigrationOut)
@raises(NothingToRevert, MigrationRunning, MigrationNotRunning)
async def revert_migration(
    request: Request, migration_id: str, principal: Editor, session: WriteSession, now: Now
) -> dict[str, Any]:
    """Move back what the migration moved and is still where it put it (a new migration)."""
    answer = await _control(migration_id, principal, session, "revert", now)
    wake_worker(request)
    return answer
