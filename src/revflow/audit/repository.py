"""Queries of the audit trail: the chain's head, its entries in order, the filtered list."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

from sqlalchemy import Insert, Table, Update, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from revflow.models import AuditEntry, AuditHead

# Core statements on the chain's head: no ORM bookkeeping on a path every change takes.
AUDIT_HEADS = cast(Table, AuditHead.__table__)
AUDIT_ENTRIES = cast(Table, AuditEntry.__table__)


def advance_head(session: Session, account_id: uuid.UUID, count: int) -> tuple[int, str]:
    """Take the next ``count`` numbers of the account's chain (locking its head until the
    commit). Answers the last number taken and the hash of the entry before the first."""
    head = session.execute(
        update(AUDIT_HEADS)
        .where(AUDIT_HEADS.c.account_id == account_id)
        .values(seq=AUDIT_HEADS.c.seq + count)
        .returning(AUDIT_HEADS.c.seq, AUDIT_HEADS.c.hash)
    ).one()
    return int(head.seq), str(head.hash)


def append(session: Session, account_id: uuid.UUID, entries: Sequence[dict[str, Any]]) -> None:
    """Insert ``entries`` (numbered by :func:`advance_head`, in order) and make the last one's
    hash the head's. On PostgreSQL both are one statement (the insert in a CTE of the head's
    update); the head is already locked by the advance, so the chain's order is the advances'
    order either way."""
    insert_entries, set_hash = append_statements(account_id, entries)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(set_hash.add_cte(insert_entries.cte("entries")))
        return
    session.execute(insert_entries)
    session.execute(set_hash)


def append_statements(
    account_id: uuid.UUID, entries: Sequence[dict[str, Any]]
) -> tuple[Insert, Update]:
    """The insert of ``entries`` and the update of the head's hash. One entry (what every API
    change appends) is a single-row ``VALUES``, whose compiled form SQLAlchemy caches; a
    multi-row ``VALUES`` has no cache key and is compiled again on every execution."""
    insert_entries = insert(AUDIT_ENTRIES).values(
        entries[0] if len(entries) == 1 else list(entries)
    )
    set_hash = (
        update(AUDIT_HEADS)
        .where(AUDIT_HEADS.c.account_id == account_id)
        .values(hash=entries[-1]["hash"])
    )
    return insert_entries, set_hash


async def head(session: AsyncSession, account_id: uuid.UUID) -> AuditHead | None:
    return await session.get(AuditHead, account_id)


async def entries_in_order(
    session: AsyncSession, account_id: uuid.UUID
) -> AsyncIterator[AuditEntry]:
    """Every entry of the account's chain, oldest first, streamed."""
    result = await session.stream(
        select(AuditEntry)
        .where(AuditEntry.account_id == account_id)
        .order_by(AuditEntry.seq)
        .execution_options(yield_per=1000)
    )
    async for entry in result.scalars():
        yield entry


async def list_entries(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    workflow_id: uuid.UUID | None,
    action: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    before_seq: int | None,
    limit: int,
) -> Sequence[AuditEntry]:
    """Entries newest first, filtered."""
    query = select(AuditEntry).where(AuditEntry.account_id == account_id)
    if workflow_id is not None:
        query = query.where(AuditEntry.workflow_id == workflow_id)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    if before_seq is not None:
        query = query.where(AuditEntry.seq < before_seq)
    return (await session.scalars(query.order_by(AuditEntry.seq.desc()).limit(limit))).all()
