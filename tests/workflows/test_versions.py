"""The versioning core through the API: lifecycle, immutability and the 409/412 rules."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
import weakref
from typing import Any

import httpx
import pydantic_core
import pytest
from sqlalchemy import event

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from revflow.definition import canonical_json
from revflow.models import Version, Workflow
from revflow.workflows import service as workflows_service
from revflow.workflows.repository import add_version
from tests.support.engine import Engine
from tests.support.tenants import Tenant, make_tenant
from tests.support.workflows import create_version, create_workflow, simple_definition


def versions_url(workflow_id: str, suffix: str = "") -> str:
    return f"/api/v1/workflows/{workflow_id}/versions{suffix}"


async def statuses(tenant: Tenant, workflow_id: str) -> dict[int, str]:
    response = await tenant.request(
        "GET", versions_url(workflow_id), params={"include_archived": "true"}
    )
    return {v["number"]: v["status"] for v in response.json()["items"]}


async def test_lifecycle_draft_published_retired_and_back(tenant: Tenant) -> None:
    wf = await create_workflow(tenant)
    await create_version(tenant, wf["id"], simple_definition("a"), None)
    await create_version(tenant, wf["id"], simple_definition("b"), 1)
    assert await statuses(tenant, wf["id"]) == {1: "draft", 2: "draft"}

    published = await tenant.request("POST", versions_url(wf["id"], "/1/publish"))
    assert published.status_code == 200 and published.json()["status"] == "published"
    assert published.json()["published_at"] is not None
    again = await tenant.request("POST", versions_url(wf["id"], "/1/publish"))
    assert again.status_code == 200  # publishing the current version again is a no-op

    await tenant.request("POST", versions_url(wf["id"], "/2/publish"))
    assert await statuses(tenant, wf["id"]) == {1: "retired", 2: "published"}
    workflow = (await tenant.request("GET", f"/api/v1/workflows/{wf['id']}")).json()
    assert workflow["current_version"] == 2
    assert workflow["versions_by_status"] == {"retired": 1, "published": 1}

    use_rollback = await tenant.request("POST", versions_url(wf["id"], "/1/publish"))
    assert use_rollback.status_code == 409 and use_rollback.json()["code"] == "use_rollback"

    missing_reason = await tenant.request("POST", versions_url(wf["id"], "/1/rollback"), json={})
    assert missing_reason.status_code == 422
    rolled = await tenant.request(
        "POST", versions_url(wf["id"], "/1/rollback"), json={"reason": "v2 broke the offer"}
    )
    assert rolled.status_code == 200, rolled.text
    assert await statuses(tenant, wf["id"]) == {1: "published", 2: "retired"}

    await create_version(tenant, wf["id"], simple_definition("c"), 2)
    never = await tenant.request(
        "POST", versions_url(wf["id"], "/3/rollback"), json={"reason": "x"}
    )
    assert never.status_code == 409 and never.json()["code"] == "never_published"


async def test_versions_are_immutable(tenant: Tenant) -> None:
    wf = await create_workflow(tenant)
    definition = simple_definition("original")
    v1 = await create_version(tenant, wf["id"], definition, None, publish=True)
    await create_version(tenant, wf["id"], simple_definition("changed"), 1, publish=True)
    await tenant.request("PUT", versions_url(wf["id"], "/1/tags"), json={"tags": ["stable"]})
    await tenant.request("POST", versions_url(wf["id"], "/1/rollback"), json={"reason": "r"})
    after = (await tenant.request("GET", versions_url(wf["id"], "/1"))).json()
    assert after["definition"] == definition
    assert after["content_hash"] == v1["content_hash"]
    for method in ("PUT", "PATCH", "DELETE"):
        response = await tenant.request(method, versions_url(wf["id"], "/1"), json={})
        assert response.status_code == 405, (method, response.text)


async def test_stale_base_and_unknown_base(tenant: Tenant) -> None:
    wf = await create_workflow(tenant)
    await create_version(tenant, wf["id"], simple_definition("a"), None)
    await create_version(tenant, wf["id"], simple_definition("b"), 1)
    body: dict[str, Any] = {"definition": simple_definition("c"), "change_summary": "c"}
    stale = await tenant.request("POST", versions_url(wf["id"]), json={**body, "base_version": 1})
    assert stale.status_code == 409
    assert stale.json()["code"] == "stale_base" and stale.json()["latest_version"] == 2
    null_base = await tenant.request(
        "POST", versions_url(wf["id"]), json={**body, "base_version": None}
    )
    assert null_base.status_code == 409 and null_base.json()["latest_version"] == 2
    unknown = await tenant.request("POST", versions_url(wf["id"]), json={**body, "base_version": 9})
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["pointer"] == "/base_version"
    ok = await tenant.request("POST", versions_url(wf["id"]), json={**body, "base_version": 2})
    assert ok.status_code == 201 and ok.json()["parent"] == 2


async def test_no_changes(tenant: Tenant) -> None:
    wf = await create_workflow(tenant)
    definition = simple_definition()
    await create_version(tenant, wf["id"], definition, None)
    # Key order does not matter: the hash is over canonical JSON.
    reordered = dict(reversed(list(definition.items())))
    response = await tenant.request(
        "POST",
        versions_url(wf["id"]),
        json={"definition": reordered, "change_summary": "same", "base_version": 1},
    )
    assert response.status_code == 409 and response.json()["code"] == "no_changes"
    listing = (await tenant.request("GET", versions_url(wf["id"]))).json()
    assert len(listing["items"]) == 1


async def test_version_limit(database_url: str) -> None:
    settings = Settings(database_url=database_url, max_versions=3, log_json=False)
    db = Database(database_url)
    app = create_app(settings, db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        tenant = await make_tenant(db, client)
        wf = await create_workflow(tenant)
        for n in range(3):
            await create_version(tenant, wf["id"], simple_definition(str(n)), n or None)
        response = await tenant.request(
            "POST",
            versions_url(wf["id"]),
            json={"definition": simple_definition("x"), "change_summary": "x", "base_version": 3},
        )
        assert response.status_code == 409
        assert response.json()["code"] == "version_limit"
        assert response.json()["max_versions"] == 3
    await db.dispose()


async def test_if_match(tenant: Tenant) -> None:
    wf = await create_workflow(tenant)
    etag = wf["etag"]
    body = {"definition": simple_definition(), "change_summary": "v1", "base_version": None}
    stale = await tenant.request(
        "POST", versions_url(wf["id"]), json=body, headers={"If-Match": '"nope-1"'}
    )
    assert stale.status_code == 412 and stale.json()["code"] == "etag_mismatch"
    created = await tenant.request(
        "POST", versions_url(wf["id"]), json=body, headers={"If-Match": etag}
    )
    assert created.status_code == 201
    new_etag = created.headers["ETag"]
    assert new_etag != etag
    # The old etag no longer matches; an unquoted current one does.
    old = await tenant.request(
        "POST", versions_url(wf["id"], "/1/publish"), headers={"If-Match": etag}
    )
    assert old.status_code == 412
    unquoted = await tenant.request(
        "POST", versions_url(wf["id"], "/1/publish"), headers={"If-Match": new_etag.strip('"')}
    )
    assert unquoted.status_code == 200
    got = await tenant.request("GET", f"/api/v1/workflows/{wf['id']}")
    assert got.headers["ETag"] == unquoted.headers["ETag"] == got.json()["etag"]
    # 404 comes before 412.
    missing = await tenant.request(
        "POST", versions_url(wf["id"], "/9/publish"), headers={"If-Match": '"x"'}
    )
    assert missing.status_code == 404
    renamed = await tenant.request(
        "PATCH",
        f"/api/v1/workflows/{wf['id']}",
        json={"name": "Renamed"},
        headers={"If-Match": got.json()["etag"]},
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "Renamed"


async def test_idempotent_version_creation(tenant: Tenant) -> None:
    wf = await create_workflow(tenant)
    body = {"definition": simple_definition(), "change_summary": "v1", "base_version": None}
    headers = {"Idempotency-Key": "create-v1"}
    first = await tenant.request("POST", versions_url(wf["id"]), json=body, headers=headers)
    retry = await tenant.request("POST", versions_url(wf["id"]), json=body, headers=headers)
    assert first.status_code == retry.status_code == 201
    assert first.json() == retry.json()
    assert retry.headers.get("Idempotent-Replayed") == "true"
    listing = (await tenant.request("GET", versions_url(wf["id"]))).json()
    assert len(listing["items"]) == 1
    other = await tenant.request(
        "POST",
        versions_url(wf["id"]),
        json={**body, "change_summary": "other"},
        headers=headers,
    )
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"


@pytest.mark.parametrize("idempotency_key", [None, "create-v1"])
async def test_the_answer_carries_the_definition_as_it_was_stored(
    tenant: Tenant, idempotency_key: str | None
) -> None:
    """The created version's answer holds its definition as the canonical JSON it was stored
    from (keys sorted), written as it is; one kept for a retry answers the same value."""
    wf = await create_workflow(tenant)
    definition = simple_definition()
    backwards = {key: definition[key] for key in reversed(definition)}
    backwards["steps"] = [{key: s[key] for key in reversed(s)} for s in definition["steps"]]
    body = {"definition": backwards, "change_summary": "v1", "base_version": None}
    headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
    made = await tenant.request("POST", versions_url(wf["id"]), json=body, headers=headers)
    assert made.status_code == 201, made.text
    assert made.json()["definition"] == definition
    if idempotency_key is None:
        assert b'"definition":' + canonical_json(definition) in made.content
    else:
        retry = await tenant.request("POST", versions_url(wf["id"]), json=body, headers=headers)
        assert retry.headers.get("Idempotent-Replayed") == "true"
        assert retry.json() == made.json()


@pytest.mark.parametrize("parent", ["decoded", "as text", "in the database"])
async def test_publish_in_same_transaction_and_semver(
    tenant: Tenant, parent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = await create_workflow(tenant)
    v1 = await create_version(tenant, wf["id"], simple_definition(), None, publish=True)
    assert v1["status"] == "published" and v1["semver"] == "1.0.0"
    if parent == "decoded":
        # The version this process made last is kept decoded: no JSON is read again.
        def no_decoding(text: object) -> None:
            raise AssertionError("a kept definition was decoded again")

        monkeypatch.setattr(workflows_service, "json_value", no_decoding)
    else:
        workflows_service._DECODED.clear()
    if parent == "in the database":
        # As in another process: the parent's definition is read from the database.
        workflows_service._DEFINITIONS.clear()
        workflows_service._COMMITTED.clear()
    definition = simple_definition()
    definition["steps"].append({"id": "extra", "type": "add_tag", "tag": "x"})
    v2 = await create_version(tenant, wf["id"], definition, 1)
    assert v2["semver"] == "1.1.0"
    definition["steps"] = [s for s in definition["steps"] if s["id"] != "thank_you"]
    definition["goals"] = []
    v3 = await create_version(tenant, wf["id"], definition, 2)
    assert v3["semver"] == "2.0.0"
    # Steps edited in place (the diff compares only the steps whose JSON changed).
    definition["steps"][0]["body"] += " (edited)"
    v4 = await create_version(tenant, wf["id"], definition, 3)
    assert v4["semver"] == "2.0.1"
    definition["steps"][-1] = {"id": "extra", "type": "remove_tag", "tag": "x"}
    v5 = await create_version(tenant, wf["id"], definition, 4)
    assert v5["semver"] == "3.0.0"


@pytest.mark.parametrize("with_definition", [True, False])
async def test_create_workflow_with_first_version(tenant: Tenant, with_definition: bool) -> None:
    body: dict[str, Any] = {"name": "Onboarding", "description": "new users"}
    if with_definition:
        body |= {"definition": simple_definition(), "change_summary": "first"}
    response = await tenant.request("POST", "/api/v1/workflows", json=body)
    assert response.status_code == 201, response.text
    listing = (await tenant.request("GET", versions_url(response.json()["id"]))).json()
    assert len(listing["items"]) == (1 if with_definition else 0)
    half = await tenant.request(
        "POST", "/api/v1/workflows", json={"name": "x", "definition": simple_definition()}
    )
    assert half.status_code == 422


async def test_each_listed_version_counts_its_live_executions(engine: Engine) -> None:
    wf = await engine.workflow(simple_definition("one"))
    first = [await engine.contact(email=f"l{i}@example.com") for i in range(3)]
    on_one = (await engine.enroll(wf, *first))["executions"]
    await engine.run()  # waiting two days on version 1
    await engine.new_version(wf, simple_definition("two"), 1, publish=True)
    later = [await engine.contact(email=f"m{i}@example.com") for i in range(2)]
    await engine.enroll(wf, *later)  # active (not run yet) on version 2
    await engine.new_version(wf, simple_definition("three"), 2, publish=False)
    cancelled = await engine.tenant.request("POST", f"/api/v1/executions/{on_one[0]}/cancel")
    assert cancelled.status_code == 200, cancelled.text

    async def live() -> dict[int, int]:
        response = await engine.tenant.request("GET", versions_url(wf), params={"limit": 200})
        assert response.status_code == 200, response.text
        return {v["number"]: v["live_executions"] for v in response.json()["items"]}

    assert await live() == {1: 2, 2: 2, 3: 0}
    await engine.run()  # version 2's start their two-day wait
    await engine.advance(days=3)  # every execution finishes
    assert await live() == {1: 0, 2: 0, 3: 0}


async def test_a_page_is_one_statement_of_the_listed_columns(engine: Engine) -> None:
    """Each page (first, next, filtered, empty) is one statement, which reads no definition
    and none of a version's columns that the answer does not hold."""
    wf = await engine.workflow(simple_definition("one"))
    await engine.new_version(wf, simple_definition("two"), 1, publish=True)
    await engine.new_version(wf, simple_definition("three"), 2, publish=False)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "versions" in statement:
            statements.append(statement)

    first = await engine.tenant.request("GET", versions_url(wf), params={"limit": 2})
    cursor = first.json()["next_cursor"]
    pages: list[dict[str, Any]] = [
        {"limit": 2},
        {"limit": 2, "cursor": cursor},
        {"status": ["draft", "published"], "include_archived": True},
        {"tag": "none-has-it"},
    ]
    event.listen(engine.worker.db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        for params in pages:
            statements.clear()
            response = await engine.tenant.request("GET", versions_url(wf), params=params)
            assert response.status_code == 200, response.text
            assert len(statements) == 1, statements
            for column in ("definition", "account_id AS", "trigger_type", "trigger_key"):
                assert column not in statements[0], (column, statements[0])
    finally:
        event.remove(engine.worker.db.engine.sync_engine, "before_cursor_execute", seen)
    assert [item["number"] for item in first.json()["items"]] == [3, 2]


async def test_list_versions_answers_404_before_422_and_an_empty_page(tenant: Tenant) -> None:
    """The workflow's lookup is folded into the page's query: a workflow without versions is
    an empty page, a missing one 404 — also with a cursor that would be refused (422)."""
    wf = await create_workflow(tenant)
    empty = await tenant.request("GET", versions_url(wf["id"]))
    assert empty.status_code == 200 and empty.json() == {"items": [], "next_cursor": None}
    missing = versions_url("00000000-0000-4000-8000-000000000000")
    for params in ({}, {"cursor": "not-a-cursor"}, {"tag": "x", "status": "draft"}):
        response = await tenant.request("GET", missing, params=params)
        assert response.status_code == 404, (params, response.text)
    response = await tenant.request("GET", versions_url(wf["id"]), params={"cursor": "bad"})
    assert response.status_code == 422 and response.json()["code"] == "invalid_cursor"


async def test_a_version_is_inserted_only_with_its_defaulted_columns_set() -> None:
    """``add_version`` writes the version's columns as given: one left to its default would
    be written NULL, so it refuses the version before any statement."""
    workflow = Workflow(id=uuid.uuid4(), account_id=uuid.uuid4(), revision=1)
    version = Version(account_id=workflow.account_id, workflow_id=workflow.id, number=1)
    with pytest.raises(ValueError, match="status"):
        await add_version(
            None,  # type: ignore[arg-type]
            workflow,
            version,
            definition_json=b"{}",
            updated_at=dt.datetime.now(dt.UTC),
            ending_draft_of="someone@example.com",
        )


async def test_a_versions_body_is_parsed_once(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The framework reads a create's body as the value the request's JSON check parsed, not
    by parsing the bytes again; a body the check refuses is still refused."""
    from starlette.requests import Request

    async def parsed_again(_request: Request) -> object:
        raise AssertionError("the body was parsed a second time")

    wf = await create_workflow(tenant)
    monkeypatch.setattr(Request, "json", parsed_again)
    await create_version(tenant, wf["id"], simple_definition("b"), None)
    refused = await tenant.request(
        "POST",
        versions_url(wf["id"]),
        content=b'{"definition": {"a": NaN}, "change_summary": "x", "base_version": 1}',
        headers={"content-type": "application/json"},
    )
    assert refused.status_code == 422, refused.text


async def test_a_listed_version_is_the_version_without_its_definition(tenant: Tenant) -> None:
    """A page's rows are answered as the database gives them: each listed version has exactly
    the fields, values and formats of the version read alone, less its definition."""
    wf = await create_workflow(tenant)
    unreachable = simple_definition()
    unreachable["goals"] = []  # "thank_you" is then unreachable: a warning
    await create_version(tenant, wf["id"], unreachable, None)
    await create_version(tenant, wf["id"], simple_definition("b"), 1)
    published = await tenant.request("POST", versions_url(wf["id"], "/1/publish"))
    assert published.status_code == 200, published.text
    tagged = await tenant.request(
        "PUT", versions_url(wf["id"], "/1/tags"), json={"tags": ["q4", "launch"]}
    )
    assert tagged.status_code == 200, tagged.text

    listed = await tenant.request("GET", versions_url(wf["id"]))
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [item["number"] for item in items] == [2, 1]
    for item in items:
        alone = (await tenant.request("GET", versions_url(wf["id"], f"/{item['number']}"))).json()
        del alone["definition"]
        assert item == alone
    first = items[1]
    assert sorted(first["tags"]) == ["launch", "q4"]
    assert [w["pointer"] for w in first["warnings"]] == ["/definition/steps/5"]
    assert first["published_at"] is not None and first["live_executions"] == 0


async def test_a_page_is_written_byte_for_byte_as_the_response_model_writes_it(
    tenant: Tenant,
) -> None:
    """The page's bytes are what pydantic-core writes for the versions read alone (compact,
    the model's field order, UTC as ``Z``, text unescaped), whichever encoder writes them."""
    wf = await create_workflow(tenant)
    summary = 'Ünïcödé «launch» "quoted" \\ / 😀\nsecond line\ttab'
    await create_version(tenant, wf["id"], simple_definition(), None)
    await create_version(tenant, wf["id"], simple_definition("b"), 1, summary=summary)
    await create_version(tenant, wf["id"], simple_definition("c"), 2, publish=True)
    tagged = await tenant.request("PUT", versions_url(wf["id"], "/3/tags"), json={"tags": ["q4"]})
    assert tagged.status_code == 200, tagged.text

    listed = await tenant.request("GET", versions_url(wf["id"]), params={"limit": 2})
    assert listed.status_code == 200, listed.text
    assert listed.headers["content-type"] == "application/json"
    page = listed.json()
    alone = []
    for number in (3, 2):
        version = (await tenant.request("GET", versions_url(wf["id"], f"/{number}"))).json()
        del version["definition"]
        alone.append(version)
    assert alone[1]["change_summary"] == summary
    expected = {"items": alone, "next_cursor": page["next_cursor"]}
    assert page["next_cursor"] is not None
    assert listed.content == pydantic_core.to_json(expected)


class _Document(dict[str, Any]):
    """A decoded definition that a weak reference can watch."""


async def test_an_evicted_decoded_definition_is_freed_when_the_request_next_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Freeing thousands of containers is left for the event loop's next turn (the request's
    # commit, say), not paid before the answer.
    monkeypatch.setattr(workflows_service, "_DECODED", {})
    oldest = _Document(steps=[{"id": f"s{i}"} for i in range(100)])
    watched = weakref.ref(oldest)
    workflows_service.remember_definition(uuid.uuid4(), b"{}", oldest)
    del oldest
    for _ in range(workflows_service._DECODED_KEPT):
        workflows_service.remember_definition(uuid.uuid4(), b"{}", _Document())
    assert len(workflows_service._DECODED) == workflows_service._DECODED_KEPT
    assert watched() is not None  # evicted, not freed yet
    await asyncio.sleep(0)
    assert watched() is None
