"""Tenancy and authorization, walked over every route of the OpenAPI document.

The walks follow ``ROUTES`` (tests/support/routes.py): the role every route of
``/openapi.json`` needs and how to fill its path parameters, query and body from a ``World``
(the objects of one account).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from revflow.ui.console import ROUTERS as CONSOLE_ROUTERS
from tests.support.console import Browserless, console_session
from tests.support.problems import assert_problem
from tests.support.routes import (
    API,
    ROUTES,
    Call,
    Route,
    World,
    build_world,
    openapi_routes,
    url_of,
)
from tests.support.tenants import Tenant, make_tenant
from tests.support.workflows import create_workflow, simple_definition

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
# A body key no route accepts: sent to check that the 404 (or 403) comes before the 422.
BOGUS_BODY = {"not_a_field_of_any_body": True}


# Query parameters that name an object of the account (``…_id``), per route: how to point them
# at an object of the world. The caller of another account must see nothing of it.
QUERY_REFERENCES: dict[tuple[str, str, str], Callable[[World], str]] = {
    ("GET", f"{API}/audit", "workflow_id"): lambda w: w.workflow_id,
    ("GET", f"{API}/messages", "contact_id"): lambda w: w.contact_id,
    ("GET", f"{API}/messages", "execution_id"): lambda w: w.execution_id,
}

# Members ending in ``_id`` that are an object's own key in the caller's namespace, not a
# reference (``external_id``: the embedding product's id of a contact, unique per account).
OWN_KEYS = {"external_id"}

# Body members that name objects of the account (``…_id`` / ``…_ids``), per route: how to
# point them at an object of the world (a list for ``…_ids``).
BODY_REFERENCES: dict[tuple[str, str, str], Callable[[World], Any]] = {
    ("POST", f"{API}/events", "contact_id"): lambda w: w.contact_id,
    (
        "POST",
        f"{API}/workflows/{{workflow_id}}/versions/{{number}}/simulate",
        "contact_id",
    ): lambda w: w.contact_id,
    ("POST", f"{API}/workflows/{{workflow_id}}/enrollments", "contact_ids"): lambda w: [
        w.contact_id
    ],
    (
        "POST",
        f"{API}/workflows/{{workflow_id}}/versions/{{number}}/migrate",
        "execution_ids",
    ): lambda w: [w.execution_id],
}


# --- helpers -----------------------------------------------------------------------------------


async def send(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    call: Call,
    key: str | None,
    *,
    json: Any = None,
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    body = call.json if json is None else json
    return await client.request(
        method,
        url_of(path, call),
        params=call.params,
        json=body,
        headers=headers,
    )


async def snapshot(tenant: Tenant, world: World) -> dict[str, Any]:
    """Everything a tenant can read about its world, to prove that it did not change."""

    async def get(url: str, **params: Any) -> Any:
        response = await tenant.request("GET", url, params=params)
        assert response.status_code == 200, f"{url}: {response.text}"
        return response.json()

    wf = f"{API}/workflows/{world.workflow_id}"
    versions = await get(f"{wf}/versions", include_archived="true", limit=200)
    return {
        "workflow": await get(wf),
        "versions": versions,
        "details": [await get(f"{wf}/versions/{v['number']}") for v in versions["items"]],
        "stats": [await get(f"{wf}/versions/{v['number']}/stats") for v in versions["items"]],
        "workflows": await get(f"{API}/workflows", limit=200),
        "keys": await get(f"{API}/api-keys", limit=200),
        "audit": await get(f"{API}/audit", limit=200),
        "contact": await get(f"{API}/contacts/{world.contact_id}"),
        "contacts": await get(f"{API}/contacts", limit=200),
        "execution": await get(f"{API}/executions/{world.execution_id}"),
        "executions": await get(f"{wf}/executions", limit=200),
        "messages": await get(f"{API}/messages", limit=200),
        "migration": await get(f"{API}/migrations/{world.migration_id}"),
        "migrations": await get(f"{wf}/migrations", limit=200),
        "draft": await get(f"{wf}/draft"),
        "webhooks": await get(f"{API}/webhooks", limit=200),
        "webhook": await get(f"{API}/webhooks/{world.webhook_id}"),
        "deliveries": await get(f"{API}/webhooks/{world.webhook_id}/deliveries", limit=200),
    }


def request_schema(spec: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    """The (top-level) JSON schema of an operation's request body, or {}."""
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    ref = schema.get("$ref")
    if ref:
        schema = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return dict(schema)


