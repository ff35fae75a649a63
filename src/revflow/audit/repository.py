"""Queries of the audit trail: the chain's head, its entries in order, the filtered list."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

from sqlalchemy import BigInteger, Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from revflow.models import AuditEntry, AuditHead

# Core statements on the chain's head: no ORM bookkeeping on a path every change takes.
AUDIT_HEADS = cast(Table, AuditHead.__table__)
AUDIT_ENTRIES = cast(Table, AuditEntry.__table__)


def advance_head(session: Session, account_id: uuid.UUID, count: int) -> tuple[int, str]:
    """Take the next ``count`` numbers of the account's chain (locking its head until the
    commit). Answers the last number taken and the hash of the entry before the first."""
    head = session.execute(_ADVANCE_HEAD, {"head_account_id": account_id, "count": count}).one()
    return int(head.seq), str(head.hash)


def append(session: Session, account_id: uuid.UUID, entries: Sequence[dict[str, Any]]) -> None:
    """Insert ``entries`` (numbered by :func:`advance_head`, in order) and make the last one's
    hash the head's. On PostgreSQL both are one statement (the insert in a CTE of the head's
    update); the head is already locked by the advance, so the chain's order is the advances'
    order either way."""
    head = {"head_account_id": account_id, "head_hash": entries[-1]["hash"]}
    postgresql = session.get_bind().dialect.name == "postgresql"
    if len(entries) == 1:
        # What every API change appends: statements built once, every value a parameter.
        one = {f"e_{key}": value for key, value in entries[0].items()}
        if postgresql:
            session.execute(_APPEND_ONE, one | head)
            return
        session.execute(_INSERT_ONE, one)
        session.execute(_SET_HASH, head)
        return
    insert_entries = insert(AUDIT_ENTRIES).values(list(entries))
    if postgresql:
        session.execute(_SET_HASH.add_cte(insert_entries.cte("entries")), head)
        return
    session.execute(insert_entries)
    session.execute(_SET_HASH, head)


_ADVANCE_HEAD = (
    update(AUDIT_HEADS)
    .where(AUDIT_HEADS.c.account_id == bindparam("head_account_id"))
    .values(seq=AUDIT_HEADS.c.seq + bindparam("count", type_=BigInteger))
    .returning(AUDIT_HEADS.c.seq, AUDIT_HEADS.c.hash)
)
_SET_HASH = (
    update(AUDIT_HEADS)
    .where(AUDIT_HEADS.c.account_id == bindparam("head_account_id"))
    .values(hash=bindparam("head_hash", type_=AUDIT_HEADS.c.hash.type))
)
# One entry: ``e_<column>`` for each of its columns.
_INSERT_ONE = insert(AUDIT_ENTRIES).values(
    {column.key: bindparam(f"e_{column.key}", type_=column.type) for column in AUDIT_ENTRIES.c}
)
_APPEND_ONE = _SET_HASH.add_cte(_INSERT_ONE.cte("entries"))
# The head moved to the entry only where it still is the entry before; the entry inserted
# only where the head moved.
_MOVED_HEAD = (
    update(AUDIT_HEADS)
    .where(
        AUDIT_HEADS.c.account_id == bindparam("e_account_id"),
        AUDIT_HEADS.c.seq == bindparam("head_seq", type_=BigInteger),
        AUDIT_HEADS.c.hash == bindparam("e_prev_hash"),
    )
    .values(seq=bindparam("e_seq"), hash=bindparam("e_hash"))
    .returning(AUDIT_HEADS.c.seq)
    .cte("moved_head")
)
_APPEND_AFTER = (
    insert(AUDIT_ENTRIES)
    .from_select(
        [column.key for column in AUDIT_ENTRIES.c],
        select(
            *(
                _MOVED_HEAD.c.seq
                if column.key == "seq"
                else bindparam(f"e_{column.key}", type_=column.type)
                for column in AUDIT_ENTRIES.c
            )
        ),
    )
    .returning(AUDIT_ENTRIES.c.seq)
)


def appends_after(session: Session) -> bool:
    """Whether :func:`append_after` works on the session's database: PostgreSQL (SQLite has no
    ``UPDATE`` in a CTE)."""
    return session.get_bind().dialect.name == "postgresql"


def append_after(session: Session, row: dict[str, Any]) -> bool:
    """Insert ``row`` as the next entry of its account's chain if the head is still entry
    ``seq - 1`` with hash ``prev_hash``, and make ``row`` the head: one statement, which locks
    the head as :func:`advance_head` does. Answers whether it did. PostgreSQL only
    (:func:`appends_after`)."""
    return session.execute(_APPEND_AFTER, append_after_parameters(row)).first() is not None


def append_after_parameters(row: dict[str, Any]) -> dict[str, Any]:
    """The parameters of :func:`append_after`'s statement, or of :data:`APPENDED_AFTER` in
    another statement, for ``row``: ``e_<column>`` and ``head_seq``."""
    params = {f"e_{key}": value for key, value in row.items()}
    params["head_seq"] = row["seq"] - 1
    return params


# :func:`append_after`'s statement as a CTE, for a change to append its entry in its own
# statement (``SELECT count(*) FROM appended_entry``: 1 where it did, 0 where the head moved).
APPENDED_AFTER = _APPEND_AFTER.cte("appended_entry")


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
