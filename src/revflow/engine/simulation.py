"""One execution run on a simulated clock (SPEC §11 "simulate"), by the engine's own rules.

The loop plays the part of the API and of the worker, with the functions they call: at each
moment it first applies what the timeline holds for that moment (contact changes and events,
through :func:`~revflow.engine.changes.change_contact` and
:func:`~revflow.engine.changes.deliver_change`, as ``POST /events`` and ``PATCH /contacts``
do), then runs the execution if it is due (:func:`~revflow.engine.interpreter.advance`, as a
worker's batch does), lets the steps' own contact changes reach it (as the worker's hook does),
and completes the external calls it hands back as if they had succeeded. Nothing here stores
or sends anything: messages and HTTP requests are only reported.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from revflow.definition import Definition
from revflow.engine.changes import ContactChange, change_contact, deliver_change
from revflow.engine.interpreter import (
    MAX_STEPS_PER_RUN,
    Channels,
    ContactState,
    Effects,
    ExecutionState,
    ExternalCall,
    advance,
    external_done,
)

# The most steps one simulation runs: a loop through waits ends here if ``until`` is far.
MAX_SIMULATED_STEPS = 10_000

StoppedReason = Literal["finished", "until", "step_limit"]


@dataclass(frozen=True)
class TimelineEntry:
    """Something that happens to the contact at ``at``: an event (``event`` set), or a change
    of the contact as ``PATCH /contacts/{id}`` makes it."""

    at: dt.datetime
    event: str | None = None
    email: str | None = None
    phone: str | None = None
    fields: Mapping[str, Any] | None = None
    add_tags: Sequence[str] = ()
    remove_tags: Sequence[str] = ()


@dataclass
class Simulation:
    """What a simulated execution did, in the order it happened."""

    execution: ExecutionState
    contact: ContactState
    path: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    http_requests: list[dict[str, Any]] = field(default_factory=list)
    goals: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    stopped_reason: StoppedReason = "until"

    def collect(self, effects: Effects, now: dt.datetime) -> None:
        """Take the history entries and outbox messages of one run, stamped with ``now``."""
        for entry in effects.history:
            self.path.append({key: entry[key] for key in ("at", "step", "result", "detail")})
            self.path[-1]["error"] = entry["error"]
            if entry["result"] == "goal":
                self.goals.append(
                    {"at": entry["at"], "goal": entry["step"], "then": entry["detail"]["then"]}
                )
        for message in effects.messages:
            self.messages.append(_message(message, now))


def simulate(
    definition: Definition,
    contact: ContactState,
    *,
    workflow_id: uuid.UUID,
    version: int,
    start: dt.datetime,
    until: dt.datetime,
    timeline: Sequence[TimelineEntry] = (),
    channels: Channels = Channels(),
    max_steps: int = MAX_SIMULATED_STEPS,
) -> Simulation:
    """Enroll ``contact`` at ``start`` and run its execution of ``definition`` up to ``until``.

    Entries of the timeline happen in time order (entries of one moment in the order given),
    each before the execution's steps due at that same moment. The run stops when the execution
    finishes, when nothing more happens up to ``until``, or after ``max_steps`` steps.
    ``contact`` is changed in place, as the run changes it.
    """
    ex = ExecutionState(
        id=uuid.uuid4(),
        workflow_id=workflow_id,
        version=version,
        contact_id=contact.id,
        status="active",
        current_step=definition.start_step_id(),
        wake_at=start,
    )
    result = Simulation(ex, contact)
    entries = sorted(timeline, key=lambda entry: entry.at)
    upcoming = 0
    while True:
        due = ex.wake_at if ex.live else None
        entry = entries[upcoming] if upcoming < len(entries) else None
        if entry is not None and entry.at <= until and (due is None or entry.at <= due):
            _happen(definition, result, entry)
            upcoming += 1
            continue
        if due is None or due > until:
            break
        if result.steps >= max_steps:
            result.stopped_reason = "step_limit"
            return result
        _run(definition, result, due, channels, min(MAX_STEPS_PER_RUN, max_steps - result.steps))
    if not ex.live:
        result.stopped_reason = "finished"
    return result


def _happen(definition: Definition, result: Simulation, entry: TimelineEntry) -> None:
    """An entry of the timeline reaches the contact, and the execution while it is live."""
    contact, ex = result.contact, result.execution
    if entry.event is not None:
        change = ContactChange(contact.id, events=[entry.event])
    else:
        change = change_contact(
            contact,
            email=entry.email,
            phone=entry.phone,
            fields=entry.fields,
            add_tags=entry.add_tags,
            remove_tags=entry.remove_tags,
        )
    if ex.live and (change.events or change.changes_contact):
        effects = Effects()
        deliver_change(
            definition, ex, contact, change.events, change.changes_contact, entry.at, effects
        )
        result.collect(effects, entry.at)


def _run(
    definition: Definition,
    result: Simulation,
    now: dt.datetime,
    channels: Channels,
    budget: int,
) -> None:
    """One worker run of the due execution, its steps' contact changes, its external calls."""
    contact, ex = result.contact, result.execution
    effects = Effects()
    advance(definition, ex, contact, now, effects, channels, max_steps=budget)
    result.steps += effects.steps_run
    if (contact.added_tags or contact.removed_tags or contact.changed_fields) and ex.live:
        # The worker's hook lets a contact changed by steps reach its live executions,
        # this one included, before the batch's external calls are made.
        deliver_change(definition, ex, contact, [], True, now, effects)
    contact.added_tags, contact.removed_tags, contact.changed_fields = [], [], []
    for call in effects.external:
        # A goal may have moved the execution on meanwhile: the call's answer is then dropped,
        # as the worker drops it.
        if ex.live and ex.current_step == call.step_id:
            _perform(definition, result, call, now, channels, effects)
    result.collect(effects, now)


def _perform(
    definition: Definition,
    result: Simulation,
    call: ExternalCall,
    now: dt.datetime,
    channels: Channels,
    effects: Effects,
) -> None:
    """An external call, reported and taken as succeeded; nothing is sent."""
    detail: dict[str, Any] = {"simulated": True}
    if call.kind == "http_request":
        request = call.request
        result.http_requests.append(
            {
                "at": now,
                "step": call.step_id,
                "method": request["method"],
                "url": request["url"],
                "headers": request["headers"],
                "body": request["body"],
            }
        )
    else:
        channel = channels.email if call.kind == "email" else channels.sms
        effects.messages.append({**call.request, "channel": channel})
        detail["channel"] = channel
    external_done(definition, result.execution, call, now, effects, error=None, detail=detail)


def _message(message: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    return {
        "at": now,
        "id": message["id"],
        "step": message["step"],
        "channel": message["channel"],
        "kind": message["kind"],
        "to": message["to"],
        "subject": message["subject"],
        "body": message["body"],
    }
