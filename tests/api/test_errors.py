"""Errors are RFC 9457 problem documents, and bad input never answers 500 (SPEC §4).

The route walks follow the table of ``tests/support/routes.py`` (``ROUTES``): a new endpoint
that joins it is checked here too (malformed JSON, wrong body shapes, unknown ids). ``LISTS``
names every cursor-paginated list, for the cursor and limit checks.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database, utcnow
from revflow.models import Version
from revflow.worker import Worker
from tests.support.routes import HOOK_URL, ROUTES, Call, World, build_world, openapi_routes, url_of
from tests.support.tenants import Tenant, make_tenant
from tests.support.workflows import create_version, create_workflow, simple_definition

API = "/api/v1"
PROBLEM_JSON = "application/problem+json"
JSON_HEADERS = {"Content-Type": "application/json"}


def assert_problem(response: httpx.Response, status: int, code: str, what: str = "") -> Any:
    """A complete problem document of ``status`` and ``code``; answers its body."""
    what = what or f"{response.request.method} {response.request.url}"
    assert response.status_code == status, f"{what}: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith(PROBLEM_JSON), f"{what}: {response.headers}"
    body = response.json()
    assert body["type"] == f"urn:revflow:problem:{code}", f"{what}: {body}"
    assert body["code"] == code, f"{what}: {body}"
    assert body["status"] == status, f"{what}: {body}"
    assert isinstance(body["title"], str) and body["title"], f"{what}: {body}"
    assert isinstance(body["detail"], str) and body["detail"], f"{what}: {body}"
    assert "Traceback" not in response.text, what
    return body


def pointers(body: dict[str, Any]) -> list[str]:
    return [error["pointer"] for error in body.get("errors", [])]


def body_routes(routes: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[str, str]]:
    """The routes that take a JSON request body."""
    return [(m, p) for m, p, op in routes if "requestBody" in op]


def key_for_route(tenant: Tenant, method: str, path: str) -> str:
    return "operator-secret" if ROUTES[(method, path)].role == "operator" else tenant.key


# --- the problem document ----------------------------------------------------------------------


async def test_every_kind_of_error_is_a_problem_document(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    wf = await create_workflow(tenant)
    wid = wf["id"]
    versions = f"{API}/workflows/{wid}/versions"
    await create_version(tenant, wid, simple_definition(), None, publish=True)
    await create_version(tenant, wid, simple_definition("Second"), 1)
    viewer = await tenant.key_for("viewer")
    body = {"definition": simple_definition("Third"), "change_summary": "x", "base_version": 1}

    cases: list[tuple[httpx.Response, int, str]] = [
        (await client.get(f"{API}/workflows"), 401, "unauthorized"),
        (
            await tenant.request(
                "POST",
                f"{API}/workflows",
                json={"name": "x"},
                headers={"Authorization": f"Bearer {viewer}"},
            ),
            403,
            "forbidden",
        ),
        (await tenant.request("GET", f"{API}/workflows/{uuid.uuid4()}"), 404, "not_found"),
        (await tenant.request("GET", f"{API}/no-such-thing"), 404, "not_found"),
        (await tenant.request("DELETE", f"{API}/workflows"), 405, "method_not_allowed"),
        (
            await tenant.request("POST", f"{API}/workflows", content=b"{", headers=JSON_HEADERS),
            400,
            "malformed_json",
        ),
        (await tenant.request("POST", f"{API}/workflows", json={}), 422, "validation_error"),
        (
            await tenant.request("GET", f"{API}/workflows", params={"cursor": "x"}),
            422,
            "invalid_cursor",
        ),
        (
            await tenant.request(
                "POST", versions, json={**body, "definition": {"steps": []}, "base_version": 2}
            ),
            422,
            "invalid_definition",
        ),
        (await tenant.request("POST", versions, json=body), 409, "stale_base"),
        (
            await tenant.request(
                "POST",
                versions,
                json={**body, "definition": simple_definition("Second"), "base_version": 2},
            ),
            409,
            "no_changes",
        ),
        (
            await tenant.request(
                "PATCH",
                f"{API}/workflows/{wid}",
                json={"name": "y"},
                headers={"If-Match": '"not-the-etag"'},
            ),
            412,
            "etag_mismatch",
        ),
        (
            await tenant.request("POST", f"{versions}/2/rollback", json={"reason": "r"}),
            409,
            "never_published",
        ),
    ]
    for response, status, code in cases:
        assert_problem(response, status, code)
    stale = cases[9][0].json()
    assert stale["latest_version"] == 2
    # A retired version is rolled back to, not published.
    assert (await tenant.request("POST", f"{versions}/2/publish")).status_code == 200
    assert_problem(await tenant.request("POST", f"{versions}/1/publish"), 409, "use_rollback")
    # An Idempotency-Key reused with another body.
    headers = {"Idempotency-Key": "k-1"}
    first = await tenant.request("POST", f"{API}/workflows", json={"name": "a"}, headers=headers)
    assert first.status_code == 201, first.text
    reused = await tenant.request("POST", f"{API}/workflows", json={"name": "b"}, headers=headers)
    assert_problem(reused, 422, "idempotency_key_reused")


async def test_unknown_routes_are_404_and_wrong_methods_405(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    wf = await create_workflow(tenant)
    for method, url in [
        ("GET", f"{API}/nope"),
        ("GET", "/api/v2/workflows"),
        ("GET", f"{API}/workflows/{wf['id']}/nope"),
        ("POST", f"{API}/workflows/{wf['id']}/versions/1/nope"),
        ("GET", "/nope"),
    ]:
        assert_problem(await tenant.request(method, url), 404, "not_found", f"{method} {url}")
        assert_problem(await client.request(method, url), 404, "not_found", f"{method} {url}")
    for method, url in [
        ("DELETE", f"{API}/workflows"),
        ("PUT", f"{API}/audit"),
        ("POST", "/healthz"),
        ("DELETE", f"{API}/workflows/{wf['id']}"),
        ("GET", f"{API}/workflows/{wf['id']}/versions/1/publish"),
    ]:
        response = await tenant.request(method, url)
        assert_problem(response, 405, "method_not_allowed", f"{method} {url}")
        assert response.headers.get("allow"), f"{method} {url} names the allowed methods"


# --- bad bodies on every route -----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'{"name": }',
        b"{'name': 'single quotes'}",
        b'{"name": "x",}',
        b"\xff\xfe\x00",
        b"[" * 100_000 + b"]" * 100_000,  # deeper than any parser allows
        b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    ],
    ids=["open", "no-value", "quotes", "trailing-comma", "not-utf8", "deep-list", "deep-object"],
)
async def test_malformed_json_is_400_on_every_route_with_a_body(
    client: httpx.AsyncClient, tenant: Tenant, raw: bytes
) -> None:
    world = await build_world(tenant)
    routes = body_routes(await openapi_routes(client))
    assert len(routes) >= 8
    for method, path in routes:
        call = ROUTES[(method, path)].fill(world)
        key = key_for_route(tenant, method, path)
        response = await client.request(
            method,
            url_of(path, call),
            content=raw,
            headers={**JSON_HEADERS, "Authorization": f"Bearer {key}"},
        )
        assert_problem(response, 400, "malformed_json", f"{method} {path} with {raw[:20]!r}")


async def test_bodies_of_the_wrong_shape_are_422_on_every_route_with_a_body(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    world = await build_world(tenant)
    routes = await openapi_routes(client)
    for method, path, operation in routes:
        if "requestBody" not in operation:
            continue
        call = ROUTES[(method, path)].fill(world)
        key = key_for_route(tenant, method, path)
        headers = {"Authorization": f"Bearer {key}"}
        what = f"{method} {path}"
        # An optional body may be absent (JSON null reads as absent).
        required = operation["requestBody"].get("required", False)
        # An unknown key, next to an otherwise valid body.
        valid = call.json if isinstance(call.json, dict) else {}
        response = await client.request(
            method, url_of(path, call), json={**valid, "zzz_unknown": 1}, headers=headers
        )
        body = assert_problem(response, 422, "validation_error", f"{what} with an unknown key")
        assert "/zzz_unknown" in pointers(body), f"{what}: {body}"
        # Not an object at all.
        for not_an_object in ([valid], "text", 42, *([None] if required else [])):
            response = await client.request(
                method, url_of(path, call), json=not_an_object, headers=headers
            )
            body = assert_problem(response, 422, "validation_error", f"{what} {not_an_object!r}")
            assert body["errors"] and all(
                isinstance(e["pointer"], str) and e["message"] for e in body["errors"]
            ), body
        # Every error has a JSON pointer and a message.
        response = await client.request(method, url_of(path, call), json={}, headers=headers)
        assert response.status_code < 500, f"{what} {{}}: {response.text}"


WRONG_TYPES: list[tuple[str, str, Callable[[World], Any], str]] = [
    # (method, path template, body from the world, the pointer of the error)
    (
        "POST",
        f"{API}/workflows/{{workflow_id}}/versions",
        lambda w: {"definition": simple_definition(), "change_summary": "x", "base_version": "two"},
        "/base_version",
    ),
    (
        "POST",
        f"{API}/workflows/{{workflow_id}}/versions",
        lambda w: {"definition": simple_definition(), "change_summary": "x", "base_version": 1.5},
        "/base_version",
    ),
    (
        "POST",
        f"{API}/workflows/{{workflow_id}}/versions",
        lambda w: {"definition": [simple_definition()], "change_summary": "x", "base_version": 2},
        "/definition",
    ),
    (
        "POST",
        f"{API}/workflows/{{workflow_id}}/versions",
        lambda w: {"definition": simple_definition(), "change_summary": 5, "base_version": 2},
        "/change_summary",
    ),
    (
        "POST",
        f"{API}/workflows/{{workflow_id}}/versions",
        lambda w: {"definition": simple_definition(), "change_summary": "", "base_version": 2},
        "/change_summary",
    ),
    (
        "POST",
        f"{API}/workflows/{{workflow_id}}/versions",
        lambda w: {
            "definition": simple_definition(),
            "change_summary": "x" * 501,
            "base_version": 2,
        },
        "/change_summary",
    ),
    (
        "POST",
        f"{API}/workflows/{{workflow_id}}/versions",
        lambda w: {"definition": simple_definition(), "change_summary": "x"},
        "/base_version",
    ),
    (
        "POST",
        f"{API}/workflows/{{workflow_id}}/versions",
        lambda w: {
            "definition": simple_definition(),
            "change_summary": "x",
            "base_version": 2,
            "publish": "maybe",
        },
        "/publish",
    ),
    (
        "POST",
        f"{API}/workflows/{{workflow_id}}/versions",
        lambda w: {"definition": simple_definition(), "change_summary": "x", "base_version": 99},
        "/base_version",
    ),
    ("POST", f"{API}/workflows", lambda w: {"description": "no name"}, "/name"),
    ("POST", f"{API}/workflows", lambda w: {"name": ["a"]}, "/name"),
    ("POST", f"{API}/workflows", lambda w: {"name": "x", "definition": {}}, "/change_summary"),
    ("PATCH", f"{API}/workflows/{{workflow_id}}", lambda w: {"name": 5}, "/name"),
    ("PATCH", f"{API}/workflows/{{workflow_id}}", lambda w: {"name": "  "}, "/name"),
    ("PATCH", f"{API}/workflows/{{workflow_id}}", lambda w: {"description": []}, "/description"),
    (
        "PUT",
        f"{API}/workflows/{{workflow_id}}/versions/{{number}}/tags",
        lambda w: {"tags": "stable"},
        "/tags",
    ),
    (
        "PUT",
        f"{API}/workflows/{{workflow_id}}/versions/{{number}}/tags",
        lambda w: {"tags": ["ok", 7]},
        "/tags/1",
    ),
    (
        "PUT",
        f"{API}/workflows/{{workflow_id}}/versions/{{number}}/tags",
        lambda w: {"tags": ["ok", "not ok"]},
        "/tags/1",
    ),
    (
        "POST",
        f"{API}/workflows/{{workflow_id}}/versions/{{number}}/rollback",
        lambda w: {},
        "/reason",
    ),
    (
        "POST",
        f"{API}/workflows/{{workflow_id}}/versions/{{number}}/rollback",
        lambda w: {"reason": {"why": "x"}},
        "/reason",
    ),
    ("POST", f"{API}/api-keys", lambda w: {"user": "u", "role": "root"}, "/role"),
    ("POST", f"{API}/api-keys", lambda w: {"role": "viewer"}, "/user"),
    ("POST", f"{API}/contacts", lambda w: {"tags": "vip"}, "/tags"),
    ("POST", f"{API}/contacts", lambda w: {"fields": [1]}, "/fields"),
    (
        "PATCH",
        f"{API}/contacts/{{contact_id}}",
        lambda w: {"add_tags": [1, {"a": 1}]},
        "/add_tags/1",
    ),
    ("POST", f"{API}/events", lambda w: {"contact_id": "nope", "name": "x"}, "/contact_id"),
    ("POST", f"{API}/events", lambda w: {"contact_id": w.contact_id}, "/name"),
    (
        "POST",
        f"{API}/workflows/{{workflow_id}}/enrollments",
        lambda w: {"contact_ids": ["not-a-uuid"]},
        "/contact_ids/0",
    ),
    ("POST", f"{API}/workflows/{{workflow_id}}/enrollments", lambda w: {"contact_ids": []}, ""),
]


async def test_wrong_types_answer_422_with_the_json_path(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    world = await build_world(tenant)
    for method, path, make_body, pointer in WRONG_TYPES:
        call = ROUTES[(method, path)].fill(world)
        body = make_body(world)
        response = await tenant.request(method, url_of(path, call), json=body)
        what = f"{method} {path} {json.dumps(body)[:80]}"
        assert response.status_code == 422, f"{what}: {response.text}"
        problem = response.json()
        assert_problem(response, 422, problem["code"], what)
        assert problem["code"] in ("validation_error", "invalid_definition"), what
        if pointer:
            assert pointer in pointers(problem), f"{what}: {problem}"
        else:
            assert problem["errors"], f"{what}: {problem}"


async def test_query_parameters_of_the_wrong_type_are_422(tenant: Tenant) -> None:
    wf = await create_workflow(tenant)
    await create_version(tenant, wf["id"], simple_definition(), None)
    versions = f"{API}/workflows/{wf['id']}/versions"
    for url, params, parameter in [
        (f"{versions}/compare", {"from": "a", "to": 1}, "from"),
        (f"{versions}/compare", {"from": 1}, "to"),
        (f"{versions}/compare", {"from": 0, "to": 1}, "from"),
        (f"{versions}/compare", {"from": 1, "to": 1, "format": "pdf"}, "format"),
        (versions, {"status": "bogus"}, "status"),
        (versions, {"include_archived": "perhaps"}, "include_archived"),
        (f"{API}/audit", {"workflow_id": "nope"}, "workflow_id"),
        (f"{API}/audit", {"since": "yesterday"}, "since"),
        (f"{API}/audit", {"until": "2024-13-45"}, "until"),
        (f"{API}/workflows/{wf['id']}/executions", {"version": "x"}, "version"),
        (f"{API}/messages", {"contact_id": "x"}, "contact_id"),
    ]:
        response = await tenant.request("GET", url, params=params)
        body = assert_problem(response, 422, "validation_error", f"GET {url} {params}")
        assert any(
            e.get("parameter", "").split(".")[0] == parameter and e.get("in") == "query"
            for e in body["errors"]
        ), body


# --- unknown ids on every route ----------------------------------------------------------------

BAD_IDS = [
    "00000000-0000-0000-0000-000000000000",
    "not-a-uuid",
    "1",
    "null",
    "x" * 300,
    "%C3%A9",
    "%00",
    "..",
]
BAD_NUMBERS = [
    "0",
    "-1",
    "abc",
    "1.5",
    "1e3",
    "99",
    "99999999999999999999",
    "2147483648",
    "%C2%B2",  # "²", a digit to str.isdigit() but not to int()
    "%EF%BC%91",  # a full-width "1"
    "%201",
]


async def test_unknown_and_malformed_ids_are_404_on_every_route(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    world = await build_world(tenant)
    # A fresh (unknown) id of each kind, on top of the malformed ones.
    fresh = str(uuid.uuid4())
    routes = await openapi_routes(client)
    tried = 0
    for method, path, _ in routes:
        route = ROUTES[(method, path)]
        if "{" not in path or route.cross != "404":
            continue
        call = route.fill(world)
        for param in call.path:
            bad_values = BAD_NUMBERS if param == "number" else [fresh, *BAD_IDS]
            for bad in bad_values:
                url = path.format(**{**call.path, param: bad})
                response = await tenant.request(method, url, params=call.params, json=call.json)
                what = f"{method} {path} with {param}={bad!r}"
                if response.status_code == 404:
                    assert_problem(response, 404, "not_found", what)
                else:
                    # Only a full-width digit may read as a real number.
                    assert bad == "%EF%BC%91" and response.status_code < 500, (
                        f"{what}: {response.status_code} {response.text}"
                    )
                tried += 1
    assert tried > 50
    # Nothing of the world changed on the way.
    response = await tenant.request("GET", f"{API}/workflows/{world.workflow_id}")
    assert response.json()["name"] == "Welcome"


async def test_compare_with_unknown_or_huge_version_numbers(tenant: Tenant) -> None:
    wf = await create_workflow(tenant)
    await create_version(tenant, wf["id"], simple_definition(), None)
    compare = f"{API}/workflows/{wf['id']}/versions/compare"
    for params in ({"from": 1, "to": 2}, {"from": 1, "to": 2**40}, {"from": 10**30, "to": 1}):
        assert_problem(await tenant.request("GET", compare, params=params), 404, "not_found")
    # base_version out of any range is a 422 naming it.
    response = await tenant.request(
        "POST",
        f"{API}/workflows/{wf['id']}/versions",
        json={"definition": simple_definition("x"), "change_summary": "x", "base_version": 2**40},
    )
    assert "/base_version" in pointers(assert_problem(response, 422, "validation_error"))


# --- request size -------------------------------------------------------------------------------


@dataclass
class Limited:
    client: httpx.AsyncClient
    tenant: Tenant
    limit: int


@pytest.fixture
async def limited(settings: Settings, db: Database) -> AsyncIterator[Limited]:
    """An app whose ``max_request_bytes`` is small."""
    limit = 2048
    app = create_app(settings.model_copy(update={"max_request_bytes": limit}), db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as c:
        yield Limited(c, await make_tenant(db, c, "limited"), limit)


def padded_body(size: int) -> bytes:
    """A valid POST /workflows body of exactly ``size`` bytes."""
    empty = json.dumps({"name": "big", "description": ""}).encode()
    body = json.dumps({"name": "big", "description": "y" * (size - len(empty))}).encode()
    assert len(body) == size
    return body


async def test_a_body_over_max_request_bytes_is_413(limited: Limited) -> None:
    tenant = limited.tenant
    over = padded_body(limited.limit + 1)
    response = await tenant.request("POST", f"{API}/workflows", content=over, headers=JSON_HEADERS)
    assert response.request.headers["content-length"] == str(len(over))
    assert_problem(response, 413, "payload_too_large", "with Content-Length")
    # Exactly at the limit is fine.
    at_limit = await tenant.request(
        "POST", f"{API}/workflows", content=padded_body(limited.limit), headers=JSON_HEADERS
    )
    assert at_limit.status_code == 201, at_limit.text
    # A version whose definition is big, and a PATCH: the limit holds on every route.
    wf = at_limit.json()["id"]
    big = simple_definition("x" * limited.limit)
    response = await tenant.request(
        "POST",
        f"{API}/workflows/{wf}/versions",
        json={"definition": big, "change_summary": "big", "base_version": None},
    )
    assert_problem(response, 413, "payload_too_large", "a big definition")
    response = await tenant.request(
        "PATCH", f"{API}/workflows/{wf}", json={"description": "z" * limited.limit}
    )
    assert_problem(response, 413, "payload_too_large", "a big PATCH")
    listed = await tenant.request("GET", f"{API}/workflows")
    assert [w["name"] for w in listed.json()["items"]] == ["big"]


async def test_a_streamed_body_without_content_length_over_the_limit_is_413(
    limited: Limited,
) -> None:
    tenant = limited.tenant

    def chunks(body: bytes, size: int = 100) -> Callable[[], AsyncIterator[bytes]]:
        async def stream() -> AsyncIterator[bytes]:
            for start in range(0, len(body), size):
                yield body[start : start + size]

        return stream

    over = padded_body(limited.limit * 3)
    response = await tenant.request(
        "POST", f"{API}/workflows", content=chunks(over)(), headers=JSON_HEADERS
    )
    assert "content-length" not in response.request.headers
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert_problem(response, 413, "payload_too_large", "a chunked body")
    # A streamed body under the limit goes through whole.
    small = json.dumps({"name": "streamed", "description": "s" * 500}).encode()
    response = await tenant.request(
        "POST", f"{API}/workflows", content=chunks(small, 7)(), headers=JSON_HEADERS
    )
    assert response.status_code == 201, response.text
    assert response.json()["description"] == "s" * 500
    listed = await tenant.request("GET", f"{API}/workflows")
    assert [w["name"] for w in listed.json()["items"]] == ["streamed"]


# --- invalid definitions -----------------------------------------------------------------------

STRICT_MAX_STEPS = 8
STRICT_MAX_DEFINITION_BYTES = 3000

EVENT_WAIT = {
    "id": "pause",
    "type": "wait",
    "event": "opened",
    "timeout": "1d",
    "timeout_next": "nurture",
    "next": "is_vip",
}


def set_at(*path: str | int, value: Any) -> Callable[[dict[str, Any]], Any]:
    def edit(definition: dict[str, Any]) -> Any:
        node: Any = definition
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        return definition

    return edit


def drop_at(*path: str | int) -> Callable[[dict[str, Any]], Any]:
    def edit(definition: dict[str, Any]) -> Any:
        node: Any = definition
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]
        return definition

    return edit


def whole(value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda _definition: value


def more_steps(count: int) -> Callable[[dict[str, Any]], Any]:
    def edit(definition: dict[str, Any]) -> Any:
        definition["steps"].extend(
            {"id": f"extra_{i}", "type": "add_tag", "tag": "x"} for i in range(count)
        )
        return definition

    return edit


INVALID_DEFINITIONS: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("unknown_step_type", set_at("steps", 3, "type", value="send_fax"), "/steps/3/type"),
    ("unknown_trigger_type", set_at("trigger", "type", value="sunrise"), "/trigger/type"),
    ("unknown_key_in_definition", set_at("colour", value="red"), "/colour"),
    ("unknown_key_in_trigger", set_at("trigger", "colour", value="red"), "/trigger/colour"),
    ("unknown_key_in_step", set_at("steps", 1, "colour", value="red"), "/steps/1/colour"),
    ("unknown_key_in_goal", set_at("goals", 0, "colour", value="red"), "/goals/0/colour"),
    (
        "unknown_key_in_condition",
        set_at("steps", 2, "if", "colour", value="red"),
        "/steps/2/if/colour",
    ),
    (
        "unknown_key_on_end_step",
        set_at("steps", 5, value={"id": "thank_you", "type": "end", "next": "welcome"}),
        "/steps/5/next",
    ),
    ("missing_step_subject", drop_at("steps", 0, "subject"), "/steps/0/subject"),
    ("missing_trigger", drop_at("trigger"), "/trigger"),
    ("missing_trigger_tag", drop_at("trigger", "tag"), "/trigger/tag"),
    ("missing_step_type", drop_at("steps", 3, "type"), "/steps/3/type"),
    ("missing_condition_then", drop_at("steps", 2, "then"), "/steps/2/then"),
    ("missing_condition_if", drop_at("steps", 2, "if"), "/steps/2/if"),
    ("missing_comparison_value", drop_at("steps", 2, "if", "value"), "/steps/2/if/value"),
    ("duplicate_step_id", set_at("steps", 4, "id", value="welcome"), "/steps/4/id"),
    ("bad_step_id", set_at("steps", 5, "id", value="thank you"), "/steps/5/id"),
    ("step_id_too_long", set_at("steps", 4, "id", value="n" * 65), "/steps/4/id"),
    ("bad_goal_id", set_at("goals", 0, "id", value="pur/chased"), "/goals/0/id"),
    ("goal_id_is_a_step_id", set_at("goals", 0, "id", value="welcome"), "/goals/0/id"),
    ("dangling_next", set_at("steps", 1, "next", value="nowhere"), "/steps/1/next"),
    ("dangling_then", set_at("steps", 2, "then", value="nowhere"), "/steps/2/then"),
    ("dangling_else", set_at("steps", 2, "else", value="nowhere"), "/steps/2/else"),
    ("dangling_start", set_at("start", value="nowhere"), "/start"),
    ("dangling_goal_then", set_at("goals", 0, "then", value="nowhere"), "/goals/0/then"),
    (
        "dangling_timeout_next",
        set_at("steps", 1, value={**EVENT_WAIT, "timeout_next": "nowhere"}),
        "/steps/1/timeout_next",
    ),
    ("cycle_without_wait", set_at("steps", 3, "next", value="is_vip"), "/steps/2"),
    ("self_loop", set_at("steps", 4, "next", value="nurture"), "/steps/4"),
    (
        "wait_with_two_kinds",
        set_at("steps", 1, "until", value="2030-01-01T00:00:00Z"),
        "/steps/1",
    ),
    ("wait_with_no_kind", drop_at("steps", 1, "duration"), "/steps/1"),
    ("bad_duration", set_at("steps", 1, "duration", value="2 days"), "/steps/1/duration"),
    ("negative_duration", set_at("steps", 1, "duration", value="-5m"), "/steps/1/duration"),
    ("duration_not_a_string", set_at("steps", 1, "duration", value=172800), "/steps/1/duration"),
    (
        "bad_until",
        set_at(
            "steps", 1, value={"id": "pause", "type": "wait", "until": "tomorrow", "next": "is_vip"}
        ),
        "/steps/1/until",
    ),
    ("timeout_on_a_duration_wait", set_at("steps", 1, "timeout", value="1d"), "/steps/1/timeout"),
    (
        "timeout_next_without_timeout",
        set_at("steps", 1, value={k: v for k, v in EVENT_WAIT.items() if k != "timeout"}),
        "/steps/1/timeout_next",
    ),
    (
        "placeholder_outside_contact",
        set_at("steps", 0, "subject", value="Hi {{user.name}}"),
        "/steps/0/subject",
    ),
    (
        "unknown_contact_placeholder",
        set_at("steps", 3, "body", value="Hi {{contact.nickname}}"),
        "/steps/3/body",
    ),
    (
        "unterminated_placeholder",
        set_at("steps", 0, "body", value="Hi {{contact.email"),
        "/steps/0/body",
    ),
    ("bad_condition_field", set_at("steps", 2, "if", "field", value="age"), "/steps/2/if/field"),
    ("bad_condition_op", set_at("steps", 2, "if", "op", value="like"), "/steps/2/if/op"),
    ("bad_reenroll", set_at("trigger", "reenroll", value="sometimes"), "/trigger/reenroll"),
    (
        "update_field_bad_target",
        set_at(
            "steps",
            4,
            value={"id": "nurture", "type": "update_field", "field": "name", "value": "x"},
        ),
        "/steps/4/field",
    ),
    (
        "http_request_bad_url",
        set_at(
            "steps",
            4,
            value={"id": "nurture", "type": "http_request", "url": "ftp://x", "method": "GET"},
        ),
        "/steps/4/url",
    ),
    ("goal_without_event_or_if", drop_at("goals", 0, "event"), "/goals/0"),
    ("subject_not_a_string", set_at("steps", 0, "subject", value=5), "/steps/0/subject"),
    ("too_many_steps", more_steps(STRICT_MAX_STEPS - 6 + 1), "/steps"),
    ("too_large", set_at("steps", 5, "body", value="x" * STRICT_MAX_DEFINITION_BYTES), ""),
    ("empty_steps", set_at("steps", value=[]), "/steps"),
    ("steps_not_a_list", set_at("steps", value={"welcome": {}}), "/steps"),
    ("step_not_an_object", set_at("steps", 3, value="send_sms"), "/steps/3"),
    ("goals_not_a_list", set_at("goals", value={"id": "x"}), "/goals"),
    ("definition_is_a_list", whole([simple_definition()]), ""),
    ("definition_is_a_string", whole("trigger: manual"), ""),
    ("definition_is_null", whole(None), ""),
    ("definition_is_empty", whole({}), "/trigger"),
    ("unicode_digit_key", set_at("steps", 0, "²", value=1), "/steps/0/²"),
]


@pytest.fixture
async def strict(settings: Settings, db: Database) -> AsyncIterator[Tenant]:
    """A tenant on an app with small ``max_steps`` and ``max_definition_bytes``."""
    strict_settings = settings.model_copy(
        update={
            "max_steps": STRICT_MAX_STEPS,
            "max_definition_bytes": STRICT_MAX_DEFINITION_BYTES,
        }
    )
    app = create_app(strict_settings, db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as c:
        yield await make_tenant(db, c, "strict")


def test_the_invalid_definition_table_is_big_enough() -> None:
    assert len(INVALID_DEFINITIONS) >= 20
    assert len({name for name, _, _ in INVALID_DEFINITIONS}) == len(INVALID_DEFINITIONS)
    # The base definition is valid, so that each case has exactly one thing wrong.
    assert len(simple_definition()["steps"]) == 6 < STRICT_MAX_STEPS


@pytest.mark.parametrize(
    ("make", "pointer"),
    [pytest.param(make, pointer, id=name) for name, make, pointer in INVALID_DEFINITIONS],
)
async def test_invalid_definition_answers_422_at_its_json_path(
    strict: Tenant, make: Callable[[dict[str, Any]], Any], pointer: str
) -> None:
    wf = await create_workflow(strict)
    definition = make(copy.deepcopy(simple_definition()))
    response = await strict.request(
        "POST",
        f"{API}/workflows/{wf['id']}/versions",
        json={"definition": definition, "change_summary": "bad", "base_version": None},
    )
    body = assert_problem(response, 422, "invalid_definition")
    expected = "/definition" + pointer
    assert expected in pointers(body), f"expected {expected} in {body['errors']}"
    assert all(e["message"] for e in body["errors"]), body
    # The same through POST /workflows; neither creates anything.
    response = await strict.request(
        "POST",
        f"{API}/workflows",
        json={"name": "bad", "definition": definition, "change_summary": "bad"},
    )
    if definition is None:  # null reads as "no definition", which needs no change_summary
        body = assert_problem(response, 422, response.json()["code"])
        assert "/definition" in pointers(body), body
    else:
        body = assert_problem(response, 422, "invalid_definition")
        assert expected in pointers(body), f"expected {expected} in {body['errors']}"
    workflow = (await strict.request("GET", f"{API}/workflows/{wf['id']}")).json()
    assert workflow["version_count"] == 0 and workflow["current_version"] is None
    names = [w["name"] for w in (await strict.request("GET", f"{API}/workflows")).json()["items"]]
    assert "bad" not in names


async def test_a_definition_at_the_limits_is_accepted(strict: Tenant) -> None:
    wf = await create_workflow(strict)
    definition = more_steps(STRICT_MAX_STEPS - 6)(simple_definition())
    definition["steps"][5]["next"] = "extra_0"
    definition["steps"][6]["next"] = "extra_1"
    version = await create_version(strict, wf["id"], definition, None)
    assert version["step_count"] == STRICT_MAX_STEPS


async def test_an_unreachable_step_is_a_warning_not_an_error(tenant: Tenant) -> None:
    wf = await create_workflow(tenant)
    definition = simple_definition()
    definition["steps"].append({"id": "orphan", "type": "end"})
    version = await create_version(tenant, wf["id"], definition, None)
    warnings = version["warnings"]
    assert len(warnings) == 1, warnings
    assert warnings[0]["pointer"] == "/definition/steps/6", warnings
    assert "orphan" in warnings[0]["message"]
    # The warning stays with the version.
    again = await tenant.request("GET", f"{API}/workflows/{wf['id']}/versions/1")
    assert again.json()["warnings"] == warnings
    listed = await tenant.request("GET", f"{API}/workflows/{wf['id']}/versions")
    assert listed.json()["items"][0]["warnings"] == warnings
    # A step reached only by a goal is reachable.
    clean = await create_version(tenant, wf["id"], simple_definition(), 1)
    assert clean["warnings"] == []


# --- cursors and limits on every list ----------------------------------------------------------


@dataclass
class Lists:
    world: World
    tenant: Tenant


# Every cursor-paginated list, with how to fill its path and filters from the world. A list
# missing here fails the cursor tests, naming it.
LISTS: dict[str, Callable[[World], Call]] = {
    f"{API}/api-keys": lambda w: Call(),
    f"{API}/workflows": lambda w: Call(),
    f"{API}/workflows/{{workflow_id}}/versions": lambda w: Call(
        path={"workflow_id": w.workflow_id}
    ),
    f"{API}/audit": lambda w: Call(),
    f"{API}/contacts": lambda w: Call(),
    f"{API}/workflows/{{workflow_id}}/executions": lambda w: Call(
        path={"workflow_id": w.workflow_id}
    ),
    f"{API}/messages": lambda w: Call(),
    f"{API}/workflows/{{workflow_id}}/migrations": lambda w: Call(
        path={"workflow_id": w.workflow_id}
    ),
    f"{API}/webhooks": lambda w: Call(),
    f"{API}/webhooks/{{webhook_id}}/deliveries": lambda w: Call(path={"webhook_id": w.webhook_id}),
}


@pytest.fixture
async def lists(
    client: httpx.AsyncClient, tenant: Tenant, db: Database, settings: Settings
) -> Lists:
    """A tenant with at least two items in every list."""
    world = await build_world(tenant)
    await create_workflow(tenant, "Second")
    contact = await tenant.request("POST", f"{API}/contacts", json={"email": "two@example.com"})
    assert contact.status_code == 201, contact.text
    enrolled = await tenant.request(
        "POST",
        f"{API}/workflows/{world.workflow_id}/enrollments",
        json={"contact_ids": [contact.json()["id"]]},
    )
    assert enrolled.status_code == 201 and enrolled.json()["enrolled"] == 1, enrolled.text
    hook = await tenant.request(
        "POST", f"{API}/webhooks", json={"url": HOOK_URL, "events": ["workflow.paused"]}
    )
    assert hook.status_code == 201, hook.text
    ping = await tenant.request("POST", f"{API}/webhooks/{world.webhook_id}/test")
    assert ping.status_code == 202, ping.text
    # The worker runs the migration and sends the welcome emails: two messages in the outbox.
    worker = Worker(db, settings)
    try:
        await worker.drain()
    finally:
        await worker.sender.aclose()
    migration = await tenant.request("GET", f"{API}/migrations/{world.migration_id}")
    assert migration.json()["status"] == "completed", migration.text
    # A second migration (back to version 1), so that the migrations list has two.
    back = await tenant.request(
        "POST",
        f"{API}/workflows/{world.workflow_id}/versions/1/migrate",
        json={"from_version": 2},
    )
    assert back.status_code == 202, back.text
    return Lists(world, tenant)


async def list_routes(client: httpx.AsyncClient) -> list[str]:
    routes = await openapi_routes(client)
    paginated = sorted(
        path
        for method, path, operation in routes
        if method == "GET" and any(p["name"] == "cursor" for p in operation.get("parameters", []))
    )
    missing = [p for p in paginated if p not in LISTS]
    assert not missing, f"cursor-paginated lists missing from LISTS in test_errors.py: {missing}"
    return paginated


async def first_cursor(tenant: Tenant, path: str, call: Call) -> str:
    response = await tenant.request(
        "GET", url_of(path, call), params={**(call.params or {}), "limit": 1}
    )
    assert response.status_code == 200, f"{path}: {response.text}"
    cursor = response.json()["next_cursor"]
    assert isinstance(cursor, str) and cursor, f"{path} has fewer than two items"
    return cursor


def tampered(cursor: str, key: list[Any]) -> str:
    """``cursor`` with its sort key replaced, its filter fingerprint kept."""
    data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    data["k"] = key
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


GARBAGE_CURSORS = [
    "garbage!!",
    "",
    "=",
    "x" * 5000,
    b64(b'{"x":1}'),
    b64(b"[1,2]"),
    b64(b"null"),
    b64(b"\xff\xfe"),
    b64(b'{"k":"not a list","f":"0"}'),
    b64(b'{"k":[],"f":"0"}'),
]


async def test_a_cursor_of_another_list_is_refused_by_every_list(
    client: httpx.AsyncClient, lists: Lists
) -> None:
    paths = await list_routes(client)
    cursors = {p: await first_cursor(lists.tenant, p, LISTS[p](lists.world)) for p in paths}
    for path in paths:
        call = LISTS[path](lists.world)
        # Its own cursor works.
        response = await lists.tenant.request(
            "GET", url_of(path, call), params={**(call.params or {}), "cursor": cursors[path]}
        )
        assert response.status_code == 200, f"{path}: {response.text}"
        for other, cursor in cursors.items():
            if other == path:
                continue
            response = await lists.tenant.request(
                "GET", url_of(path, call), params={**(call.params or {}), "cursor": cursor}
            )
            body = assert_problem(
                response, 422, "invalid_cursor", f"GET {path} with a cursor of {other}"
            )
            assert body["errors"][0]["parameter"] == "cursor", body


# The lists of one workflow: a cursor made for one workflow's list is refused by another's.
WORKFLOW_LISTS = [
    f"{API}/workflows/{{workflow_id}}/versions",
    f"{API}/workflows/{{workflow_id}}/executions",
    f"{API}/workflows/{{workflow_id}}/migrations",
]


@pytest.mark.parametrize("path", WORKFLOW_LISTS, ids=lambda p: p.rsplit("/", 1)[-1])
async def test_a_cursor_of_one_workflows_list_is_refused_by_another_workflows(
    lists: Lists, path: str
) -> None:
    other = await build_world(lists.tenant, "Other")
    own = LISTS[path](lists.world)
    cursor = await first_cursor(lists.tenant, path, own)
    theirs = LISTS[path](other)
    page = await lists.tenant.request("GET", url_of(path, theirs), params={"limit": 200})
    assert page.status_code == 200 and page.json()["items"], f"{path}: {page.text}"
    response = await lists.tenant.request(
        "GET", url_of(path, theirs), params={**(theirs.params or {}), "cursor": cursor}
    )
    body = assert_problem(
        response, 422, "invalid_cursor", f"GET {path} of another workflow with its cursor"
    )
    assert body["errors"][0]["parameter"] == "cursor", body
    # On its own workflow's list the cursor still works.
    response = await lists.tenant.request(
        "GET", url_of(path, own), params={**(own.params or {}), "cursor": cursor}
    )
    assert response.status_code == 200, f"{path}: {response.text}"


async def test_garbage_and_forged_cursors_are_422_never_500(
    client: httpx.AsyncClient, lists: Lists
) -> None:
    paths = await list_routes(client)
    for path in paths:
        call = LISTS[path](lists.world)
        url = url_of(path, call)
        for cursor in GARBAGE_CURSORS:
            response = await lists.tenant.request(
                "GET", url, params={**(call.params or {}), "cursor": cursor}
            )
            assert_problem(response, 422, "invalid_cursor", f"GET {path} cursor={cursor[:30]!r}")
        real = await first_cursor(lists.tenant, path, call)
        arity = len(json.loads(base64.urlsafe_b64decode(real + "=" * (-len(real) % 4)))["k"])
        values: list[Any] = [
            10**30,
            -(10**30),
            2**31,
            -1,
            1.5,
            None,
            True,
            "x",
            "",
            [],
            {},
            "9999-12-31T23:59:59",
            "0001-01-01T00:00:00+14:00",
            "2024-01-01T00:00:00",
            str(uuid.uuid4()),
            "\u0000",
        ]
        for value in values:
            for position in range(arity):
                key = json.loads(base64.urlsafe_b64decode(real + "=" * (-len(real) % 4)))["k"]
                key[position] = value
                response = await lists.tenant.request(
                    "GET", url, params={**(call.params or {}), "cursor": tampered(real, key)}
                )
                what = f"GET {path} with a cursor key {key!r}"
                assert response.status_code in (200, 422), f"{what}: {response.text}"
                if response.status_code == 422:
                    assert_problem(response, 422, "invalid_cursor", what)
                else:
                    assert isinstance(response.json()["items"], list), what


@pytest.mark.parametrize("limit", ["0", "201", "-1", "x", "1.5", "99999999999999999999", ""])
async def test_limit_out_of_range_is_422_on_every_list(
    client: httpx.AsyncClient, lists: Lists, limit: str
) -> None:
    for path in await list_routes(client):
        call = LISTS[path](lists.world)
        response = await lists.tenant.request(
            "GET", url_of(path, call), params={**(call.params or {}), "limit": limit}
        )
        body = assert_problem(response, 422, "validation_error", f"GET {path}?limit={limit}")
        assert [e.get("parameter") for e in body["errors"]] == ["limit"], body


async def test_limits_at_the_bounds_work_on_every_list(
    client: httpx.AsyncClient, lists: Lists
) -> None:
    for path in await list_routes(client):
        call = LISTS[path](lists.world)
        for limit, expected_max in ((1, 1), (200, 200)):
            response = await lists.tenant.request(
                "GET", url_of(path, call), params={**(call.params or {}), "limit": limit}
            )
            assert response.status_code == 200, f"{path}?limit={limit}: {response.text}"
            body = response.json()
            assert set(body) >= {"items", "next_cursor"}, body
            assert 1 <= len(body["items"]) <= expected_max, f"{path}: {body}"


# --- walking lists to the end ------------------------------------------------------------------


async def walk(
    tenant: Tenant, url: str, params: dict[str, Any] | None = None, *, limit: int = 3
) -> list[dict[str, Any]]:
    """Every item of a list, page by page; checks the page sizes and the last cursor."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        query = {**(params or {}), "limit": limit}
        if cursor is not None:
            query["cursor"] = cursor
        response = await tenant.request("GET", url, params=query)
        assert response.status_code == 200, f"{url} {query}: {response.text}"
        page = response.json()
        assert len(page["items"]) <= limit
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["items"]) == limit, f"a short page with a next cursor: {page}"
    else:  # pragma: no cover - a list that never ends
        pytest.fail(f"{url} never ended")
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids)), f"{url} {params}: an item came twice"
    # One big page says the same, in the same order.
    whole_list = await tenant.request("GET", url, params={**(params or {}), "limit": 200})
    assert [i["id"] for i in whole_list.json()["items"]] == ids, f"{url} {params}: unstable order"
    assert whole_list.json()["next_cursor"] is None
    return items