def without_ids(body: Any, *ids: str) -> str:
    """A response body as text with the given ids blanked, to compare two answers."""
    text = json.dumps(body, sort_keys=True)
    for value in ids:
        text = text.replace(value, "<id>")
    return text


# --- tenancy -----------------------------------------------------------------------------------


async def test_every_route_is_in_the_table(client: httpx.AsyncClient) -> None:
    routes = await openapi_routes(client)
    for method, path, _ in routes:
        role = ROUTES[(method, path)].role
        if path.startswith((f"{API}/api-keys", f"{API}/webhooks")):
            assert role == "admin", f"{method} {path} is an admin route (SPEC §1)"
        if method in MUTATING and path != f"{API}/accounts" and not ROUTES[(method, path)].reads:
            assert role in ("editor", "admin"), f"{method} {path} changes things"
    for method, path, param in [*QUERY_REFERENCES, *BODY_REFERENCES]:
        assert (method, path) in ROUTES, (method, path, param)


async def test_other_accounts_objects_answer_404_on_every_route(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    world = await build_world(tenant)
    # B has objects of its own, with the same version numbers.
    await build_world(other_tenant, "B's own")
    before = await snapshot(tenant, world)
    routes = await openapi_routes(client)
    with_ids = [(m, p) for m, p, _ in routes if "{" in p]
    a_ids = [
        world.workflow_id,
        world.key_id,
        world.contact_id,
        world.execution_id,
        world.migration_id,
        world.webhook_id,
        world.delivery_id,
    ]
    tried = []
    for method, path in with_ids:
        route = ROUTES[(method, path)]
        call = route.fill(world)
        assert set(call.path) == {part[1:-1] for part in path.split("/") if part.startswith("{")}, (
            f"{method} {path}: the table fills {sorted(call.path)}"
        )
        what = f"{method} {url_of(path, call)} with account B's admin key"
        response = await send(client, method, path, call, other_tenant.key)
        if route.cross == "own":
            # Acts on B's own namespace: B's object, nothing of A's in the answer.
            assert response.status_code < 300, f"{what}: {response.text}"
            assert not any(i in response.text for i in a_ids), f"{what}: {response.text}"
            tried.append(f"{method} {path}")
            continue
        assert route.cross == "404", route
        assert_problem(response, 404, "not_found", what)
        if method in MUTATING:
            # The lookup comes before validation: an invalid body still answers 404.
            response = await send(client, method, path, call, other_tenant.key, json=BOGUS_BODY)
            assert_problem(response, 404, "not_found", f"{what} and an invalid body")
            # And before the If-Match check (404 before 412).
            response = await client.request(
                method,
                url_of(path, call),
                params=call.params,
                json=call.json,
                headers={**other_tenant.headers, "If-Match": '"nope-1"'},
            )
            assert_problem(response, 404, "not_found", f"{what} and a wrong If-Match")
        tried.append(f"{method} {path}")
    for name in (
        "{workflow_id}",
        "{number}",
        "{key_id}",
        "{contact_id}",
        "{execution_id}",
        "{migration_id}",
        "{webhook_id}",
        "{delivery_id}",
    ):
        assert any(name in t for t in tried), name
    assert await snapshot(tenant, world) == before, "account B changed account A's objects"


async def test_query_references_to_other_accounts_objects_find_nothing(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """A query parameter naming another account's object answers exactly as one naming a
    missing object, and A itself does find something with it (the reference is real)."""
    world = await build_world(tenant)
    other_world = await build_world(other_tenant, "B's own")
    routes = await openapi_routes(client)
    id_params = sorted(
        (method, path, param["name"])
        for method, path, operation in routes
        for param in operation.get("parameters", [])
        if param["in"] == "query"
        and param["name"].endswith("_id")
        and param["name"] not in OWN_KEYS
    )
    missing = [ref for ref in id_params if ref not in QUERY_REFERENCES]
    assert not missing, f"query parameters naming objects missing from QUERY_REFERENCES: {missing}"
    # Messages only exist once the worker ran a step; the reference may then find nothing for
    # A either, so "A finds something" is checked where A has something.
    for method, path, name in id_params:
        reference = QUERY_REFERENCES[(method, path, name)](world)
        unknown = str(uuid.uuid4())
        call = ROUTES[(method, path)].fill(other_world)  # B's own objects fill the path

        async def ask(caller: Tenant, value: str, route: tuple[str, str, str, Call]) -> Any:
            method, path, name, call = route
            params = {**(call.params or {}), name: value}
            return await caller.request(method, url_of(path, call), params=params, json=call.json)

        what = f"{method} {path}?{name}=<A's> with B's key"
        response = await ask(other_tenant, reference, (method, path, name, call))
        missing_one = await ask(other_tenant, unknown, (method, path, name, call))
        assert response.status_code == missing_one.status_code, f"{what}: {response.text}"
        assert response.status_code in (200, 404), f"{what}: {response.text}"
        assert without_ids(response.json(), reference) == without_ids(
            missing_one.json(), unknown
        ), what
        if response.status_code == 200:
            assert response.json()["items"] == [], f"{what}: {response.text}"
    # Where A has matching objects, A finds them with the same reference.
    own = await tenant.request("GET", f"{API}/audit", params={"workflow_id": world.workflow_id})
    assert own.status_code == 200 and own.json()["items"], own.text


async def test_body_references_to_other_accounts_objects_act_as_missing(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """A body member naming another account's object is treated exactly like one naming a
    missing object; A's objects do not change."""
    world = await build_world(tenant)
    other_world = await build_world(other_tenant, "B's own")
    before = await snapshot(tenant, world)
    spec = (await client.get("/openapi.json")).json()
    routes = await openapi_routes(client)
    refs = sorted(
        (method, path, name)
        for method, path, operation in routes
        for name in request_schema(spec, operation).get("properties", {})
        if name.endswith(("_id", "_ids")) and name not in OWN_KEYS
    )
    missing = [ref for ref in refs if ref not in BODY_REFERENCES]
    assert not missing, f"body members naming objects missing from BODY_REFERENCES: {missing}"
    assert refs, "no body reference found: is the OpenAPI document complete?"
    for method, path, name in refs:
        reference = BODY_REFERENCES[(method, path, name)](world)
        unknown: Any = str(uuid.uuid4())
        if isinstance(reference, list):
            unknown = [str(uuid.uuid4()) for _ in reference]
        call = ROUTES[(method, path)].fill(other_world)
        what = f"{method} {path} with {name}=<A's> by B"
        response = await other_tenant.request(
            method, url_of(path, call), json={**call.json, name: reference}
        )
        missing_one = await other_tenant.request(
            method, url_of(path, call), json={**call.json, name: unknown}
        )
        assert response.status_code == missing_one.status_code, f"{what}: {response.text}"
        assert response.status_code < 500, f"{what}: {response.text}"
        flat = [reference] if isinstance(reference, str) else reference
        flat_unknown = [unknown] if isinstance(unknown, str) else unknown
        assert without_ids(response.json(), *flat) == without_ids(
            missing_one.json(), *flat_unknown
        ), f"{what}: {response.text} vs {missing_one.text}"
        if response.status_code >= 400:
            code = response.json()["code"]
            assert code in ("not_found", "validation_error"), f"{what}: {response.text}"
    assert await snapshot(tenant, world) == before, "account B changed account A's objects"


async def test_the_table_requests_are_valid_for_their_owner(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """The table's requests, sent by the owner's admin, pass auth, lookup and validation —
    so the 404s and 403s of the other tests are not validation errors in disguise."""
    world = await build_world(tenant)
    routes = await openapi_routes(client)
    for method, path, _ in routes:
        route = ROUTES[(method, path)]
        if method in MUTATING:  # each change on a world of its own, as the table describes it
            world = await build_world(tenant, f"For {method} {path}")
        call = route.fill(world)
        key = "operator-secret" if route.role == "operator" else tenant.key
        response = await send(client, method, path, call, key)
        what = f"{method} {url_of(path, call)} by the owner"
        # 409 is fine (e.g. resuming a workflow that is not paused).
        assert response.status_code < 400 or response.status_code == 409, (
            f"{what}: {response.status_code} {response.text}"
        )


async def test_external_ids_are_per_account(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """B may use A's external id for its own contact; neither sees nor changes the other's."""
    world = await build_world(tenant)
    before = await snapshot(tenant, world)
    created = await other_tenant.request(
        "POST", f"{API}/contacts", json={"external_id": world.external_id, "email": "b@b.example"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["id"] != world.contact_id
    upserted = await other_tenant.request(
        "PUT",
        f"{API}/contacts/by-external-id/{world.external_id}",
        json={"fields": {"owner": "b"}},
    )
    assert upserted.status_code == 200, upserted.text
    assert upserted.json()["id"] == created.json()["id"]
    assert upserted.json()["email"] == "b@b.example"
    assert await snapshot(tenant, world) == before


async def test_make_tenant_accounts_do_not_see_each_other(
    db: Database, client: httpx.AsyncClient
) -> None:
    a = await make_tenant(db, client, "one")
    b = await make_tenant(db, client, "two")
    wf = await create_workflow(a, "Only A's")
    listed = (await b.request("GET", f"{API}/workflows", params={"limit": 200})).json()
    assert wf["id"] not in {w["id"] for w in listed["items"]}
    audit = (await b.request("GET", f"{API}/audit", params={"limit": 200})).json()
    assert all(e["workflow_id"] != wf["id"] for e in audit["items"])
    keys = (await b.request("GET", f"{API}/api-keys", params={"limit": 200})).json()["items"]
    a_keys = (await a.request("GET", f"{API}/api-keys", params={"limit": 200})).json()["items"]
    assert not {k["id"] for k in keys} & {k["id"] for k in a_keys}


# --- roles -------------------------------------------------------------------------------------


async def test_viewer_gets_403_on_every_mutating_route(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    world = await build_world(tenant)
    viewer = await tenant.key_for("viewer", "viewer@a.example")
    before = await snapshot(tenant, world)
    routes = await openapi_routes(client)
    mutating = [
        (m, p)
        for m, p, _ in routes
        if m in MUTATING and p != f"{API}/accounts" and not ROUTES[(m, p)].reads
    ]
    assert len(mutating) >= 7
    for method, path in mutating:
        call = ROUTES[(method, path)].fill(world)
        what = f"{method} {url_of(path, call)} with a viewer key"
        response = await send(client, method, path, call, viewer)
        assert_problem(response, 403, "forbidden", what)
        response = await send(client, method, path, call, viewer, json=BOGUS_BODY)
        assert_problem(response, 403, "forbidden", f"{what} and an invalid body")
    # A viewer reads every route a viewer may read, those asked with a POST included.
    for method, path, _ in routes:
        route = ROUTES[(method, path)]
        if (method == "GET" or route.reads) and route.role == "viewer" and not route.mine:
            call = route.fill(world)
            response = await send(client, method, path, call, viewer)
            assert response.status_code == 200, f"viewer {method} {path}: {response.text}"
    assert await snapshot(tenant, world) == before


async def test_editor_gets_403_on_admin_routes(client: httpx.AsyncClient, tenant: Tenant) -> None:
    world = await build_world(tenant)
    editor = await tenant.key_for("editor", "editor@a.example")
    before = await snapshot(tenant, world)
    routes = await openapi_routes(client)
    admin_routes = [(m, p) for m, p, _ in routes if ROUTES[(m, p)].role == "admin"]
    assert {p for _, p in admin_routes} >= {f"{API}/api-keys", f"{API}/api-keys/{{key_id}}"}
    for method, path in admin_routes:
        call = ROUTES[(method, path)].fill(world)
        response = await send(client, method, path, call, editor)
        assert_problem(response, 403, "forbidden", f"{method} {path} with an editor key")
    assert await snapshot(tenant, world) == before
    # The editor may do what editors do.
    renamed = await tenant.request(
        "PATCH",
        f"{API}/workflows/{world.workflow_id}",
        json={"name": "By the editor"},
        headers={"Authorization": f"Bearer {editor}"},
    )
    assert renamed.status_code == 200, renamed.text


# --- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token rf_abc",
        "rf_abc",
        "Bearer rf_not-a-real-key",
        "Bearer operator-secret",  # the operator token is not an API key
    ],
)
async def test_missing_or_malformed_authorization_is_401_on_every_route(
    client: httpx.AsyncClient, tenant: Tenant, authorization: str | None
) -> None:
    world = await build_world(tenant)
    before = await snapshot(tenant, world)
    routes = await openapi_routes(client)
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path, _ in routes:
        route = ROUTES[(method, path)]
        if route.role in ("public", "operator"):
            continue
        call = route.fill(world)
        response = await client.request(
            method, url_of(path, call), params=call.params, json=call.json, headers=headers
        )
        assert_problem(response, 401, "unauthorized", f"{method} {path} with {authorization!r}")
    assert await snapshot(tenant, world) == before


async def test_health_ready_and_metrics_need_no_key(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert "revflow_http_requests_total" in metrics.text
    # A bad key does not turn them into 401s either.
    bad = {"Authorization": "Bearer nope"}
    for url in ("/healthz", "/readyz", "/metrics"):
        assert (await client.get(url, headers=bad)).status_code == 200, url


# --- the web console (/ui) ---------------------------------------------------------------------

# Every console route, like ROUTES for the API: the role it needs and how to fill it from a
# World. ``json`` calls are the editor's (JSON bodies with an X-CSRF-Token header); other
# changes are HTML forms carrying ``csrf_token``. A route missing here fails the walk.
UI = "/ui"


def _wf(w: World, **more: str) -> dict[str, str]:
    return {"workflow_id": w.workflow_id, **more}


UI_ROUTES: dict[tuple[str, str], Route] = {
    ("GET", UI): Route("public", lambda w: Call()),
    ("GET", f"{UI}/sign-in"): Route("public", lambda w: Call()),
    ("POST", f"{UI}/sign-in"): Route("public", lambda w: Call()),
    ("POST", f"{UI}/sign-out"): Route("viewer", lambda w: Call()),
    ("GET", f"{UI}/{{rest}}"): Route("public", lambda w: Call(path={"rest": "nowhere"})),
    ("GET", f"{UI}/workflows"): Route("viewer", lambda w: Call()),
    ("POST", f"{UI}/workflows"): Route("editor", lambda w: Call(params={"name": "From the UI"})),
    ("GET", f"{UI}/workflows/{{workflow_id}}"): Route("viewer", lambda w: Call(path=_wf(w))),
    ("POST", f"{UI}/workflows/{{workflow_id}}/pause"): Route("editor", lambda w: Call(path=_wf(w))),
    ("POST", f"{UI}/workflows/{{workflow_id}}/resume"): Route(
        "editor", lambda w: Call(path=_wf(w))
    ),
    ("POST", f"{UI}/workflows/{{workflow_id}}/draft/discard"): Route(
        "editor", lambda w: Call(path=_wf(w)), mine=True
    ),
    ("GET", f"{UI}/workflows/{{workflow_id}}/versions/{{number}}"): Route(
        "viewer", lambda w: Call(path=_wf(w, number=str(w.published)))
    ),
    ("GET", f"{UI}/workflows/{{workflow_id}}/compare"): Route(
        "viewer", lambda w: Call(path=_wf(w), params={"from": w.published, "to": w.draft})
    ),
    ("GET", f"{UI}/workflows/{{workflow_id}}/versions/{{number}}/publish"): Route(
        "editor", lambda w: Call(path=_wf(w, number=str(w.draft)))
    ),
    ("POST", f"{UI}/workflows/{{workflow_id}}/versions/{{number}}/publish"): Route(
        "editor", lambda w: Call(path=_wf(w, number=str(w.draft)))
    ),
    ("GET", f"{UI}/workflows/{{workflow_id}}/versions/{{number}}/rollback"): Route(
        "editor", lambda w: Call(path=_wf(w, number=str(w.published)))
    ),
    ("POST", f"{UI}/workflows/{{workflow_id}}/versions/{{number}}/rollback"): Route(
        "editor", lambda w: Call(path=_wf(w, number=str(w.published)), params={"reason": "r"})
    ),
    ("GET", f"{UI}/workflows/{{workflow_id}}/canary/promote"): Route(
        "editor", lambda w: Call(path=_wf(w))
    ),
    ("POST", f"{UI}/workflows/{{workflow_id}}/canary/promote"): Route(
        "editor", lambda w: Call(path=_wf(w))
    ),
    ("GET", f"{UI}/workflows/{{workflow_id}}/canary/abort"): Route(
        "editor", lambda w: Call(path=_wf(w))
    ),
    ("POST", f"{UI}/workflows/{{workflow_id}}/canary/abort"): Route(
        "editor", lambda w: Call(path=_wf(w))
    ),
    ("GET", f"{UI}/workflows/{{workflow_id}}/edit"): Route("editor", lambda w: Call(path=_wf(w))),
    ("POST", f"{UI}/workflows/{{workflow_id}}/edit/check"): Route(
        "editor", lambda w: Call(path=_wf(w), json={"text": "trigger: {type: manual}"})
    ),
    ("PUT", f"{UI}/workflows/{{workflow_id}}/draft"): Route(
        "editor",
        lambda w: Call(path=_wf(w), json={"text": "steps: []", "base_version": 2, "revision": 1}),
        mine=True,
    ),
    ("POST", f"{UI}/workflows/{{workflow_id}}/versions"): Route(
        "editor",
        lambda w: Call(
            path=_wf(w),
            json={
                "text": json.dumps(simple_definition("From the editor")),
                "base_version": w.draft,
                "change_summary": "edited in the console",
            },
        ),
    ),
    ("GET", f"{UI}/workflows/{{workflow_id}}/migrate"): Route(
        "editor", lambda w: Call(path=_wf(w), params={"from": w.published, "to": w.draft})
    ),
    ("POST", f"{UI}/workflows/{{workflow_id}}/migrate"): Route(
        "editor",
        lambda w: Call(path=_wf(w), params={"from": w.published, "to": w.draft, "intent": "check"}),
    ),
    ("GET", f"{UI}/migrations/{{migration_id}}"): Route(
        "viewer", lambda w: Call(path={"migration_id": w.migration_id})
    ),
    ("GET", f"{UI}/migrations/{{migration_id}}/progress"): Route(
        "viewer", lambda w: Call(path={"migration_id": w.migration_id})
    ),
    **{
        ("POST", f"{UI}/migrations/{{migration_id}}/{action}"): Route(
            "editor", lambda w: Call(path={"migration_id": w.migration_id})
        )
        for action in ("pause", "resume", "cancel", "revert")
    },
    ("GET", f"{UI}/audit"): Route("viewer", lambda w: Call()),
}


def ui_routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, path) the console serves; fails on one the table does not know."""
    found = sorted(
        (method, route.path.replace("{rest:path}", "{rest}"))
        for router in CONSOLE_ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
        if method != "HEAD"
    )
    assert all(p.startswith(UI) for _, p in found)
    missing = [f"{m} {p}" for m, p in found if (m, p) not in UI_ROUTES]
    assert not missing, f"console routes missing from UI_ROUTES in test_tenancy.py: {missing}"
    stale = [f"{m} {p}" for m, p in UI_ROUTES if (m, p) not in found]
    assert not stale, f"UI_ROUTES names routes the console does not have: {stale}"
    return found


async def ui_send(session: Browserless, method: str, path: str, call: Call) -> httpx.Response:
    url = url_of(path, call)
    if call.json is not None:
        return await session.send_json(method, url, call.json)
    if method == "GET":
        return await session.get(url, params=call.params)
    return await session.post(url, data={k: str(v) for k, v in (call.params or {}).items()})


async def test_other_accounts_objects_answer_404_pages_on_every_console_route(
    settings: Settings,
    db: Database,
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
) -> None:
    world = await build_world(tenant)
    await build_world(other_tenant, "B's own")
    before = await snapshot(tenant, world)
    app = create_app(settings, db)
    b = await console_session(app, other_tenant.key)
    tried = []
    for method, path in ui_routes(app):
        if "{" not in path or "{rest}" in path:
            continue
        call = UI_ROUTES[(method, path)].fill(world)
        response = await ui_send(b, method, path, call)
        what = f"{method} {url_of(path, call)} in account B's console session"
        assert response.status_code == 404, f"{what}: {response.status_code} {response.text[:300]}"
        if call.json is None:
            assert response.headers["content-type"].startswith("text/html"), what
            assert "Nothing here" in response.text, what
        tried.append(path)
    assert {"{workflow_id}", "{number}", "{migration_id}"} <= {
        part for p in tried for part in p.split("/") if part.startswith("{")
    }
    # A's workflow named in B's audit filter finds nothing of A's.
    audit = await b.get(f"{UI}/audit", params={"workflow_id": world.workflow_id})
    assert audit.status_code == 200 and "No entries" in audit.text
    assert world.workflow_id not in audit.text.replace(f'value="{world.workflow_id}"', "")
    assert await snapshot(tenant, world) == before, "account B changed account A's objects"
    await b.client.aclose()


async def test_a_viewer_and_a_missing_csrf_token_are_refused_on_every_console_change(
    settings: Settings, db: Database, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    world = await build_world(tenant)
    app = create_app(settings, db)
    viewer = await console_session(app, await tenant.key_for("viewer", "viewer@a.example"))
    admin = await console_session(app, tenant.key)
    before = await snapshot(tenant, world)
    routes = ui_routes(app)
    for method, path in routes:
        route = UI_ROUTES[(method, path)]
        call = route.fill(world)
        if route.role == "editor":
            response = await ui_send(viewer, method, path, call)
            what = f"{method} {url_of(path, call)} by a viewer"
            assert response.status_code == 403, f"{what}: {response.status_code}"
            assert "editor role" in response.text, what
        if method in MUTATING and route.role != "public":
            # The owner's admin without the form's token: refused before anything happens.
            url = url_of(path, call)
            if call.json is not None:
                response = await admin.client.request(
                    method, url, json=call.json, headers={"Accept": "application/json"}
                )
            else:
                response = await admin.client.request(method, url, data=call.params or {})
            assert response.status_code == 403, f"{method} {url} without a CSRF token"
            assert "csrf_refused" in response.text or "security token" in response.text
    # Viewers read every page a viewer may read.
    for method, path in routes:
        route = UI_ROUTES[(method, path)]
        if method == "GET" and route.role == "viewer":
            response = await ui_send(viewer, method, path, route.fill(world))
            assert response.status_code == 200, f"viewer {method} {path}: {response.text[:300]}"
    assert await snapshot(tenant, world) == before
    await viewer.client.aclose()
    await admin.client.aclose()


async def test_the_console_table_requests_work_for_their_owner(
    settings: Settings, db: Database, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """The table's console requests, by the owner's admin, get past sign-in, CSRF and lookup —
    so the walks' 404s and 403s are not something else in disguise."""
    app = create_app(settings, db)
    admin = await console_session(app, tenant.key)
    for method, path in ui_routes(app):
        route = UI_ROUTES[(method, path)]
        if route.role == "public" or path == f"{UI}/sign-out":
            continue
        world = await build_world(tenant, f"UI {method} {path}")
        call = route.fill(world)
        response = await ui_send(admin, method, path, call)
        what = f"{method} {url_of(path, call)} by the owner"
        # 409 is fine (e.g. promoting when no canary runs); a 422 form problem is shown in place.
        assert response.status_code in (200, 201, 303, 409), (
            f"{what}: {response.status_code} {response.text[:400]}"
        )
    await admin.client.aclose()
