"""Canary publishing (SPEC §6b, §4 publish with ``canary_percent``, canary promote / abort).

A canary version gets ``canary_percent`` % of new enrollments, chosen sticky per contact; at most
one runs per workflow; promote makes it current, abort (by an operator, by a rollback, or
automatically when its failure rate passes ``canary_max_failure_rate`` after
``canary_min_executions`` finished) stops routing to it while its executions run on, on it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from revflow.db import utcnow
from revflow.executions.enrollment import in_canary
from revflow.models import Contact
from tests.support.engine import Engine, EngineFactory, WorkflowEngine
from tests.support.processes import free_port
from tests.support.workflows import manual_workflow


def current_definition() -> dict[str, Any]:
    return manual_workflow(
        {"id": "hello", "type": "send_email", "subject": "Hello", "body": "b", "next": "pause"},
        {"id": "pause", "type": "wait", "duration": "1d"},
    )


def canary_definition() -> dict[str, Any]:
    return manual_workflow(
        {"id": "hello", "type": "send_email", "subject": "Hi!", "body": "b", "next": "pause"},
        {"id": "pause", "type": "wait", "duration": "1d", "next": "canary_only"},
        {"id": "canary_only", "type": "add_tag", "tag": "saw-canary"},
    )


def wf_url(workflow_id: str) -> str:
    return f"/api/v1/workflows/{workflow_id}"


async def post(e: Engine, url: str, body: Any = None) -> Any:
    response = await e.tenant.request("POST", url, json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def get(e: Engine, url: str, **params: Any) -> Any:
    response = await e.tenant.request("GET", url, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def with_canary(
    e: Engine,
    percent: int = 30,
    current: dict[str, Any] | None = None,
    canary: dict[str, Any] | None = None,
) -> str:
    """A workflow whose version 1 is current and version 2 the canary."""
    workflow_id = await e.workflow(current or current_definition())
    number = await e.new_version(workflow_id, canary or canary_definition(), 1, publish=False)
    assert number == 2
    answer = await post(e, f"{wf_url(workflow_id)}/versions/2/publish", {"canary_percent": percent})
    assert answer["status"] == "canary"
    return workflow_id


async def statuses(e: Engine, workflow_id: str) -> dict[int, str]:
    page = await get(e, f"{wf_url(workflow_id)}/versions", include_archived="true")
    return {v["number"]: v["status"] for v in page["items"]}


async def versions_of(e: Engine, workflow_id: str, **params: Any) -> dict[str, int]:
    """contact id → version of its executions (of the given filters)."""
    return {x["contact_id"]: x["version"] for x in await e.executions(workflow_id, **params)}


async def audit(e: Engine, action: str, workflow_id: str) -> list[dict[str, Any]]:
    page = await get(e, "/api/v1/audit", action=action, workflow_id=workflow_id, limit=200)
    items: list[dict[str, Any]] = page["items"]
    return items


async def sided_contacts(
    e: Engine, workflow_id: str, percent: int, canary: int, current: int, **fields: Any
) -> tuple[list[str], list[str]]:
    """New contacts, ``canary`` of them on the canary's side and ``current`` on the other."""
    wanted: dict[bool, list[str]] = {True: [], False: []}
    while len(wanted[True]) < canary or len(wanted[False]) < current:
        contact = await e.contact(**fields)
        side = in_canary(uuid.UUID(workflow_id), uuid.UUID(contact), percent)
        if len(wanted[side]) < (canary if side else current):
            wanted[side].append(contact)
    return wanted[True], wanted[False]


# --- publishing a canary ----------------------------------------------------------------------


async def test_publish_with_canary_percent_makes_the_version_the_canary(engine: Engine) -> None:
    workflow_id = await engine.workflow(current_definition())
    await engine.new_version(workflow_id, canary_definition(), 1, publish=False)
    before = await get(engine, wf_url(workflow_id))
    assert before["canary"] is None

    for bad in (0, 100, -5, "half"):
        refused = await engine.tenant.request(
            "POST", f"{wf_url(workflow_id)}/versions/2/publish", json={"canary_percent": bad}
        )
        assert refused.status_code == 422, (bad, refused.text)

    answer = await post(engine, f"{wf_url(workflow_id)}/versions/2/publish", {"canary_percent": 30})
    assert answer["status"] == "canary" and answer["number"] == 2
    workflow = await get(engine, wf_url(workflow_id))
    assert workflow["canary"] == {"version": 2, "percent": 30}
    assert workflow["current_version"] == 1
    assert workflow["etag"] != before["etag"]
    assert await statuses(engine, workflow_id) == {1: "published", 2: "canary"}
    started = await audit(engine, "canary.started", workflow_id)
    assert [s["details"] for s in started] == [{"number": 2, "percent": 30, "current": 1}]


