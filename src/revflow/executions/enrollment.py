"""Enrollment: putting contacts into a workflow's current published version (SPEC §3).

Used by the enrollment API and by triggers (contact created, tag added, field changed, event),
whether the change came through the API or from a step of any workflow.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, bindparam, func, literal_column, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.db import any_of_parameter
from revflow.definition import Definition
from revflow.engine import store
from revflow.engine.changes import ContactChange
from revflow.models import Contact, Execution, Version, Workflow

CHUNK = 1000


@dataclass
class EnrollResult:
    executions: list[uuid.UUID] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "enrolled": len(self.executions),
            "executions": [str(e) for e in self.executions],
            "skipped": self.skipped,
        }


def in_canary(workflow_id: uuid.UUID, contact_id: uuid.UUID, percent: int) -> bool:
    """Sticky canary routing: a hash of workflow and contact, so a contact enrolled again
    lands on the same side."""
    digest = hashlib.sha256(workflow_id.bytes + contact_id.bytes).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < percent * 100


def choose_version(workflow: Workflow, contact_id: uuid.UUID) -> int:
    """The version a new enrollment runs: the canary for its share of contacts, else the
    current published one."""
    assert workflow.current_version is not None
    canary = workflow.canary_version
    percent = workflow.canary_percent
    if canary is not None and percent and in_canary(workflow.id, contact_id, percent):
        return canary
    return workflow.current_version


@functools.cache
def _existing_contacts(arrays: bool) -> Select[uuid.UUID]:
    """Which of the contacts ``:ids`` of ``:account`` exist (not erased), built once."""
    return select(Contact.id).where(
        Contact.account_id == bindparam("account", type_=Contact.account_id.type),
        any_of_parameter(Contact.id, "ids", arrays=arrays),
        Contact.erased_at.is_(None),
    )


@functools.cache
def _insert_executions(dialect: str) -> Any:
    """The new executions, unless the contact already runs the workflow; built once and run
    for many rows (SQLAlchemy batches them as multi-row ``INSERT … RETURNING``): far cheaper
    than compiling a 1,000-row ``VALUES`` each chunk."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(Execution)
        .on_conflict_do_nothing(
            index_elements=["account_id", "workflow_id", "contact_id"],
            # Literal values, as in the index: with bound parameters PostgreSQL cannot match
            # the partial index once it switches the prepared statement to a generic plan
            # (from its sixth execution on a connection).
            index_where=text("status IN ('active', 'waiting')"),
        )
        .returning(Execution.id, Execution.contact_id)
    )


async def enroll(
    session: AsyncSession,
    workflow: Workflow,
    definition: Definition,
    contact_ids: Sequence[uuid.UUID],
    now: dt.datetime,
) -> EnrollResult:
    """Enroll existing contacts of the workflow's account, honouring the trigger's ``reenroll``.

    The database's one-live-execution-per-(workflow, contact) index settles races: a contact
    enrolled concurrently is skipped as ``already_enrolled``.
    """
    result = EnrollResult()
    wanted = list(dict.fromkeys(contact_ids))
    existing: set[uuid.UUID] = set()
    dialect = session.get_bind().dialect.name
    found = _existing_contacts(dialect == "postgresql")
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        parameters = {"account": workflow.account_id, "ids": chunk}
        existing |= set(await session.scalars(found, parameters))
    candidates = [c for c in wanted if c in existing]
    result.skipped.extend(
        {"contact_id": str(c), "reason": "contact_not_found"} for c in wanted if c not in existing
    )
    blocked = await _reenroll_blocked(session, workflow, definition, candidates, now)
    result.skipped.extend({"contact_id": str(c), "reason": reason} for c, reason in blocked.items())
    candidates = [c for c in candidates if c not in blocked]
    starts = {workflow.current_version: definition.start_step_id()}
    if workflow.canary_version is not None:
        key = (workflow.id, workflow.canary_version)
        canary = await store.definitions(session, [workflow.account_id], [key])
        starts[workflow.canary_version] = canary[key].start_step_id()
    for start in range(0, len(candidates), CHUNK):
        chunk = candidates[start : start + CHUNK]
        rows: list[dict[str, Any]] = [
            {
                "id": uuid.uuid4(),
                "account_id": workflow.account_id,
                "workflow_id": workflow.id,
                "version": (version := choose_version(workflow, contact)),
                "contact_id": contact,
                "status": "active",
                "current_step": starts[version],
                "wake_at": now,
                "started_at": now,
                "fired_goals": [],
            }
            for contact in chunk
        ]
        statement = _insert_executions(dialect)
        inserted: dict[uuid.UUID, uuid.UUID] = {
            row.contact_id: row.id for row in (await session.execute(statement, rows)).all()
        }
        for row in rows:
            contact = row["contact_id"]
            if contact in inserted:
                result.executions.append(inserted[contact])
            else:
                result.skipped.append({"contact_id": str(contact), "reason": "already_enrolled"})
    return result


