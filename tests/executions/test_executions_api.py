"""Executions and enrollments through the API (SPEC §4 ``/executions`` filters,
``/enrollments``, ``Idempotency-Key``)."""

from __future__ import annotations

from typing import Any

from tests.support.engine import Engine
from tests.support.problems import assert_problem
from tests.support.workflows import manual_workflow

TWO_WAITS = manual_workflow(
    {"id": "first", "type": "wait", "event": "go", "next": "second"},
    {"id": "second", "type": "wait", "duration": "1d"},
)


async def listed(engine: Engine, workflow_id: str, **params: Any) -> list[str]:
    return sorted(x["id"] for x in await engine.executions(workflow_id, **params))


async def test_the_executions_list_filters_by_current_step(engine: Engine) -> None:
    wf = await engine.workflow(TWO_WAITS)
    contacts = [await engine.contact(email=f"s{i}@example.com") for i in range(4)]
    executions = (await engine.enroll(wf, *contacts))["executions"]
    await engine.run()
    sent = await engine.tenant.request(
        "POST", "/api/v1/events", json={"contact_id": contacts[0], "name": "go"}
    )
    assert sent.status_code < 300, sent.text
    await engine.run()

    assert await listed(engine, wf, step="second") == [executions[0]]
    assert await listed(engine, wf, step="first") == sorted(executions[1:])
    assert await listed(engine, wf, step="nowhere") == []
    assert await listed(engine, wf, step="second", status="waiting") == [executions[0]]
    assert await listed(engine, wf, step="second", status="completed") == []
    assert await listed(engine, wf) == sorted(executions)
    # Pages of one item walk the filtered list.
    page = await engine.tenant.request(
        "GET", f"/api/v1/workflows/{wf}/executions", params={"step": "first", "limit": 1}
    )
    assert [x["current_step"] for x in page.json()["items"]] == ["first"]
    assert page.json()["next_cursor"] is not None


async def test_an_enrollment_retried_with_its_idempotency_key_enrolls_nobody_twice(
    engine: Engine,
) -> None:
    wf = await engine.workflow(TWO_WAITS)
    people = [await engine.contact(email=f"i{i}@example.com") for i in range(3)]
    url = f"/api/v1/workflows/{wf}/enrollments"
    headers = {"Idempotency-Key": "enroll-1"}

    first = await engine.tenant.request(
        "POST", url, json={"contact_ids": people[:2]}, headers=headers
    )
    again = await engine.tenant.request(
        "POST", url, json={"contact_ids": people[:2]}, headers=headers
    )
    other_body = await engine.tenant.request(
        "POST", url, json={"contact_ids": people}, headers=headers
    )

    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json() == first.json() and first.json()["enrolled"] == 2
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert first.headers.get("Idempotent-Replayed") is None
    assert_problem(other_body, 422, "idempotency_key_reused", "same key, another body")
    executions = await engine.executions(wf)
    assert sorted(x["id"] for x in executions) == sorted(first.json()["executions"])
    assert sorted(x["contact_id"] for x in executions) == sorted(people[:2])
