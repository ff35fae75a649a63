"""Every step type and every wait, run by the worker through the API (SPEC §2, §3).

Also the execution controls that stop or hold steps: cancel, and pausing a workflow.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any
from unittest.mock import ANY

import pytest
from sqlalchemy import text

from revflow.config import Settings
from revflow.db import Database
from tests.support.engine import Engine

LOCK_WAIT_BOUND_S = 30.0  # a batch still running after this is waiting on a lock


def trail(execution: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(h["step"], h["result"], h["detail"]) for h in execution["history"]]


def when(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def manual(steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"trigger": {"type": "manual"}, "steps": steps, **extra}


async def start(engine: Engine, definition: dict[str, Any], **contact: Any) -> tuple[str, str]:
    """A published workflow with one contact enrolled; answers (execution id, contact id)."""
    wf = await engine.workflow(definition)
    person = await engine.contact(**contact)
    enrolled = await engine.enroll(wf, person)
    assert enrolled["enrolled"] == 1, enrolled
    return enrolled["executions"][0], person


async def get_contact(engine: Engine, contact_id: str) -> dict[str, Any]:
    response = await engine.tenant.request("GET", f"/api/v1/contacts/{contact_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def event(engine: Engine, contact_id: str, name: str) -> dict[str, Any]:
    response = await engine.tenant.request(
        "POST", "/api/v1/events", json={"contact_id": contact_id, "name": name}
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


# --- messages ---------------------------------------------------------------------------------


async def test_send_email_fills_placeholders(engine: Engine) -> None:
    ex_id, person = await start(
        engine,
        manual(
            [
                {
                    "id": "hello",
                    "type": "send_email",
                    "subject": "Hi {{contact.fields.first_name}}",
                    "body": "Sent to {{contact.email}}; city [{{contact.fields.city}}]",
                }
            ]
        ),
        email="ada@example.com",
        fields={"first_name": "Ada"},
    )
    # Enrolled but not yet run: due now, on no step yet.
    before = await engine.execution(ex_id)
    assert before["status"] == "active"
    assert when(before["wake_at"]) == engine.clock.now()
    assert before["history"] == []
    await engine.run()
    ex = await engine.execution(ex_id)
    assert trail(ex) == [("hello", "sent", {"channel": "outbox", "message_id": ANY})]
    assert ex["status"] == "completed" and ex["outcome"] == "completed"
    assert ex["current_step"] == "hello" and ex["wake_at"] is None
    assert when(ex["finished_at"]) == engine.clock.now()
    messages = await engine.messages()
    assert len(messages) == 1
    message = messages[0]
    assert {k: message[k] for k in ("channel", "kind", "to", "subject", "body", "step")} == {
        "channel": "outbox",
        "kind": "email",
        "to": "ada@example.com",
        "subject": "Hi Ada",
        "body": "Sent to ada@example.com; city []",
        "step": "hello",
    }
    assert message["contact_id"] == person and message["execution_id"] == ex_id
    assert await engine.messages(execution_id=ex_id) == messages
    assert await engine.messages(contact_id=person) == messages


async def test_send_email_without_email_is_skipped_and_goes_on(engine: Engine) -> None:
    ex_id, person = await start(
        engine,
        manual(
            [
                {"id": "hello", "type": "send_email", "subject": "S", "body": "B", "next": "tag"},
                {"id": "tag", "type": "add_tag", "tag": "reached"},
            ]
        ),
        phone="+15550001",
    )
    await engine.run()
    ex = await engine.execution(ex_id)
    assert trail(ex) == [
        ("hello", "skipped", {"reason": "contact has no email"}),
        ("tag", "done", {"tag": "reached", "changed": True}),
    ]
    assert ex["status"] == "completed"
    assert await engine.messages() == []
    assert (await get_contact(engine, person))["tags"] == ["reached"]


async def test_send_sms(engine: Engine) -> None:
    definition = manual(
        [
            {"id": "text", "type": "send_sms", "body": "Hey {{contact.fields.name}}", "next": "b"},
            {"id": "b", "type": "end"},
        ]
    )
    wf = await engine.workflow(definition)
    with_phone = await engine.contact(phone="+15550001", fields={"name": "Bo"})
    without = await engine.contact(email="x@example.com")
    enrolled = await engine.enroll(wf, with_phone, without)
    assert enrolled["enrolled"] == 2 and enrolled["skipped"] == []
    await engine.run()
    sent, skipped = [await engine.execution(e) for e in enrolled["executions"]]
    assert trail(sent) == [
        ("text", "sent", {"channel": "outbox", "message_id": ANY}),
        ("b", "completed", {}),
    ]
    assert [(h["step"], h["result"]) for h in skipped["history"]] == [
        ("text", "skipped"),
        ("b", "completed"),
    ]
    assert skipped["history"][0]["detail"]["reason"].startswith("contact has no ")
    assert sent["status"] == skipped["status"] == "completed"
    messages = await engine.messages()
    assert [(m["kind"], m["to"], m["subject"], m["body"]) for m in messages] == [
        ("sms", "+15550001", None, "Hey Bo")
    ]


# --- contact changes --------------------------------------------------------------------------


async def test_add_and_remove_tag_change_the_contact_idempotently(engine: Engine) -> None:
    ex_id, person = await start(
        engine,
        manual(
            [
                {"id": "add", "type": "add_tag", "tag": "vip", "next": "add2"},
                {"id": "add2", "type": "add_tag", "tag": "vip", "next": "drop"},
                {"id": "drop", "type": "remove_tag", "tag": "lead", "next": "drop2"},
                {"id": "drop2", "type": "remove_tag", "tag": "lead"},
            ]
        ),
        tags=["lead", "keep"],
    )
    await engine.run()
    ex = await engine.execution(ex_id)
    assert trail(ex) == [
        ("add", "done", {"tag": "vip", "changed": True}),
        ("add2", "done", {"tag": "vip", "changed": False}),
        ("drop", "done", {"tag": "lead", "changed": True}),
        ("drop2", "done", {"tag": "lead", "changed": False}),
    ]
    assert ex["status"] == "completed" and ex["current_step"] == "drop2"
    assert sorted((await get_contact(engine, person))["tags"]) == ["keep", "vip"]


async def test_update_field(engine: Engine) -> None:
    ex_id, person = await start(
        engine,
        manual(
            [
                {
                    "id": "mail",
                    "type": "update_field",
                    "field": "email",
                    "value": "{{contact.fields.first_name}}@new.example.com",
                    "next": "tel",
                },
                {
                    "id": "tel",
                    "type": "update_field",
                    "field": "phone",
                    "value": "+15559999",
                    "next": "greet",
                },
                {
                    "id": "greet",
                    "type": "update_field",
                    "field": "fields.greeting",
                    "value": "Hello {{contact.fields.first_name}} at {{contact.email}}",
                    "next": "score",
                },
                {
                    "id": "score",
                    "type": "update_field",
                    "field": "fields.score",
                    "value": 42,
                    "next": "same",
                },
                {
                    "id": "same",
                    "type": "update_field",
                    "field": "fields.first_name",
                    "value": "ada",
                },
            ]
        ),
        email="old@example.com",
        fields={"first_name": "ada", "kept": True},
    )
    await engine.run()
    ex = await engine.execution(ex_id)
    assert trail(ex) == [
        ("mail", "done", {"field": "email", "changed": True}),
        ("tel", "done", {"field": "phone", "changed": True}),
        ("greet", "done", {"field": "fields.greeting", "changed": True}),
        ("score", "done", {"field": "fields.score", "changed": True}),
        ("same", "done", {"field": "fields.first_name", "changed": False}),
    ]
    after = await get_contact(engine, person)
    assert after["email"] == "ada@new.example.com"
    assert after["phone"] == "+15559999"
    assert after["fields"] == {
        "first_name": "ada",
        "kept": True,
        "greeting": "Hello ada at ada@new.example.com",
        "score": 42,
    }


# --- conditions -------------------------------------------------------------------------------


CONDITIONS: list[tuple[str, dict[str, Any]]] = [
    ("eq", {"field": "fields.plan", "op": "eq", "value": "pro"}),
    ("ne", {"field": "fields.plan", "op": "ne", "value": "free"}),
    ("gt", {"field": "fields.score", "op": "gt", "value": 9}),
    ("gte", {"field": "fields.score", "op": "gte", "value": 10}),
    ("lt", {"field": "fields.score", "op": "lt", "value": 11}),
    ("lte", {"field": "fields.score", "op": "lte", "value": 10}),
    ("contains", {"field": "tags", "op": "contains", "value": "vip"}),
    ("not_contains", {"field": "tags", "op": "not_contains", "value": "banned"}),
    ("exists", {"field": "fields.plan", "op": "exists"}),
    ("not_exists", {"field": "fields.churned", "op": "not_exists"}),
    ("email_eq", {"field": "email", "op": "eq", "value": "match@example.com"}),
    ("email_contains", {"field": "email", "op": "contains", "value": "@example.com"}),
    ("email_not_contains", {"field": "email", "op": "not_contains", "value": "@spam"}),
    ("email_exists", {"field": "email", "op": "exists"}),
    ("tags_exists", {"field": "tags", "op": "exists"}),
    ("field_contains", {"field": "fields.plan", "op": "contains", "value": "pr"}),
]


def condition_chain() -> dict[str, Any]:
    """One condition per op; each branch records its outcome in a field, then goes on."""
    steps: list[dict[str, Any]] = []
    for i, (name, condition) in enumerate(CONDITIONS):
        following = CONDITIONS[i + 1][0] if i + 1 < len(CONDITIONS) else "finish"
        steps += [
            {
                "id": name,
                "type": "condition",
                "if": condition,
                "then": f"{name}-then",
                "else": f"{name}-else",
            },
            {
                "id": f"{name}-then",
                "type": "update_field",
                "field": f"fields.r_{name}",
                "value": "then",
                "next": following,
            },
            {
                "id": f"{name}-else",
                "type": "update_field",
                "field": f"fields.r_{name}",
                "value": "else",
                "next": following,
            },
        ]
    steps.append({"id": "finish", "type": "end"})
    return manual(steps)


async def test_condition_every_op_both_ways(engine: Engine) -> None:
    wf = await engine.workflow(condition_chain())
    matching = await engine.contact(
        email="match@example.com", tags=["vip"], fields={"plan": "pro", "score": 10}
    )
    other = await engine.contact(
        email="x@spam.org", tags=["banned"], fields={"plan": "free", "score": 20, "churned": 1}
    )
    bare = await engine.contact()
    enrolled = await engine.enroll(wf, matching, other, bare)
    await engine.run()
    names = [name for name, _ in CONDITIONS]

    def outcomes(thens: str) -> dict[str, str]:
        return {name: "then" if name in thens.split() else "else" for name in names}

    expected = {
        matching: outcomes(" ".join(names)),
        other: outcomes("gt gte exists email_exists tags_exists"),
        bare: outcomes("ne not_contains not_exists email_not_contains"),
    }
    for ex_id, person in zip(enrolled["executions"], [matching, other, bare], strict=True):
        ex = await engine.execution(ex_id)
        assert ex["status"] == "completed" and ex["current_step"] == "finish"
        branches = {
            h["step"]: h["detail"]["result"] for h in ex["history"] if h["result"] == "branch"
        }
        assert branches == expected[person], person
        steps = [h["step"] for h in ex["history"]]
        want: list[str] = []
        for name in names:
            want += [name, f"{name}-{expected[person][name]}"]
        assert steps == [*want, "finish"]
        fields = (await get_contact(engine, person))["fields"]
        assert {k.removeprefix("r_"): v for k, v in fields.items() if k.startswith("r_")} == (
            expected[person]
        )


async def test_condition_without_else_completes(engine: Engine) -> None:
    definition = manual(
        [
            {
                "id": "vip",
                "type": "condition",
                "if": {"field": "tags", "op": "contains", "value": "vip"},
                "then": "offer",
            },
            {"id": "offer", "type": "add_tag", "tag": "offered"},
        ]
    )
    wf = await engine.workflow(definition)
    vip = await engine.contact(tags=["vip"])
    plain = await engine.contact()
    enrolled = await engine.enroll(wf, vip, plain)
    await engine.run()
    yes, no = [await engine.execution(e) for e in enrolled["executions"]]
    assert trail(yes) == [
        ("vip", "branch", {"result": "then"}),
        ("offer", "done", {"tag": "offered", "changed": True}),
    ]
    assert trail(no) == [("vip", "branch", {"result": "else"})]
    assert (no["status"], no["outcome"], no["current_step"]) == ("completed", "completed", "vip")
    assert (await get_contact(engine, plain))["tags"] == []


async def test_end_step_and_a_step_without_next(engine: Engine) -> None:
    definition = manual(
        [
            {"id": "a", "type": "add_tag", "tag": "a", "next": "stop"},
            {"id": "stop", "type": "end"},
            {"id": "unreached", "type": "add_tag", "tag": "unreached"},
        ]
    )
    ex_id, person = await start(engine, definition)
    await engine.run()
    ex = await engine.execution(ex_id)
    assert trail(ex) == [("a", "done", {"tag": "a", "changed": True}), ("stop", "completed", {})]
    assert (ex["status"], ex["outcome"], ex["current_step"]) == ("completed", "completed", "stop")
    assert (await get_contact(engine, person))["tags"] == ["a"]


# --- waits ------------------------------------------------------------------------------------


def wait_then_tag(**wait: Any) -> dict[str, Any]:
    return manual(
        [
            {"id": "pause", "type": "wait", **wait, "next": "after"},
            {"id": "after", "type": "add_tag", "tag": "after"},
        ]
    )


async def test_duration_wait_2d(engine: Engine) -> None:
    ex_id, person = await start(engine, wait_then_tag(duration="2d"))
    t0 = engine.clock.now()
    await engine.run()
    wake = t0 + dt.timedelta(days=2)
    ex = await engine.execution(ex_id)
    assert trail(ex) == [("pause", "waiting", {"kind": "duration", "wake_at": wake.isoformat()})]
    assert (ex["status"], ex["current_step"], when(ex["wake_at"])) == ("waiting", "pause", wake)
    await engine.advance(days=1, hours=23, minutes=59)
    ex = await engine.execution(ex_id)
    assert ex["status"] == "waiting" and len(ex["history"]) == 1
    await engine.advance(minutes=1)
    ex = await engine.execution(ex_id)
    assert trail(ex)[1:] == [
        ("pause", "woke", {}),
        ("after", "done", {"tag": "after", "changed": True}),
    ]
    assert when(ex["history"][1]["at"]) == wake
    assert (ex["status"], ex["current_step"], ex["wake_at"]) == ("completed", "after", None)
    assert (await get_contact(engine, person))["tags"] == ["after"]


async def test_duration_wait_iso(engine: Engine) -> None:
    ex_id, _ = await start(engine, wait_then_tag(duration="P1D"))
    t0 = engine.clock.now()
    await engine.run()
    ex = await engine.execution(ex_id)
    assert when(ex["wake_at"]) == t0 + dt.timedelta(days=1)
    assert ex["history"][0]["detail"]["wake_at"] == (t0 + dt.timedelta(days=1)).isoformat()
    await engine.advance(hours=23)
    assert (await engine.execution(ex_id))["status"] == "waiting"
    await engine.advance(hours=1)
    ex = await engine.execution(ex_id)
    assert [(h["step"], h["result"]) for h in ex["history"]] == [
        ("pause", "waiting"),
        ("pause", "woke"),
        ("after", "done"),
    ]
    assert ex["status"] == "completed"


async def test_until_wait_in_the_future(engine: Engine) -> None:
    until = engine.clock.now() + dt.timedelta(days=10)
    ex_id, _ = await start(engine, wait_then_tag(until=until.isoformat()))
    await engine.run()
    ex = await engine.execution(ex_id)
    assert trail(ex) == [("pause", "waiting", {"kind": "until", "wake_at": until.isoformat()})]
    assert when(ex["wake_at"]) == until
    await engine.advance(days=9)
    assert (await engine.execution(ex_id))["status"] == "waiting"
    await engine.advance(days=1)
    ex = await engine.execution(ex_id)
    assert trail(ex)[1:] == [
        ("pause", "woke", {}),
        ("after", "done", {"tag": "after", "changed": True}),
    ]
    assert ex["status"] == "completed"


async def test_until_wait_in_the_past_continues_at_once(engine: Engine) -> None:
    ex_id, _ = await start(engine, wait_then_tag(until="2001-01-01T00:00:00Z"))
    now = engine.clock.now()
    await engine.run()
    ex = await engine.execution(ex_id)
    assert trail(ex) == [
        ("pause", "waiting", {"kind": "until", "wake_at": now.isoformat()}),
        ("pause", "woke", {}),
        ("after", "done", {"tag": "after", "changed": True}),
    ]
    assert ex["status"] == "completed"


EVENT_WAIT = manual(
    [
        {
            "id": "hold",
            "type": "wait",
            "event": "clicked",
            "timeout": "3d",
            "timeout_next": "late",
            "next": "on_time",
        },
        {"id": "on_time", "type": "add_tag", "tag": "on_time"},
        {"id": "late", "type": "add_tag", "tag": "late"},
    ]
)


async def test_event_wait_continues_on_the_event(engine: Engine) -> None:
    ex_id, person = await start(engine, EVENT_WAIT)
    t0 = engine.clock.now()
    await engine.run()
    ex = await engine.execution(ex_id)
    wake = t0 + dt.timedelta(days=3)
    assert trail(ex) == [
        ("hold", "waiting", {"kind": "event", "event": "clicked", "wake_at": wake.isoformat()})
    ]
    assert (ex["status"], when(ex["wake_at"])) == ("waiting", wake)
    ignored = await event(engine, person, "opened")
    assert ignored["executions_advanced"] == 0 and ignored["enrolled"] == []
    await engine.advance(hours=5)
    answered = await event(engine, person, "clicked")
    assert answered["executions_advanced"] == 1
    moved = await engine.execution(ex_id)
    assert trail(moved)[1:] == [("hold", "event", {"event": "clicked"})]
    assert when(moved["history"][1]["at"]) == t0 + dt.timedelta(hours=5)
    assert (moved["status"], moved["current_step"]) == ("active", "on_time")
    await engine.run()
    ex = await engine.execution(ex_id)
    assert trail(ex)[2:] == [("on_time", "done", {"tag": "on_time", "changed": True})]
    assert ex["status"] == "completed"
    assert (await get_contact(engine, person))["tags"] == ["on_time"]
    # Later events and the old timeout change nothing.
    await event(engine, person, "clicked")
    await engine.advance(days=5)
    assert len((await engine.execution(ex_id))["history"]) == 3


async def test_event_wait_times_out_to_timeout_next(engine: Engine) -> None:
    ex_id, person = await start(engine, EVENT_WAIT)
    await engine.run()
    await engine.advance(days=2)
    assert (await engine.execution(ex_id))["status"] == "waiting"
    await engine.advance(days=1)
    ex = await engine.execution(ex_id)
    assert trail(ex)[1:] == [
        ("hold", "timeout", {"event": "clicked"}),
        ("late", "done", {"tag": "late", "changed": True}),
    ]
    assert ex["status"] == "completed"
    assert (await get_contact(engine, person))["tags"] == ["late"]
    # The awaited event after the timeout does nothing.
    assert (await event(engine, person, "clicked"))["executions_advanced"] == 0


async def test_event_wait_timeout_without_timeout_next_goes_to_next(engine: Engine) -> None:
    ex_id, _ = await start(
        engine,
        manual(
            [
                {
                    "id": "hold",
                    "type": "wait",
                    "event": "clicked",
                    "timeout": "2h",
                    "next": "after",
                },
                {"id": "after", "type": "add_tag", "tag": "after"},
            ]
        ),
    )
    await engine.run()
    await engine.advance(hours=2)
    ex = await engine.execution(ex_id)
    assert trail(ex)[1:] == [
        ("hold", "timeout", {"event": "clicked"}),
        ("after", "done", {"tag": "after", "changed": True}),
    ]


async def test_event_wait_without_timeout_waits_forever(engine: Engine) -> None:
    ex_id, person = await start(
        engine, manual([{"id": "hold", "type": "wait", "event": "clicked"}])
    )
    await engine.run()
    ex = await engine.execution(ex_id)
    assert trail(ex) == [("hold", "waiting", {"kind": "event", "event": "clicked"})]
    assert (ex["status"], ex["wake_at"]) == ("waiting", None)
    await engine.advance(days=3650)
    assert (await engine.execution(ex_id))["status"] == "waiting"
    await event(engine, person, "clicked")
    await engine.run()
    ex = await engine.execution(ex_id)
    assert trail(ex)[1:] == [("hold", "event", {"event": "clicked"})]
    assert (ex["status"], ex["outcome"]) == ("completed", "completed")


async def test_messages_of_a_run_with_waits(engine: Engine) -> None:
    definition = manual(
        [
            {"id": "one", "type": "send_email", "subject": "one", "body": "1", "next": "pause"},
            {"id": "pause", "type": "wait", "duration": "1d", "next": "two"},
            {"id": "two", "type": "send_email", "subject": "two {{contact.fields.n}}", "body": "2"},
        ]
    )
    ex_id, person = await start(engine, definition, email="m@example.com", fields={"n": 7})
    await engine.run()
    assert [m["subject"] for m in await engine.messages()] == ["one"]
    await engine.advance(days=1)
    messages = await engine.messages()
    assert [m["subject"] for m in messages] == ["two 7", "one"]  # newest first
    assert {m["execution_id"] for m in messages} == {ex_id}
    assert {m["contact_id"] for m in messages} == {person}


# --- cancel -----------------------------------------------------------------------------------


async def test_cancel_an_execution(engine: Engine) -> None:
    ex_id, _ = await start(engine, wait_then_tag(duration="1d"))
    await engine.run()
    now = engine.clock.now()
    response = await engine.tenant.request("POST", f"/api/v1/executions/{ex_id}/cancel")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["outcome"], body["wake_at"]) == ("cancelled", "cancelled", None)
    assert when(body["finished_at"]) == now
    assert trail(body)[-1] == ("pause", "cancelled", {"reason": "cancelled by API"})
    await engine.advance(days=2)
    ex = await engine.execution(ex_id)
    assert ex["status"] == "cancelled"
    assert [h["result"] for h in ex["history"]] == ["waiting", "cancelled"]
    again = await engine.tenant.request("POST", f"/api/v1/executions/{ex_id}/cancel")
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["code"] == "execution_finished"


async def test_cancel_a_completed_execution_or_a_missing_one(engine: Engine) -> None:
    ex_id, _ = await start(engine, manual([{"id": "a", "type": "end"}]))
    await engine.run()
    done = await engine.tenant.request("POST", f"/api/v1/executions/{ex_id}/cancel")
    assert done.status_code == 409 and done.json()["code"] == "execution_finished"
    assert (await engine.execution(ex_id))["status"] == "completed"
    missing = await engine.tenant.request(
        "POST", "/api/v1/executions/00000000-0000-0000-0000-000000000000/cancel"
    )
    assert missing.status_code == 404


# --- pause / resume ---------------------------------------------------------------------------


async def test_pause_holds_executions_and_enrollment(engine: Engine) -> None:
    wf = await engine.workflow(wait_then_tag(duration="1d"))
    first = await engine.contact()
    enrolled = await engine.enroll(wf, first)
    ex_id = enrolled["executions"][0]
    await engine.run()
    paused = await engine.tenant.request("POST", f"/api/v1/workflows/{wf}/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    await engine.advance(days=3)
    ex = await engine.execution(ex_id)
    assert ex["status"] == "waiting" and len(ex["history"]) == 1
    second = await engine.contact()
    refused = await engine.tenant.request(
        "POST", f"/api/v1/workflows/{wf}/enrollments", json={"contact_ids": [second]}
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "workflow_paused"
    resumed = await engine.tenant.request("POST", f"/api/v1/workflows/{wf}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    await engine.run()
    ex = await engine.execution(ex_id)
    assert trail(ex)[1:] == [
        ("pause", "woke", {}),
        ("after", "done", {"tag": "after", "changed": True}),
    ]
    # It woke when it was run, after the resume.
    assert when(ex["history"][1]["at"]) == engine.clock.now()
    assert ex["status"] == "completed"
    assert (await engine.enroll(wf, second))["enrolled"] == 1


async def test_pause_holds_executions_not_yet_started(engine: Engine) -> None:
    wf = await engine.workflow(manual([{"id": "a", "type": "add_tag", "tag": "a"}]))
    person = await engine.contact()
    ex_id = (await engine.enroll(wf, person))["executions"][0]
    await engine.tenant.request("POST", f"/api/v1/workflows/{wf}/pause")
    await engine.advance(hours=1)
    ex = await engine.execution(ex_id)
    assert (ex["status"], ex["history"]) == ("active", [])
    await engine.tenant.request("POST", f"/api/v1/workflows/{wf}/resume")
    await engine.run()
    assert (await engine.execution(ex_id))["status"] == "completed"
    assert (await get_contact(engine, person))["tags"] == ["a"]


async def test_a_contact_held_by_another_transaction_waits_for_a_later_batch(
    backend: str, engine: Engine, engine_settings: Settings
) -> None:
    """The batch does not wait for a contact's row lock (workers set no lock timeout: a session
    left open would hold the worker up for as long as it stays open): the held contact's
    execution stays due, untouched, and runs in a batch after the lock is released."""
    if backend != "postgresql":
        pytest.skip("SQLite has no row locks: its one writer holds the database")
    definition = manual([{"id": "tag", "type": "add_tag", "tag": "seen"}])
    wf = await engine.workflow(definition)
    held, free = await engine.contact(), await engine.contact()
    enrolled = await engine.enroll(wf, held, free)
    by_contact = dict(zip((held, free), enrolled["executions"], strict=True))
    holder = Database(engine_settings.database_url, pool_size=1)
    try:
        async with holder.session(write=True) as session:
            await session.execute(
                text("SELECT id FROM contacts WHERE id = :id FOR UPDATE"), {"id": held}
            )
            # Before, this batch waited for the lock: the bound turns that into a failure.
            await asyncio.wait_for(engine.worker.run_once(), LOCK_WAIT_BOUND_S)
            waiting = await engine.execution(by_contact[held])
            assert (waiting["status"], waiting["history"]) == ("active", [])
            assert (await engine.execution(by_contact[free]))["status"] == "completed"
            await session.rollback()
    finally:
        await holder.dispose()
    await engine.run()
    ran = await engine.execution(by_contact[held])
    assert ran["status"] == "completed" and trail(ran)[0][0] == "tag"
    assert "seen" in (await get_contact(engine, held))["tags"]