async def _reenroll_blocked(
    session: AsyncSession,
    workflow: Workflow,
    definition: Definition,
    contact_ids: Sequence[uuid.UUID],
    now: dt.datetime,
) -> dict[uuid.UUID, str]:
    policy = definition.trigger.reenroll
    if policy == "after_finish" or not contact_ids:
        return {}
    blocked: dict[uuid.UUID, str] = {}
    for start in range(0, len(contact_ids), CHUNK):
        chunk = contact_ids[start : start + CHUNK]
        query = (
            select(Execution.contact_id, func.max(Execution.started_at))
            .where(
                Execution.account_id == workflow.account_id,
                Execution.workflow_id == workflow.id,
                Execution.contact_id.in_(chunk),
            )
            .group_by(Execution.contact_id)
        )
        for contact, last_started in (await session.execute(query)).all():
            if policy == "never":
                blocked[contact] = "reenroll_never"
            elif isinstance(policy, dt.timedelta) and last_started > now - policy:
                blocked[contact] = "reenroll_cooldown"
    return blocked


# A new contact fires its contact_created triggers first, then tag_added for its tags.
TRIGGER_ORDER = ("contact_created", "tag_added", "field_changed", "event")


def _matches(trigger_type: str, key: str | None, change: ContactChange) -> bool:
    if trigger_type == "contact_created":
        return change.created
    if trigger_type == "tag_added":
        return key in change.added_tags
    if trigger_type == "field_changed":
        if change.created:
            return False  # a new contact's fields and tags are not changes of it
        if key == "tags":
            return bool(change.added_tags or change.removed_tags)
        return key in change.changed_fields
    if trigger_type == "event":
        return key in change.events
    return False


def triggered_workflows(types: Iterable[str]) -> Select[Any]:
    """The active workflows of ``:account`` whose published version has a trigger of
    ``types``, with that trigger's type and key; built once per set of types (building it
    cost more than running it: every contact change and every event asks this).

    The published versions are found first, on their own (a materialised CTE on PostgreSQL,
    from ``ix_versions_published_trigger``), and joined to their workflows after: a plan that
    reads every version of the account for each of its workflows — the planner's choice on
    tables it has no statistics of yet, as in a new database — cost workflows times versions
    per request.
    """
    return _triggered_workflows(frozenset(types))


@functools.cache
def _triggered_workflows(types: frozenset[str]) -> Select[Any]:
    unknown = types - set(TRIGGER_ORDER)
    if unknown:
        raise ValueError(f"unknown trigger types {sorted(unknown)}")
    account = bindparam("account", type_=Version.account_id.type)
    published = (
        select(Version.workflow_id, Version.number, Version.trigger_type, Version.trigger_key)
        .where(
            Version.account_id == account,
            # The current version is the published one (workflows.service). Literal values,
            # as in the partial index: a prepared statement's generic plan cannot match the
            # index to a bound parameter.
            Version.status == literal_column("'published'"),
            Version.trigger_type.in_([literal_column(f"'{t}'") for t in sorted(types)]),
        )
        .cte("published")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return (
        select(Workflow, published.c.trigger_type, published.c.trigger_key)
        .join(
            published,
            (published.c.workflow_id == Workflow.id)
            & (published.c.number == Workflow.current_version),
        )
        .where(Workflow.account_id == account, Workflow.status == literal_column("'active'"))
    )


def trigger_types(changes: Iterable[ContactChange]) -> set[str]:
    """The trigger types these changes may fire (none: there is nothing to look up)."""
    types: set[str] = set()
    for c in changes:
        types |= {"contact_created"} if c.created else set()
        types |= {"tag_added"} if c.added_tags else set()
        types |= {"field_changed"} if c.changed_fields or c.added_tags or c.removed_tags else set()
        types |= {"event"} if c.events else set()
    return types


async def fire_triggers(
    session: AsyncSession,
    account_id: uuid.UUID,
    changes: Iterable[ContactChange],
    now: dt.datetime,
    *,
    triggered: Sequence[Sequence[Any]] | None = None,
) -> list[uuid.UUID]:
    """Enroll changed contacts into every active workflow whose published trigger matches.

    ``triggered`` are the rows of ``triggered_workflows`` for ``trigger_types(changes)`` when
    the caller has already looked them up (in a statement of its own)."""
    changes = list(changes)
    types = trigger_types(changes)
    if not types:
        return []
    if triggered is None:
        query = triggered_workflows(types)
        triggered = (await session.execute(query, {"account": account_id})).all()
    rows = triggered
    enrolled: list[uuid.UUID] = []
    ordered = sorted(rows, key=lambda row: (TRIGGER_ORDER.index(row[1]), row[0].created_at))
    for workflow, trigger_type, key in ordered:
        contacts = [c.contact_id for c in changes if _matches(trigger_type, key, c)]
        if not contacts:
            continue
        assert workflow.current_version is not None
        current = (workflow.id, workflow.current_version)
        definition = (await store.definitions(session, [account_id], [current]))[current]
        enrolled += (await enroll(session, workflow, definition, contacts, now)).executions
    return enrolled
