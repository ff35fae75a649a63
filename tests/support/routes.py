"""Every route of the API, and the objects of one account that its requests point at.

``ROUTES`` maps every ``(method, path template)`` of ``/openapi.json`` to the role it needs and
to how to fill its path parameters, query and body from a ``World`` (the objects of one
account). A route missing from the table fails the walks of tests/api (tenancy, roles, errors),
naming it: a new endpoint joins the table (and ``World`` gains the objects it needs) in the
change that adds it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.tenants import Tenant
from tests.support.workflows import create_version, create_workflow, simple_definition

API = "/api/v1"


@dataclass
class World:
    """Real objects of one account that the table's requests point at."""

    workflow_id: str
    published: int  # a published version of the workflow
    draft: int  # a draft version (the latest)
    key_id: str  # an API key of the account that is not the caller's own
    contact_id: str
    external_id: str
    execution_id: str  # the contact's execution of the workflow (on the published version)
    migration_id: str  # a migration of the workflow (pending: no worker runs in these tests)
    webhook_id: str  # a webhook subscription of the account
    delivery_id: str  # a delivery of that subscription (pending: no worker sends it)


@dataclass(frozen=True)
class Call:
    path: dict[str, str] = field(default_factory=dict)
    json: Any = None
    params: dict[str, Any] | None = None


@dataclass(frozen=True)
class Route:
    role: str  # "public", "operator", "viewer", "editor" or "admin"
    fill: Callable[[World], Call]
    # What another account gets when it names this world's object in the path: "404", or
    # "own" for a path that names the caller's own namespace (an upsert by external id acts on
    # the caller's own contact of that external id, never on another account's).
    cross: str = "404"
    # The route answers the caller's own object (a working draft is per user): another user of
    # the same account, e.g. a viewer, gets 404 on a GET.
    mine: bool = False
    # A POST that changes nothing (its input does not fit a query): it is a read, which a
    # viewer may ask.
    reads: bool = False


def _wf(w: World, **more: str) -> dict[str, str]:
    return {"workflow_id": w.workflow_id, **more}


def _hook(w: World, **more: str) -> dict[str, str]:
    return {"webhook_id": w.webhook_id, **more}


