"""A change to a contact, and what it sets off in one live execution (pure).

The API (contacts, events), the worker (steps that change contacts), the resume of a paused
workflow and the simulator all go through these functions, so that "a tag was added", "a field
changed" and "an event arrived" mean the same thing wherever they happen.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from revflow.definition import Definition
from revflow.engine.interpreter import (
    ContactState,
    Effects,
    ExecutionState,
    check_condition_goals,
    deliver_event,
)


@dataclass
class ContactChange:
    """What happened to a contact, for the goals and triggers it may fire."""

    contact_id: uuid.UUID
    created: bool = False
    added_tags: list[str] = field(default_factory=list)
    changed_fields: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    # Fire no trigger, but goals' `if` conditions are evaluated on every change.
    removed_tags: list[str] = field(default_factory=list)

    @property
    def changes_contact(self) -> bool:
        """Tags or fields changed: the contact's goal conditions are evaluated again."""
        return bool(self.added_tags or self.removed_tags or self.changed_fields)


_MISSING = object()


def change_contact(
    contact: ContactState,
    *,
    email: str | None = None,
    phone: str | None = None,
    fields: Mapping[str, Any] | None = None,
    add_tags: Sequence[str] = (),
    remove_tags: Sequence[str] = (),
    set_tags: Sequence[str] | None = None,
) -> ContactChange:
    """Apply a change as ``PATCH /contacts/{id}`` and upserts make it, and answer what changed.

    ``None`` leaves ``email`` and ``phone`` as they are; ``fields`` are merged into the
    contact's (a field given the value it has is no change); ``set_tags`` replaces the tags
    (upserts), else ``add_tags`` and ``remove_tags`` apply in that order.
    """
    change = ContactChange(contact.id)
    if email is not None and email != contact.email:
        contact.email = email
        change.changed_fields.append("email")
    if phone is not None and phone != contact.phone:
        contact.phone = phone
        change.changed_fields.append("phone")
    if fields:
        merged = dict(contact.fields)
        for key, value in fields.items():
            if merged.get(key, _MISSING) != value:
                change.changed_fields.append(f"fields.{key}")
            merged[key] = value
        contact.fields = merged
    tags = list(contact.tags)
    if set_tags is not None:
        add_tags = [t for t in set_tags if t not in tags]
        remove_tags = [t for t in tags if t not in set_tags]
    for tag in add_tags:
        if tag not in tags:
            tags.append(tag)
            change.added_tags.append(tag)
    change.removed_tags = [t for t in remove_tags if t in tags]
    contact.tags = [t for t in tags if t not in change.removed_tags]
    return change


def deliver_change(
    definition: Definition,
    ex: ExecutionState,
    contact: ContactState,
    events: Sequence[str],
    contact_changed: bool,
    now: dt.datetime,
    effects: Effects,
) -> bool:
    """What reaches one live execution of the contact: its events first (goals, event waits),
    then, when the contact changed, the condition goals. Answers whether the execution moved."""
    fired = False
    for name in events:
        fired = deliver_event(definition, ex, contact, name, now, effects) or fired
        if not ex.live:
            return fired
    if ex.live and contact_changed:
        fired = check_condition_goals(definition, ex, contact, now, effects) or fired
    return fired
