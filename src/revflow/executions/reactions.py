"""What a change to a contact sets off: goals and event waits of its running executions,
and the triggers of other workflows. Shared by the API (contacts, events) and the worker
(steps that change contacts)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from revflow.engine import store
from revflow.engine.interpreter import (
    ContactState,
    Effects,
    ExecutionState,
    check_condition_goals,
    deliver_event,
)
from revflow.engine.runner import Outcome
from revflow.executions.enrollment import ContactChange, fire_triggers


async def react(
    session: AsyncSession,
    account_id: uuid.UUID,
    changes: Sequence[ContactChange],
    now: dt.datetime,
    *,
    contacts: dict[uuid.UUID, ContactState] | None = None,
    executions: list[ExecutionState] | None = None,
    exclude_executions: Iterable[uuid.UUID] = (),
    skip_locked: bool = False,
) -> list[uuid.UUID]:
    """Apply goals and event waits to the contacts' live executions, then fire triggers.

    ``contacts`` are states already loaded (and locked) by the caller; others are loaded here.
    ``executions`` are the contacts' live executions when the caller has already locked them.
    Answers the executions enrolled by triggers.
    """
    changes = [
        c
        for c in changes
        if c.added_tags or c.removed_tags or c.changed_fields or c.events or c.created
    ]
    if not changes:
        return []
    by_contact = {c.contact_id: c for c in changes}
    if executions is None:
        executions = await store.live_executions_of_contacts(
            session, account_id, by_contact, exclude=exclude_executions, skip_locked=skip_locked
        )
    if executions:
        states = dict(contacts or {})
        missing = {ex.contact_id for ex in executions} - states.keys()
        states |= await store.load_contacts(session, missing)
        defs = await store.definitions(session, {(ex.workflow_id, ex.version) for ex in executions})
        effects = Effects()
        touched = []
        for ex in executions:
            change = by_contact[ex.contact_id]
            contact = states.get(ex.contact_id)
            definition = defs.get((ex.workflow_id, ex.version))
            if contact is None or definition is None:
                continue
            fired = False
            for name in change.events:
                fired = deliver_event(definition, ex, contact, name, now, effects) or fired
                if not ex.live:
                    break
            if ex.live and (change.added_tags or change.removed_tags or change.changed_fields):
                fired = check_condition_goals(definition, ex, contact, now, effects) or fired
            if fired:
                touched.append(ex)
        await store.write_effects(
            session, {ex.id: account_id for ex in touched}, touched, [], effects, now
        )
    return await fire_triggers(session, account_id, changes, now)


async def react_to_steps(session: AsyncSession, outcome: Outcome, now: dt.datetime) -> None:
    """The engine's hook: contacts changed by steps fire triggers and goals of their other
    executions, in the batch's transaction."""
    contacts = outcome.contacts
    changed = [c for c in contacts.values() if c.added_tags or c.removed_tags or c.changed_fields]
    if not changed:
        return
    account_of = await store.contact_accounts(session, [c.id for c in changed])
    by_account: dict[uuid.UUID, list[ContactChange]] = defaultdict(list)
    for c in changed:
        by_account[account_of[c.id]].append(
            ContactChange(
                c.id,
                added_tags=list(c.added_tags),
                changed_fields=list(c.changed_fields),
                removed_tags=list(c.removed_tags),
            )
        )
    for account_id, changes in by_account.items():
        # Other executions held by other workers are skipped, not waited for (that could
        # deadlock); they check their goals themselves before their next step. This batch's
        # own executions (already written, and locked by this transaction) are included: one
        # that began a wait before another changed the contact must see it.
        await react(session, account_id, changes, now, contacts=contacts, skip_locked=True)
