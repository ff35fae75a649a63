"""What a change to a contact sets off: goals and event waits of its running executions,
and the triggers of other workflows. Shared by the API (contacts, events) and the worker
(steps that change contacts)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from revflow.engine import store
from revflow.engine.changes import ContactChange, deliver_change
from revflow.engine.interpreter import ContactState, Effects, ExecutionState
from revflow.engine.runner import Outcome
from revflow.executions import repository as repo
from revflow.executions.enrollment import fire_triggers
from revflow.models import Workflow


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
    triggered: Sequence[Sequence[Any]] | None = None,
) -> list[uuid.UUID]:
    """Apply goals and event waits to the contacts' live executions, then fire triggers.

    ``contacts`` are states already loaded (and locked) by the caller; others are loaded here.
    ``executions`` are the contacts' live executions when the caller has already locked them.
    Executions of a paused workflow do not move: what reaches them is held, in arrival order,
    and applied when the workflow is resumed (``release_held``). Answers the executions
    enrolled by triggers, whose lookup ``triggered`` is when the caller has made it
    (``fire_triggers``).
    """
    changes = [c for c in changes if c.changes_contact or c.events or c.created]
    if not changes:
        return []
    by_contact = {c.contact_id: c for c in changes}
    if executions is None:
        executions = await store.live_executions_of_contacts(
            session, account_id, by_contact, exclude=exclude_executions, skip_locked=skip_locked
        )
    if executions:
        paused = await repo.paused_among(session, account_id, {ex.workflow_id for ex in executions})
        await _hold(
            session,
            account_id,
            [ex for ex in executions if ex.workflow_id in paused],
            by_contact,
            now,
        )
        executions = [ex for ex in executions if ex.workflow_id not in paused]
    if executions:
        states = dict(contacts or {})
        missing = {ex.contact_id for ex in executions} - states.keys()
        states |= await store.load_contacts(session, [(account_id, c) for c in missing])
        defs = await store.definitions(
            session, [account_id], {(ex.workflow_id, ex.version) for ex in executions}
        )
        effects = Effects()
        touched = []
        for ex in executions:
            change = by_contact[ex.contact_id]
            contact = states.get(ex.contact_id)
            definition = defs.get((ex.workflow_id, ex.version))
            if contact is None or definition is None:
                continue
            events, changed = change.events, change.changes_contact
            if deliver_change(definition, ex, contact, events, changed, now, effects):
                touched.append(ex)
        await store.write_effects(
            session, {ex.id: account_id for ex in touched}, touched, [], effects, now
        )
    return await fire_triggers(session, account_id, changes, now, triggered=triggered)


async def react_to_steps(session: AsyncSession, outcome: Outcome, now: dt.datetime) -> None:
    """The engine's hook: contacts changed by steps fire triggers and goals of their other
    executions, in the batch's transaction."""
    contacts = outcome.contacts
    changed = [c for c in contacts.values() if c.added_tags or c.removed_tags or c.changed_fields]
    if not changed:
        return
    # A contact's account is that of the executions that loaded it.
    account_of = {ex.contact_id: outcome.accounts[ex.id] for ex in outcome.executions}
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


async def _hold(
    session: AsyncSession,
    account_id: uuid.UUID,
    executions: Sequence[ExecutionState],
    by_contact: dict[uuid.UUID, ContactChange],
    now: dt.datetime,
) -> None:
    rows: list[dict[str, object]] = []
    for ex in executions:
        change = by_contact[ex.contact_id]
        base = {
            "account_id": account_id,
            "workflow_id": ex.workflow_id,
            "execution_id": ex.id,
            "at": now,
        }
        rows += [{**base, "kind": "event", "name": name} for name in change.events]
        if change.changes_contact:
            rows.append({**base, "kind": "change", "name": None})
    await repo.hold(session, rows)


async def release_held(session: AsyncSession, workflow: Workflow, now: dt.datetime) -> int:
    """On resume: apply what was held for the workflow's executions while it was paused, in
    arrival order, in the resume's transaction. Answers how many executions it moved."""
    held = await repo.held_reactions(session, workflow.account_id, workflow.id)
    if not held:
        return 0
    account_id = workflow.account_id
    locked = await store.lock_executions(
        session, sorted({(account_id, h.execution_id) for h in held})
    )
    states = {ex.id: ex for _, ex in locked}
    contacts = await store.load_contacts(
        session, {(account_id, ex.contact_id) for ex in states.values()}
    )
    defs = await store.definitions(
        session, [account_id], {(ex.workflow_id, ex.version) for ex in states.values()}
    )
    effects = Effects()
    touched: dict[uuid.UUID, ExecutionState] = {}
    for entry in held:
        ex = states.get(entry.execution_id)
        if ex is None or not ex.live:
            continue  # finished (cancelled, erased) while the workflow was paused
        definition = defs.get((ex.workflow_id, ex.version))
        contact = contacts.get(ex.contact_id)
        if definition is None or contact is None:
            continue
        events = [entry.name] if entry.kind == "event" and entry.name else []
        if deliver_change(definition, ex, contact, events, entry.kind == "change", now, effects):
            touched[ex.id] = ex
    await store.write_effects(
        session,
        {ex_id: workflow.account_id for ex_id in touched},
        list(touched.values()),
        [],
        effects,
        now,
    )
    await repo.drop_held(session, workflow.account_id, [h.id for h in held])
    return len(touched)