async def test_walking_workflows(tenant: Tenant) -> None:
    created = [(await create_workflow(tenant, f"wf-{i}"))["id"] for i in range(7)]
    items = await walk(tenant, f"{API}/workflows")
    # Newest first.
    assert [w["id"] for w in items] == list(reversed(created))
    # Walking again gives the same; other page sizes too.
    assert [w["id"] for w in await walk(tenant, f"{API}/workflows")] == list(reversed(created))
    for limit in (1, 2, 6, 7, 8):
        items = await walk(tenant, f"{API}/workflows", limit=limit)
        assert [w["id"] for w in items] == list(reversed(created)), limit
    # A workflow created while walking does not shift the pages (keyset pagination).
    first = (await tenant.request("GET", f"{API}/workflows", params={"limit": 3})).json()
    await create_workflow(tenant, "late")
    rest = await tenant.request(
        "GET", f"{API}/workflows", params={"limit": 200, "cursor": first["next_cursor"]}
    )
    seen = [w["id"] for w in first["items"]] + [w["id"] for w in rest.json()["items"]]
    assert seen == list(reversed(created))


async def test_walking_versions_with_filters(tenant: Tenant, db: Database) -> None:
    wf = (await create_workflow(tenant))["id"]
    for n in range(1, 8):
        await create_version(tenant, wf, simple_definition(f"Subject {n}"), n - 1 or None)
    for n in (2, 4, 6):  # 2 and 4 end retired, 6 published
        published = await tenant.request("POST", f"{API}/workflows/{wf}/versions/{n}/publish")
        assert published.status_code == 200, published.text
    for n in (2, 3, 5, 7):
        tagged = await tenant.request(
            "PUT", f"{API}/workflows/{wf}/versions/{n}/tags", json={"tags": ["stable", f"v{n}"]}
        )
        assert tagged.status_code == 200, tagged.text
    # Version 1 archived (by the retention job, SPEC §7; written directly here).
    async with db.session(write=True) as session:
        version_id = (await tenant.request("GET", f"{API}/workflows/{wf}/versions/1")).json()["id"]
        await session.execute(
            update(Version)
            .where(Version.id == uuid.UUID(version_id))
            .values(status="archived", archived_at=utcnow())
        )
        await session.commit()
    url = f"{API}/workflows/{wf}/versions"

    async def numbers(params: dict[str, Any] | None = None, limit: int = 3) -> list[int]:
        return [v["number"] for v in await walk(tenant, url, params, limit=limit)]

    assert await numbers() == [7, 6, 5, 4, 3, 2]
    assert await numbers({"include_archived": "true"}) == [7, 6, 5, 4, 3, 2, 1]
    assert await numbers({"status": "draft"}, limit=2) == [7, 5, 3]
    assert await numbers({"status": "retired"}, limit=1) == [4, 2]
    assert await numbers({"status": ["retired", "published"]}, limit=2) == [6, 4, 2]
    assert await numbers({"status": "archived"}, limit=1) == [1]
    assert await numbers({"tag": "stable"}, limit=3) == [7, 5, 3, 2]
    assert await numbers({"tag": "stable", "status": "draft"}, limit=2) == [7, 5, 3]
    assert await numbers({"tag": "v5"}, limit=1) == [5]
    assert await numbers({"tag": "nothing"}) == []
    # A cursor made for one filter is refused under another.
    page = (await tenant.request("GET", url, params={"status": "draft", "limit": 1})).json()
    for params in (
        {"status": "retired"},
        {},
        {"status": "draft", "tag": "stable"},
        {"status": "draft", "include_archived": "true"},
    ):
        response = await tenant.request(
            "GET", url, params={**params, "limit": 1, "cursor": page["next_cursor"]}
        )
        assert_problem(response, 422, "invalid_cursor", f"versions {params}")
    # The order of repeated filters does not matter.
    page = (
        await tenant.request("GET", url, params={"status": ["retired", "published"], "limit": 1})
    ).json()
    response = await tenant.request(
        "GET",
        url,
        params={"status": ["published", "retired"], "limit": 1, "cursor": page["next_cursor"]},
    )
    assert response.status_code == 200, response.text


