"""Contacts and events. Every change to tags or fields sets off goals and triggers."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from revflow.contacts import repository as repo
from revflow.contacts.schemas import ContactCreate, ContactPatch, ContactUpsert, EventIn
from revflow.db import new_id
from revflow.engine import changes, store
from revflow.engine.changes import ContactChange
from revflow.engine.interpreter import Effects, ExecutionState
from revflow.errors import ExternalIdTaken, NotFound
from revflow.executions import enrollment
from revflow.executions.reactions import react
from revflow.kit.ids import require_id
from revflow.models import Contact


async def require_contact(
    session: AsyncSession,
    account_id: uuid.UUID,
    contact_id: str | uuid.UUID,
    *,
    lock: bool = False,
) -> Contact:
    parsed = require_id(contact_id, "contact")
    contact = await repo.get_contact(session, account_id, parsed, lock=lock)
    if contact is None:
        raise NotFound(f"No contact {contact_id}")
    return contact


async def create_contact(
    session: AsyncSession, account_id: uuid.UUID, body: ContactCreate, now: dt.datetime
) -> Contact:
    contact = await _insert_contact(session, account_id, body, now)
    if contact is None:
        raise ExternalIdTaken(f"A contact with external_id {body.external_id!r} exists")
    return contact


async def _insert_contact(
    session: AsyncSession, account_id: uuid.UUID, body: ContactCreate, now: dt.datetime
) -> Contact | None:
    """The new contact and what its creation sets off; ``None`` when its external_id is
    taken (the transaction stays usable)."""
    tags = list(dict.fromkeys(body.tags))
    # SPEC §2: a contact created with tags fires contact_created, then tag_added once per tag
    # (a contact imported with "lead" is a lead).
    change = ContactChange(new_id(), created=True, added_tags=tags)
    inserted = await repo.insert_new(
        session,
        {
            "id": change.contact_id,
            "account_id": account_id,
            "external_id": body.external_id,
            "email": body.email,
            "phone": body.phone,
            "fields": dict(body.fields),
            "tags": tags,
            "created_at": now,
            "updated_at": now,
            "erased_at": None,
        },
        enrollment.trigger_types([change]),
    )
    if inserted is None:
        return None
    # A contact this transaction created has no executions yet.
    await react(session, account_id, [change], now, executions=[], triggered=inserted.triggered)
    return inserted.contact


async def list_contacts(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
    tag: str | None = None,
    email: str | None = None,
) -> Sequence[Contact]:
    return await repo.list_contacts(
        session, account_id, after=after, limit=limit, tag=tag, email=email
    )


async def change_contact(
    session: AsyncSession,
    account_id: uuid.UUID,
    contact: Contact,
    *,
    email: str | None = None,
    phone: str | None = None,
    fields: dict[str, Any] | None = None,
    add_tags: Sequence[str] = (),
    remove_tags: Sequence[str] = (),
    set_tags: Sequence[str] | None = None,
    now: dt.datetime,
) -> ContactChange:
    """Apply a change and set off what it triggers (goals, triggers of other workflows)."""
    # Lock order: executions before contacts, as the worker does (no deadlock between them).
    executions = await store.live_executions_of_contacts(session, account_id, [contact.id])
    await session.refresh(contact, with_for_update=True)
    return await _apply_change(
        session,
        account_id,
        contact,
        executions,
        email=email,
        phone=phone,
        fields=fields,
        add_tags=add_tags,
        remove_tags=remove_tags,
        set_tags=set_tags,
        now=now,
    )


async def _apply_change(
    session: AsyncSession,
    account_id: uuid.UUID,
    contact: Contact,
    executions: list[ExecutionState],
    *,
    email: str | None,
    phone: str | None,
    fields: dict[str, Any] | None,
    add_tags: Sequence[str] = (),
    remove_tags: Sequence[str] = (),
    set_tags: Sequence[str] | None = None,
    now: dt.datetime,
) -> ContactChange:
    """The change to a contact locked with its live ``executions``, and what it sets off."""
    state = store.contact_state(contact)
    change = changes.change_contact(
        state,
        email=email,
        phone=phone,
        fields=fields,
        add_tags=add_tags,
        remove_tags=remove_tags,
        set_tags=set_tags,
    )
    if not change.changes_contact:
        return change
    values = {
        "email": state.email,
        "phone": state.phone,
        "fields": state.fields,
        "tags": state.tags,
        "updated_at": now,
    }
    triggered = None
    if session.get_bind().dialect.name == "postgresql":
        # The update and the trigger lookup in one round trip (BENCHMARKS.md, "Many clients
        # at once"); the contact's object takes the values as written.
        triggered = await repo.update_and_find_triggered(
            session, account_id, contact.id, values, enrollment.trigger_types([change])
        )
        for key, value in values.items():
            set_committed_value(contact, key, value)
    else:
        for key, value in values.items():
            setattr(contact, key, value)
        await session.flush()
    await react(
        session,
        account_id,
        [change],
        now,
        contacts={contact.id: state},
        executions=executions,
        triggered=triggered,
    )
    return change


async def patch_contact(
    session: AsyncSession,
    account_id: uuid.UUID,
    contact: Contact,
    body: ContactPatch,
    now: dt.datetime,
) -> ContactChange:
    return await change_contact(
        session,
        account_id,
        contact,
        email=body.email,
        phone=body.phone,
        fields=body.fields,
        add_tags=body.add_tags,
        remove_tags=body.remove_tags,
        now=now,
    )


async def upsert_contact(
    session: AsyncSession,
    account_id: uuid.UUID,
    external_id: str,
    body: ContactUpsert,
    now: dt.datetime,
) -> tuple[Contact, bool]:
    """Create or update the contact with this ``external_id``; answers (contact, created).

    An update locks the contact and its live executions in one statement; a creation inserts
    unless the ``external_id`` is taken, without a savepoint."""
    found = await repo.lock_by_external_id(session, account_id, external_id)
    if found is None:
        created = await _create_for_upsert(session, account_id, external_id, body, now)
        if created is not None:
            return created, True
        # A concurrent upsert of the same external_id created it first (its insert won the
        # unique index): this one updates that contact, as an upsert should.
        found = await repo.lock_by_external_id(session, account_id, external_id)
        if found is None:
            raise ExternalIdTaken(f"A contact with external_id {external_id!r} exists")
    contact, executions = found
    await _apply_change(
        session,
        account_id,
        contact,
        executions,
        email=body.email,
        phone=body.phone,
        fields=body.fields,
        set_tags=body.tags,
        now=now,
    )
    return contact, False


async def _create_for_upsert(
    session: AsyncSession,
    account_id: uuid.UUID,
    external_id: str,
    body: ContactUpsert,
    now: dt.datetime,
) -> Contact | None:
    """The new contact (``None`` when its external_id was taken meanwhile), as
    ``create_contact``."""
    checked = ContactCreate(
        external_id=external_id,
        email=body.email,
        phone=body.phone,
        fields=body.fields or {},
        tags=body.tags or [],
    )
    return await _insert_contact(session, account_id, checked, now)


async def erase_contact(
    session: AsyncSession, account_id: uuid.UUID, contact: Contact, now: dt.datetime
) -> int:
    """Erasure: cancel the contact's executions and remove its personal data everywhere."""
    executions = await store.live_executions_of_contacts(session, account_id, [contact.id])
    effects = Effects()
    for ex in executions:
        ex.status = "cancelled"
        ex.outcome = "contact_erased"
        ex.finished_at = now
        ex.wake_at = None
        effects.record(ex, now, ex.current_step or "", "cancelled", {"reason": "contact erased"})
    await store.write_effects(
        session, {ex.id: account_id for ex in executions}, executions, [], effects, now
    )
    await session.refresh(contact, with_for_update=True)
    secrets = [value for value in (contact.email, contact.phone) if value]
    await repo.scrub_history_errors(session, account_id, contact.id, secrets)
    await repo.forget_answers(session, account_id, contact.id)
    contact.email = None
    contact.phone = None
    contact.external_id = None
    contact.fields = {}
    contact.tags = []
    contact.erased_at = now
    contact.updated_at = now
    await repo.clear_messages(session, account_id, contact.id)
    await session.flush()
    return len(executions)


async def record_event(
    session: AsyncSession, account_id: uuid.UUID, body: EventIn, now: dt.datetime
) -> tuple[int, list[uuid.UUID]]:
    """An event of a contact: goals, event waits, and event triggers. Answers
    (executions the event advanced, executions enrolled).

    The contact and its live executions are locked in one statement, as an upsert's; an
    execution advanced when the event moved it (its status or step), which is read from the
    locked states before and after the event reached them."""
    found = await repo.lock_by_id(session, account_id, body.contact_id)
    if found is None:
        raise NotFound(f"No contact {body.contact_id}")
    contact, executions = found
    before = {ex.id: (ex.status, ex.current_step) for ex in executions}
    enrolled = await react(
        session,
        account_id,
        [ContactChange(contact.id, events=[body.name])],
        now,
        contacts={contact.id: store.contact_state(contact)},
        executions=executions,
    )
    advanced = sum(1 for ex in executions if (ex.status, ex.current_step) != before[ex.id])
    return advanced, enrolled
