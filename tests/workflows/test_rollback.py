"""Rollback (SPEC §4 ``…/versions/{n}/rollback``, §6b "a rollback aborts it").

Rollback is the emergency button: it always ends a running canary, even when the version rolled
back to is already the current one, and it only brings back a version that was published once
(a draft, archived or not, answers 409 ``never_published``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.support.engine import Engine, EngineFactory
from tests.support.problems import assert_problem
from tests.support.workflows import manual_workflow


def definition(subject: str) -> dict[str, Any]:
    return manual_workflow(
        {"id": "hello", "type": "send_email", "subject": subject, "body": "b", "next": "pause"},
        {"id": "pause", "type": "wait", "duration": "1d"},
    )


async def versions(e: Engine, workflow_id: str) -> dict[int, str]:
    response = await e.tenant.request(
        "GET",
        f"/api/v1/workflows/{workflow_id}/versions",
        params={"include_archived": "true", "limit": 200},
    )
    assert response.status_code == 200, response.text
    return {v["number"]: v["status"] for v in response.json()["items"]}


async def audit_actions(e: Engine, workflow_id: str) -> list[dict[str, Any]]:
    response = await e.tenant.request(
        "GET", "/api/v1/audit", params={"workflow_id": workflow_id, "limit": 200}
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_rollback_to_the_current_version_aborts_the_running_canary(engine: Engine) -> None:
    workflow_id = await engine.workflow(definition("v1"))
    url = f"/api/v1/workflows/{workflow_id}"
    await engine.new_version(workflow_id, definition("v2"), 1, publish=False)
    canary = await engine.tenant.request(
        "POST", f"{url}/versions/2/publish", json={"canary_percent": 50}
    )
    assert canary.status_code == 200 and canary.json()["status"] == "canary", canary.text

    rolled = await engine.tenant.request(
        "POST", f"{url}/versions/1/rollback", json={"reason": "canary misbehaves"}
    )

    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["status"] == "published"
    workflow = (await engine.tenant.request("GET", url)).json()
    assert (workflow["current_version"], workflow["canary"]) == (1, None)
    assert await versions(engine, workflow_id) == {1: "published", 2: "retired"}
    aborted = [
        a for a in await audit_actions(engine, workflow_id) if a["action"] == "canary.aborted"
    ]
    assert [a["details"] for a in aborted] == [{"number": 2, "reason": "rollback to 1"}]
    # New enrollments all go to version 1 again.
    people = [await engine.contact(email=f"c{i}@example.com") for i in range(8)]
    await engine.enroll(workflow_id, *people)
    assert {x["version"] for x in await engine.executions(workflow_id)} == {1}


async def test_rollback_to_a_draft_answers_never_published(engine: Engine) -> None:
    workflow_id = await engine.workflow(definition("v1"))
    await engine.new_version(workflow_id, definition("v2"), 1, publish=False)

    refused = await engine.tenant.request(
        "POST", f"/api/v1/workflows/{workflow_id}/versions/2/rollback", json={"reason": "r"}
    )

    assert_problem(refused, 409, "never_published", "rollback to a draft")
    assert await versions(engine, workflow_id) == {1: "published", 2: "draft"}


async def test_rollback_to_an_archived_draft_answers_never_published(
    make_engine: EngineFactory, fresh_database_url: str
) -> None:
    async with make_engine(fresh_database_url, archive_after_days=0, keep_versions=1) as e:
        workflow_id = await e.workflow(definition("v1"))  # version 1 published
        await e.new_version(workflow_id, definition("v2"), 1, publish=False)  # a draft
        await e.new_version(workflow_id, definition("v3"), 2, publish=False)  # kept (newest)
        e.clock.advance(dt.timedelta(minutes=1))  # versions are stamped a moment before
        archived = await e.worker.run_scheduled(force=True)
        assert archived is not None
        assert [a.number for a in archived] == [2]
        assert await versions(e, workflow_id) == {1: "published", 2: "archived", 3: "draft"}
        etag = (await e.get(f"/api/v1/workflows/{workflow_id}"))["etag"]

        refused = await e.tenant.request(
            "POST", f"/api/v1/workflows/{workflow_id}/versions/2/rollback", json={"reason": "r"}
        )

        assert_problem(refused, 409, "never_published", "rollback to an archived draft")
        assert await versions(e, workflow_id) == {1: "published", 2: "archived", 3: "draft"}
        workflow = await e.get(f"/api/v1/workflows/{workflow_id}")
        assert (workflow["current_version"], workflow["etag"]) == (1, etag)
        assert await e.audit("version.rolled_back", workflow_id) == []