# A name that never resolves (RFC 2606): the egress policy lets it through at subscription time
# (it judges it again on every connection), and a worker that tries to send there fails at once.
HOOK_URL = "https://hooks.invalid/revflow"


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/healthz"): Route("public", lambda w: Call()),
    ("GET", "/readyz"): Route("public", lambda w: Call()),
    ("GET", "/metrics"): Route("public", lambda w: Call()),
    ("GET", f"{API}/schema/definition"): Route("public", lambda w: Call()),
    ("POST", f"{API}/accounts"): Route("operator", lambda w: Call(json={"name": "new"})),
    ("POST", f"{API}/api-keys"): Route(
        "admin", lambda w: Call(json={"user": "x@example.com", "role": "viewer"})
    ),
    ("GET", f"{API}/api-keys"): Route("admin", lambda w: Call()),
    ("DELETE", f"{API}/api-keys/{{key_id}}"): Route(
        "admin", lambda w: Call(path={"key_id": w.key_id})
    ),
    ("POST", f"{API}/workflows"): Route("editor", lambda w: Call(json={"name": "Another"})),
    ("GET", f"{API}/workflows"): Route("viewer", lambda w: Call()),
    ("GET", f"{API}/workflows/{{workflow_id}}"): Route("viewer", lambda w: Call(path=_wf(w))),
    ("PATCH", f"{API}/workflows/{{workflow_id}}"): Route(
        "editor", lambda w: Call(path=_wf(w), json={"name": "Renamed", "description": "d"})
    ),
    ("POST", f"{API}/workflows/{{workflow_id}}/versions"): Route(
        "editor",
        lambda w: Call(
            path=_wf(w),
            json={
                "definition": simple_definition("Changed {{contact.email}}"),
                "change_summary": "another change",
                "base_version": w.draft,
            },
        ),
    ),
    ("GET", f"{API}/workflows/{{workflow_id}}/versions"): Route(
        "viewer", lambda w: Call(path=_wf(w), params={"include_archived": "true"})
    ),
    ("GET", f"{API}/workflows/{{workflow_id}}/versions/compare"): Route(
        "viewer", lambda w: Call(path=_wf(w), params={"from": w.published, "to": w.draft})
    ),
    ("GET", f"{API}/workflows/{{workflow_id}}/versions/{{number}}"): Route(
        "viewer", lambda w: Call(path=_wf(w, number=str(w.published)))
    ),
    ("POST", f"{API}/workflows/{{workflow_id}}/versions/{{number}}/publish"): Route(
        "editor", lambda w: Call(path=_wf(w, number=str(w.draft)))
    ),
    ("POST", f"{API}/workflows/{{workflow_id}}/versions/{{number}}/rollback"): Route(
        "editor",
        lambda w: Call(path=_wf(w, number=str(w.published)), json={"reason": "it broke"}),
    ),
    ("PUT", f"{API}/workflows/{{workflow_id}}/versions/{{number}}/tags"): Route(
        "editor",
        lambda w: Call(path=_wf(w, number=str(w.published)), json={"tags": ["stable", "x"]}),
    ),
    ("POST", f"{API}/workflows/{{workflow_id}}/pause"): Route(
        "editor", lambda w: Call(path=_wf(w))
    ),
    ("POST", f"{API}/workflows/{{workflow_id}}/resume"): Route(
        "editor", lambda w: Call(path=_wf(w))
    ),
    ("GET", f"{API}/workflows/{{workflow_id}}/versions/{{number}}/stats"): Route(
        "viewer", lambda w: Call(path=_wf(w, number=str(w.published)))
    ),
    ("POST", f"{API}/workflows/{{workflow_id}}/enrollments"): Route(
        "editor", lambda w: Call(path=_wf(w), json={"contact_ids": [w.contact_id]})
    ),
    ("GET", f"{API}/workflows/{{workflow_id}}/executions"): Route(
        "viewer", lambda w: Call(path=_wf(w), params={"version": w.published})
    ),
    ("GET", f"{API}/executions/{{execution_id}}"): Route(
        "viewer", lambda w: Call(path={"execution_id": w.execution_id})
    ),
    ("POST", f"{API}/executions/{{execution_id}}/cancel"): Route(
        "editor", lambda w: Call(path={"execution_id": w.execution_id})
    ),
    ("POST", f"{API}/workflows/{{workflow_id}}/versions/{{number}}/migrate"): Route(
        "editor",
        lambda w: Call(
            path=_wf(w, number=str(w.draft)),
            json={
                "from_version": w.published,
                "strategy": "manual",
                "execution_ids": [w.execution_id],
                "dry_run": True,
            },
        ),
    ),
    ("POST", f"{API}/workflows/{{workflow_id}}/versions/{{number}}/simulate"): Route(
        "viewer",
        lambda w: Call(
            path=_wf(w, number=str(w.published)),
            json={
                "contact_id": w.contact_id,
                "timeline": [
                    {"after": "1d", "add_tags": ["vip"]},
                    {"after": "3d", "name": "purchase", "data": {}},
                ],
            },
        ),
        reads=True,
    ),
    ("POST", f"{API}/workflows/{{workflow_id}}/canary/promote"): Route(
        "editor", lambda w: Call(path=_wf(w))
    ),
    ("POST", f"{API}/workflows/{{workflow_id}}/canary/abort"): Route(
        "editor", lambda w: Call(path=_wf(w), json={"reason": "enough"})
    ),
    ("PUT", f"{API}/workflows/{{workflow_id}}/draft"): Route(
        "editor",
        lambda w: Call(
            path=_wf(w),
            json={"definition": {"half": "done"}, "base_version": w.draft, "revision": 1},
        ),
        mine=True,
    ),
    ("GET", f"{API}/workflows/{{workflow_id}}/draft"): Route(
        "viewer", lambda w: Call(path=_wf(w)), mine=True
    ),
    ("DELETE", f"{API}/workflows/{{workflow_id}}/draft"): Route(
        "editor", lambda w: Call(path=_wf(w)), mine=True
    ),
    ("GET", f"{API}/workflows/{{workflow_id}}/migrations"): Route(
        "viewer", lambda w: Call(path=_wf(w))
    ),
    ("GET", f"{API}/migrations/{{migration_id}}"): Route(
        "viewer", lambda w: Call(path={"migration_id": w.migration_id})
    ),
    ("POST", f"{API}/migrations/{{migration_id}}/pause"): Route(
        "editor", lambda w: Call(path={"migration_id": w.migration_id})
    ),
    ("POST", f"{API}/migrations/{{migration_id}}/resume"): Route(
        "editor", lambda w: Call(path={"migration_id": w.migration_id})
    ),
    ("POST", f"{API}/migrations/{{migration_id}}/cancel"): Route(
        "editor", lambda w: Call(path={"migration_id": w.migration_id})
    ),
    ("POST", f"{API}/migrations/{{migration_id}}/revert"): Route(
        "editor", lambda w: Call(path={"migration_id": w.migration_id})
    ),
    ("GET", f"{API}/audit"): Route("viewer", lambda w: Call(params={"limit": 200})),
    ("GET", f"{API}/messages"): Route("viewer", lambda w: Call(params={"limit": 200})),
    ("POST", f"{API}/contacts"): Route(
        "editor", lambda w: Call(json={"email": "new@example.com", "tags": ["t"]})
    ),
    ("GET", f"{API}/contacts"): Route("viewer", lambda w: Call(params={"limit": 200})),
    ("GET", f"{API}/contacts/{{contact_id}}"): Route(
        "viewer", lambda w: Call(path={"contact_id": w.contact_id})
    ),
    ("PATCH", f"{API}/contacts/{{contact_id}}"): Route(
        "editor",
        lambda w: Call(
            path={"contact_id": w.contact_id},
            json={"email": "changed@example.com", "fields": {"x": 1}, "add_tags": ["vip"]},
        ),
    ),
    ("DELETE", f"{API}/contacts/{{contact_id}}"): Route(
        "editor", lambda w: Call(path={"contact_id": w.contact_id})
    ),
    ("PUT", f"{API}/contacts/by-external-id/{{external_id}}"): Route(
        "editor",
        lambda w: Call(
            path={"external_id": w.external_id},
            json={"email": "upserted@example.com", "fields": {"plan": "pro"}},
        ),
        cross="own",
    ),
    ("POST", f"{API}/events"): Route(
        "editor", lambda w: Call(json={"contact_id": w.contact_id, "name": "purchase"})
    ),
    ("POST", f"{API}/webhooks"): Route(
        "admin", lambda w: Call(json={"url": HOOK_URL, "events": ["version.published"]})
    ),
    ("GET", f"{API}/webhooks"): Route("admin", lambda w: Call(params={"limit": 200})),
    ("GET", f"{API}/webhooks/{{webhook_id}}"): Route("admin", lambda w: Call(path=_hook(w))),
    ("PATCH", f"{API}/webhooks/{{webhook_id}}"): Route(
        "admin",
        lambda w: Call(
            path=_hook(w), json={"description": "changed", "events": ["execution.failed"]}
        ),
    ),
    ("DELETE", f"{API}/webhooks/{{webhook_id}}"): Route("admin", lambda w: Call(path=_hook(w))),
    ("POST", f"{API}/webhooks/{{webhook_id}}/rotate-secret"): Route(
        "admin", lambda w: Call(path=_hook(w))
    ),
    ("POST", f"{API}/webhooks/{{webhook_id}}/test"): Route("admin", lambda w: Call(path=_hook(w))),
    ("GET", f"{API}/webhooks/{{webhook_id}}/deliveries"): Route(
        "admin", lambda w: Call(path=_hook(w), params={"limit": 200})
    ),
    ("POST", f"{API}/webhooks/{{webhook_id}}/deliveries/{{delivery_id}}/redeliver"): Route(
        "admin", lambda w: Call(path=_hook(w, delivery_id=w.delivery_id))
    ),
}


