"""Scheduled and automatic version changes: canary auto-abort (SPEC §6b) and archival (§7)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.audit import service as audit
from revflow.audit.service import SYSTEM
from revflow.config import Settings
from revflow.db import of_accounts
from revflow.kit.schedule import claim_run
from revflow.models import Execution, Version, Workflow, is_live
from revflow.workflows import events as webhook_events
from revflow.workflows.service import abort_canary, touch

ARCHIVE_JOB = "archive"


async def check_canaries(
    session: AsyncSession,
    workflows_of_accounts: Iterable[tuple[uuid.UUID, uuid.UUID]],
    settings: Settings,
    now: dt.datetime,
) -> list[uuid.UUID]:
    """Abort the canaries of these workflows, given as (account, workflow), whose failure
    rate passed the limit."""
    aborted = []
    keys = set(workflows_of_accounts)
    if not keys:
        return []
    workflows = (
        await session.scalars(
            select(Workflow)
            .where(
                of_accounts(Workflow, keys),
                Workflow.canary_version.is_not(None),
            )
            .with_for_update()
        )
    ).all()
    for workflow in workflows:
        rows = await session.execute(
            select(Execution.status, func.count())
            .where(
                Execution.account_id == workflow.account_id,
                Execution.workflow_id == workflow.id,
                Execution.version == workflow.canary_version,
                Execution.status.in_(("completed", "failed")),
            )
            .group_by(Execution.status)
        )
        counts = {str(row[0]): int(row[1]) for row in rows.all()}
        failed, finished = counts.get("failed", 0), sum(counts.values())
        if finished >= settings.canary_min_executions and (
            failed / finished > settings.canary_max_failure_rate
        ):
            await abort_canary(
                session,
                SYSTEM,
                workflow,
                f"failure rate {failed}/{finished} above {settings.canary_max_failure_rate}",
                now=now,
            )
            aborted.append(workflow.id)
    return aborted


@dataclass(frozen=True)
class Archivable:
    account_id: uuid.UUID
    workflow_id: uuid.UUID
    version_id: uuid.UUID
    number: int


async def archivable(
    session: AsyncSession, settings: Settings, now: dt.datetime
) -> list[Archivable]:
    """Versions the archival rule selects: not current, not a canary, no live executions,
    last published (drafts: created) over ``archive_after_days`` ago, and not among the
    newest ``keep_versions`` of their workflow."""
    cutoff = now - dt.timedelta(days=settings.archive_after_days)
    newest = (
        select(
            Version.account_id,
            Version.id,
            func.row_number()
            .over(
                partition_by=(Version.account_id, Version.workflow_id),
                order_by=Version.number.desc(),
            )
            .label("rank"),
        )
    ).subquery()
    live = exists().where(
        Execution.account_id == Version.account_id,
        Execution.workflow_id == Version.workflow_id,
        Execution.version == Version.number,
        is_live(Execution.status),
    )
    query = (
        select(Version.account_id, Version.workflow_id, Version.id, Version.number)
        .join(newest, (newest.c.account_id == Version.account_id) & (newest.c.id == Version.id))
        .where(
            Version.status.in_(("draft", "retired")),
            func.coalesce(Version.published_at, Version.created_at) < cutoff,
            newest.c.rank > settings.keep_versions,
            ~live,
        )
        .order_by(Version.workflow_id, Version.number)
    )
    return [Archivable(*row) for row in (await session.execute(query)).all()]


async def archive(session: AsyncSession, settings: Settings, now: dt.datetime) -> list[Archivable]:
    """Archive what the rule selects. Each version is archived by one conditional UPDATE, so
    two runs at once archive it once (and write one audit entry)."""
    done = []
    for item in await archivable(session, settings, now):
        result = await session.execute(
            update(Version)
            .where(
                Version.account_id == item.account_id,
                Version.id == item.version_id,
                Version.status.in_(("draft", "retired")),
            )
            .values(status="archived", archived_at=now)
            .returning(Version.id)
        )
        if result.first() is None:
            continue
        workflow = await session.get(
            Workflow, (item.account_id, item.workflow_id), with_for_update=True
        )
        if workflow is not None:
            touch(workflow, now=now)
        await audit.record(
            session,
            item.account_id,
            SYSTEM,
            "version.archived",
            object_type="version",
            object_id=item.version_id,
            workflow_id=item.workflow_id,
            details={"number": item.number},
            now=now,
        )
        if workflow is not None:
            await webhook_events.version_archived(
                session, item.account_id, workflow, item.version_id, now
            )
        done.append(item)
    return done


async def claim_archive_run(
    session: AsyncSession, settings: Settings, now: dt.datetime, runner: str
) -> bool:
    """True for exactly one caller per ``archive_interval_hours`` across all workers."""
    interval = dt.timedelta(hours=settings.archive_interval_hours)
    return await claim_run(session, ARCHIVE_JOB, interval, now, runner)
