"""Workflows and their versions: the versioning core (SPEC §1, §4).

Every function flushes and leaves the commit to its caller, so "create a version and publish
it" is one transaction. Changes to a workflow or its versions run with the workflow's row
locked (``get_workflow(lock=True)``), which is what makes version numbers gapless and keeps at
most one published version; the database's unique indexes are the guarantee behind it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.audit import service as audit
from revflow.audit.service import Actor
from revflow.auth.service import Principal
from revflow.config import Settings
from revflow.db import json_value, new_id
from revflow.definition import Definition, DefinitionInvalid, canonical_json, validate_definition
from revflow.diff import next_semver, suggested_bump
from revflow.errors import (
    CanaryActive,
    InvalidDefinition,
    NeverPublished,
    NoCanary,
    NoChanges,
    NotFound,
    NotPublished,
    StaleBase,
    UseRollback,
    ValidationFailed,
    VersionLimit,
)
from revflow.kit.ids import INT32_MAX, parse_id
from revflow.models import Version, VersionTag, Workflow
from revflow.workflows import events as webhook_events
from revflow.workflows import repository as repo
from revflow.workflows.schemas import (
    VersionCreate,
    WorkflowCreate,
    WorkflowUpdate,
    version_out,
)


def trigger_key(definition: Definition) -> str | None:
    """The tag, field or event name the trigger listens to (None for manual and creation)."""
    trigger = definition.trigger
    for attribute in ("tag", "field", "event"):
        value = getattr(trigger, attribute, None)
        if value is not None:
            return str(value)
    return None


async def audit_version(
    session: AsyncSession,
    actor: Actor,
    workflow: Workflow,
    version: Version,
    action: str,
    *,
    details: dict[str, Any],
    now: dt.datetime,
) -> None:
    """The audit entry of a change to one version of ``workflow``, and its webhook event."""
    await audit.record(
        session,
        workflow.account_id,
        actor,
        action,
        object_type="version",
        object_id=version.id,
        workflow_id=workflow.id,
        details=details,
        now=now,
    )
    await webhook_events.version_event(session, workflow, version, action, details, now)


def touch(workflow: Workflow, now: dt.datetime) -> None:
    """Record a change to the workflow or one of its versions (changes its etag)."""
    workflow.revision += 1
    workflow.updated_at = now


async def require_workflow(
    session: AsyncSession, account_id: uuid.UUID, workflow_id: str, *, lock: bool = False
) -> Workflow:
    parsed = parse_id(workflow_id)
    workflow = (
        None if parsed is None else await repo.get_workflow(session, account_id, parsed, lock=lock)
    )
    if workflow is None:
        raise NotFound(f"No workflow {workflow_id}")
    return workflow


def no_version(workflow: Workflow, number: object) -> NotFound:
    """The 404 of a version ``number`` the workflow does not have."""
    return NotFound(f"Workflow {workflow.id} has no version {number}")


def version_number(workflow: Workflow, text: str) -> int:
    """The version number a path names (ASCII digits only); 404 for anything else."""
    if not (text.isascii() and text.isdigit()):
        raise no_version(workflow, text)
    return int(text)


def _storable(number: int) -> bool:
    # A number beyond the column's 32-bit range cannot exist (and would overflow the driver).
    return 1 <= number <= INT32_MAX


async def require_version(
    session: AsyncSession, workflow: Workflow, number: int, *, with_definition: bool = True
) -> Version:
    version = (
        await repo.get_version(
            session, workflow.account_id, workflow.id, number, with_definition=with_definition
        )
        if _storable(number)
        else None
    )
    if version is None:
        raise no_version(workflow, number)
    return version


async def require_versions_without_definitions(
    session: AsyncSession, workflow: Workflow, numbers: Sequence[int]
) -> list[Version]:
    """The workflow's versions ``numbers``, in that order, read in one query without their
    definitions; 404 for the first that does not exist."""
    found = await repo.get_versions_without_definitions(
        session, workflow.account_id, workflow.id, [n for n in numbers if _storable(n)]
    )
    for number in numbers:
        if number not in found:
            raise no_version(workflow, number)
    return [found[number] for number in numbers]


# Versions never change, so what creating a version needs of its parent is kept per process:
# the parent's definition by version id (for the semver's diff, without reading and decoding
# the stored one again), and its id, content hash and semver by (account, workflow, number) —
# the latter only for committed versions, since a number is taken for good only by a commit.
# Both bounded by clearing, like the compare cache. A definition is kept as its JSON text and
# decoded when asked for (~0.2 ms for 200 steps): as a document, each would be thousands of
# containers that every full pass of the garbage collector walks while requests wait. Only
# the few versions this process made last are kept decoded too, with their steps' JSON (the
# semver's diff compares only the steps whose JSON changed): the next version of a workflow
# being edited is most often made from one of them.
_DEFINITIONS: dict[uuid.UUID, bytes] = {}
_DEFINITIONS_KEPT = 128
_DECODED: dict[uuid.UUID, tuple[dict[str, Any], list[bytes] | None]] = {}
_DECODED_KEPT = 8


@dataclass(frozen=True)
class VersionFacts:
    """What never changes about a committed version, as creating its child needs it."""

    id: uuid.UUID
    content_hash: str
    semver: str


_COMMITTED: dict[tuple[uuid.UUID, uuid.UUID, int], VersionFacts] = {}
_COMMITTED_KEPT = 4096


def remember_definition(
    version_id: uuid.UUID,
    definition: bytes,
    decoded: dict[str, Any] | None = None,
    step_keys: list[bytes] | None = None,
) -> None:
    """Keep the definition of version ``version_id``, as its canonical JSON, and its
    ``decoded`` value when given (a version this process has just made) with its
    ``step_keys`` (``ValidatedDefinition.step_keys``)."""
    if len(_DEFINITIONS) >= _DEFINITIONS_KEPT:
        _DEFINITIONS.clear()
    _DEFINITIONS[version_id] = definition
    if decoded is not None:
        if len(_DECODED) >= _DECODED_KEPT:
            _free_later(_DECODED.pop(next(iter(_DECODED))))  # the oldest
        _DECODED[version_id] = (decoded, step_keys)


def _free_later(value: object) -> None:
    """Free ``value`` when the running request next waits (for its commit, say), not now:
    freeing a decoded definition, thousands of containers, costs about what a statement does,
    and the request's answer need not wait for it. At once outside an event loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    # The callback's handle holds ``value`` until the loop has run it.
    loop.call_soon(_keep_until_called, value)


