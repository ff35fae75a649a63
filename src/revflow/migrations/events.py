"""The webhook events of migrations (SPEC §8): ``migration.started``, ``completed``, ``failed``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from revflow.models import Migration
from revflow.webhooks.service import emit


async def migration_event(
    session: AsyncSession,
    migration: Migration,
    event: str,
    shown: dict[str, Any],
    now: dt.datetime,
) -> None:
    """``migration.started`` / ``completed`` / ``failed``; ``shown`` is the migration as the
    API shows it."""
    data = {"workflow_id": str(migration.workflow_id), "migration": shown}
    await emit(session, migration.account_id, event, data, now=now)