async def test_walking_the_audit_trail_with_filters(tenant: Tenant) -> None:
    workflows = [(await create_workflow(tenant, f"audited-{i}"))["id"] for i in range(7)]
    target = workflows[3]
    await create_version(tenant, target, simple_definition(), None, publish=True)
    await create_version(tenant, target, simple_definition("Two"), 1, publish=True)
    renamed = await tenant.request("PATCH", f"{API}/workflows/{target}", json={"name": "R"})
    assert renamed.status_code == 200

    everything = await walk(tenant, f"{API}/audit", limit=4)
    seqs = [e["seq"] for e in everything]
    assert seqs == sorted(seqs, reverse=True) and seqs[-1] == 1, seqs
    assert seqs == list(range(len(seqs), 0, -1)), "the account's entries are gapless"

    created = await walk(tenant, f"{API}/audit", {"action": "workflow.created"})
    assert [e["workflow_id"] for e in created] == list(reversed(workflows))

    of_target = await walk(tenant, f"{API}/audit", {"workflow_id": target}, limit=2)
    assert [e["action"] for e in of_target] == [
        "workflow.updated",
        "version.published",
        "version.created",
        "version.published",
        "version.created",
        "workflow.created",
    ]
    both = await walk(
        tenant, f"{API}/audit", {"workflow_id": target, "action": "version.created"}, limit=1
    )
    assert [e["details"]["number"] for e in both] == [2, 1]
    assert await walk(tenant, f"{API}/audit", {"action": "no.such.action"}) == []

    # A cursor of one filter is refused under another.
    page = (
        await tenant.request(
            "GET", f"{API}/audit", params={"action": "workflow.created", "limit": 1}
        )
    ).json()
    for params in ({}, {"action": "version.created"}, {"workflow_id": target}):
        response = await tenant.request(
            "GET", f"{API}/audit", params={**params, "limit": 1, "cursor": page["next_cursor"]}
        )
        assert_problem(response, 422, "invalid_cursor", f"audit {params}")