def _keep_until_called(_value: object) -> None:
    """Nothing: the value it was given is freed once the loop lets go of its handle."""


def remember_committed(version: Version) -> None:
    """Keep the facts of ``version``, once its transaction has committed."""
    if len(_COMMITTED) >= _COMMITTED_KEPT:
        _COMMITTED.clear()
    key = (version.account_id, version.workflow_id, version.number)
    _COMMITTED[key] = VersionFacts(version.id, version.content_hash, version.semver)


async def _parent_facts(session: AsyncSession, workflow: Workflow, number: int) -> VersionFacts:
    facts = _COMMITTED.get((workflow.account_id, workflow.id, number))
    if facts is None:
        # Read under the workflow's lock, below the latest number: committed by someone.
        parent = await require_version(session, workflow, number, with_definition=False)
        remember_committed(parent)
        facts = VersionFacts(parent.id, parent.content_hash, parent.semver)
    return facts


async def definition_of(
    session: AsyncSession, account_id: uuid.UUID, version_id: uuid.UUID
) -> dict[str, Any]:
    """The definition of the account's version ``version_id`` (not to be changed: it may be
    the one kept decoded)."""
    decoded = _DECODED.get(version_id)
    if decoded is not None:
        return decoded[0]
    cached = _DEFINITIONS.get(version_id)
    if cached is not None:
        definition: dict[str, Any] = json_value(cached)
        return definition
    stored = await repo.definitions(session, account_id, [version_id])
    remember_definition(version_id, canonical_json(stored[version_id]))
    return stored[version_id]


async def version_detail(
    session: AsyncSession, workflow: Workflow, version: Version
) -> dict[str, Any]:
    """One version as the API shows it: with its definition and live executions."""
    live = await repo.live_executions(session, workflow.account_id, workflow.id, [version.number])
    return version_out(version, live.get(version.number, 0), with_definition=True)


