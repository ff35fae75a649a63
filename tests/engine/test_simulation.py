"""The simulated clock (:mod:`revflow.engine.simulation`) without a database: the order of a
moment's entries and steps, contact changes reaching goals and conditions, external calls
reported, and the bounds."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from revflow.engine.interpreter import Channels
from revflow.engine.simulation import Simulation, TimelineEntry, simulate
from tests.engine.test_interpreter import NOW, contact, definition

DAY = dt.timedelta(days=1)


def run(
    steps: list[dict[str, Any]],
    *timeline: TimelineEntry,
    goals: list[dict[str, Any]] | None = None,
    until: dt.timedelta = 90 * DAY,
    **values: Any,
) -> Simulation:
    channels = values.pop("channels", Channels())
    max_steps = values.pop("max_steps", 10_000)
    return simulate(
        definition(steps, goals),
        contact(**values),
        workflow_id=uuid.uuid4(),
        version=1,
        start=NOW,
        until=NOW + until,
        timeline=timeline,
        channels=channels,
        max_steps=max_steps,
    )


def trail(result: Simulation) -> list[tuple[dt.datetime, str, str]]:
    return [(entry["at"], entry["step"], entry["result"]) for entry in result.path]


def test_an_entry_comes_before_the_steps_due_at_its_moment() -> None:
    steps = [
        {"id": "pause", "type": "wait", "duration": "2d", "next": "is_vip"},
        {
            "id": "is_vip",
            "type": "condition",
            "if": {"field": "tags", "op": "contains", "value": "vip"},
            "then": "vip",
            "else": "plain",
        },
        {"id": "vip", "type": "add_tag", "tag": "offered"},
        {"id": "plain", "type": "end"},
    ]
    result = run(steps, TimelineEntry(at=NOW + 2 * DAY, add_tags=("vip",)))
    assert trail(result)[-3:] == [
        (NOW + 2 * DAY, "pause", "woke"),
        (NOW + 2 * DAY, "is_vip", "branch"),
        (NOW + 2 * DAY, "vip", "done"),
    ]
    assert result.contact.tags == ["vip", "offered"]
    assert (result.stopped_reason, result.steps) == ("finished", 3)


def test_a_contact_change_reaches_a_condition_goal_and_later_entries_still_change_it() -> None:
    result = run(
        [{"id": "pause", "type": "wait", "duration": "5d"}],
        TimelineEntry(at=NOW + DAY, fields={"plan": "free"}),
        TimelineEntry(at=NOW + 2 * DAY, fields={"plan": "pro"}),
        TimelineEntry(at=NOW + 3 * DAY, remove_tags=("lead",)),
        goals=[{"id": "upgraded", "if": {"field": "fields.plan", "op": "eq", "value": "pro"}}],
        tags=["lead"],
    )
    assert trail(result) == [
        (NOW, "pause", "waiting"),
        (NOW + 2 * DAY, "pause", "cut_short"),
        (NOW + 2 * DAY, "upgraded", "goal"),
    ]
    assert result.goals == [{"at": NOW + 2 * DAY, "goal": "upgraded", "then": None}]
    assert (result.execution.status, result.execution.outcome) == ("completed", "goal:upgraded")
    assert (result.contact.fields, result.contact.tags) == ({"plan": "pro"}, [])


def test_an_event_wait_takes_the_event_or_times_out() -> None:
    steps = [
        {"id": "pay", "type": "wait", "event": "paid", "timeout": "3d", "next": "thanks"},
        {"id": "thanks", "type": "end"},
    ]
    paid = run(steps, TimelineEntry(at=NOW + DAY, event="paid"))
    assert trail(paid)[1:] == [(NOW + DAY, "pay", "event"), (NOW + DAY, "thanks", "completed")]
    late = run(steps, TimelineEntry(at=NOW + 4 * DAY, event="paid"))
    assert trail(late)[1] == (NOW + 3 * DAY, "pay", "timeout")


def test_external_calls_are_reported_and_taken_as_succeeded() -> None:
    steps = [
        {
            "id": "notify",
            "type": "http_request",
            "url": "https://hooks.example.com/{{contact.external_id}}",
            "next": "hello",
        },
        {"id": "hello", "type": "send_email", "subject": "Hi", "body": "b", "next": "text"},
        {"id": "text", "type": "send_sms", "body": "t"},
    ]
    result = run(
        steps,
        email="a@x.example",
        phone="+100",
        external_id="c-1",
        channels=Channels(email="smtp", sms="outbox"),
    )
    [request] = result.http_requests
    assert (request["at"], request["method"], request["url"]) == (
        NOW,
        "POST",
        "https://hooks.example.com/c-1",
    )
    assert request["body"]["contact"]["external_id"] == "c-1"
    assert [(m["step"], m["channel"], m["to"]) for m in result.messages] == [
        ("hello", "smtp", "a@x.example"),
        ("text", "outbox", "+100"),
    ]
    assert [(e["step"], e["result"], e["detail"].get("simulated")) for e in result.path] == [
        ("notify", "done", True),
        ("hello", "sent", True),
        ("text", "sent", None),
    ]
    assert result.path[1]["detail"]["message_id"] == str(result.messages[0]["id"])


def test_a_loop_through_waits_stops_at_until_or_at_the_step_limit() -> None:
    steps = [
        {"id": "pause", "type": "wait", "duration": "1d", "next": "mark"},
        {"id": "mark", "type": "add_tag", "tag": "seen", "next": "pause"},
    ]
    short = run(steps, until=3 * DAY)
    assert short.stopped_reason == "until"
    assert (short.execution.status, short.execution.wake_at) == ("waiting", NOW + 4 * DAY)
    assert short.steps == 7  # pause, then (mark, pause) three times
    bounded = run(steps, until=3650 * DAY, max_steps=101)
    assert (bounded.stopped_reason, bounded.steps) == ("step_limit", 101)
    assert bounded.execution.status == "waiting"  # the 101st step began a wait


def test_a_long_run_without_waits_is_cut_at_the_exact_limit() -> None:
    chain = [
        {"id": f"s{i}", "type": "add_tag", "tag": f"t{i}", "next": f"s{i + 1}"} for i in range(450)
    ]
    chain.append({"id": "s450", "type": "end"})
    result = run(chain, max_steps=300)
    assert (result.stopped_reason, result.steps) == ("step_limit", 300)
    assert (result.execution.status, result.execution.current_step) == ("active", "s300")
    done = run(chain)
    assert (done.stopped_reason, done.steps) == ("finished", 451)
