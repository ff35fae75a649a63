"""The typed client (``revflow.client``) against the real application: every route of
``/openapi.json`` has a method, answers come back typed, problems as typed exceptions."""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from revflow.app import create_app
from revflow.client import AsyncClient, endpoints, errors
from revflow.client.core import Call, Plan, Request, flow
from revflow.config import Settings
from revflow.db import Database
from tests.support.routes import openapi_routes
from tests.support.tenants import Tenant
from tests.support.workflows import simple_definition


@pytest.fixture
async def api(settings: Settings, db: Database, tenant: Tenant) -> AsyncIterator[AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(settings, db))
    async with AsyncClient("http://revflow.test", tenant.key, transport=transport) as client:
        yield client


async def test_every_route_of_the_openapi_document_has_a_method(
    client: httpx.AsyncClient,
) -> None:
    routes = {(method, path) for method, path, _ in await openapi_routes(client)}
    covered = {e.route for e in endpoints().values()}
    assert routes - covered == set(), "routes without a client method"
    assert covered - routes == set(), "client methods of routes the API does not have"


def _sample(parameter: inspect.Parameter) -> Any:
    annotation = str(parameter.annotation)
    if annotation.startswith("int"):
        return 3
    if annotation.startswith(("Mapping", "dict")):
        return {}
    if annotation.startswith(("Sequence", "list")):
        return ["x"]
    return "x"


def test_every_method_calls_the_route_it_declares() -> None:
    for name, endpoint in endpoints().items():
        required = {
            p.name: _sample(p)
            for p in list(inspect.signature(endpoint.plan).parameters.values())[1:]
            if p.default is inspect.Parameter.empty
        }
        call = next(endpoint.plan(object(), **required))
        assert isinstance(call, Call)
        assert (call.method, call.template) == endpoint.route, name
        assert "{" not in call.url, name


async def test_versions_round_trip_with_typed_answers(api: AsyncClient) -> None:
    workflow = await api.create_workflow("Client welcome", description="typed")
    assert workflow.current_version is None and workflow.etag
    first = await api.create_version(
        workflow.id, simple_definition(), "first", base_version=None, publish=True
    )
    assert (first.number, first.status, first.semver) == (1, "published", "1.0.0")
    changed = simple_definition()
    changed["steps"] = [s for s in changed["steps"] if s["id"] != "nurture"]
    changed["steps"][2]["else"] = "vip_offer"
    second = await api.create_version(workflow.id, changed, "drop nurture", base_version=1)
    assert second.semver == "2.0.0"

    assert (await api.find_workflow("Client welcome")).id == workflow.id
    assert (await api.find_workflow(workflow.id)).name == "Client welcome"
    latest = await api.latest_version(workflow.id)
    assert latest is not None and latest.number == 2 and latest.definition == changed

    comparison = await api.compare_versions(workflow.id, 1, 2)
    assert comparison.suggested_bump == "major"
    assert [(b.step, b.executions_affected) for b in comparison.breaking] == [("nurture", 0)]
    text = await api.compare_versions_text(workflow.id, 1, 2)
    assert text.startswith("--- v1 (1.0.0)\n+++ v2 (2.0.0)\n")

    page = await api.list_versions(workflow.id, limit=1)
    assert [v.number for v in page.items] == [2] and page.next_cursor
    assert "properties" in await api.definition_schema()
    stats = await api.version_stats(workflow.id, 1)
    assert stats.total == 0 and stats.by_step == {}