async def create_workflow(
    session: AsyncSession,
    principal: Principal,
    body: WorkflowCreate,
    settings: Settings,
    now: dt.datetime,
    *,
    parsed: bool = False,
) -> tuple[Workflow, Version | None]:
    """A new workflow, with its first version when the body has a definition (``parsed``:
    as for :func:`create_version`)."""
    if (body.definition is None) != (body.change_summary is None):
        missing = "/change_summary" if body.change_summary is None else "/definition"
        raise ValidationFailed.at(missing, "definition and change_summary go together")
    workflow = Workflow(
        account_id=principal.account_id, name=body.name, description=body.description
    )
    session.add(workflow)
    await session.flush()
    await audit.record(
        session,
        principal.account_id,
        principal.actor,
        "workflow.created",
        object_type="workflow",
        object_id=workflow.id,
        workflow_id=workflow.id,
        details={"name": body.name},
        now=now,
    )
    version = None
    if body.definition is not None and body.change_summary is not None:
        version, _ = await create_version(
            session,
            principal,
            workflow,
            VersionCreate(
                definition=body.definition, change_summary=body.change_summary, base_version=None
            ),
            settings,
            now=now,
            parsed=parsed,
        )
    return workflow, version


async def update_workflow(
    session: AsyncSession,
    principal: Principal,
    workflow: Workflow,
    body: WorkflowUpdate,
    now: dt.datetime,
) -> Workflow:
    changes: dict[str, Any] = {}
    if body.name is not None and body.name != workflow.name:
        changes["name"] = {"before": workflow.name, "after": body.name}
        workflow.name = body.name
    if body.description is not None and body.description != workflow.description:
        changes["description"] = {"before": workflow.description, "after": body.description}
        workflow.description = body.description
    if changes:
        touch(workflow, now)
        await audit.record(
            session,
            principal.account_id,
            principal.actor,
            "workflow.updated",
            object_type="workflow",
            object_id=workflow.id,
            workflow_id=workflow.id,
            details=changes,
            now=now,
        )
    return workflow


def _validate(definition: dict[str, Any], settings: Settings, parsed: bool) -> Any:
    try:
        return validate_definition(
            definition,
            max_steps=settings.max_steps,
            max_definition_bytes=settings.max_definition_bytes,
            parsed=parsed,
        )
    except DefinitionInvalid as exc:
        raise InvalidDefinition(
            [
                {"pointer": "/definition" + error["pointer"], "message": error["message"]}
                for error in exc.errors
            ]
        ) from None


