"""Queries of migrations and their items, always scoped by account. (The batch runner's
set-based statements are in ``runner.py``.)"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import and_, case, func, insert, literal, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.models import (
    MIGRATION_UNFINISHED,
    Execution,
    Migration,
    MigrationItem,
    is_live,
)

ITEM_COLUMNS = ["migration_id", "execution_id", "account_id", "state"]


async def get_migration(
    session: AsyncSession, account_id: uuid.UUID, migration_id: uuid.UUID, *, lock: bool = False
) -> Migration | None:
    query = select(Migration).where(
        Migration.account_id == account_id, Migration.id == migration_id
    )
    return await session.scalar(query.with_for_update() if lock else query)


async def unfinished(
    session: AsyncSession, account_id: uuid.UUID, workflow_id: uuid.UUID
) -> Migration | None:
    return await session.scalar(
        select(Migration).where(
            Migration.account_id == account_id,
            Migration.workflow_id == workflow_id,
            Migration.status.in_(MIGRATION_UNFINISHED),
        )
    )


async def list_migrations(
    session: AsyncSession,
    account_id: uuid.UUID,
    workflow_id: uuid.UUID,
    *,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[Migration]:
    query = select(Migration).where(
        Migration.account_id == account_id, Migration.workflow_id == workflow_id
    )
    if after is not None:
        query = query.where(tuple_(Migration.created_at, Migration.id) < tuple_(*after))
    query = query.order_by(Migration.created_at.desc(), Migration.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def live_among(
    session: AsyncSession,
    account_id: uuid.UUID,
    workflow_id: uuid.UUID,
    version: int,
    ids: Sequence[uuid.UUID],
) -> set[uuid.UUID]:
    """Which of ``ids`` are live executions of the version."""
    return set(
        await session.scalars(
            select(Execution.id).where(
                Execution.account_id == account_id,
                Execution.workflow_id == workflow_id,
                Execution.version == version,
                is_live(Execution.status),
                Execution.id.in_(ids),
            )
        )
    )


async def snapshot(
    session: AsyncSession, migration: Migration, ids: Sequence[uuid.UUID] | None
) -> int:
    """The live executions of ``from_version`` now (or ``ids`` among them) become the
    migration's pending items (set-based). Answers how many."""
    query = select(
        literal(migration.id, Migration.id.type),
        Execution.id,
        Execution.account_id,
        literal("pending"),
    ).where(
        Execution.account_id == migration.account_id,
        Execution.workflow_id == migration.workflow_id,
        Execution.version == migration.from_version,
        is_live(Execution.status),
    )
    if ids is not None:
        query = query.where(Execution.id.in_(ids))
    # In key order, every index of the items grows at its right edge (no page splits).
    query = query.order_by(Execution.id)
    inserted = await session.execute(insert(MigrationItem).from_select(ITEM_COLUMNS, query))
    await _analyze_items(session)
    return int(inserted.rowcount)  # type: ignore[attr-defined]


async def copy_moved_items(session: AsyncSession, source: Migration, target: Migration) -> int:
    """The executions ``source`` moved become ``target``'s pending items. Answers how many."""
    await session.execute(
        insert(MigrationItem).from_select(
            ITEM_COLUMNS,
            select(
                literal(target.id, Migration.id.type),
                MigrationItem.execution_id,
                MigrationItem.account_id,
                literal("pending"),
            ).where(
                MigrationItem.account_id == source.account_id,
                MigrationItem.migration_id == source.id,
                MigrationItem.state == "migrated",
            ),
        )
    )
    return await count_items(session, target)


async def count_items(session: AsyncSession, migration: Migration) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(MigrationItem)
            .where(
                MigrationItem.account_id == migration.account_id,
                MigrationItem.migration_id == migration.id,
            )
        )
        or 0
    )


async def _analyze_items(session: AsyncSession) -> None:
    if session.get_bind().dialect.name == "postgresql":
        # The items are new rows, perhaps most of the table: until the autovacuum's ANALYZE
        # (a minute or more later) the planner takes this migration's items for a handful,
        # and its batch statements read all of them per batch. ANALYZE counts this
        # transaction's own rows; a role that does not own the table only gets a warning.
        await session.execute(text("ANALYZE migration_items"))


async def revert_groups(
    session: AsyncSession, original: Migration
) -> list[tuple[str, str | None, str | None, int]]:
    """The executions ``original`` moved, grouped by where they are now: (current step, step
    they came from, why they cannot go back or None, count)."""
    still_there = and_(
        Execution.version == original.to_version,
        Execution.current_step == MigrationItem.to_step,
        is_live(Execution.status),
    )
    reason = case(
        (still_there, None),
        (is_live(Execution.status), "advanced_since_move"),
        else_="finished",
    )
    rows = await session.execute(
        select(Execution.current_step, MigrationItem.from_step, reason, func.count())
        .join(
            Execution,
            (Execution.account_id == MigrationItem.account_id)
            & (Execution.id == MigrationItem.execution_id),
        )
        .where(
            MigrationItem.account_id == original.account_id,
            MigrationItem.migration_id == original.id,
            MigrationItem.state == "migrated",
            Execution.account_id == original.account_id,
        )
        .group_by(Execution.current_step, MigrationItem.from_step, reason)
    )
    return [(str(r[0] or ""), r[1], r[2], int(r[3])) for r in rows.all()]