async def test_problems_become_typed_exceptions(api: AsyncClient, tenant: Tenant) -> None:
    workflow = await api.create_workflow("Client problems")
    await api.create_version(workflow.id, simple_definition(), "first", base_version=None)
    await api.create_version(workflow.id, simple_definition("Two"), "second", base_version=1)

    with pytest.raises(errors.StaleBase) as stale:
        await api.create_version(workflow.id, simple_definition("Three"), "x", base_version=1)
    assert stale.value.status == 409 and stale.value.code == "stale_base"
    assert stale.value.latest_version == 2

    with pytest.raises(errors.NoChanges):
        await api.create_version(workflow.id, simple_definition("Two"), "same", base_version=2)

    broken = simple_definition()
    broken["start"] = "nowhere"
    with pytest.raises(errors.ValidationError) as invalid:
        await api.create_version(workflow.id, broken, "broken", base_version=2)
    assert invalid.value.code == "invalid_definition"
    assert any(e["pointer"] == "/definition/start" for e in invalid.value.errors)

    with pytest.raises(errors.NotFound):
        await api.get_version(workflow.id, 99)
    with pytest.raises(errors.NotFound):
        await api.find_workflow("no such workflow")

    await api.save_draft(workflow.id, {"half": 1}, base_version=2)
    with pytest.raises(errors.StaleDraft) as draft:
        await api.save_draft(workflow.id, {"half": 2}, base_version=2)
    assert draft.value.current is not None and draft.value.current["revision"] == 1

    viewer = await tenant.key_for("viewer")
    async with AsyncClient(api.url, viewer, transport=api.http._transport) as read_only:  # type: ignore[arg-type]
        with pytest.raises(errors.Forbidden):
            await read_only.create_workflow("nope")
    async with AsyncClient(api.url, "rf_wrong", transport=api.http._transport) as nobody:  # type: ignore[arg-type]
        with pytest.raises(errors.Unauthorized) as unauthorized:
            await nobody.list_workflows()
    assert unauthorized.value.problem["status"] == 401


async def test_an_unreachable_server_is_one_error() -> None:
    async with AsyncClient("http://127.0.0.1:9", "k", timeout=2) as api:
        with pytest.raises(errors.Unreachable) as failure:
            await api.list_workflows()
    assert "127.0.0.1:9" in failure.value.detail


async def test_webhook_subscriptions_round_trip_with_typed_answers(api: AsyncClient) -> None:
    # A public address written as an IP: the egress policy needs no name resolution for it.
    created = await api.create_webhook(
        "https://93.184.216.34/hooks", ["version.published"], description="crm"
    )
    assert created.secret is not None and created.secret.startswith("whsec_")
    fetched = await api.get_webhook(created.id)
    assert (fetched.url, fetched.events, fetched.secret) == (
        "https://93.184.216.34/hooks",
        ["version.published"],
        None,
    )
    changed = await api.update_webhook(created.id, events=["canary.aborted"], enabled=False)
    assert (changed.events, changed.enabled) == (["canary.aborted"], False)
    rotated = await api.rotate_webhook_secret(created.id)
    assert rotated.secret not in (None, created.secret)
    assert [w.id for w in (await api.list_webhooks()).items] == [created.id]
    assert (await api.list_deliveries(created.id)).items == []
    await api.delete_webhook(created.id)
    with pytest.raises(errors.NotFound):
        await api.get_webhook(created.id)


async def test_a_simulation_comes_back_typed(api: AsyncClient) -> None:
    workflow = await api.create_workflow(
        "Client simulation", definition=simple_definition(), change_summary="first"
    )
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    contact = await api.create_contact(email="ada@example.com", fields={"first_name": "Ada"})
    run = await api.simulate(
        workflow.id,
        1,
        contact_id=contact.id,
        start=start,
        until="10d",
        timeline=[{"after": "1d", "add_tags": ["vip"]}, {"after": "3d", "name": "purchase"}],
    )
    assert [(e.step, e.result) for e in run.path][3:5] == [
        ("is_vip", "branch"),
        ("vip_offer", "skipped"),
    ]
    # The purchase comes after the execution finished (no phone for the VIP offer's SMS).
    assert run.goals == []
    assert [m.subject for m in run.messages] == ["Hi Ada"]
    assert (run.final.status, run.stopped_reason, run.until) == (
        "completed",
        "finished",
        start + dt.timedelta(days=10),
    )
    assert run.final.contact["tags"] == ["vip"]
    with pytest.raises(errors.ValidationError) as invalid:
        await api.simulate(workflow.id, 1, contact_id=contact.id, contact={"email": "x@y.z"})
    assert [e["pointer"] for e in invalid.value.errors] == ["/contact"]


def test_a_plan_of_several_calls_names_each_route() -> None:
    @flow
    def unnamed(owner: object) -> Plan[None]:
        yield Request(path={"workflow_id": "w"})

    with pytest.raises(TypeError, match="yields Calls"):
        next(unnamed.plan(object()))