async def create_version(
    session: AsyncSession,
    principal: Principal,
    workflow: Workflow,
    body: VersionCreate,
    settings: Settings,
    now: dt.datetime,
    *,
    parsed: bool = False,
) -> tuple[Version, bytes]:
    """A new immutable version, with the canonical JSON its definition was stored from;
    ``workflow`` must be locked by the caller. ``parsed``: the body's definition is the
    request's JSON value, which the version may keep as it is (``validate_definition``'s
    ``parsed``)."""
    validated = _validate(body.definition, settings, parsed)
    latest = workflow.version_count
    base = body.base_version
    if base is not None and not 1 <= base <= latest:
        raise ValidationFailed.at("/base_version", f"version {base} does not exist")
    if base != (latest or None):
        raise StaleBase(
            f"Version {latest} is newer than the base of this edit ({base}); "
            "merge your changes into it and retry",
            latest_version=latest,
        )
    parent: VersionFacts | None = None
    if base is not None:
        # Without its definition: the content hash decides "no changes", and the semver's
        # diff takes the definition from the cache when this process has seen it.
        parent = await _parent_facts(session, workflow, base)
        if parent.content_hash == validated.content_hash:
            raise NoChanges(f"The definition is identical to version {base}")
    if latest >= settings.max_versions:
        raise VersionLimit(
            f"Workflow has {latest} versions, the limit is {settings.max_versions}",
            max_versions=settings.max_versions,
        )
    if parent is None:
        semver = next_semver(None, "major")
    else:
        kept = _DECODED.get(parent.id)
        if kept is None:
            before, before_keys = await definition_of(session, workflow.account_id, parent.id), None
        else:
            before, before_keys = kept
        step_keys = None
        if before_keys is not None and validated.step_keys is not None:
            step_keys = (before_keys, validated.step_keys)
        bump = suggested_bump(before, validated.definition, step_keys=step_keys)
        semver = next_semver(parent.semver, bump)
    version = Version(
        id=new_id(),
        account_id=workflow.account_id,
        workflow_id=workflow.id,
        number=latest + 1,
        status="draft",
        definition=validated.definition,
        content_hash=validated.content_hash,
        change_summary=body.change_summary,
        created_by=principal.user,
        created_at=now,
        parent=base,
        semver=semver,
        tags=[],
        warnings=[{**w, "pointer": "/definition" + w["pointer"]} for w in validated.warnings],
        step_count=len(validated.model.steps),
        trigger_type=validated.model.trigger.type,
        trigger_key=trigger_key(validated.model),
    )
    created = audit.Entry(
        account_id=workflow.account_id,
        actor=principal.actor,
        action="version.created",
        object_type="version",
        object_id=str(version.id),
        workflow_id=workflow.id,
        details={
            "number": version.number,
            "parent": base,
            "semver": semver,
            "content_hash": version.content_hash,
        },
        at=now,
    )
    # Without a publish to follow, the version's statement is the change's last: its audit
    # entry can join the chain in it, one round trip fewer.
    joining = None if body.publish else audit.joining_row(session, created)
    appended = await repo.add_version(  # touches the workflow
        session,
        workflow,
        version,
        definition_json=validated.canonical,
        updated_at=now,
        ending_draft_of=principal.user,  # creating a version ends its creator's draft
        audit_row=joining,
    )
    remember_definition(version.id, validated.canonical, validated.definition, validated.step_keys)
    await audit.joined(session, created, joining, appended)
    await webhook_events.version_event(
        session, workflow, version, created.action, created.details, now
    )
    if body.publish:
        await publish(session, principal, workflow, version, now=now)
    return version, validated.canonical


async def publish(
    session: AsyncSession,
    principal: Principal,
    workflow: Workflow,
    version: Version,
    *,
    canary_percent: int | None = None,
    now: dt.datetime,
) -> Version:
    """Make the draft ``version`` current (the previous current one is retired), or, with
    ``canary_percent``, the workflow's canary."""
    if version.status == "published" and canary_percent is None:
        return version
    if version.status == "canary" and canary_percent is None:
        return await promote_canary(session, principal, workflow, now=now)
    if version.status in ("retired", "archived"):
        raise UseRollback(
            f"Version {version.number} was published before; use rollback to make it current"
        )
    if workflow.canary_version is not None:
        raise CanaryActive(
            f"Version {workflow.canary_version} is the canary; promote or abort it first",
            canary_version=workflow.canary_version,
        )
    if canary_percent is not None:
        if version.status != "draft":
            raise ValidationFailed.at("/canary_percent", "only a draft can become a canary")
        if workflow.current_version is None:
            raise NotPublished("A canary runs beside the current version; publish one first")
        version.status = "canary"
        version.published_at = now
        workflow.canary_version = version.number
        workflow.canary_percent = canary_percent
        touch(workflow, now)
        await session.flush()
        await audit_version(
            session,
            principal.actor,
            workflow,
            version,
            "canary.started",
            details={
                "number": version.number,
                "percent": canary_percent,
                "current": workflow.current_version,
            },
            now=now,
        )
        return version
    await _switch_current(session, principal, workflow, version, "version.published", now=now)
    return version


async def promote_canary(
    session: AsyncSession, principal: Principal, workflow: Workflow, now: dt.datetime
) -> Version:
    """The canary becomes the current version; the old current one is retired."""
    canary = await _require_canary(session, workflow)
    _clear_canary(workflow)
    await _switch_current(session, principal, workflow, canary, "canary.promoted", now=now)
    return canary


async def abort_canary(
    session: AsyncSession, actor: Actor, workflow: Workflow, reason: str, now: dt.datetime
) -> Version:
    """Stop routing to the canary (it becomes retired; its executions run on, on it)."""
    canary = await _require_canary(session, workflow)
    canary.status = "retired"
    _clear_canary(workflow)
    touch(workflow, now)
    await session.flush()
    await audit_version(
        session,
        actor,
        workflow,
        canary,
        "canary.aborted",
        details={"number": canary.number, "reason": reason},
        now=now,
    )
    return canary