async def openapi_routes(client: httpx.AsyncClient) -> list[tuple[str, str, dict[str, Any]]]:
    """Every (method, path, operation) of the served OpenAPI document; fails on a route the
    table does not know."""
    response = await client.get("/openapi.json")
    assert response.status_code == 200, response.text
    routes = [
        (method.upper(), path, operation)
        for path, operations in response.json()["paths"].items()
        for method, operation in operations.items()
        if method.upper() in {"GET", "POST", "PUT", "PATCH", "DELETE"}
    ]
    missing = sorted(f"{m} {p}" for m, p, _ in routes if (m, p) not in ROUTES)
    assert not missing, (
        "routes of /openapi.json missing from ROUTES in tests/support/routes.py "
        f"(add them, with the objects they need in World): {missing}"
    )
    stale = sorted(f"{m} {p}" for m, p in ROUTES if (m, p) not in {(m, p) for m, p, _ in routes})
    assert not stale, f"ROUTES names routes that /openapi.json does not have: {stale}"
    return routes


def url_of(path: str, call: Call) -> str:
    return path.format(**call.path)


async def build_world(tenant: Tenant, name: str = "Welcome") -> World:
    """A workflow with version 1 published and tagged and version 2 a draft, an API key, and a
    contact enrolled into the workflow (so an execution)."""
    wf = await create_workflow(tenant, name)
    await create_version(tenant, wf["id"], simple_definition(), None, publish=True)
    await create_version(tenant, wf["id"], simple_definition("Hello {{contact.email}}"), 1)
    tagged = await tenant.request(
        "PUT", f"{API}/workflows/{wf['id']}/versions/1/tags", json={"tags": ["stable"]}
    )
    assert tagged.status_code == 200, tagged.text
    key = await tenant.request(
        "POST", f"{API}/api-keys", json={"user": "editor@a.example", "role": "editor"}
    )
    assert key.status_code == 201, key.text
    external_id = f"ext-{uuid.uuid4().hex[:8]}"
    contact = await tenant.request(
        "POST",
        f"{API}/contacts",
        json={
            "external_id": external_id,
            "email": f"{name.replace(' ', '').replace(chr(39), '')}@example.com",
            "fields": {"first_name": "Ada"},
            "tags": ["customer"],  # not "lead": the workflow's trigger would enroll it
        },
    )
    assert contact.status_code == 201, contact.text
    contact_id = contact.json()["id"]
    enrolled = await tenant.request(
        "POST", f"{API}/workflows/{wf['id']}/enrollments", json={"contact_ids": [contact_id]}
    )
    assert enrolled.status_code == 201, enrolled.text
    assert enrolled.json()["enrolled"] == 1, enrolled.text
    execution_id = enrolled.json()["executions"][0]
    migration = await tenant.request(
        "POST",
        f"{API}/workflows/{wf['id']}/versions/2/migrate",
        json={
            "from_version": 1,
            "strategy": "manual",
            "execution_ids": [execution_id],
            "allow_unreleased": True,  # version 2 is a draft
        },
    )
    assert migration.status_code == 202, migration.text
    draft = await tenant.request(
        "PUT",
        f"{API}/workflows/{wf['id']}/draft",
        json={"definition": simple_definition("Work in progress"), "base_version": 2},
    )
    assert draft.status_code == 200 and draft.json()["revision"] == 1, draft.text
    hook = await tenant.request(
        "POST", f"{API}/webhooks", json={"url": HOOK_URL, "events": ["version.created"]}
    )
    assert hook.status_code == 201, hook.text
    ping = await tenant.request("POST", f"{API}/webhooks/{hook.json()['id']}/test")
    assert ping.status_code == 202, ping.text
    return World(
        workflow_id=wf["id"],
        published=1,
        draft=2,
        key_id=key.json()["id"],
        contact_id=contact_id,
        external_id=external_id,
        execution_id=execution_id,
        migration_id=migration.json()["id"],
        webhook_id=hook.json()["id"],
        delivery_id=ping.json()["id"],
    )
