"""How a migration moves waiting executions (SPEC §6 "Rules", ``wait_policy``, mapping checks)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from revflow.migrations.runner import run_next
from tests.support.engine import Engine
from tests.support.problems import assert_problem
from tests.support.workflows import manual_workflow


def waiting_on(wait: dict[str, Any], after: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``hello``, then the wait ``pause`` (``wait`` gives its kind), then ``after``."""
    rest = after or [{"id": "done", "type": "end"}]
    return manual_workflow(
        {"id": "hello", "type": "send_email", "subject": "hi", "body": "b", "next": "pause"},
        {"id": "pause", "type": "wait", **wait, "next": rest[0]["id"]},
        *rest,
    )


async def waiting(engine: Engine, definition: dict[str, Any], n: int = 2) -> tuple[str, list[str]]:
    """A workflow of ``definition`` with ``n`` executions waiting on ``pause``."""
    wf = await engine.workflow(definition)
    contacts = [await engine.contact(email=f"w{i}@example.com") for i in range(n)]
    executions: list[str] = (await engine.enroll(wf, *contacts))["executions"]
    await engine.run()
    for e in executions:
        ex = await engine.execution(e)
        assert (ex["current_step"], ex["status"]) == ("pause", "waiting"), ex
    return wf, executions


async def migrate(engine: Engine, wf: str, **body: Any) -> Any:
    return await engine.tenant.request(
        "POST", f"/api/v1/workflows/{wf}/versions/2/migrate", json={"from_version": 1, **body}
    )


def when(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def test_a_mapping_value_that_is_not_a_step_of_to_answers_422_at_its_key(
    engine: Engine,
) -> None:
    wf, executions = await waiting(engine, waiting_on({"duration": "2d"}))
    await engine.new_version(wf, waiting_on({"duration": "1d"}), 1)

    for dry_run in (True, False):
        response = await migrate(engine, wf, mapping={"pause": "nowhere"}, dry_run=dry_run)
        assert_problem(response, 422, "validation_error", f"dry_run={dry_run}")
        problem = response.json()
        assert [e["pointer"] for e in problem["errors"]] == ["/mapping/pause"], problem
        assert "nowhere" in problem["errors"][0]["message"]

    listing = await engine.tenant.request("GET", f"/api/v1/workflows/{wf}/migrations")
    assert listing.json()["items"] == []
    assert {(await engine.execution(e))["version"] for e in executions} == {1}


async def test_a_waiting_execution_moved_onto_a_step_that_is_not_a_wait_is_due_at_once(
    engine: Engine,
) -> None:
    wf, executions = await waiting(engine, waiting_on({"duration": "2d"}))
    await engine.new_version(
        wf,
        manual_workflow(
            {"id": "hello", "type": "send_email", "subject": "hi", "body": "b", "next": "offer"},
            {"id": "offer", "type": "send_email", "subject": "offer", "body": "b"},
        ),
        1,
    )
    started = await migrate(engine, wf, mapping={"pause": "offer"})
    assert started.status_code == 202, started.text

    # Only the migration's batch: no step runs yet.
    assert await run_next(engine.worker.db, engine.clock.now()) > 0
    now = engine.clock.now()
    for e in executions:
        ex = await engine.execution(e)
        assert (ex["version"], ex["current_step"], ex["status"]) == (2, "offer", "active"), ex
        assert ex["wake_at"] is None or when(ex["wake_at"]) <= now, ex

    await engine.run()  # the clock has not moved: the worker runs them now
    for e in executions:
        ex = await engine.execution(e)
        assert (ex["status"], ex["current_step"]) == ("completed", "offer"), ex
        assert [(h["step"], h["result"]) for h in ex["history"]][-2:] == [
            ("offer", "migrated"),
            ("offer", "sent"),
        ]
    offers = [m for m in await engine.messages() if m["subject"] == "offer"]
    assert sorted(m["execution_id"] for m in offers) == sorted(executions)


async def test_a_wait_whose_kind_changed_is_unmovable_unless_mapping_names_it(
    engine: Engine,
) -> None:
    wf, executions = await waiting(engine, waiting_on({"duration": "2d"}), n=3)
    await engine.new_version(wf, waiting_on({"event": "clicked"}), 1)

    dry = await migrate(engine, wf, dry_run=True)
    assert dry.status_code == 200, dry.text
    assert dry.json() == {
        "total": 3,
        "movable": 0,
        "unmovable": 3,
        "groups": [{"step": "pause", "count": 3, "target": None, "reason": "wait_changed"}],
    }
    named = await migrate(engine, wf, dry_run=True, mapping={"pause": "pause"})
    assert named.json() == {
        "total": 3,
        "movable": 3,
        "unmovable": 0,
        "groups": [{"step": "pause", "count": 3, "target": "pause", "reason": None}],
    }

    # Started without the mapping, it moves none of them.
    started = await migrate(engine, wf)
    assert started.status_code == 202, started.text
    assert started.json()["report"] == dry.json()
    await engine.run()
    done = (await engine.tenant.request("GET", f"/api/v1/migrations/{started.json()['id']}")).json()
    assert (done["status"], done["migrated"], done["skipped"]) == ("completed", 0, 3)
    assert {(await engine.execution(e))["version"] for e in executions} == {1}


async def test_wait_policy_recompute_counts_the_time_already_waited(engine: Engine) -> None:
    wf, executions = await waiting(engine, waiting_on({"duration": "2d"}))
    started_at = {
        e: when(
            next(
                h["at"]
                for h in (await engine.execution(e))["history"]
                if (h["step"], h["result"]) == ("pause", "waiting")
            )
        )
        for e in executions
    }
    await engine.new_version(wf, waiting_on({"duration": "1d"}), 1)
    await engine.advance(hours=6)  # waited a quarter of a day already

    started = await migrate(engine, wf, wait_policy="recompute")
    assert started.status_code == 202, started.text
    await engine.run()

    for e in executions:
        ex = await engine.execution(e)
        assert (ex["version"], ex["status"]) == (2, "waiting"), ex
        # The wait's start + the new duration: not "keep" (start + 2d), not "restart" (now + 1d).
        assert when(ex["wake_at"]) == started_at[e] + dt.timedelta(days=1), ex
    await engine.advance(hours=17)  # 23 hours after the wait began: still waiting
    assert {(await engine.execution(e))["status"] for e in executions} == {"waiting"}
    await engine.advance(hours=1)
    assert {(await engine.execution(e))["status"] for e in executions} == {"completed"}
