"""Simulating a version for one contact: the body checked whole, the contact read, the engine's
simulation run. Nothing is written (the session is read-only) and no channel is called."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from revflow.config import Settings
from revflow.contacts.service import require_contact
from revflow.definition import MAX_DURATION
from revflow.engine import store
from revflow.engine.interpreter import Channels, ContactState
from revflow.engine.simulation import Simulation, TimelineEntry, simulate
from revflow.errors import ValidationFailed
from revflow.models import Version, Workflow
from revflow.simulations.schemas import SimulationIn, TimelineEntryIn

DEFAULT_HORIZON = dt.timedelta(days=90)
# Waits reach at most MAX_DURATION beyond the simulated span (itself at most MAX_DURATION):
# a start before this keeps every time the engine computes far from datetime's limits.
LATEST_START = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
# The id an inline contact has in the run (placeholders and request bodies may show it).
INLINE_CONTACT_ID = uuid.UUID(int=0)


async def simulate_version(
    session: AsyncSession,
    workflow: Workflow,
    version: Version,
    body: SimulationIn,
    settings: Settings,
    now: dt.datetime,
) -> dict[str, Any]:
    """Run ``version`` for the body's contact along its timeline; answers the report."""
    start = body.start or now
    until, timeline, problems = _times(body, start)
    problems = _shape_problems(body) + problems
    if problems:
        raise ValidationFailed(problems)
    contact = await _contact(session, workflow.account_id, body)
    key = (workflow.id, version.number)
    definition = (await store.definitions(session, [workflow.account_id], [key]))[key]
    result = simulate(
        definition,
        contact,
        workflow_id=workflow.id,
        version=version.number,
        start=start,
        until=until,
        timeline=timeline,
        channels=Channels(email=settings.email_channel, sms=settings.sms_channel),
    )
    return _answer(workflow, version, start, until, result, stored=body.contact_id is not None)


def _shape_problems(body: SimulationIn) -> list[dict[str, Any]]:
    problems = []
    if body.contact_id is not None and body.contact is not None:
        problems.append(_problem("/contact", "give contact_id or contact, not both"))
    elif body.contact_id is None and body.contact is None:
        problems.append(
            _problem("", "give contact_id (a stored contact) or contact (one not stored)")
        )
    for i, entry in enumerate(body.timeline):
        where = f"/timeline/{i}"
        if entry.name is not None and entry.changes_contact:
            problems.append(
                _problem(
                    f"{where}/name",
                    "an entry is an event (name, data) or a change of the contact (email, "
                    "phone, fields, add_tags, remove_tags), not both",
                )
            )
        elif entry.name is None and not entry.changes_contact:
            problems.append(
                _problem(where, "an entry needs an event name or a change of the contact")
            )
        if entry.data is not None and entry.name is None:
            problems.append(_problem(f"{where}/data", "data belongs to an event: give its name"))
    return problems


def _times(
    body: SimulationIn, start: dt.datetime
) -> tuple[dt.datetime, list[TimelineEntry], list[dict[str, Any]]]:
    """``until`` and the timeline in instants, with the problems of every time given."""
    problems = []
    if start >= LATEST_START:
        problems.append(_problem("/start", f"start must be before {LATEST_START.date()}"))
        return start, [], problems
    if body.until is None:
        until = start + DEFAULT_HORIZON
    elif isinstance(body.until, dt.timedelta):
        until = start + body.until
    else:
        until = body.until
        if until <= start:
            problems.append(_problem("/until", "until must be after start"))
        elif until - start > MAX_DURATION:
            problems.append(
                _problem("/until", f"a simulation spans at most {MAX_DURATION.days} days")
            )
    timeline = []
    for i, entry in enumerate(body.timeline):
        at, problem = _entry_time(entry, f"/timeline/{i}", start, until)
        if problem is not None:
            problems.append(problem)
        elif at is not None:
            timeline.append(_entry(entry, at))
    return until, timeline, problems


def _entry_time(
    entry: TimelineEntryIn, where: str, start: dt.datetime, until: dt.datetime
) -> tuple[dt.datetime | None, dict[str, Any] | None]:
    if entry.after is not None and entry.at is not None:
        return None, _problem(f"{where}/at", "give after or at, not both")
    if entry.after is not None:
        at, member = start + entry.after, "after"
    elif entry.at is not None:
        at, member = entry.at, "at"
        if at < start:
            return None, _problem(f"{where}/at", f"this entry is before start ({_iso(start)})")
    else:
        return None, _problem(where, "give after (a duration from start) or at (an instant)")
    if at > until:
        return None, _problem(f"{where}/{member}", f"this entry is after until ({_iso(until)})")
    return at, None


def _entry(entry: TimelineEntryIn, at: dt.datetime) -> TimelineEntry:
    return TimelineEntry(
        at=at,
        event=entry.name,
        email=entry.email,
        phone=entry.phone,
        fields=entry.fields,
        add_tags=tuple(entry.add_tags),
        remove_tags=tuple(entry.remove_tags),
    )


async def _contact(
    session: AsyncSession, account_id: uuid.UUID, body: SimulationIn
) -> ContactState:
    if body.contact_id is not None:
        return store.contact_state(await require_contact(session, account_id, body.contact_id))
    assert body.contact is not None
    return ContactState(
        id=INLINE_CONTACT_ID,
        email=body.contact.email,
        phone=body.contact.phone,
        external_id=body.contact.external_id,
        fields=dict(body.contact.fields),
        tags=list(dict.fromkeys(body.contact.tags)),
    )


def _answer(
    workflow: Workflow,
    version: Version,
    start: dt.datetime,
    until: dt.datetime,
    result: Simulation,
    *,
    stored: bool,
) -> dict[str, Any]:
    ex, contact = result.execution, result.contact
    return {
        "workflow_id": workflow.id,
        "version": version.number,
        "start": start,
        "until": until,
        "path": result.path,
        "messages": result.messages,
        "http_requests": result.http_requests,
        "goals": result.goals,
        "final": {
            "status": ex.status,
            "outcome": ex.outcome,
            "current_step": ex.current_step,
            "wake_at": ex.wake_at,
            "finished_at": ex.finished_at,
            "error": ex.error,
            "contact": {
                "id": contact.id if stored else None,
                "external_id": contact.external_id,
                "email": contact.email,
                "phone": contact.phone,
                "fields": contact.fields,
                "tags": contact.tags,
            },
        },
        "steps": result.steps,
        "stopped_reason": result.stopped_reason,
    }


def _problem(pointer: str, message: str) -> dict[str, Any]:
    return {"pointer": pointer, "message": message}


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
