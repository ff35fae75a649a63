"""Triggers, enrollment and re-enrollment, and goals (SPEC §2 "Triggers", "Goals", §3)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from unittest.mock import ANY

from tests.support.engine import Engine


def trail(execution: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(h["step"], h["result"], h["detail"]) for h in execution["history"]]


def tagging(trigger: dict[str, Any], tag: str = "enrolled") -> dict[str, Any]:
    return {"trigger": trigger, "steps": [{"id": "mark", "type": "add_tag", "tag": tag}]}


async def call(engine: Engine, method: str, url: str, **kwargs: Any) -> Any:
    response = await engine.tenant.request(method, url, **kwargs)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


async def patch(engine: Engine, contact_id: str, **body: Any) -> dict[str, Any]:
    result: dict[str, Any] = await call(
        engine, "PATCH", f"/api/v1/contacts/{contact_id}", json=body
    )
    return result


async def create_contact(engine: Engine, **body: Any) -> dict[str, Any]:
    result: dict[str, Any] = await call(engine, "POST", "/api/v1/contacts", json=body)
    return result


async def event(engine: Engine, contact_id: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = await call(
        engine, "POST", "/api/v1/events", json={"contact_id": contact_id, "name": name}
    )
    return result


async def executions_of(engine: Engine, workflow_id: str) -> list[dict[str, Any]]:
    return await engine.executions(workflow_id)


async def contact_ids(engine: Engine, workflow_id: str) -> list[str]:
    return sorted(e["contact_id"] for e in await engine.executions(workflow_id))


async def enroll_raw(engine: Engine, workflow_id: str, *contacts: str) -> Any:
    return await engine.tenant.request(
        "POST",
        f"/api/v1/workflows/{workflow_id}/enrollments",
        json={"contact_ids": list(contacts)},
    )


# --- triggers ---------------------------------------------------------------------------------


async def test_contact_created_enrolls_and_initial_tags_fire_tag_added(engine: Engine) -> None:
    created_wf = await engine.workflow(tagging({"type": "contact_created"}), name="created")
    tag_wf = await engine.workflow(
        tagging({"type": "tag_added", "tag": "lead"}, "tagged"), name="tag"
    )
    person = await create_contact(engine, email="new@example.com", tags=["lead"])
    # Enrolled in the request's own transaction, before any worker ran (SPEC §2: a contact
    # created with "lead" is a lead).
    [execution] = await executions_of(engine, created_wf)
    assert execution["contact_id"] == person["id"]
    assert (execution["status"], execution["version"]) == ("active", 1)
    [tagged] = await executions_of(engine, tag_wf)
    assert tagged["contact_id"] == person["id"]
    await engine.run()
    ex = await engine.execution(execution["id"])
    assert trail(ex) == [("mark", "done", {"tag": "enrolled", "changed": True})]
    assert ex["status"] == "completed"
    # Each tag fired once: the tag_added workflow still has its one execution.
    assert len(await executions_of(engine, tag_wf)) == 1


async def test_tag_added_by_patch_and_by_a_step_of_another_workflow(engine: Engine) -> None:
    tag_wf = await engine.workflow(
        tagging({"type": "tag_added", "tag": "lead"}, "welcomed"), name="tag"
    )
    marker = await engine.workflow(
        {
            "trigger": {"type": "manual"},
            "steps": [{"id": "make_lead", "type": "add_tag", "tag": "lead"}],
        },
        name="marker",
    )
    by_api = await engine.contact()
    await patch(engine, by_api, add_tags=["other"])
    assert await executions_of(engine, tag_wf) == []
    await patch(engine, by_api, add_tags=["lead"])
    assert await contact_ids(engine, tag_wf) == [by_api]

    by_step = await engine.contact()
    await engine.enroll(marker, by_step)
    await engine.run()
    assert await contact_ids(engine, tag_wf) == sorted([by_api, by_step])
    for execution in await executions_of(engine, tag_wf):
        ex = await engine.execution(execution["id"])
        assert ex["status"] == "completed"
        assert trail(ex) == [("mark", "done", {"tag": "welcomed", "changed": True})]

    # A tag the contact already has is not "added" again.
    await patch(engine, by_api, add_tags=["lead"])
    assert len(await executions_of(engine, tag_wf)) == 2


async def test_field_changed_by_patch_and_by_update_field(engine: Engine) -> None:
    field_wf = await engine.workflow(
        tagging({"type": "field_changed", "field": "fields.plan"}), name="field"
    )
    email_wf = await engine.workflow(
        tagging({"type": "field_changed", "field": "email"}), name="email"
    )
    setter = await engine.workflow(
        {
            "trigger": {"type": "manual"},
            "steps": [
                {"id": "set", "type": "update_field", "field": "fields.plan", "value": "pro"}
            ],
        },
        name="setter",
    )
    person = await engine.contact(fields={"plan": "free"})
    await patch(engine, person, fields={"other": 1})
    await patch(engine, person, fields={"plan": "free"})  # same value: no change
    assert await executions_of(engine, field_wf) == []
    await patch(engine, person, fields={"plan": "pro"})
    assert await contact_ids(engine, field_wf) == [person]
    await patch(engine, person, email="p@example.com")
    assert await contact_ids(engine, email_wf) == [person]

    stepped = await engine.contact(fields={"plan": "free"})
    await engine.enroll(setter, stepped)
    await engine.run()
    assert await contact_ids(engine, field_wf) == sorted([person, stepped])
    assert all(e["status"] == "completed" for e in await executions_of(engine, field_wf))


async def test_event_trigger(engine: Engine) -> None:
    wf = await engine.workflow(tagging({"type": "event", "event": "signed_up"}))
    person = await engine.contact()
    assert (await event(engine, person, "other"))["enrolled"] == []
    answer = await event(engine, person, "signed_up")
    [execution] = await executions_of(engine, wf)
    assert answer["enrolled"] == [execution["id"]]
    assert answer["executions_advanced"] == 0
    await engine.run()
    assert (await engine.execution(execution["id"]))["status"] == "completed"


async def test_manual_trigger_enrolls_only_through_the_api(engine: Engine) -> None:
    wf = await engine.workflow(tagging({"type": "manual"}))
    person = await engine.contact(tags=["a"])
    await patch(engine, person, add_tags=["b"], fields={"x": 1}, email="m@example.com")
    await event(engine, person, "anything")
    assert await executions_of(engine, wf) == []
    answer = await engine.enroll(wf, person)
    assert answer["enrolled"] == 1 and answer["skipped"] == []
    assert await contact_ids(engine, wf) == [person]


async def test_api_enrollment_works_for_every_trigger(engine: Engine) -> None:
    wf = await engine.workflow(tagging({"type": "tag_added", "tag": "lead"}))
    person = await engine.contact()
    answer = await engine.enroll(wf, person)
    assert answer["enrolled"] == 1
    await engine.run()
    assert (await engine.execution(answer["executions"][0]))["status"] == "completed"


async def test_unpublished_workflow_enrolls_nobody(engine: Engine) -> None:
    created = await engine.workflow(tagging({"type": "contact_created"}), publish=False)
    tagged = await engine.workflow(tagging({"type": "tag_added", "tag": "lead"}), publish=False)
    evented = await engine.workflow(tagging({"type": "event", "event": "go"}), publish=False)
    person = await create_contact(engine, tags=["x"])
    await patch(engine, person["id"], add_tags=["lead"])
    await event(engine, person["id"], "go")
    for wf in (created, tagged, evented):
        assert await executions_of(engine, wf) == []
    refused = await enroll_raw(engine, created, person["id"])
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["code"] == "not_published"
    assert problem["type"] == "urn:revflow:problem:not_published"


async def test_paused_workflow_fires_no_trigger(engine: Engine) -> None:
    wf = await engine.workflow(tagging({"type": "tag_added", "tag": "lead"}))
    await call(engine, "POST", f"/api/v1/workflows/{wf}/pause")
    person = await engine.contact()
    await patch(engine, person, add_tags=["lead"])
    assert await executions_of(engine, wf) == []


# --- enrollment answers and re-enrollment -----------------------------------------------------


async def test_enrollment_answer_and_unknown_contacts(engine: Engine) -> None:
    wf = await engine.workflow(tagging({"type": "manual"}))
    a, b = await engine.contact(), await engine.contact()
    unknown = "00000000-0000-4000-8000-000000000001"
    answer = await engine.enroll(wf, a, unknown, b, a)
    assert set(answer) == {"enrolled", "executions", "skipped"}
    assert answer["enrolled"] == 2 and len(answer["executions"]) == 2
    assert answer["skipped"] == [{"contact_id": unknown, "reason": "contact_not_found"}]
    by_id = {e["id"]: e["contact_id"] for e in await executions_of(engine, wf)}
    assert sorted(by_id) == sorted(answer["executions"])
    assert [by_id[e] for e in answer["executions"]] == [a, b]


async def test_contact_of_another_account_is_unknown(engine: Engine) -> None:
    from tests.support.tenants import make_tenant

    wf = await engine.workflow(tagging({"type": "manual"}))
    other = await make_tenant(engine.worker.db, engine.tenant.client, "other")
    response = await other.request("POST", "/api/v1/contacts", json={})
    foreign = response.json()["id"]
    answer = await engine.enroll(wf, foreign)
    assert answer == {
        "enrolled": 0,
        "executions": [],
        "skipped": [{"contact_id": foreign, "reason": "contact_not_found"}],
    }


def waiting(trigger: dict[str, Any]) -> dict[str, Any]:
    return {
        "trigger": trigger,
        "steps": [{"id": "pause", "type": "wait", "duration": "1d"}],
    }


async def test_reenroll_after_finish_is_the_default(engine: Engine) -> None:
    wf = await engine.workflow(waiting({"type": "manual"}))
    person = await engine.contact()
    first = await engine.enroll(wf, person)
    await engine.run()
    live = await engine.enroll(wf, person)
    assert live == {
        "enrolled": 0,
        "executions": [],
        "skipped": [{"contact_id": person, "reason": "already_enrolled"}],
    }
    await engine.advance(days=1)
    assert (await engine.execution(first["executions"][0]))["status"] == "completed"
    again = await engine.enroll(wf, person)
    assert again["enrolled"] == 1 and again["skipped"] == []
    assert again["executions"] != first["executions"]


async def test_reenroll_never(engine: Engine) -> None:
    wf = await engine.workflow(tagging({"type": "manual", "reenroll": "never"}))
    person = await engine.contact()
    assert (await engine.enroll(wf, person))["enrolled"] == 1
    await engine.run()
    await engine.advance(days=400)
    answer = await engine.enroll(wf, person)
    assert answer == {
        "enrolled": 0,
        "executions": [],
        "skipped": [{"contact_id": person, "reason": "reenroll_never"}],
    }
    assert len(await executions_of(engine, wf)) == 1


async def test_reenroll_never_holds_for_triggers(engine: Engine) -> None:
    wf = await engine.workflow(tagging({"type": "tag_added", "tag": "lead", "reenroll": "never"}))
    person = await engine.contact()
    await patch(engine, person, add_tags=["lead"])
    await engine.run()
    await patch(engine, person, remove_tags=["lead"])
    await patch(engine, person, add_tags=["lead"])
    assert len(await executions_of(engine, wf)) == 1


async def test_reenroll_cooldown(engine: Engine) -> None:
    wf = await engine.workflow(tagging({"type": "manual", "reenroll": "30d"}))
    person = await engine.contact()
    assert (await engine.enroll(wf, person))["enrolled"] == 1
    await engine.run()
    await engine.advance(days=29)
    inside = await engine.enroll(wf, person)
    assert inside["enrolled"] == 0
    assert inside["skipped"] == [{"contact_id": person, "reason": "reenroll_cooldown"}]
    await engine.advance(days=1, seconds=1)
    after = await engine.enroll(wf, person)
    assert after["enrolled"] == 1 and after["skipped"] == []
    await engine.run()
    # The cooldown counts again from the latest enrollment.
    await engine.advance(days=10)
    assert (await engine.enroll(wf, person))["skipped"][0]["reason"] == "reenroll_cooldown"


async def test_reenroll_cooldown_for_triggers(engine: Engine) -> None:
    wf = await engine.workflow(tagging({"type": "event", "event": "ping", "reenroll": "30d"}))
    person = await engine.contact()
    assert len((await event(engine, person, "ping"))["enrolled"]) == 1
    await engine.run()
    await engine.advance(days=15)
    assert (await event(engine, person, "ping"))["enrolled"] == []
    await engine.advance(days=16)
    assert len((await event(engine, person, "ping"))["enrolled"]) == 1
    assert len(await executions_of(engine, wf)) == 2


# --- goals ------------------------------------------------------------------------------------


def nurture(goals: list[dict[str, Any]], trigger: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "trigger": trigger or {"type": "manual"},
        "steps": [
            {"id": "hello", "type": "send_email", "subject": "hello", "body": "b",
             "next": "pause"},
            {"id": "pause", "type": "wait", "duration": "2d", "next": "nudge"},
            {"id": "nudge", "type": "send_email", "subject": "nudge", "body": "b"},
            {"id": "thanks", "type": "send_email", "subject": "thanks", "body": "b"},
        ],
        "goals": goals,
    }  # fmt: skip


async def started(engine: Engine, definition: dict[str, Any], **contact: Any) -> tuple[str, str]:
    wf = await engine.workflow(definition)
    person = await engine.contact(email="g@example.com", **contact)
    ex_id: str = (await engine.enroll(wf, person))["executions"][0]
    await engine.run()
    assert (await engine.execution(ex_id))["status"] == "waiting"
    return ex_id, person


async def subjects(engine: Engine) -> list[str]:
    return [m["subject"] for m in reversed(await engine.messages())]


async def test_event_goal_cuts_the_wait_short_and_jumps(engine: Engine) -> None:
    ex_id, person = await started(
        engine, nurture([{"id": "bought", "event": "purchase", "then": "thanks"}])
    )
    await engine.advance(hours=3)
    answer = await event(engine, person, "purchase")
    assert answer["executions_advanced"] == 1
    ex = await engine.execution(ex_id)
    assert trail(ex)[-2:] == [
        ("pause", "cut_short", {"goal": "bought"}),
        ("bought", "goal", {"then": "thanks"}),
    ]
    assert (ex["status"], ex["current_step"]) == ("active", "thanks")
    await engine.run()
    ex = await engine.execution(ex_id)
    assert [(h["step"], h["result"]) for h in ex["history"]] == [
        ("hello", "sent"),
        ("pause", "waiting"),
        ("pause", "cut_short"),
        ("bought", "goal"),
        ("thanks", "sent"),
    ]
    assert (ex["status"], ex["outcome"]) == ("completed", "completed")
    await engine.advance(days=3)
    assert await subjects(engine) == ["hello", "thanks"]


async def test_goal_without_then_completes_with_its_outcome(engine: Engine) -> None:
    ex_id, person = await started(engine, nurture([{"id": "bought", "event": "purchase"}]))
    await event(engine, person, "purchase")
    ex = await engine.execution(ex_id)
    assert trail(ex)[-2:] == [
        ("pause", "cut_short", {"goal": "bought"}),
        ("bought", "goal", {"then": None}),
    ]
    assert (ex["status"], ex["outcome"], ex["wake_at"]) == ("completed", "goal:bought", None)
    assert ex["finished_at"] is not None
    await engine.advance(days=3)
    assert await subjects(engine) == ["hello"]


async def test_each_goal_fires_once(engine: Engine) -> None:
    definition = nurture([{"id": "bought", "event": "purchase", "then": "pause"}])
    ex_id, person = await started(engine, definition)
    await event(engine, person, "purchase")
    await engine.run()  # back on the wait, from the goal
    ex = await engine.execution(ex_id)
    assert [(h["step"], h["result"]) for h in ex["history"]][-3:] == [
        ("pause", "cut_short"),
        ("bought", "goal"),
        ("pause", "waiting"),
    ]
    assert (await event(engine, person, "purchase"))["executions_advanced"] == 0
    ex = await engine.execution(ex_id)
    assert ex["status"] == "waiting"
    assert sum(1 for h in ex["history"] if h["result"] == "goal") == 1
    await engine.advance(days=2)
    assert (await engine.execution(ex_id))["status"] == "completed"
    assert await subjects(engine) == ["hello", "nudge"]


async def test_if_goal_fires_when_the_contact_changes_while_waiting(engine: Engine) -> None:
    definition = nurture(
        [{"id": "pro", "if": {"field": "fields.plan", "op": "eq", "value": "pro"},
          "then": "thanks"}]
    )  # fmt: skip
    ex_id, person = await started(engine, definition, fields={"plan": "free"})
    await engine.advance(hours=1)
    await patch(engine, person, fields={"note": "x"})
    assert (await engine.execution(ex_id))["status"] == "waiting"
    await patch(engine, person, fields={"plan": "pro"})
    ex = await engine.execution(ex_id)
    assert trail(ex)[-2:] == [
        ("pause", "cut_short", {"goal": "pro"}),
        ("pro", "goal", {"then": "thanks"}),
    ]
    await engine.run()
    assert await subjects(engine) == ["hello", "thanks"]


async def test_if_goal_on_tags_fires_on_a_patch(engine: Engine) -> None:
    definition = nurture([{"id": "vip", "if": {"field": "tags", "op": "contains", "value": "vip"}}])
    ex_id, person = await started(engine, definition)
    await patch(engine, person, add_tags=["vip"])
    ex = await engine.execution(ex_id)
    assert (ex["status"], ex["outcome"]) == ("completed", "goal:vip")


async def test_if_goal_fires_when_a_tag_is_removed(engine: Engine) -> None:
    definition = nurture(
        [{"id": "unsubscribed",
          "if": {"field": "tags", "op": "not_contains", "value": "subscribed"}}]
    )  # fmt: skip
    ex_id, person = await started(engine, definition, tags=["subscribed"])
    await patch(engine, person, remove_tags=["subscribed"])
    ex = await engine.execution(ex_id)
    assert (ex["status"], ex["outcome"]) == ("completed", "goal:unsubscribed")
    assert trail(ex)[-1] == ("unsubscribed", "goal", {"then": None})


async def test_if_goal_fires_before_a_step(engine: Engine) -> None:
    definition = {
        "trigger": {"type": "manual"},
        "steps": [
            {"id": "tag", "type": "add_tag", "tag": "customer", "next": "pitch"},
            {"id": "pitch", "type": "send_email", "subject": "buy!", "body": "b"},
            {"id": "thanks", "type": "send_email", "subject": "thanks", "body": "b"},
        ],
        "goals": [
            {"id": "customer", "if": {"field": "tags", "op": "contains", "value": "customer"},
             "then": "thanks"}
        ],
    }  # fmt: skip
    wf = await engine.workflow(definition)
    person = await engine.contact(email="c@example.com")
    ex_id = (await engine.enroll(wf, person))["executions"][0]
    await engine.run()
    ex = await engine.execution(ex_id)
    assert trail(ex) == [
        ("tag", "done", {"tag": "customer", "changed": True}),
        ("customer", "goal", {"then": "thanks"}),
        ("thanks", "sent", {"channel": "outbox", "message_id": ANY}),
    ]
    assert await subjects(engine) == ["thanks"]


async def test_if_goal_already_true_at_enrollment(engine: Engine) -> None:
    definition = nurture([{"id": "vip", "if": {"field": "tags", "op": "contains", "value": "vip"}}])
    wf = await engine.workflow(definition)
    person = await engine.contact(email="v@example.com", tags=["vip"])
    ex_id = (await engine.enroll(wf, person))["executions"][0]
    await engine.run()
    ex = await engine.execution(ex_id)
    assert trail(ex) == [("vip", "goal", {"then": None})]
    assert ex["outcome"] == "goal:vip"
    assert await engine.messages() == []


async def test_if_goal_fires_when_another_workflow_changes_the_contact(engine: Engine) -> None:
    ex_id, person = await started(
        engine, nurture([{"id": "vip", "if": {"field": "tags", "op": "contains", "value": "vip"}}])
    )
    other = await engine.workflow(
        {"trigger": {"type": "manual"}, "steps": [{"id": "v", "type": "add_tag", "tag": "vip"}]},
        name="other",
    )
    await engine.enroll(other, person)
    await engine.run()
    ex = await engine.execution(ex_id)
    assert (ex["status"], ex["outcome"]) == ("completed", "goal:vip")
    assert trail(ex)[-2:] == [
        ("pause", "cut_short", {"goal": "vip"}),
        ("vip", "goal", {"then": None}),
    ]


async def test_if_goal_fires_when_a_step_of_another_workflow_removes_a_tag(
    engine: Engine,
) -> None:
    ex_id, person = await started(
        engine,
        nurture([{"id": "gone", "if": {"field": "tags", "op": "not_contains", "value": "active"}}]),
        tags=["active"],
    )
    remover = await engine.workflow(
        {
            "trigger": {"type": "manual"},
            "steps": [{"id": "r", "type": "remove_tag", "tag": "active"}],
        },
        name="remover",
    )
    await engine.advance(hours=1)
    await engine.enroll(remover, person)
    await engine.run()
    ex = await engine.execution(ex_id)
    assert (ex["status"], ex["outcome"]) == ("completed", "goal:gone")
    assert trail(ex)[-2:] == [
        ("pause", "cut_short", {"goal": "gone"}),
        ("gone", "goal", {"then": None}),
    ]
    assert ex["history"][-1]["at"] == ex["finished_at"]


async def test_if_goal_sees_a_change_made_in_the_same_batch(engine: Engine) -> None:
    """The waiting execution and the one changing the contact are run by the same batch."""
    goal_wf = await engine.workflow(
        nurture([{"id": "vip", "if": {"field": "tags", "op": "contains", "value": "vip"}}])
    )
    tagger = await engine.workflow(
        {"trigger": {"type": "manual"}, "steps": [{"id": "v", "type": "add_tag", "tag": "vip"}]},
        name="tagger",
    )
    person = await engine.contact(email="b@example.com")
    ex_id = (await engine.enroll(goal_wf, person))["executions"][0]
    engine.clock.advance(dt.timedelta(seconds=1))
    await engine.enroll(tagger, person)
    await engine.run()  # the goal workflow runs first (earlier wake_at), then the tagger
    ex = await engine.execution(ex_id)
    assert (ex["status"], ex["outcome"]) == ("completed", "goal:vip")
    assert await subjects(engine) == ["hello"]


async def test_goal_conversions_in_version_stats(engine: Engine) -> None:
    definition = nurture(
        [
            {"id": "bought", "event": "purchase"},
            {"id": "upgraded", "event": "upgrade", "then": "thanks"},
        ]
    )
    wf = await engine.workflow(definition)
    people = [await engine.contact(email=f"s{i}@example.com") for i in range(4)]
    await engine.enroll(wf, *people)
    await engine.run()
    await event(engine, people[0], "purchase")
    await event(engine, people[1], "purchase")
    await event(engine, people[1], "purchase")  # fires once
    await event(engine, people[2], "upgrade")
    await engine.run()
    stats = await call(engine, "GET", f"/api/v1/workflows/{wf}/versions/1/stats")
    # Every goal reached counts, whether it ended the execution or jumped to `then`.
    assert stats["goal_conversions"] == {"bought": 2, "upgraded": 1}
    assert stats["total"] == 4
    assert stats["completions"] == 3
    assert stats["by_status"] == {"completed": 3, "waiting": 1}
