"""Periodic jobs run once per interval across every worker (archival, pruning)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.models import ScheduledJob


async def claim_run(
    session: AsyncSession, job: str, interval: dt.timedelta, now: dt.datetime, runner: str
) -> bool:
    """True for exactly one caller per ``interval`` across all workers: one conditional
    UPDATE of the job's row decides, and the caller's transaction holds it until it commits."""
    if await session.get(ScheduledJob, job) is None:
        # Added inside the savepoint: begin_nested() flushes pending objects before it starts,
        # so a row added outside would be inserted outside the savepoint, and the duplicate
        # of a worker racing us would roll back the whole transaction.
        try:
            async with session.begin_nested():
                session.add(ScheduledJob(name=job, last_run_at=None))
        except IntegrityError:
            pass  # another worker created it meanwhile; the UPDATE below decides
    result = await session.execute(
        update(ScheduledJob)
        .where(
            ScheduledJob.name == job,
            (ScheduledJob.last_run_at.is_(None)) | (ScheduledJob.last_run_at <= now - interval),
        )
        .values(last_run_at=now, last_run_by=runner)
        .returning(ScheduledJob.name)
    )
    return result.first() is not None
