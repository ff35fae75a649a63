"""Hostile input never answers 5xx (both databases): NUL characters, lone surrogates, NaN,
Infinity, 1e400, integers past every column's range, deep nesting — in every body field and
query parameter of every route — each answered by a problem document naming where."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.routes import ROUTES, Call, World, build_world, openapi_routes, url_of
from tests.support.tenants import Tenant

# Raw JSON texts: several are not what json.dumps would ever write (NaN, 1e400, "\ud800").
HOSTILE_JSON = [
    '"a\\u0000b"',
    '"\\ud800"',
    '"x\\udfff"',
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    str(2**31),
    str(2**63),
    str(10**40),
    "-1",
    "0",
    '""',
    '"' + "x" * 5000 + '"',
    "[" * 300 + "]" * 300,
    '{"a":' * 300 + "1" + "}" * 300,
    "true",
    "null",
    "{}",
    "[]",
]
HOSTILE_QUERY = [
    "a\x00b",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    str(2**31),
    str(2**63),
    "-1",
    "NaN",
    "x" * 3000,
    "\ud800".encode("utf-8", "surrogatepass").decode("latin-1"),
]


def with_value(body: Any, path: list[str | int], raw: str) -> str:
    """``body`` as JSON text with the value at ``path`` replaced by the raw JSON ``raw``."""
    marker = "__revflow_hostile__"
    if not path:
        return raw
    copy = json.loads(json.dumps(body))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = marker
    return json.dumps(copy).replace(f'"{marker}"', raw)


def paths_of(value: Any, prefix: list[str | int] | None = None) -> list[list[str | int]]:
    """Every path into ``value``: its keys and items, at any depth (and new keys too)."""
    prefix = prefix or []
    found: list[list[str | int]] = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths_of(child, [*prefix, key])
        found.append([*prefix, "unexpected"])
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths_of(child, [*prefix, index])
    return found


@pytest.fixture
async def world_and_routes(
    client: httpx.AsyncClient, tenant: Tenant
) -> tuple[World, list[tuple[str, str, dict[str, Any]]]]:
    return await build_world(tenant, "Hostile"), await openapi_routes(client)


def _key(tenant: Tenant, method: str, path: str) -> str:
    return "operator-secret" if ROUTES[(method, path)].role == "operator" else tenant.key


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_hostile_bodies_and_queries_never_answer_5xx(
    client: httpx.AsyncClient,
    tenant: Tenant,
    world_and_routes: tuple[World, list[tuple[str, str, dict[str, Any]]]],
    data: st.DataObject,
) -> None:
    world, routes = world_and_routes
    method, path, operation = data.draw(st.sampled_from(routes), label="route")
    call: Call = ROUTES[(method, path)].fill(world)
    headers = {"Authorization": f"Bearer {_key(tenant, method, path)}"}
    url = url_of(path, call)
    if "requestBody" in operation and call.json is not None:
        where = data.draw(st.sampled_from([[], *paths_of(call.json)]), label="where")
        raw = data.draw(st.sampled_from(HOSTILE_JSON), label="value")
        response = await client.request(
            method,
            url,
            content=with_value(call.json, where, raw).encode("utf-8", "surrogatepass"),
            headers={**headers, "Content-Type": "application/json"},
            params=call.params,
        )
    else:
        names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
        if not names:
            return
        name = data.draw(st.sampled_from(names), label="parameter")
        value = data.draw(st.sampled_from(HOSTILE_QUERY), label="value")
        response = await client.request(
            method, url, params={**(call.params or {}), name: value}, headers=headers
        )
    assert response.status_code < 500, (method, path, response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json", response.text
