"""Rollback, optionally with a migration of the executions rolled back from (SPEC §4)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from revflow.deps import Now, wake_worker
from revflow.errors import MigrationRunning, NeverPublished
from revflow.migrations.schemas import migration_out
from revflow.problems import raises
from revflow.releases import service
from revflow.releases.schemas import RollbackBody
from revflow.workflows import service as workflows
from revflow.workflows.deps import VersionChange
from revflow.workflows.schemas import VersionDetail

router = APIRouter(prefix="/api/v1", tags=["workflows"])


@router.post("/workflows/{workflow_id}/versions/{number}/rollback", response_model=VersionDetail)
@raises(NeverPublished, MigrationRunning)
async def rollback_version(
    request: Request, body: RollbackBody, change: VersionChange, now: Now
) -> JSONResponse:
    """Make a previously published version current again; ``migrate`` also moves the
    executions of the version rolled back from (a migration created in the same transaction)."""
    if change.replay:
        return change.replay
    version = change.require_version()
    migration = await service.rollback(
        change.session, change.principal, change.workflow, version, body.reason, body.migrate, now
    )
    answer = await workflows.version_detail(change.session, change.workflow, version)
    answer["migration"] = migration_out(migration) if migration is not None else None
    response = await change.respond(answer)
    if migration is not None:
        wake_worker(request)
    return response
