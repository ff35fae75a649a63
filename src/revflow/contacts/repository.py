"""Queries of contacts, always scoped by account; erased contacts are never found."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Row,
    Select,
    String,
    bindparam,
    cast,
    delete,
    func,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, make_transient_to_detached

from revflow.engine import store
from revflow.engine.interpreter import ExecutionState
from revflow.executions.enrollment import triggered_workflows
from revflow.models import (
    Contact,
    Execution,
    HistoryEntry,
    IdempotencyRecord,
    Message,
    Workflow,
    is_live,
)


async def get_contact(
    session: AsyncSession, account_id: uuid.UUID, contact_id: uuid.UUID, *, lock: bool = False
) -> Contact | None:
    query = _contact_by_id(lock)
    return await session.scalar(query, {"account": account_id, "contact": contact_id})


@functools.cache
def _contact_by_id(lock: bool) -> Select[Contact]:
    """The contact ``:contact`` of ``:account`` unless erased, built once."""
    query = select(Contact).where(
        Contact.account_id == bindparam("account", type_=Contact.account_id.type),
        Contact.id == bindparam("contact", type_=Contact.id.type),
        Contact.erased_at.is_(None),
    )
    return query.with_for_update() if lock else query


async def lock_by_external_id(
    session: AsyncSession, account_id: uuid.UUID, external_id: str
) -> tuple[Contact, list[ExecutionState]] | None:
    """The contact with this ``external_id`` and its live executions, both locked, in one
    statement (``_locked_contact``); ``None`` when there is no such contact."""
    return await _lock(session, _locked_contact("external_id"), account_id, external_id)


async def lock_by_id(
    session: AsyncSession, account_id: uuid.UUID, contact_id: uuid.UUID
) -> tuple[Contact, list[ExecutionState]] | None:
    """The contact ``contact_id`` and its live executions, both locked, in one statement
    (``_locked_contact``); ``None`` when there is no such contact."""
    return await _lock(session, _locked_contact("id"), account_id, contact_id)


async def _lock(
    session: AsyncSession, query: Select[Any], account_id: uuid.UUID, key: object
) -> tuple[Contact, list[ExecutionState]] | None:
    rows = (await session.execute(query, {"account": account_id, "key": key})).all()
    if not rows:
        return None
    executions = [store.execution_state(row) for row in rows if row.id is not None]
    return rows[0][0], sorted(executions, key=lambda ex: ex.id)


@functools.cache
def _locked_contact(by: str) -> Select[Any]:
    """The contact whose ``by`` column (``id`` or ``external_id``) is ``:key``, of
    ``:account`` (a row per live execution of it, with that execution's state columns, or one
    row with none), built once.

    Lock order as everywhere (the worker's): the executions, in id order, before the contact.
    The executions are a materialised CTE whose whole count the contact's condition asks for,
    so all of them are locked before the contact's row is."""
    account = bindparam("account", type_=Contact.account_id.type)
    column = Contact.__table__.c[by]
    found = (
        Contact.account_id == account,
        column == bindparam("key", type_=column.type),
        Contact.erased_at.is_(None),
    )
    locked = (
        select(*store.EXECUTION_STATE_COLUMNS)
        .where(
            Execution.account_id == account,
            Execution.contact_id == select(Contact.id).where(*found).scalar_subquery(),
            is_live(Execution.status),
        )
        .order_by(Execution.id)
        .with_for_update(of=Execution)
        .cte("locked")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    all_locked = select(func.count()).select_from(locked).scalar_subquery()
    return (
        select(Contact, *locked.c)
        .outerjoin(locked, true())
        .where(*found, all_locked >= 0)
        .with_for_update(of=Contact)
        .execution_options(populate_existing=True)
    )


@dataclass
class Inserted:
    """A contact ``insert_new`` created, and on PostgreSQL the rows of its trigger lookup."""

    contact: Contact
    triggered: list[tuple[Workflow, str, str | None]] | None


# The columns a new contact is inserted with, and those a change writes: each a bound
# parameter of its name prefixed with "new_" (a bound parameter may not take a column's name
# in an UPDATE's SET).
INSERTED = (
    "id",
    "account_id",
    "external_id",
    "email",
    "phone",
    "fields",
    "tags",
    "created_at",
    "updated_at",
    "erased_at",
)
UPDATED = ("email", "phone", "fields", "tags", "updated_at")


def _new_values(columns: Sequence[str]) -> dict[str, Any]:
    return {c: bindparam(f"new_{c}", type_=Contact.__table__.c[c].type) for c in columns}


def _new_params(values: dict[str, Any]) -> dict[str, Any]:
    return {f"new_{column}": value for column, value in values.items()}


async def insert_new(
    session: AsyncSession, values: dict[str, Any], trigger_types: set[str]
) -> Inserted | None:
    """Insert a contact of ``values`` (every column of ``INSERTED``) unless its
    ``external_id`` is taken (then ``None``): no savepoint, as a conflict leaves the
    transaction usable. The contact answered is in the session, as if loaded. On PostgreSQL
    the insert is a CTE of the lookup of the workflows whose published trigger is of
    ``trigger_types`` (``enrollment.triggered_workflows``): one statement."""
    params = _new_params(values)
    if session.get_bind().dialect.name == "postgresql":
        query = _insert_and_find_triggered(frozenset(trigger_types))
        params["account"] = values["account_id"]
        rows = (await session.execute(query, params)).all()
        if not rows:
            return None
        triggered = [(row[1], row[2], row[3]) for row in rows if row[1] is not None]
    else:
        if (await session.execute(_insert(sqlite.insert), params)).first() is None:
            return None
        triggered = None
    contact = Contact(**values)
    make_transient_to_detached(contact)
    session.add(contact)
    return Inserted(contact, triggered)


@functools.cache
def _insert(insert: Any) -> Any:
    """The new contact's insert, with the dialect's ``insert``, built once."""
    return (
        insert(Contact)
        .values(_new_values(INSERTED))
        .on_conflict_do_nothing(
            index_elements=["account_id", "external_id"],
            index_where=text("external_id IS NOT NULL"),
        )
        .returning(Contact.id)
    )


@functools.cache
def _insert_and_find_triggered(trigger_types: frozenset[str]) -> Select[Any]:
    """The insert as a CTE of the trigger lookup, built once per set of trigger types."""
    inserted = _insert(postgresql.insert).cte("inserted")
    found = triggered_workflows(trigger_types).subquery("triggered")
    workflow = aliased(Workflow, found)
    return (
        select(inserted.c.id, workflow, found.c.trigger_type, found.c.trigger_key)
        .select_from(inserted)
        .outerjoin(found, true())
    )


async def update_and_find_triggered(
    session: AsyncSession,
    account_id: uuid.UUID,
    contact_id: uuid.UUID,
    values: dict[str, Any],
    trigger_types: set[str],
) -> Sequence[Row[Any]]:
    """Write the contact's new ``values`` (every column of ``UPDATED``) and answer the
    workflows whose published trigger is of ``trigger_types``
    (``enrollment.triggered_workflows``), in one statement: the update is a CTE of the lookup
    (PostgreSQL only)."""
    params = _new_params(values) | {"account": account_id, "contact": contact_id}
    query = _update_and_find_triggered(frozenset(trigger_types))
    rows: Sequence[Row[Any]] = (await session.execute(query, params)).all()
    return rows


@functools.cache
def _update_and_find_triggered(trigger_types: frozenset[str]) -> Select[Any]:
    """The update as a CTE of the trigger lookup, built once per set of trigger types."""
    changed = (
        update(Contact)
        .where(
            Contact.account_id == bindparam("account", type_=Contact.account_id.type),
            Contact.id == bindparam("contact", type_=Contact.id.type),
        )
        .values(_new_values(UPDATED))
        .cte("changed")
    )
    return triggered_workflows(trigger_types).add_cte(changed)


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