async def test_a_canary_needs_a_current_version(engine: Engine) -> None:
    workflow_id = await engine.workflow(current_definition(), publish=False)
    refused = await engine.tenant.request(
        "POST", f"{wf_url(workflow_id)}/versions/1/publish", json={"canary_percent": 30}
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "not_published"
    assert (await get(engine, wf_url(workflow_id)))["canary"] is None


async def test_publishing_another_version_while_a_canary_runs_is_refused(engine: Engine) -> None:
    workflow_id = await with_canary(engine)
    url = wf_url(workflow_id)
    third = canary_definition()
    third["steps"][0]["subject"] = "Third"
    assert await engine.new_version(workflow_id, third, 2, publish=False) == 3
    etag = (await get(engine, url))["etag"]

    for payload in (None, {"canary_percent": 10}):
        refused = await engine.tenant.request("POST", f"{url}/versions/3/publish", json=payload)
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "canary_active"
        assert refused.json()["canary_version"] == 2
    # A version created with publish: true is refused as a whole (it is not created).
    fourth = canary_definition()
    fourth["steps"][0]["subject"] = "Fourth"
    created = await engine.tenant.request(
        "POST",
        f"{url}/versions",
        json={
            "definition": fourth,
            "change_summary": "four",
            "base_version": 3,
            "publish": True,
        },
    )
    assert created.status_code == 409 and created.json()["code"] == "canary_active"
    workflow = await get(engine, url)
    assert workflow["version_count"] == 3 and workflow["etag"] == etag
    assert await statuses(engine, workflow_id) == {1: "published", 2: "canary", 3: "draft"}
    # Publishing the current version again stays a no-op.
    assert (await post(engine, f"{url}/versions/1/publish"))["status"] == "published"


# --- routing ----------------------------------------------------------------------------------


async def _bulk_contacts(e: WorkflowEngine, count: int) -> list[str]:
    """``count`` contacts written straight to the database (they are not what is tested)."""
    ids = [uuid.uuid4() for _ in range(count)]
    account = uuid.UUID(e.tenant.account_id)
    async with e.db.session(write=True) as session:
        now = utcnow()
        session.add_all(
            Contact(id=i, account_id=account, fields={}, tags=[], created_at=now, updated_at=now)
            for i in ids
        )
        await session.commit()
    return [str(i) for i in ids]


async def test_the_canary_gets_its_share_of_enrollments_sticky_per_contact(
    make_engine: EngineFactory, database_url: str
) -> None:
    quick = manual_workflow({"id": "hello", "type": "send_email", "subject": "v1", "body": "b"})
    quick_canary = manual_workflow({"id": "hi", "type": "send_email", "subject": "v2", "body": "b"})
    async with make_engine(database_url) as e:
        workflow_id = await with_canary(e, 30, quick, quick_canary)
        contacts = await _bulk_contacts(e, 1000)
        enrolled = await e.enroll(workflow_id, *contacts)
        assert enrolled["enrolled"] == 1000 and enrolled["skipped"] == []
        first = await versions_of(e, workflow_id)
        assert set(first) == set(contacts)
        on_canary = sum(1 for v in first.values() if v == 2)
        assert 250 <= on_canary <= 350, on_canary
        assert set(first.values()) == {1, 2}
        stats = {n: await get(e, f"{wf_url(workflow_id)}/versions/{n}/stats") for n in (1, 2)}
        assert stats[2]["total"] == on_canary and stats[1]["total"] == 1000 - on_canary

        # Both sides finish; enrolled again, every contact lands on the same side.
        await e.run()
        assert {x["status"] for x in await e.executions(workflow_id)} == {"completed"}
        again = await e.enroll(workflow_id, *reversed(contacts))
        assert again["enrolled"] == 1000
        second = await versions_of(e, workflow_id, status="active")
        assert second == first
        # Each side starts at its own version's first step.
        steps = {x["current_step"] for x in await e.executions(workflow_id, version=2)}
        assert steps <= {"hi", None}


async def test_trigger_enrollments_are_routed_too(engine: Engine) -> None:
    trigger = {"type": "tag_added", "tag": "lead"}
    current = {**current_definition(), "trigger": trigger}
    canary = {**canary_definition(), "trigger": trigger}
    workflow_id = await with_canary(engine, 50, current, canary)
    on_canary, off_canary = await sided_contacts(engine, workflow_id, 50, 5, 5)
    for contact in on_canary + off_canary:
        response = await engine.tenant.request(
            "PATCH", f"/api/v1/contacts/{contact}", json={"add_tags": ["lead"]}
        )
        assert response.status_code == 200, response.text
    routed = await versions_of(engine, workflow_id)
    assert routed == {**dict.fromkeys(on_canary, 2), **dict.fromkeys(off_canary, 1)}


# --- promote and abort ------------------------------------------------------------------------


async def test_promote_makes_the_canary_current(engine: Engine) -> None:
    workflow_id = await with_canary(engine, 50)
    url = wf_url(workflow_id)
    on_canary, off_canary = await sided_contacts(engine, workflow_id, 50, 3, 3)
    await engine.enroll(workflow_id, *on_canary, *off_canary)
    await engine.run()
    etag = (await get(engine, url))["etag"]

    promoted = await post(engine, f"{url}/canary/promote")
    assert promoted["number"] == 2 and promoted["status"] == "published"
    workflow = await get(engine, url)
    assert workflow["current_version"] == 2 and workflow["canary"] is None
    assert workflow["etag"] != etag
    assert await statuses(engine, workflow_id) == {1: "retired", 2: "published"}
    assert [a["details"] for a in await audit(engine, "canary.promoted", workflow_id)] == [
        {"number": 2, "previous": 1}
    ]
    # A second promote has nothing to promote.
    again = await engine.tenant.request("POST", f"{url}/canary/promote")
    assert again.status_code == 409 and again.json()["code"] == "no_canary"

    # Everyone new runs version 2; the executions of version 1 finish on version 1.
    newcomers = [await engine.contact() for _ in range(4)]
    await engine.enroll(workflow_id, *newcomers)
    routed = await versions_of(engine, workflow_id)
    assert routed == {
        **dict.fromkeys(off_canary, 1),
        **dict.fromkeys(on_canary, 2),
        **dict.fromkeys(newcomers, 2),
    }
    await engine.advance(days=1)
    for execution in await engine.executions(workflow_id, version=1):
        assert execution["status"] == "completed"
        assert execution["current_step"] == "pause"


async def test_abort_retires_the_canary_and_its_executions_run_on(engine: Engine) -> None:
    workflow_id = await with_canary(engine, 50)
    url = wf_url(workflow_id)
    on_canary, off_canary = await sided_contacts(engine, workflow_id, 50, 4, 2)
    await engine.enroll(workflow_id, *on_canary, *off_canary)
    await engine.run()  # all wait a day

    aborted = await post(engine, f"{url}/canary/abort", {"reason": "the subject line is wrong"})
    assert aborted["number"] == 2 and aborted["status"] == "retired"
    workflow = await get(engine, url)
    assert workflow["canary"] is None and workflow["current_version"] == 1
    assert await statuses(engine, workflow_id) == {1: "published", 2: "retired"}
    entries = await audit(engine, "canary.aborted", workflow_id)
    assert [a["details"] for a in entries] == [{"number": 2, "reason": "the subject line is wrong"}]
    assert entries[0]["actor"]["user"] == "admin"
    again = await engine.tenant.request("POST", f"{url}/canary/abort")
    assert again.status_code == 409 and again.json()["code"] == "no_canary"
    # A retired canary comes back only through a rollback.
    refused = await engine.tenant.request("POST", f"{url}/versions/2/publish")
    assert refused.status_code == 409 and refused.json()["code"] == "use_rollback"

    # New enrollments, canary side included, go to the current version.
    later_canary, _ = await sided_contacts(engine, workflow_id, 50, 3, 0)
    await engine.enroll(workflow_id, *later_canary)
    assert set((await versions_of(engine, workflow_id, status="active")).values()) == {1}

    # The canary's executions run to their end on it.
    await engine.advance(days=1)
    canary_runs = await engine.executions(workflow_id, version=2)
    assert {x["contact_id"] for x in canary_runs} == set(on_canary)
    for execution in canary_runs:
        assert execution["status"] == "completed", execution
        assert execution["current_step"] == "canary_only"
    tagged = (await get(engine, f"/api/v1/contacts/{on_canary[0]}"))["tags"]
    assert "saw-canary" in tagged


async def test_rollback_during_a_canary_aborts_it(engine: Engine) -> None:
    workflow_id = await engine.workflow(current_definition())
    url = wf_url(workflow_id)
    second = current_definition()
    second["steps"][0]["subject"] = "Second"
    await engine.new_version(workflow_id, second, 1, publish=True)
    await engine.new_version(workflow_id, canary_definition(), 2, publish=False)
    await post(engine, f"{url}/versions/3/publish", {"canary_percent": 40})
    on_canary, _ = await sided_contacts(engine, workflow_id, 40, 2, 0)
    await engine.enroll(workflow_id, *on_canary)
    etag = (await get(engine, url))["etag"]

    rolled = await engine.tenant.request(
        "POST",
        f"{url}/versions/1/rollback",
        json={"reason": "emergency"},
        headers={"If-Match": etag},
    )
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["status"] == "published"
    workflow = await get(engine, url)
    assert workflow["current_version"] == 1 and workflow["canary"] is None
    assert await statuses(engine, workflow_id) == {1: "published", 2: "retired", 3: "retired"}
    assert [a["details"]["reason"] for a in await audit(engine, "canary.aborted", workflow_id)] == [
        "rollback to 1"
    ]
    assert [a["details"] for a in await audit(engine, "version.rolled_back", workflow_id)] == [
        {"number": 1, "previous": 2, "reason": "emergency"}
    ]
    # The canary's executions run on, on it.
    await engine.run()
    await engine.advance(days=1)
    for execution in await engine.executions(workflow_id, version=3):
        assert execution["status"] == "completed" and execution["current_step"] == "canary_only"


# --- automatic abort --------------------------------------------------------------------------

CANARY_MIN = 5


def failing_canary(port: int) -> dict[str, Any]:
    """Patient contacts wait a day and finish; the others call a closed port and fail."""
    return manual_workflow(
        {
            "id": "check",
            "type": "condition",
            "if": {"field": "tags", "op": "contains", "value": "patient"},
            "then": "pause",
            "else": "call",
        },
        {
            "id": "call",
            "type": "http_request",
            "url": f"http://127.0.0.1:{port}/hook",
            "method": "POST",
            "max_attempts": 1,
        },
        {"id": "pause", "type": "wait", "duration": "1d", "next": "after"},
        {"id": "after", "type": "add_tag", "tag": "done"},
    )


@pytest.fixture
async def failing(make_engine: EngineFactory, database_url: str) -> AsyncIterator[WorkflowEngine]:
    async with make_engine(
        database_url,
        canary_min_executions=CANARY_MIN,
        canary_max_failure_rate=0.1,
        retry_base_seconds=0.001,
    ) as e:
        yield e


async def test_a_failing_canary_is_aborted_automatically(failing: WorkflowEngine) -> None:
    e = failing
    quick = manual_workflow({"id": "hello", "type": "send_email", "subject": "v1", "body": "b"})
    workflow_id = await with_canary(e, 50, quick, failing_canary(free_port()))
    url = wf_url(workflow_id)
    doomed, off_canary = await sided_contacts(e, workflow_id, 50, CANARY_MIN, 3)
    patient, _ = await sided_contacts(e, workflow_id, 50, 2, 0, tags=["patient"])

    # One short of the minimum: failing, but not judged yet.
    await e.enroll(workflow_id, *doomed[:-1], *patient, *off_canary)
    await e.run()
    assert (await get(e, url))["canary"] == {"version": 2, "percent": 50}
    stats = await get(e, f"{url}/versions/2/stats")
    assert stats["failed"] == CANARY_MIN - 1 and stats["by_status"].get("waiting") == 2

    await e.enroll(workflow_id, doomed[-1])
    await e.run()
    workflow = await get(e, url)
    assert workflow["canary"] is None and workflow["current_version"] == 1
    assert await statuses(e, workflow_id) == {1: "published", 2: "retired"}
    entries = await audit(e, "canary.aborted", workflow_id)
    assert len(entries) == 1
    assert entries[0]["actor"]["user"] == "system"
    assert entries[0]["details"]["number"] == 2
    assert f"{CANARY_MIN}/{CANARY_MIN}" in entries[0]["details"]["reason"]
    failed = await e.execution(
        (await e.executions(workflow_id, version=2, status="failed"))[0]["id"]
    )
    assert failed["current_step"] == "call" and failed["history"][-1]["error"]

    # New enrollments, canary side included, go to the current version.
    newcomers, _ = await sided_contacts(e, workflow_id, 50, 3, 0)
    await e.enroll(workflow_id, *newcomers)
    await e.run()
    routed = await versions_of(e, workflow_id)
    assert all(routed[c] == 1 for c in newcomers + off_canary)

    # Its waiting executions still run, on it, to their end.
    await e.advance(days=1)
    runs = await e.executions(workflow_id, version=2, status="completed")
    assert {x["contact_id"] for x in runs} == set(patient)
    assert {x["current_step"] for x in runs} == {"after"}

    # Side by side: what a marketer compares.
    current = await get(e, f"{url}/versions/1/stats")
    canary = await get(e, f"{url}/versions/2/stats")
    assert current["completions"] == 3 + 3 and current["failed"] == 0
    assert current["failure_rate"] == 0
    assert canary["completions"] == 2 and canary["failed"] == CANARY_MIN
    assert canary["failure_rate"] == pytest.approx(CANARY_MIN / (CANARY_MIN + 2))
    assert canary["by_status"] == {"completed": 2, "failed": CANARY_MIN}


async def test_a_canary_under_the_failure_rate_keeps_running(failing: WorkflowEngine) -> None:
    e = failing
    quick = manual_workflow({"id": "hello", "type": "send_email", "subject": "v1", "body": "b"})
    mostly_fine = manual_workflow(
        {
            "id": "check",
            "type": "condition",
            "if": {"field": "tags", "op": "contains", "value": "unlucky"},
            "then": "call",
            "else": "fine",
        },
        {"id": "fine", "type": "send_email", "subject": "v2", "body": "b"},
        {
            "id": "call",
            "type": "http_request",
            "url": f"http://127.0.0.1:{free_port()}/hook",
            "max_attempts": 1,
        },
    )
    workflow_id = await with_canary(e, 50, quick, mostly_fine)
    fine, _ = await sided_contacts(e, workflow_id, 50, 10, 0)
    unlucky, _ = await sided_contacts(e, workflow_id, 50, 1, 0, tags=["unlucky"])
    await e.enroll(workflow_id, *fine, *unlucky)
    await e.run()
    stats = await get(e, f"{wf_url(workflow_id)}/versions/2/stats")
    assert stats["completions"] == 10 and stats["failed"] == 1
    # 1 failure in 11 finished: 0.09, under the 0.1 limit.
    assert (await get(e, wf_url(workflow_id)))["canary"] == {"version": 2, "percent": 50}
    assert await audit(e, "canary.aborted", workflow_id) == []


async def test_the_canary_is_judged_when_the_minimum_is_reached_by_a_completion(
    failing: WorkflowEngine,
) -> None:
    e = failing
    quick = manual_workflow({"id": "hello", "type": "send_email", "subject": "v1", "body": "b"})
    sometimes = manual_workflow(
        {
            "id": "check",
            "type": "condition",
            "if": {"field": "tags", "op": "contains", "value": "unlucky"},
            "then": "call",
            "else": "fine",
        },
        {"id": "fine", "type": "send_email", "subject": "v2", "body": "b"},
        {
            "id": "call",
            "type": "http_request",
            "url": f"http://127.0.0.1:{free_port()}/hook",
            "max_attempts": 1,
        },
    )
    workflow_id = await with_canary(e, 50, quick, sometimes)
    unlucky, _ = await sided_contacts(e, workflow_id, 50, CANARY_MIN - 1, 0, tags=["unlucky"])
    await e.enroll(workflow_id, *unlucky)
    await e.run()
    assert (await get(e, wf_url(workflow_id)))["canary"] is not None  # 4 finished: too few
    fine, _ = await sided_contacts(e, workflow_id, 50, 1, 0)
    await e.enroll(workflow_id, *fine)
    await e.run()
    # 5 finished, 4 failed: 0.8 is over the 0.1 limit.
    stats = await get(e, f"{wf_url(workflow_id)}/versions/2/stats")
    assert stats["failed"] == CANARY_MIN - 1 and stats["completions"] == 1
    assert (await get(e, wf_url(workflow_id)))["canary"] is None
