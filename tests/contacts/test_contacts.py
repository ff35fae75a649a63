"""The contacts API: create, read, list, change, upsert, erase, idempotent POSTs (SPEC §4)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx

from revflow.audit.service import verify_account
from tests.support.engine import Engine
from tests.support.tenants import make_tenant

CONTACT_KEYS = {
    "id",
    "external_id",
    "email",
    "phone",
    "fields",
    "tags",
    "created_at",
}


async def request(engine: Engine, method: str, url: str, **kwargs: Any) -> httpx.Response:
    return await engine.tenant.request(method, url, **kwargs)


async def ok(engine: Engine, method: str, url: str, status: int = 200, **kwargs: Any) -> Any:
    response = await request(engine, method, url, **kwargs)
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["type"] == f"urn:revflow:problem:{code}"
    return body


async def list_all(engine: Engine, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = await ok(engine, "GET", "/api/v1/contacts", params=query)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


# --- create, get ------------------------------------------------------------------------------


async def test_create_and_get(engine: Engine) -> None:
    response = await request(
        engine,
        "POST",
        "/api/v1/contacts",
        json={
            "external_id": "crm-1",
            "email": "ada@example.com",
            "phone": "+15550001",
            "fields": {"first_name": "Ada", "score": 3, "nested": {"a": [1, 2]}},
            "tags": ["lead", "vip", "lead"],
        },
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) >= CONTACT_KEYS
    assert response.headers["location"] == f"/api/v1/contacts/{created['id']}"
    assert {k: created[k] for k in CONTACT_KEYS - {"id", "created_at"}} == {
        "external_id": "crm-1",
        "email": "ada@example.com",
        "phone": "+15550001",
        "fields": {"first_name": "Ada", "score": 3, "nested": {"a": [1, 2]}},
        "tags": ["lead", "vip"],
    }
    assert await ok(engine, "GET", f"/api/v1/contacts/{created['id']}") == created

    empty = await ok(engine, "POST", "/api/v1/contacts", 201, json={})
    assert (empty["email"], empty["phone"], empty["external_id"]) == (None, None, None)
    assert (empty["fields"], empty["tags"]) == ({}, [])


async def test_missing_and_foreign_contacts_answer_404(engine: Engine) -> None:
    problem(await request(engine, "GET", f"/api/v1/contacts/{uuid.uuid4()}"), 404, "not_found")
    problem(await request(engine, "GET", "/api/v1/contacts/not-a-uuid"), 404, "not_found")
    other = await make_tenant(engine.worker.db, engine.tenant.client, "other")
    foreign = (await other.request("POST", "/api/v1/contacts", json={"email": "o@x.com"})).json()
    url = f"/api/v1/contacts/{foreign['id']}"
    problem(await request(engine, "GET", url), 404, "not_found")
    problem(await request(engine, "PATCH", url, json={"add_tags": ["x"]}), 404, "not_found")
    problem(await request(engine, "DELETE", url), 404, "not_found")
    assert (await other.request("GET", url)).json()["tags"] == []


async def test_invalid_bodies_answer_422(engine: Engine) -> None:
    bad = await request(engine, "POST", "/api/v1/contacts", json={"emali": "typo@example.com"})
    assert bad.status_code == 422
    person = await engine.contact()
    bad = await request(engine, "PATCH", f"/api/v1/contacts/{person}", json={"tags": ["x"]})
    assert bad.status_code == 422
    bad = await request(engine, "POST", "/api/v1/contacts", json={"tags": [""]})
    assert bad.status_code == 422


# --- list -------------------------------------------------------------------------------------


async def test_list_is_newest_first_with_cursor_pagination(engine: Engine) -> None:
    ids = []
    for i in range(5):
        ids.append(await engine.contact(email=f"p{i}@example.com"))
        engine.clock.advance(dt.timedelta(seconds=1))
    first = await ok(engine, "GET", "/api/v1/contacts", params={"limit": 2})
    assert [c["id"] for c in first["items"]] == [ids[4], ids[3]]
    assert first["next_cursor"]
    second = await ok(
        engine, "GET", "/api/v1/contacts", params={"limit": 2, "cursor": first["next_cursor"]}
    )
    assert [c["id"] for c in second["items"]] == [ids[2], ids[1]]
    third = await ok(
        engine, "GET", "/api/v1/contacts", params={"limit": 2, "cursor": second["next_cursor"]}
    )
    assert [c["id"] for c in third["items"]] == [ids[0]]
    assert third["next_cursor"] is None
    assert [c["id"] for c in await list_all(engine, limit=1)] == ids[::-1]
    assert [c["id"] for c in await list_all(engine, limit=200)] == ids[::-1]


async def test_list_with_equal_creation_times_is_stable(engine: Engine) -> None:
    ids = {await engine.contact() for _ in range(7)}
    pages = [c["id"] for c in await list_all(engine, limit=3)]
    assert len(pages) == 7 and set(pages) == ids
    assert pages == [c["id"] for c in await list_all(engine, limit=200)]


async def test_list_filters_by_tag_and_email(engine: Engine) -> None:
    vips = []
    for i in range(6):
        tags = ["vip"] if i % 2 == 0 else ["other"]
        cid = await engine.contact(email=f"f{i}@example.com", tags=tags)
        if i % 2 == 0:
            vips.append(cid)
        engine.clock.advance(dt.timedelta(seconds=1))
    assert [c["id"] for c in await list_all(engine, tag="vip", limit=2)] == vips[::-1]
    assert [c["id"] for c in await list_all(engine, tag="vip", limit=1)] == vips[::-1]
    assert await list_all(engine, tag="nobody") == []
    found = await ok(engine, "GET", "/api/v1/contacts", params={"email": "f3@example.com"})
    assert [c["email"] for c in found["items"]] == ["f3@example.com"]
    both = await ok(
        engine, "GET", "/api/v1/contacts", params={"email": "f3@example.com", "tag": "vip"}
    )
    assert both["items"] == []


async def test_list_rejects_bad_limits_and_cursors(engine: Engine) -> None:
    for _ in range(3):
        await engine.contact(tags=["t"])
    for limit in (0, 201):
        response = await request(engine, "GET", "/api/v1/contacts", params={"limit": limit})
        assert response.status_code == 422
    malformed = await request(engine, "GET", "/api/v1/contacts", params={"cursor": "%%%"})
    assert malformed.status_code == 422
    page = await ok(engine, "GET", "/api/v1/contacts", params={"limit": 1, "tag": "t"})
    other_filters = await request(
        engine, "GET", "/api/v1/contacts", params={"limit": 1, "cursor": page["next_cursor"]}
    )
    assert other_filters.status_code == 422


# --- patch ------------------------------------------------------------------------------------


async def test_patch_merges_fields_and_changes_tags(engine: Engine) -> None:
    person = await engine.contact(
        email="a@example.com", phone="+1", fields={"a": 1, "b": 2}, tags=["x", "y"]
    )
    url = f"/api/v1/contacts/{person}"
    answer = await ok(
        engine,
        "PATCH",
        url,
        json={
            "email": "b@example.com",
            "fields": {"b": 3, "c": {"deep": True}},
            "add_tags": ["z", "x"],
            "remove_tags": ["y", "absent"],
        },
    )
    assert answer["email"] == "b@example.com" and answer["phone"] == "+1"
    assert answer["fields"] == {"a": 1, "b": 3, "c": {"deep": True}}
    assert answer["tags"] == ["x", "z"]
    assert await ok(engine, "GET", url) == answer
    again = await ok(engine, "PATCH", url, json={"phone": "+2"})
    assert again["phone"] == "+2" and again["fields"] == answer["fields"]
    assert again["tags"] == ["x", "z"] and again["email"] == "b@example.com"
    assert await ok(engine, "PATCH", url, json={}) == again


# --- upsert by external id --------------------------------------------------------------------


async def test_upsert_by_external_id(engine: Engine) -> None:
    created_wf = await engine.workflow(
        {
            "trigger": {"type": "contact_created"},
            "steps": [{"id": "hi", "type": "add_tag", "tag": "welcomed"}],
        }
    )
    url = "/api/v1/contacts/by-external-id/crm-42"
    first = await request(
        engine, "PUT", url, json={"email": "u@example.com", "fields": {"a": 1}, "tags": ["t1"]}
    )
    assert first.status_code == 201, first.text
    made = first.json()
    assert (made["external_id"], made["email"], made["fields"], made["tags"]) == (
        "crm-42",
        "u@example.com",
        {"a": 1},
        ["t1"],
    )
    second = await request(
        engine, "PUT", url, json={"phone": "+1555", "fields": {"b": 2}, "tags": ["t2"]}
    )
    assert second.status_code == 200, second.text
    updated = second.json()
    assert updated["id"] == made["id"]
    assert updated["email"] == "u@example.com" and updated["phone"] == "+1555"
    assert updated["fields"] == {"a": 1, "b": 2}
    assert updated["tags"] == ["t2"]
    same = await request(engine, "PUT", url, json={})
    assert same.status_code == 200 and same.json()["tags"] == ["t2"]
    # Only the creation enrolled into the contact_created workflow.
    executions = await engine.executions(created_wf)
    assert [e["contact_id"] for e in executions] == [made["id"]]


async def test_external_id_is_unique_per_account(engine: Engine) -> None:
    await engine.contact(external_id="dup")
    taken = await request(engine, "POST", "/api/v1/contacts", json={"external_id": "dup"})
    body = problem(taken, 409, "external_id_taken")
    assert "dup" in body["detail"]
    upserted = await request(engine, "PUT", "/api/v1/contacts/by-external-id/dup", json={})
    assert upserted.status_code == 200
    # Another account may use the same external id.
    other = await make_tenant(engine.worker.db, engine.tenant.client, "other")
    theirs = await other.request("POST", "/api/v1/contacts", json={"external_id": "dup"})
    assert theirs.status_code == 201, theirs.text
    assert len(await list_all(engine)) == 1


# --- erasure ----------------------------------------------------------------------------------


async def audit_state(engine: Engine) -> tuple[bool, int]:
    async with engine.worker.db.session() as session:
        result = await verify_account(session, uuid.UUID(engine.tenant.account_id))
    return result.ok, result.entries


async def test_delete_erases_the_contact(engine: Engine) -> None:
    wf = await engine.workflow(
        {
            "trigger": {"type": "manual"},
            "steps": [
                {
                    "id": "hello",
                    "type": "send_email",
                    "subject": "Hi {{contact.fields.first_name}}",
                    "body": "Dear {{contact.email}}",
                    "next": "text",
                },
                {"id": "text", "type": "send_sms", "body": "sms", "next": "pause"},
                {"id": "pause", "type": "wait", "duration": "3d", "next": "bye"},
                {"id": "bye", "type": "send_email", "subject": "bye", "body": "b"},
            ],
        }
    )
    person = await engine.contact(
        external_id="crm-7",
        email="erase@example.com",
        phone="+15557777",
        fields={"first_name": "Eve"},
        tags=["t"],
    )
    keeper = await engine.contact(email="keep@example.com")
    enrolled = await engine.enroll(wf, person, keeper)
    erased_ex, kept_ex = enrolled["executions"]
    await engine.run()
    assert len(await engine.messages(contact_id=person)) == 2
    audit_before = await audit_state(engine)
    assert audit_before[0]

    response = await request(engine, "DELETE", f"/api/v1/contacts/{person}")
    assert response.status_code == 204 and response.content == b""

    problem(await request(engine, "GET", f"/api/v1/contacts/{person}"), 404, "not_found")
    problem(await request(engine, "DELETE", f"/api/v1/contacts/{person}"), 404, "not_found")
    patched = await request(engine, "PATCH", f"/api/v1/contacts/{person}", json={"fields": {}})
    problem(patched, 404, "not_found")
    assert [c["id"] for c in await list_all(engine)] == [keeper]

    ex = await engine.execution(erased_ex)
    assert ex["status"] == "cancelled"
    assert ex["wake_at"] is None and ex["finished_at"] is not None
    assert ex["history"][-1]["step"] == "pause"
    assert ex["history"][-1]["result"] == "cancelled"
    assert ex["history"][-1]["detail"] == {"reason": "contact erased"}
    assert (await engine.execution(kept_ex))["status"] == "waiting"

    messages = await engine.messages(contact_id=person)
    assert len(messages) == 2
    for message in messages:
        assert (message["to"], message["subject"], message["body"]) == (None, None, None)
        assert message["execution_id"] == erased_ex
    kept = await engine.messages(contact_id=keeper)
    assert [m["to"] for m in kept] == ["keep@example.com"]

    # Erasure is no change to a workflow: no audit entry, and the chain still verifies.
    assert await audit_state(engine) == audit_before
    audit = await ok(engine, "GET", "/api/v1/audit", params={"limit": 200})
    assert "erase@example.com" not in str(audit) and "Eve" not in str(audit)

    await engine.advance(days=4)
    assert [h["result"] for h in (await engine.execution(erased_ex))["history"]][-1] == (
        "cancelled"
    )
    assert len(await engine.messages(contact_id=person)) == 2

    # The erased contact can be enrolled or sent events no more; its external id is free.
    answer = await engine.enroll(wf, person)
    assert answer["skipped"] == [{"contact_id": person, "reason": "contact_not_found"}]
    event = await request(
        engine, "POST", "/api/v1/events", json={"contact_id": person, "name": "x"}
    )
    problem(event, 404, "not_found")
    fresh = await request(engine, "PUT", "/api/v1/contacts/by-external-id/crm-7", json={})
    assert fresh.status_code == 201 and fresh.json()["id"] != person


# --- idempotency ------------------------------------------------------------------------------


async def test_idempotent_contact_creation(engine: Engine) -> None:
    body = {"email": "idem@example.com", "tags": ["a"]}
    headers = {"Idempotency-Key": "create-1"}
    first = await request(engine, "POST", "/api/v1/contacts", json=body, headers=headers)
    assert first.status_code == 201, first.text
    retry = await request(engine, "POST", "/api/v1/contacts", json=body, headers=headers)
    assert retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers.get("idempotent-replayed") == "true"
    assert retry.headers["location"] == first.headers["location"]
    assert len(await list_all(engine)) == 1
    other = await request(
        engine, "POST", "/api/v1/contacts", json={"email": "x@example.com"}, headers=headers
    )
    problem(other, 422, "idempotency_key_reused")
    assert len(await list_all(engine)) == 1
    fresh = await request(
        engine, "POST", "/api/v1/contacts", json=body, headers={"Idempotency-Key": "create-2"}
    )
    assert fresh.status_code == 201 and fresh.json()["id"] != first.json()["id"]


async def test_idempotent_events(engine: Engine) -> None:
    wf = await engine.workflow(
        {
            "trigger": {"type": "event", "event": "bought"},
            "steps": [{"id": "tag", "type": "add_tag", "tag": "buyer"}],
        }
    )
    person = await engine.contact()
    body = {"contact_id": person, "name": "bought", "data": {"amount": 10}}
    headers = {"Idempotency-Key": "event-1"}
    first = await request(engine, "POST", "/api/v1/events", json=body, headers=headers)
    assert first.status_code == 202, first.text
    assert len(first.json()["enrolled"]) == 1
    await engine.run()  # finished: a second real event would enroll the contact again
    retry = await request(engine, "POST", "/api/v1/events", json=body, headers=headers)
    assert retry.status_code == 202
    assert retry.json() == first.json()
    assert len(await engine.executions(wf)) == 1
    changed = {**body, "data": {"amount": 11}}
    problem(
        await request(engine, "POST", "/api/v1/events", json=changed, headers=headers),
        422,
        "idempotency_key_reused",
    )
    assert len(await engine.executions(wf)) == 1
    again = await request(engine, "POST", "/api/v1/events", json=body)
    assert again.status_code == 202 and len(again.json()["enrolled"]) == 1
    assert len(await engine.executions(wf)) == 2
