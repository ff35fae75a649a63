"""Starting and controlling migrations (SPEC §6); the batches themselves are in runner.py."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from revflow.audit import service as audit
from revflow.auth.service import Principal
from revflow.engine import store
from revflow.errors import (
    MigrationNotRunning,
    MigrationRunning,
    NotFound,
    NothingToRevert,
    NotReleased,
    ValidationFailed,
)
from revflow.kit.ids import require_id
from revflow.migrations import events as webhook_events
from revflow.migrations import repository as repo
from revflow.migrations.planning import (
    MappingError,
    check_mapping,
    plan_steps,
    report,
    revert_report,
)
from revflow.migrations.schemas import MigrationIn, migration_out
from revflow.models import MIGRATION_UNFINISHED, Migration, Version, Workflow
from revflow.workflows.repository import get_version, get_workflow


async def unfinished(session: AsyncSession, workflow: Workflow) -> Migration | None:
    return await repo.unfinished(session, workflow.account_id, workflow.id)


async def start(
    session: AsyncSession,
    principal: Principal,
    workflow: Workflow,
    target: Version,
    body: MigrationIn,
    now: dt.datetime,
) -> tuple[dict[str, Any], Migration | None]:
    """Validate and report; unless ``dry_run``, create the migration and snapshot its
    executions. The workflow must be locked by the caller."""
    source = await get_version(session, workflow.account_id, workflow.id, body.from_version)
    if source is None:
        raise ValidationFailed.at("/from_version", f"version {body.from_version} does not exist")
    if source.number == target.number:
        raise ValidationFailed.at("/from_version", "from_version is the target version")
    if body.strategy == "manual" and not body.execution_ids:
        raise ValidationFailed.at("/execution_ids", "a manual migration lists its executions")
    defs = await store.definitions(
        session, [workflow.account_id], [(workflow.id, source.number), (workflow.id, target.number)]
    )
    source_def, target_def = defs[(workflow.id, source.number)], defs[(workflow.id, target.number)]
    try:
        check_mapping(source_def, target_def, body.mapping)
    except MappingError as exc:
        raise ValidationFailed(exc.errors) from None
    ids = (
        list(dict.fromkeys(body.execution_ids))
        if body.strategy == "manual" and body.execution_ids
        else None
    )
    counts = await store.live_by_step(session, workflow.account_id, workflow.id, source.number, ids)
    if ids is not None:
        live = await repo.live_among(session, workflow.account_id, workflow.id, source.number, ids)
        errors = [
            {
                "pointer": f"/execution_ids/{i}",
                "message": f"{e} is not a live execution of version {source.number}",
            }
            for i, e in enumerate(ids)
            if e not in live
        ]
        if errors:
            raise ValidationFailed(errors)
    plans = plan_steps(source_def, target_def, body.mapping, body.wait_policy)
    answer = report(plans, counts)
    unreleased = target.published_at is None
    if unreleased:
        answer["warnings"] = [
            {
                "code": "not_released",
                "message": f"version {target.number} was never published or canaried: the "
                "executions would run a definition nobody released",
            }
        ]
    if body.dry_run:
        return answer, None
    if unreleased and not body.allow_unreleased:
        raise NotReleased(
            f"Version {target.number} was never published or canaried; publish it first, or "
            'send "allow_unreleased": true to migrate onto it anyway'
        )
    if await unfinished(session, workflow) is not None:
        raise MigrationRunning(f"Workflow {workflow.id} has an unfinished migration")
    migration = Migration(
        account_id=workflow.account_id,
        workflow_id=workflow.id,
        from_version=source.number,
        to_version=target.number,
        strategy=body.strategy,
        status="pending",
        mapping=dict(body.mapping),
        plan={k: p.to_dict() for k, p in plans.items()},
        batch_size=body.batch_size,
        interval_seconds=body.interval_seconds if body.strategy == "gradual" else 0.0,
        wait_policy=body.wait_policy,
        halt_failure_rate=body.halt_failure_rate,
        report=answer,
        errors=[],
        skips=[],
        created_by=principal.user,
        created_at=now,
        next_batch_at=now,
    )
    session.add(migration)
    await session.flush()
    migration.total = await repo.snapshot(session, migration, ids)
    await audit.record(
        session,
        principal.account_id,
        principal.actor,
        "migration.created",
        object_type="migration",
        object_id=migration.id,
        workflow_id=workflow.id,
        details={
            "from_version": source.number,
            "to_version": target.number,
            "strategy": body.strategy,
            "total": migration.total,
        },
        now=now,
    )
    await webhook_events.migration_event(
        session, migration, "migration.started", migration_out(migration), now
    )
    return answer, migration


async def require_migration(
    session: AsyncSession, account_id: uuid.UUID, migration_id: str, *, lock: bool = False
) -> Migration:
    parsed = require_id(migration_id, "migration")
    migration = await repo.get_migration(session, account_id, parsed, lock=lock)
    if migration is None:
        raise NotFound(f"No migration {migration_id}")
    return migration


async def list_migrations(
    session: AsyncSession,
    workflow: Workflow,
    *,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[Migration]:
    return await repo.list_migrations(
        session, workflow.account_id, workflow.id, after=after, limit=limit
    )


async def _audit(
    session: AsyncSession,
    principal: Principal,
    migration: Migration,
    action: str,
    now: dt.datetime,
    **details: Any,
) -> None:
    await audit.record(
        session,
        principal.account_id,
        principal.actor,
        f"migration.{action}",
        object_type="migration",
        object_id=migration.id,
        workflow_id=migration.workflow_id,
        details=details,
        now=now,
    )


async def pause(
    session: AsyncSession, principal: Principal, migration: Migration, now: dt.datetime
) -> None:
    if migration.status not in ("pending", "in_progress"):
        raise MigrationNotRunning(f"A {migration.status} migration cannot be paused")
    migration.status = "paused"
    migration.status_reason = f"paused by {principal.user}"
    await _audit(session, principal, migration, "paused", now)


async def resume(
    session: AsyncSession, principal: Principal, migration: Migration, now: dt.datetime
) -> None:
    if migration.status != "paused":
        raise MigrationNotRunning(f"A {migration.status} migration cannot be resumed")
    migration.status = "in_progress"
    migration.status_reason = None
    migration.next_batch_at = now
    await _audit(session, principal, migration, "resumed", now)


async def cancel(
    session: AsyncSession, principal: Principal, migration: Migration, now: dt.datetime
) -> None:
    if migration.status not in MIGRATION_UNFINISHED:
        raise MigrationNotRunning(f"A {migration.status} migration cannot be cancelled")
    migration.status = "cancelled"
    migration.finished_at = now
    migration.next_batch_at = None
    await _audit(session, principal, migration, "cancelled", now, migrated=migration.migrated)
    await session.flush()


async def revert(
    session: AsyncSession, principal: Principal, migration: Migration, now: dt.datetime
) -> Migration:
    """A new manual migration putting back what ``migration`` moved (cancelling it first)."""
    if migration.status in MIGRATION_UNFINISHED:
        await cancel(session, principal, migration, now)
    if migration.migrated == 0:
        raise NothingToRevert(f"Migration {migration.id} moved no execution")
    workflow = await get_workflow(session, migration.account_id, migration.workflow_id, lock=True)
    assert workflow is not None
    if await unfinished(session, workflow) is not None:
        raise MigrationRunning(f"Workflow {workflow.id} has an unfinished migration")
    back = Migration(
        account_id=migration.account_id,
        workflow_id=migration.workflow_id,
        from_version=migration.to_version,
        to_version=migration.from_version,
        strategy="manual",
        status="pending",
        mapping={},
        plan={},
        batch_size=migration.batch_size,
        interval_seconds=0.0,
        wait_policy="keep",
        halt_failure_rate=migration.halt_failure_rate,
        report={},
        errors=[],
        skips=[],
        reverts=migration.id,
        created_by=principal.user,
        created_at=now,
        next_batch_at=now,
    )
    session.add(back)
    await session.flush()
    back.total = await repo.copy_moved_items(session, migration, back)
    if back.total == 0:
        # It moved some, but its records were pruned: none of those executions is live.
        raise NothingToRevert(
            f"Migration {migration.id} has no records left to revert: every execution it "
            "moved has finished and its records were pruned"
        )
    back.report = revert_report(await repo.revert_groups(session, migration))
    await _audit(session, principal, migration, "reverted", now, revert_migration=str(back.id))
    await session.flush()
    return back