async def _require_canary(session: AsyncSession, workflow: Workflow) -> Version:
    if workflow.canary_version is None:
        raise NoCanary(f"Workflow {workflow.id} has no canary")
    return await require_version(session, workflow, workflow.canary_version)


def _clear_canary(workflow: Workflow) -> None:
    workflow.canary_version = None
    workflow.canary_percent = None


async def rollback(
    session: AsyncSession,
    principal: Principal,
    workflow: Workflow,
    version: Version,
    reason: str,
    now: dt.datetime,
) -> int | None:
    """Make a previously published version current again (unarchiving it). Answers the number
    of the version that was current, or None when ``version`` already is. A running canary is
    aborted first, whatever the target: rollback is the emergency button and always works."""
    if version.published_at is None:
        # A draft, or a draft archived without ever being published or canaried.
        raise NeverPublished(f"Version {version.number} was never published; publish it instead")
    if workflow.canary_version is not None:
        await abort_canary(
            session, principal.actor, workflow, f"rollback to {version.number}", now=now
        )
    if version.status == "published":
        return None
    version.archived_at = None
    return await _switch_current(
        session, principal, workflow, version, "version.rolled_back", reason=reason, now=now
    )


async def _switch_current(
    session: AsyncSession,
    principal: Principal,
    workflow: Workflow,
    version: Version,
    action: str,
    now: dt.datetime,
    **details: Any,
) -> int | None:
    """Retire the current version, make ``version`` current, and audit it as ``action``.
    Answers the number of the version that was current."""
    previous = await _retire_current(session, workflow)
    await _make_current(session, workflow, version, now=now)
    await audit_version(
        session,
        principal.actor,
        workflow,
        version,
        action,
        details={"number": version.number, "previous": previous, **details},
        now=now,
    )
    return previous


async def _retire_current(session: AsyncSession, workflow: Workflow) -> int | None:
    previous = workflow.current_version
    if previous is not None:
        await session.execute(
            update(Version)
            .where(
                Version.account_id == workflow.account_id,
                Version.workflow_id == workflow.id,
                Version.status == "published",
            )
            .values(status="retired")
            .execution_options(synchronize_session="fetch")
        )
    return previous


async def _make_current(
    session: AsyncSession, workflow: Workflow, version: Version, now: dt.datetime
) -> None:
    version.status = "published"
    version.published_at = now
    workflow.current_version = version.number
    touch(workflow, now)
    await session.flush()


async def set_tags(
    session: AsyncSession,
    principal: Principal,
    workflow: Workflow,
    version: Version,
    tags: Sequence[str],
    now: dt.datetime,
) -> Version:
    wanted = sorted(set(tags))
    if wanted == sorted(version.tags):
        return version
    before = list(version.tags)
    version.tags = wanted
    await session.execute(
        delete(VersionTag).where(
            VersionTag.account_id == version.account_id, VersionTag.version_id == version.id
        )
    )
    for tag in wanted:
        session.add(
            VersionTag(
                version_id=version.id,
                tag=tag,
                account_id=workflow.account_id,
                workflow_id=workflow.id,
            )
        )
    touch(workflow, now)
    await session.flush()
    await audit_version(
        session,
        principal.actor,
        workflow,
        version,
        "version.tagged",
        details={"number": version.number, "before": before, "after": wanted},
        now=now,
    )
    return version


async def set_status(
    session: AsyncSession, principal: Principal, workflow: Workflow, status: str, now: dt.datetime
) -> Workflow:
    """Pause or resume the workflow (no-op when it already has that status)."""
    if workflow.status == status:
        return workflow
    workflow.status = status
    touch(workflow, now)
    await session.flush()
    await audit.record(
        session,
        principal.account_id,
        principal.actor,
        "workflow.paused" if status == "paused" else "workflow.resumed",
        object_type="workflow",
        object_id=workflow.id,
        workflow_id=workflow.id,
        now=now,
    )
    await webhook_events.workflow_status_event(session, workflow, now)
    return workflow
