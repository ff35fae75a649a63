"""Queries of contacts, always scoped by account; erased contacts are never found."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import String, cast, delete, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.models import (
    LIVE_STATUSES,
    Contact,
    Execution,
    HistoryEntry,
    IdempotencyRecord,
    Message,
)


async def get_contact(
    session: AsyncSession, account_id: uuid.UUID, contact_id: uuid.UUID, *, lock: bool = False
) -> Contact | None:
    query = select(Contact).where(
        Contact.account_id == account_id, Contact.id == contact_id, Contact.erased_at.is_(None)
    )
    return await session.scalar(query.with_for_update() if lock else query)


async def get_by_external_id(
    session: AsyncSession, account_id: uuid.UUID, external_id: str, *, lock: bool = False
) -> Contact | None:
    query = select(Contact).where(
        Contact.account_id == account_id,
        Contact.external_id == external_id,
        Contact.erased_at.is_(None),
    )
    return await session.scalar(query.with_for_update() if lock else query)


async def list_contacts(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
    tag: str | None = None,
    email: str | None = None,
) -> Sequence[Contact]:
    query = select(Contact).where(Contact.account_id == account_id, Contact.erased_at.is_(None))
    if email is not None:
        query = query.where(Contact.email == email)
    if after is not None:
        query = query.where(tuple_(Contact.created_at, Contact.id) < tuple_(*after))
    query = query.order_by(Contact.created_at.desc(), Contact.id.desc())
    if tag is None:
        return (await session.scalars(query.limit(limit))).all()
    # Tags live in a JSON list; filter in Python over bounded pages (portable across databases).
    found: list[Contact] = []
    async for contact in await session.stream_scalars(query.execution_options(yield_per=500)):
        if tag in contact.tags:
            found.append(contact)
            if len(found) >= limit:
                break
    return found


async def clear_messages(
    session: AsyncSession, account_id: uuid.UUID, contact_id: uuid.UUID
) -> None:
    """Erasure: the outbox keeps its messages to the contact without their personal data."""
    await session.execute(
        update(Message)
        .where(Message.account_id == account_id, Message.contact_id == contact_id)
        .values(to=None, subject=None, body=None)
    )


async def live_positions(
    session: AsyncSession, account_id: uuid.UUID, contact_id: uuid.UUID
) -> dict[uuid.UUID, tuple[str, str | None]]:
    """Where each live execution of the contact is: (status, current step)."""
    rows = await session.execute(
        select(Execution.id, Execution.status, Execution.current_step)
        .where(
            Execution.account_id == account_id,
            Execution.contact_id == contact_id,
            Execution.status.in_(LIVE_STATUSES),
        )
        .execution_options(populate_existing=True)
    )
    return {row.id: (row.status, row.current_step) for row in rows.all()}


async def scrub_history_errors(
    session: AsyncSession, account_id: uuid.UUID, contact_id: uuid.UUID, secrets: list[str]
) -> None:
    """Erasure: errors of the contact's history entries (a server's answer may quote the
    address it refused) lose the contact's email and phone."""
    executions = select(Execution.id).where(
        Execution.account_id == account_id, Execution.contact_id == contact_id
    )
    for secret in secrets:
        await session.execute(
            update(HistoryEntry)
            .where(
                HistoryEntry.account_id == account_id,
                HistoryEntry.execution_id.in_(executions),
                HistoryEntry.error.contains(secret, autoescape=True),
            )
            .values(error=func.replace(HistoryEntry.error, secret, "[erased]"))
        )


async def forget_answers(
    session: AsyncSession, account_id: uuid.UUID, contact_id: uuid.UUID
) -> None:
    """Erasure: answers kept for idempotent retries that show the contact are forgotten (a
    retry after the erasure runs afresh)."""
    await session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.account_id == account_id,
            cast(IdempotencyRecord.response, String).contains(str(contact_id), autoescape=True),
        )
    )
