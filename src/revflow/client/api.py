"""``Client`` and ``AsyncClient``: every route of the API as a typed method, written once.

``Routes`` declares each method as a plan (see :mod:`revflow.client.core`); ``Client`` runs
them over ``httpx.Client`` and ``AsyncClient`` over ``httpx.AsyncClient``, so the two have the
same methods with the same arguments, the async ones to be awaited.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx
from pydantic import BaseModel

from revflow.client.core import (
    Calls,
    Endpoint,
    Plan,
    Reply,
    Request,
    endpoint,
    flow,
    run_async,
    run_sync,
)
from revflow.client.errors import NotFound, RevflowError
from revflow.client.models import (
    AccountCreated,
    ApiKey,
    ApiKeyCreated,
    AuditEntry,
    Comparison,
    Contact,
    Draft,
    Enrollment,
    EventResult,
    Execution,
    Message,
    Migration,
    MigrationReport,
    Page,
    Simulation,
    Version,
    VersionStats,
    WebhookDelivery,
    WebhookSubscription,
    Workflow,
)

API = "/api/v1"
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 30.0

M = TypeVar("M", bound=BaseModel)
Role = Literal["viewer", "editor", "admin"]
Strategy = Literal["immediate", "gradual", "manual"]
WaitPolicy = Literal["keep", "recompute", "restart"]


def _one(model: type[M], reply: Reply) -> M:
    return model.model_validate(reply.body)


def _page(model: type[M], reply: Reply) -> Page[M]:
    return Page[model].model_validate(reply.body)  # type: ignore[valid-type]


def _list(limit: int | None, cursor: str | None, **filters: Any) -> dict[str, Any]:
    return {**filters, "limit": limit, "cursor": cursor}


def _changes(if_match: str | None = None, idempotency_key: str | None = None) -> dict[str, str]:
    headers = {}
    if if_match:
        headers["If-Match"] = if_match
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def _migration_body(
    from_version: int,
    strategy: Strategy,
    mapping: Mapping[str, str] | None,
    execution_ids: Sequence[str] | None,
    batch_size: int | None,
    interval_seconds: float | None,
    wait_policy: WaitPolicy | None,
    halt_failure_rate: float | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "from_version": from_version,
        "strategy": strategy,
        "mapping": dict(mapping or {}),
        "execution_ids": list(execution_ids) if execution_ids is not None else None,
        "batch_size": batch_size,
        "interval_seconds": interval_seconds,
        "wait_policy": wait_policy,
        "halt_failure_rate": halt_failure_rate,
    }
    return {k: v for k, v in body.items() if v is not None}


def is_id(value: str) -> bool:
    """True when ``value`` is written as an id (a UUID) rather than a name."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class Routes:
    """Every route of the API (and a few helpers made of several calls)."""

    # -- operations ----------------------------------------------------------------------

    @endpoint("GET", "/healthz")
    def health(self) -> Plan[dict[str, Any]]:
        reply = yield Request()
        return dict(reply.body)

    @endpoint("GET", "/readyz")
    def ready(self) -> Plan[dict[str, Any]]:
        reply = yield Request()
        return dict(reply.body)

    @endpoint("GET", "/metrics")
    def metrics(self) -> Plan[str]:
        reply = yield Request()
        return str(reply.body)

    @endpoint("GET", f"{API}/schema/definition")
    def definition_schema(self) -> Plan[dict[str, Any]]:
        """The JSON Schema of a workflow definition (for editors and validation)."""
        reply = yield Request()
        return dict(reply.body)

    # -- accounts and keys ---------------------------------------------------------------

    @endpoint("POST", f"{API}/accounts")
    def create_account(self, name: str, *, admin_token: str) -> Plan[AccountCreated]:
        """Create an account with the operator token (``REVFLOW_ADMIN_TOKEN``)."""
        headers = {"Authorization": f"Bearer {admin_token}"}
        reply = yield Request(json={"name": name}, headers=headers)
        return _one(AccountCreated, reply)

    @endpoint("POST", f"{API}/api-keys")
    def create_key(self, user: str, role: Role) -> Plan[ApiKeyCreated]:
        reply = yield Request(json={"user": user, "role": role})
        return _one(ApiKeyCreated, reply)

    @endpoint("GET", f"{API}/api-keys")
    def list_keys(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Plan[Page[ApiKey]]:
        reply = yield Request(params=_list(limit, cursor))
        return _page(ApiKey, reply)

    @endpoint("DELETE", f"{API}/api-keys/{{key_id}}")
    def revoke_key(self, key_id: str) -> Plan[ApiKey]:
        reply = yield Request(path={"key_id": key_id})
        return _one(ApiKey, reply)

    # -- workflows -----------------------------------------------------------------------

    @endpoint("POST", f"{API}/workflows")
    def create_workflow(
        self,
        name: str,
        *,
        description: str = "",
        definition: Mapping[str, Any] | None = None,
        change_summary: str | None = None,
        idempotency_key: str | None = None,
    ) -> Plan[Workflow]:
        """Create a workflow; with a definition, its version 1 (a draft) too."""
        body: dict[str, Any] = {"name": name, "description": description}
        if definition is not None:
            body.update(definition=dict(definition), change_summary=change_summary)
        reply = yield Request(json=body, headers=_changes(None, idempotency_key))
        return _one(Workflow, reply)

    @endpoint("GET", f"{API}/workflows")
    def list_workflows(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Plan[Page[Workflow]]:
        reply = yield Request(params=_list(limit, cursor))
        return _page(Workflow, reply)

    @endpoint("GET", f"{API}/workflows/{{workflow_id}}")
    def get_workflow(self, workflow_id: str) -> Plan[Workflow]:
        reply = yield Request(path={"workflow_id": workflow_id})
        return _one(Workflow, reply)

    @endpoint("PATCH", f"{API}/workflows/{{workflow_id}}")
    def update_workflow(
        self,
        workflow_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        if_match: str | None = None,
    ) -> Plan[Workflow]:
        body = {
            k: v for k, v in {"name": name, "description": description}.items() if v is not None
        }
        reply = yield Request(
            path={"workflow_id": workflow_id},
            json=body,
            headers=_changes(if_match),
        )
        return _one(Workflow, reply)

    @endpoint("POST", f"{API}/workflows/{{workflow_id}}/pause")
    def pause_workflow(self, workflow_id: str, *, if_match: str | None = None) -> Plan[Workflow]:
        reply = yield Request(
            path={"workflow_id": workflow_id},
            headers=_changes(if_match),
        )
        return _one(Workflow, reply)

    @endpoint("POST", f"{API}/workflows/{{workflow_id}}/resume")
    def resume_workflow(self, workflow_id: str, *, if_match: str | None = None) -> Plan[Workflow]:
        reply = yield Request(
            path={"workflow_id": workflow_id},
            headers=_changes(if_match),
        )
        return _one(Workflow, reply)

    @flow
    def find_workflow(self, workflow: str) -> Plan[Workflow]:
        """The workflow with this id, or else with this name (exactly one must have it).

        Raises :class:`NotFound` when none has it, and ``Conflict``-like :class:`RevflowError`
        (code ``ambiguous_name``) when several workflows share the name.
        """
        if is_id(workflow):
            return (yield from Routes.get_workflow.plan(self, workflow))
        found: list[Workflow] = []
        cursor: str | None = None
        while True:
            page = yield from Routes.list_workflows.plan(self, limit=200, cursor=cursor)
            found.extend(w for w in page.items if w.name == workflow)
            cursor = page.next_cursor
            if cursor is None:
                break
        if not found:
            raise NotFound(404, "not_found", "Not found", f"no workflow is named {workflow!r}")
        if len(found) > 1:
            ids = ", ".join(w.id for w in found)
            raise RevflowError(
                409,
                "ambiguous_name",
                "Several workflows have this name",
                f"{len(found)} workflows are named {workflow!r} ({ids}); name one by its id",
            )
        return found[0]

    # -- versions ------------------------------------------------------------------------

    @endpoint("POST", f"{API}/workflows/{{workflow_id}}/versions")
    def create_version(
        self,
        workflow_id: str,
        definition: Mapping[str, Any],
        change_summary: str,
        *,
        base_version: int | None,
        publish: bool = False,
        if_match: str | None = None,
        idempotency_key: str | None = None,
    ) -> Plan[Version]:
        """Create a version edited from ``base_version`` (None for the first one).

        Raises ``StaleBase`` (with ``latest_version``) when a newer version exists, ``NoChanges``
        when the definition is the latest version's, ``VersionLimit`` past ``max_versions``.
        """
        body = {
            "definition": dict(definition),
            "change_summary": change_summary,
            "base_version": base_version,
            "publish": publish,
        }
        reply = yield Request(
            path={"workflow_id": workflow_id},
            json=body,
            headers=_changes(if_match, idempotency_key),
        )
        return _one(Version, reply)

    @endpoint("GET", f"{API}/workflows/{{workflow_id}}/versions")
    def list_versions(
        self,
        workflow_id: str,
        *,
        status: Sequence[str] | None = None,
        tag: str | None = None,
        include_archived: bool | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Plan[Page[Version]]:
        """Versions, newest first."""
        params = _list(
            limit,
            cursor,
            status=list(status) if status else None,
            tag=tag,
            include_archived=include_archived,
        )
        reply = yield Request(
            path={"workflow_id": workflow_id},
            params=params,
        )
        return _page(Version, reply)

    @endpoint("GET", f"{API}/workflows/{{workflow_id}}/versions/{{number}}")
    def get_version(self, workflow_id: str, number: int) -> Plan[Version]:
        """One version with its definition."""
        reply = yield Request(
            path={"workflow_id": workflow_id, "number": number},
        )
        return _one(Version, reply)

    @flow
    def latest_version(self, workflow_id: str) -> Plan[Version | None]:
        """The workflow's newest version (archived included) with its definition, or None."""
        page = yield from Routes.list_versions.plan(
            self, workflow_id, include_archived=True, limit=1
        )
        if not page.items:
            return None
        return (yield from Routes.get_version.plan(self, workflow_id, page.items[0].number))

    @endpoint("GET", f"{API}/workflows/{{workflow_id}}/versions/compare")
    def compare_versions(
        self, workflow_id: str, from_version: int, to_version: int
    ) -> Plan[Comparison]:
        """The structured diff of two versions, with the live executions each break affects."""
        reply = yield Request(
            path={"workflow_id": workflow_id},
            params={"from": from_version, "to": to_version},
        )
        return _one(Comparison, reply)

    @endpoint("GET", f"{API}/workflows/{{workflow_id}}/versions/compare")
    def compare_versions_text(
        self, workflow_id: str, from_version: int, to_version: int
    ) -> Plan[str]:
        """The same comparison as readable text (``?format=text``)."""
        reply = yield Request(
            path={"workflow_id": workflow_id},
            params={"from": from_version, "to": to_version, "format": "text"},
        )
        return str(reply.body)

    @endpoint("POST", f"{API}/workflows/{{workflow_id}}/versions/{{number}}/publish")
    def publish_version(
        self,
        workflow_id: str,
        number: int,
        *,
        canary_percent: int | None = None,
        if_match: str | None = None,
    ) -> Plan[Version]:
        """Make version ``number`` current, or with ``canary_percent`` the workflow's canary."""
        body = {"canary_percent": canary_percent} if canary_percent is not None else None
        reply = yield Request(
            path={"workflow_id": workflow_id, "number": number},
            json=body,
            headers=_changes(if_match),
        )
        return _one(Version, reply)

    @endpoint("POST", f"{API}/workflows/{{workflow_id}}/canary/promote")
    def promote_canary(self, workflow_id: str, *, if_match: str | None = None) -> Plan[Version]:
        reply = yield Request(
            path={"workflow_id": workflow_id},
            headers=_changes(if_match),
        )
        return _one(Version, reply)

    @endpoint("POST", f"{API}/workflows/{{workflow_id}}/canary/abort")
    def abort_canary(
        self, workflow_id: str, *, reason: str | None = None, if_match: str | None = None
    ) -> Plan[Version]:
        reply = yield Request(
            path={"workflow_id": workflow_id},
            json={"reason": reason} if reason else None,
            headers=_changes(if_match),
        )
        return _one(Version, reply)

    @endpoint("POST", f"{API}/workflows/{{workflow_id}}/versions/{{number}}/rollback")
    def rollback(
        self,
        workflow_id: str,
        number: int,
        reason: str,
        *,
        migrate: Mapping[str, Any] | None = None,
        if_match: str | None = None,
    ) -> Plan[Version]:
        """Make a previously published version current again; ``migrate`` is a migration body."""
        body: dict[str, Any] = {"reason": reason}
        if migrate is not None:
            body["migrate"] = dict(migrate)
        reply = yield Request(
            path={"workflow_id": workflow_id, "number": number},
            json=body,
            headers=_changes(if_match),
        )
        return _one(Version, reply)

    @endpoint("POST", f"{API}/workflows/{{workflow_id}}/versions/{{number}}/simulate")
    def simulate(
        self,
        workflow_id: str,
        number: int,
        *,
        contact_id: str | None = None,
        contact: Mapping[str, Any] | None = None,
        timeline: Sequence[Mapping[str, Any]] = (),
        start: dt.datetime | str | None = None,
        until: dt.datetime | str | None = None,
    ) -> Plan[Simulation]:
        """Run version ``number`` for a stored contact (``contact_id``) or one that is not
        stored (``contact``) on a simulated clock, along ``timeline`` — events
        (``{"after": "2d", "name": "purchase"}``) and contact changes (``{"after": "1d",
        "add_tags": ["vip"]}``) — up to ``until`` (a duration such as ``"30d"`` or an instant;
        default 90 days). Nothing is stored and nothing is sent."""
        body: dict[str, Any] = {"timeline": [dict(entry) for entry in timeline]}
        if contact_id is not None:
            body["contact_id"] = contact_id
        if contact is not None:
            body["contact"] = dict(contact)
        for name, value in (("start", start), ("until", until)):
            if value is not None:
                body[name] = value.isoformat() if isinstance(value, dt.datetime) else value
        reply = yield Request(
            path={"workflow_id": workflow_id, "number": number},
            json=body,
        )
        return _one(Simulation, reply)

    @endpoint("PUT", f"{API}/workflows/{{workflow_id}}/versions/{{number}}/tags")
    def set_tags(
        self, workflow_id: str, number: int, tags: Sequence[str], *, if_match: str | None = None
    ) -> Plan[Version]:
        reply = yield Request(
            path={"workflow_id": workflow_id, "number": number},
            json={"tags": list(tags)},
            headers=_changes(if_match),
        )
        return _one(Version, reply)

    @endpoint("GET", f"{API}/workflows/{{workflow_id}}/versions/{{number}}/stats")
    def version_stats(self, workflow_id: str, number: int) -> Plan[VersionStats]:
        """Executions of a version by status and by current step, completions, failures."""
        reply = yield Request(
            path={"workflow_id": workflow_id, "number": number},
        )
        return _one(VersionStats, reply)

    # -- working drafts ------------------------------------------------------------------

    @endpoint("PUT", f"{API}/workflows/{{workflow_id}}/draft")
    def save_draft(
        self,
        workflow_id: str,
        definition: Any,
        *,
        base_version: int | None = None,
        revision: int | None = None,
    ) -> Plan[Draft]:
        """Save the caller's working draft; a stale ``revision`` raises ``StaleDraft``."""
        body = {"definition": definition, "base_version": base_version, "revision": revision}
        reply = yield Request(
            path={"workflow_id": workflow_id},
            json=body,
        )
        return _one(Draft, reply)

    @endpoint("GET", f"{API}/workflows/{{workflow_id}}/draft")
    def get_draft(self, workflow_id: str) -> Plan[Draft]:
        reply = yield Request(path={"workflow_id": workflow_id})
        return _one(Draft, reply)

    @endpoint("DELETE", f"{API}/workflows/{{workflow_id}}/draft")
    def discard_draft(self, workflow_id: str) -> Plan[None]:
        yield Request(path={"workflow_id": workflow_id})
        return None

    # -- executions ----------------------------------------------------------------------

    @endpoint("POST", f"{API}/workflows/{{workflow_id}}/enrollments")
    def enroll(
        self, workflow_id: str, contact_ids: Sequence[str], *, idempotency_key: str | None = None
    ) -> Plan[Enrollment]:
        reply = yield Request(
            path={"workflow_id": workflow_id},
            json={"contact_ids": list(contact_ids)},
            headers=_changes(None, idempotency_key),
        )
        return _one(Enrollment, reply)

    @endpoint("GET", f"{API}/workflows/{{workflow_id}}/executions")
    def list_executions(
        self,
        workflow_id: str,
        *,
        version: int | None = None,
        status: str | None = None,
        step: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Plan[Page[Execution]]:
        reply = yield Request(
            path={"workflow_id": workflow_id},
            params=_list(limit, cursor, version=version, status=status, step=step),
        )
        return _page(Execution, reply)

    @endpoint("GET", f"{API}/executions/{{execution_id}}")
    def get_execution(self, execution_id: str) -> Plan[Execution]:
        reply = yield Request(path={"execution_id": execution_id})
        return _one(Execution, reply)

    @endpoint("POST", f"{API}/executions/{{execution_id}}/cancel")
    def cancel_execution(self, execution_id: str) -> Plan[Execution]:
        reply = yield Request(path={"execution_id": execution_id})
        return _one(Execution, reply)

    @endpoint("GET", f"{API}/messages")
    def list_messages(
        self,
        *,
        contact_id: str | None = None,
        execution_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Plan[Page[Message]]:
        params = _list(limit, cursor, contact_id=contact_id, execution_id=execution_id)
        reply = yield Request(params=params)
        return _page(Message, reply)

    # -- migrations ----------------------------------------------------------------------

    @endpoint("POST", f"{API}/workflows/{{workflow_id}}/versions/{{number}}/migrate")
    def start_migration(
        self,
        workflow_id: str,
        to_version: int,
        *,
        from_version: int,
        strategy: Strategy = "immediate",
        mapping: Mapping[str, str] | None = None,
        execution_ids: Sequence[str] | None = None,
        batch_size: int | None = None,
        interval_seconds: float | None = None,
        wait_policy: WaitPolicy | None = None,
        halt_failure_rate: float | None = None,
        allow_unreleased: bool = False,
        idempotency_key: str | None = None,
    ) -> Plan[Migration]:
        """Start moving the live executions of ``from_version`` onto ``to_version``."""
        body = _migration_body(
            from_version,
            strategy,
            mapping,
            execution_ids,
            batch_size,
            interval_seconds,
            wait_policy,
            halt_failure_rate,
        )
        if allow_unreleased:
            body["allow_unreleased"] = True
        reply = yield Request(
            path={"workflow_id": workflow_id, "number": to_version},
            json=body,
            headers=_changes(None, idempotency_key),
        )
        return _one(Migration, reply)

    @endpoint("POST", f"{API}/workflows/{{workflow_id}}/versions/{{number}}/migrate")
    def plan_migration(
        self,
        workflow_id: str,
        to_version: int,
        *,
        from_version: int,
        strategy: Strategy = "immediate",
        mapping: Mapping[str, str] | None = None,
        execution_ids: Sequence[str] | None = None,
    ) -> Plan[MigrationReport]:
        """A migration's dry run: what would move, group by group; changes nothing."""
        body = _migration_body(
            from_version, strategy, mapping, execution_ids, None, None, None, None
        )
        body["dry_run"] = True
        reply = yield Request(
            path={"workflow_id": workflow_id, "number": to_version},
            json=body,
        )
        return _one(MigrationReport, reply)

    @endpoint("GET", f"{API}/workflows/{{workflow_id}}/migrations")
    def list_migrations(
        self, workflow_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Plan[Page[Migration]]:
        reply = yield Request(
            path={"workflow_id": workflow_id},
            params=_list(limit, cursor),
        )
        return _page(Migration, reply)

    @endpoint("GET", f"{API}/migrations/{{migration_id}}")
    def get_migration(self, migration_id: str) -> Plan[Migration]:
        reply = yield Request(path={"migration_id": migration_id})
        return _one(Migration, reply)

    @endpoint("POST", f"{API}/migrations/{{migration_id}}/pause")
    def pause_migration(self, migration_id: str) -> Plan[Migration]:
        reply = yield Request(path={"migration_id": migration_id})
        return _one(Migration, reply)

    @endpoint("POST", f"{API}/migrations/{{migration_id}}/resume")
    def resume_migration(self, migration_id: str) -> Plan[Migration]:
        reply = yield Request(path={"migration_id": migration_id})
        return _one(Migration, reply)

    @endpoint("POST", f"{API}/migrations/{{migration_id}}/cancel")
    def cancel_migration(self, migration_id: str) -> Plan[Migration]:
        reply = yield Request(path={"migration_id": migration_id})
        return _one(Migration, reply)

    @endpoint("POST", f"{API}/migrations/{{migration_id}}/revert")
    def revert_migration(self, migration_id: str) -> Plan[Migration]:
        """Move back what the migration moved (a new manual migration, answered here)."""
        reply = yield Request(path={"migration_id": migration_id})
        return _one(Migration, reply)

    # -- contacts and events -------------------------------------------------------------

    @endpoint("POST", f"{API}/contacts")
    def create_contact(
        self,
        *,
        external_id: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        fields: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        idempotency_key: str | None = None,
    ) -> Plan[Contact]:
        body = {
            "external_id": external_id,
            "email": email,
            "phone": phone,
            "fields": dict(fields or {}),
            "tags": list(tags or []),
        }
        reply = yield Request(json=body, headers=_changes(None, idempotency_key))
        return _one(Contact, reply)

    @endpoint("GET", f"{API}/contacts")
    def list_contacts(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Plan[Page[Contact]]:
        reply = yield Request(params=_list(limit, cursor))
        return _page(Contact, reply)

    @endpoint("GET", f"{API}/contacts/{{contact_id}}")
    def get_contact(self, contact_id: str) -> Plan[Contact]:
        reply = yield Request(path={"contact_id": contact_id})
        return _one(Contact, reply)

    @endpoint("PATCH", f"{API}/contacts/{{contact_id}}")
    def update_contact(
        self,
        contact_id: str,
        *,
        email: str | None = None,
        phone: str | None = None,
        fields: Mapping[str, Any] | None = None,
        add_tags: Sequence[str] = (),
        remove_tags: Sequence[str] = (),
    ) -> Plan[Contact]:
        """Change a contact; ``fields`` are merged into the existing ones."""
        body: dict[str, Any] = {"add_tags": list(add_tags), "remove_tags": list(remove_tags)}
        body.update(
            {
                k: v
                for k, v in {"email": email, "phone": phone, "fields": fields}.items()
                if v is not None
            }
        )
        reply = yield Request(path={"contact_id": contact_id}, json=body)
        return _one(Contact, reply)

    @endpoint("PUT", f"{API}/contacts/by-external-id/{{external_id}}")
    def upsert_contact(
        self,
        external_id: str,
        *,
        email: str | None = None,
        phone: str | None = None,
        fields: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
    ) -> Plan[Contact]:
        """Create or change the contact with this ``external_id``."""
        body = {
            k: v
            for k, v in {
                "email": email,
                "phone": phone,
                "fields": dict(fields) if fields is not None else None,
                "tags": list(tags) if tags is not None else None,
            }.items()
            if v is not None
        }
        reply = yield Request(
            path={"external_id": external_id},
            json=body,
        )
        return _one(Contact, reply)

    @endpoint("DELETE", f"{API}/contacts/{{contact_id}}")
    def erase_contact(self, contact_id: str) -> Plan[None]:
        """Erase a contact: its executions are cancelled and its personal data removed."""
        yield Request(path={"contact_id": contact_id})
        return None

    @endpoint("POST", f"{API}/events")
    def send_event(
        self,
        contact_id: str,
        name: str,
        data: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Plan[EventResult]:
        body = {"contact_id": contact_id, "name": name, "data": dict(data or {})}
        reply = yield Request(json=body, headers=_changes(None, idempotency_key))
        return _one(EventResult, reply)

    # -- audit ---------------------------------------------------------------------------

    @endpoint("GET", f"{API}/audit")
    def list_audit(
        self,
        *,
        workflow_id: str | None = None,
        action: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Plan[Page[AuditEntry]]:
        params = _list(
            limit, cursor, workflow_id=workflow_id, action=action, since=since, until=until
        )
        reply = yield Request(params=params)
        return _page(AuditEntry, reply)

    # -- webhooks ------------------------------------------------------------------------

    @endpoint("POST", f"{API}/webhooks")
    def create_webhook(
        self, url: str, events: list[str], *, description: str = ""
    ) -> Plan[WebhookSubscription]:
        """Subscribe ``url`` to ``events``; the answer's ``secret`` is shown only here."""
        body = {"url": url, "events": events, "description": description}
        reply = yield Request(json=body)
        return _one(WebhookSubscription, reply)

    @endpoint("GET", f"{API}/webhooks")
    def list_webhooks(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Plan[Page[WebhookSubscription]]:
        reply = yield Request(params=_list(limit, cursor))
        return _page(WebhookSubscription, reply)

    @endpoint("GET", f"{API}/webhooks/{{webhook_id}}")
    def get_webhook(self, webhook_id: str) -> Plan[WebhookSubscription]:
        reply = yield Request(path={"webhook_id": webhook_id})
        return _one(WebhookSubscription, reply)

    @endpoint("PATCH", f"{API}/webhooks/{{webhook_id}}")
    def update_webhook(
        self,
        webhook_id: str,
        *,
        url: str | None = None,
        events: list[str] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> Plan[WebhookSubscription]:
        changes = {"url": url, "events": events, "description": description, "enabled": enabled}
        body = {k: v for k, v in changes.items() if v is not None}
        reply = yield Request(path={"webhook_id": webhook_id}, json=body)
        return _one(WebhookSubscription, reply)

    @endpoint("DELETE", f"{API}/webhooks/{{webhook_id}}")
    def delete_webhook(self, webhook_id: str) -> Plan[None]:
        yield Request(path={"webhook_id": webhook_id})
        return None

    @endpoint("POST", f"{API}/webhooks/{{webhook_id}}/rotate-secret")
    def rotate_webhook_secret(self, webhook_id: str) -> Plan[WebhookSubscription]:
        """A new secret (in this answer only); the old one keeps signing for 24 hours."""
        reply = yield Request(path={"webhook_id": webhook_id})
        return _one(WebhookSubscription, reply)

    @endpoint("POST", f"{API}/webhooks/{{webhook_id}}/test")
    def test_webhook(self, webhook_id: str) -> Plan[WebhookDelivery]:
        """Send a ``ping`` event now."""
        reply = yield Request(path={"webhook_id": webhook_id})
        return _one(WebhookDelivery, reply)

    @endpoint("GET", f"{API}/webhooks/{{webhook_id}}/deliveries")
    def list_deliveries(
        self, webhook_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Plan[Page[WebhookDelivery]]:
        reply = yield Request(
            path={"webhook_id": webhook_id},
            params=_list(limit, cursor),
        )
        return _page(WebhookDelivery, reply)

    @endpoint("POST", f"{API}/webhooks/{{webhook_id}}/deliveries/{{delivery_id}}/redeliver")
    def redeliver(self, webhook_id: str, delivery_id: str) -> Plan[WebhookDelivery]:
        """Send a delivery again now (same ``webhook-id``)."""
        reply = yield Request(
            path={"webhook_id": webhook_id, "delivery_id": delivery_id},
        )
        return _one(WebhookDelivery, reply)


def endpoints() -> dict[str, Endpoint[Any, Any]]:
    """Every method of the client that calls one route, by name."""
    return {
        name: value
        for name, value in vars(Routes).items()
        if isinstance(value, Endpoint) and value.route is not None
    }


def _headers(key: str | None) -> dict[str, str]:
    headers = {"User-Agent": "revflow-client"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


class Client(Routes):
    """The API over blocking HTTP::

    with Client("http://127.0.0.1:8000", key) as api:
        workflow = api.create_workflow("Welcome")
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.url, headers=_headers(key), timeout=timeout, transport=transport
        )

    @classmethod
    def from_env(cls) -> Self:
        """A client of ``REVFLOW_URL`` with the key ``REVFLOW_API_KEY``."""
        return cls(os.environ.get("REVFLOW_URL", DEFAULT_URL), os.environ.get("REVFLOW_API_KEY"))

    def _run(self, plan: Calls[Any]) -> Any:
        return run_sync(self.http, plan)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient(Routes):
    """The API over asynchronous HTTP: the same methods as :class:`Client`, awaited::

    async with AsyncClient("http://127.0.0.1:8000", key) as api:
        workflow = await api.create_workflow("Welcome")
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.AsyncClient(
            base_url=self.url, headers=_headers(key), timeout=timeout, transport=transport
        )

    @classmethod
    def from_env(cls) -> Self:
        """A client of ``REVFLOW_URL`` with the key ``REVFLOW_API_KEY``."""
        return cls(os.environ.get("REVFLOW_URL", DEFAULT_URL), os.environ.get("REVFLOW_API_KEY"))

    async def _run(self, plan: Calls[Any]) -> Any:
        return await run_async(self.http, plan)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
