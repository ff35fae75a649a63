"""Release actions over several features, each one transaction: rollback with a migration
(workflows and migrations), resume with the reactions held while paused (workflows and
executions)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from revflow.auth.service import Principal
from revflow.errors import ValidationFailed
from revflow.executions.reactions import release_held
from revflow.migrations import service as migrations
from revflow.migrations.schemas import MigrationIn
from revflow.models import Migration, Version, Workflow
from revflow.releases.schemas import RollbackMigrate
from revflow.workflows import service as workflows


async def rollback(
    session: AsyncSession,
    principal: Principal,
    workflow: Workflow,
    version: Version,
    reason: str,
    migrate: RollbackMigrate | None,
    now: dt.datetime,
) -> Migration | None:
    """Make ``version`` current again; with ``migrate``, start moving the executions of the
    version rolled back from onto it, in the same transaction. Answers the migration."""
    already_current = version.status == "published"
    previous = await workflows.rollback(session, principal, workflow, version, reason, now=now)
    if migrate is None or already_current:
        return None
    if previous is None:
        raise ValidationFailed.at("/migrate", "no version was current to migrate from")
    _report, migration = await migrations.start(
        session,
        principal,
        workflow,
        version,
        MigrationIn(from_version=previous, **migrate.model_dump()),
        now,
    )
    return migration


async def resume(
    session: AsyncSession, principal: Principal, workflow: Workflow, now: dt.datetime
) -> int:
    """Resume a paused workflow and apply, in arrival order, the events and contact changes
    that reached its executions while it was paused — in one transaction. Answers how many
    executions they moved."""
    await workflows.set_status(session, principal, workflow, "active", now=now)
    return await release_held(session, workflow, now)
