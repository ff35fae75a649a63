"""Pause is a kill switch (SPEC §1 workflow ``status``, §4 ``/pause``, ``/resume``).

While a workflow is paused none of its executions moves: not by the worker, not by an event
(an event wait, a goal's event), not by a contact change that satisfies an ``if`` goal. What
reached them is held and takes effect on resume, in arrival order; nothing is lost.
"""

from __future__ import annotations

from typing import Any

from tests.support.engine import Engine
from tests.support.workflows import manual_workflow

WAIT_FOR_CLICK = manual_workflow(
    {"id": "hold", "type": "wait", "event": "clicked", "next": "clicked_tag"},
    {"id": "clicked_tag", "type": "add_tag", "tag": "clicked"},
    {"id": "thanks", "type": "add_tag", "tag": "thanked"},
)


def with_goals(definition: dict[str, Any], *goals: dict[str, Any]) -> dict[str, Any]:
    return {**definition, "goals": list(goals)}


async def post(engine: Engine, url: str, body: Any = None) -> Any:
    response = await engine.tenant.request("POST", url, json=body)
    assert response.status_code < 300, response.text
    return response.json()


async def event(engine: Engine, contact_id: str, name: str) -> None:
    await post(engine, "/api/v1/events", {"contact_id": contact_id, "name": name})


async def started(engine: Engine, definition: dict[str, Any]) -> tuple[str, str, str]:
    """A workflow of ``definition`` and one contact's execution of it, run until it waits."""
    wf = await engine.workflow(definition)
    contact = await engine.contact(email="paused@example.com")
    execution = (await engine.enroll(wf, contact))["executions"][0]
    await engine.run()
    assert (await engine.execution(execution))["status"] == "waiting"
    return wf, contact, execution


def state(execution: dict[str, Any]) -> tuple[Any, ...]:
    return (
        execution["status"],
        execution["current_step"],
        execution["wake_at"],
        execution["outcome"],
        [(h["step"], h["result"]) for h in execution["history"]],
    )


def trail(execution: dict[str, Any]) -> list[tuple[str, str]]:
    return [(h["step"], h["result"]) for h in execution["history"]]


async def test_an_awaited_event_does_not_move_a_paused_execution_until_resume(
    engine: Engine,
) -> None:
    wf, contact, execution = await started(engine, WAIT_FOR_CLICK)
    await post(engine, f"/api/v1/workflows/{wf}/pause")
    before = state(await engine.execution(execution))

    await event(engine, contact, "clicked")
    await engine.advance(hours=1)

    assert state(await engine.execution(execution)) == before
    await post(engine, f"/api/v1/workflows/{wf}/resume")
    await engine.run()
    ex = await engine.execution(execution)
    assert ex["status"] == "completed", ex
    assert trail(ex) == [("hold", "waiting"), ("hold", "event"), ("clicked_tag", "done")]
    assert ex["history"][1]["detail"] == {"event": "clicked"}


async def test_a_goal_event_does_not_complete_a_paused_execution_until_resume(
    engine: Engine,
) -> None:
    definition = with_goals(
        manual_workflow({"id": "pause", "type": "wait", "duration": "2d"}),
        {"id": "bought", "event": "purchase"},
    )
    wf, contact, execution = await started(engine, definition)
    await post(engine, f"/api/v1/workflows/{wf}/pause")
    before = state(await engine.execution(execution))

    await event(engine, contact, "purchase")
    await engine.run()

    assert state(await engine.execution(execution)) == before
    await post(engine, f"/api/v1/workflows/{wf}/resume")
    await engine.run()
    ex = await engine.execution(execution)
    assert (ex["status"], ex["outcome"]) == ("completed", "goal:bought"), ex
    assert trail(ex) == [("pause", "waiting"), ("pause", "cut_short"), ("bought", "goal")]


async def test_a_contact_change_meeting_an_if_goal_waits_for_resume(engine: Engine) -> None:
    definition = with_goals(
        manual_workflow({"id": "pause", "type": "wait", "duration": "2d"}),
        {"id": "vip", "if": {"field": "tags", "op": "contains", "value": "vip"}},
    )
    wf, contact, execution = await started(engine, definition)
    await post(engine, f"/api/v1/workflows/{wf}/pause")
    before = state(await engine.execution(execution))

    changed = await engine.tenant.request(
        "PATCH", f"/api/v1/contacts/{contact}", json={"add_tags": ["vip"]}
    )
    assert changed.status_code == 200, changed.text
    await engine.run()

    assert state(await engine.execution(execution)) == before
    await post(engine, f"/api/v1/workflows/{wf}/resume")
    await engine.run()
    ex = await engine.execution(execution)
    assert (ex["status"], ex["outcome"]) == ("completed", "goal:vip"), ex
    assert trail(ex) == [("pause", "waiting"), ("pause", "cut_short"), ("vip", "goal")]


async def test_what_arrived_while_paused_takes_effect_in_arrival_order(engine: Engine) -> None:
    # "clicked" then "purchase": the wait ends, then the goal sends it to "thanks". The other
    # order would fire the goal first and leave "clicked" with nothing to do.
    definition = with_goals(WAIT_FOR_CLICK, {"id": "bought", "event": "purchase", "then": "thanks"})
    wf, contact, execution = await started(engine, definition)
    await post(engine, f"/api/v1/workflows/{wf}/pause")
    await event(engine, contact, "clicked")
    await event(engine, contact, "purchase")
    assert trail(await engine.execution(execution)) == [("hold", "waiting")]

    await post(engine, f"/api/v1/workflows/{wf}/resume")
    await engine.run()

    ex = await engine.execution(execution)
    assert ex["status"] == "completed", ex
    assert trail(ex) == [
        ("hold", "waiting"),
        ("hold", "event"),
        ("bought", "goal"),
        ("thanks", "done"),
    ]
    tags = (await engine.tenant.request("GET", f"/api/v1/contacts/{contact}")).json()["tags"]
    assert tags == ["thanked"]


async def test_an_execution_cancelled_while_paused_is_not_touched_on_resume(
    engine: Engine,
) -> None:
    definition = with_goals(WAIT_FOR_CLICK, {"id": "bought", "event": "purchase"})
    wf, contact, execution = await started(engine, definition)
    await post(engine, f"/api/v1/workflows/{wf}/pause")
    await event(engine, contact, "clicked")
    await event(engine, contact, "purchase")
    cancelled = await post(engine, f"/api/v1/executions/{execution}/cancel")
    assert cancelled["status"] == "cancelled"
    before = state(await engine.execution(execution))

    await post(engine, f"/api/v1/workflows/{wf}/resume")
    await engine.advance(days=1)

    ex = await engine.execution(execution)
    assert state(ex) == before
    assert trail(ex) == [("hold", "waiting"), ("hold", "cancelled")]
    tags = (await engine.tenant.request("GET", f"/api/v1/contacts/{contact}")).json()["tags"]
    assert tags == []
