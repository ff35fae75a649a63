"""Pure step semantics (SPEC §2, §3): :mod:`revflow.engine.interpreter` without a database."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from unittest.mock import ANY

import pytest

from revflow.definition import Condition, Definition, validate_definition
from revflow.engine.interpreter import (
    MAX_STEPS_PER_RUN,
    Channels,
    ContactState,
    Effects,
    ExecutionState,
    advance,
    check_condition_goals,
    deliver_event,
    evaluate,
    external_done,
)

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=3)


def definition(
    steps: list[dict[str, Any]],
    goals: list[dict[str, Any]] | None = None,
    start: str | None = None,
) -> Definition:
    document: dict[str, Any] = {"trigger": {"type": "manual"}, "steps": steps}
    if goals:
        document["goals"] = goals
    if start:
        document["start"] = start
    return validate_definition(document).model


def contact(**values: Any) -> ContactState:
    return ContactState(
        id=uuid.uuid4(),
        email=values.get("email"),
        phone=values.get("phone"),
        external_id=values.get("external_id"),
        fields=dict(values.get("fields", {})),
        tags=list(values.get("tags", [])),
    )


def execution(person: ContactState, **values: Any) -> ExecutionState:
    return ExecutionState(
        id=uuid.uuid4(),
        workflow_id=uuid.uuid4(),
        version=1,
        contact_id=person.id,
        status=values.get("status", "active"),
        current_step=values.get("current_step"),
        wake_at=values.get("wake_at", NOW),
        fired_goals=list(values.get("fired_goals", [])),
    )


def run(
    defn: Definition,
    ex: ExecutionState,
    person: ContactState,
    now: dt.datetime = NOW,
    channels: Channels = Channels(),
) -> Effects:
    effects = Effects()
    advance(defn, ex, person, now, effects, channels)
    return effects


def trail(effects: Effects) -> list[tuple[str, str, dict[str, Any]]]:
    return [(h["step"], h["result"], h["detail"]) for h in effects.history]


def cond(field: str, op: str, value: Any = None) -> Condition:
    data: dict[str, Any] = {"field": field, "op": op}
    if op not in ("exists", "not_exists"):
        data["value"] = value
    return Condition.model_validate(data)


# --- conditions -------------------------------------------------------------------------------


PERSON = contact(
    email="ada@example.com",
    phone="+15550001",
    external_id="crm-1",
    fields={"plan": "pro", "score": 10, "empty": "", "nothing": None, "ratio": 2.5},
    tags=["vip", "lead"],
)


@pytest.mark.parametrize(
    ("field", "op", "value", "expected"),
    [
        ("fields.plan", "eq", "pro", True),
        ("fields.plan", "eq", "free", False),
        ("fields.score", "eq", 10, True),
        ("fields.score", "eq", "10", False),
        ("fields.missing", "eq", "x", False),
        ("fields.plan", "ne", "free", True),
        ("fields.plan", "ne", "pro", False),
        ("fields.missing", "ne", "x", True),
        ("fields.score", "gt", 9, True),
        ("fields.score", "gt", 10, False),
        ("fields.score", "gte", 10, True),
        ("fields.score", "gte", 11, False),
        ("fields.score", "lt", 11, True),
        ("fields.score", "lt", 10, False),
        ("fields.score", "lte", 10, True),
        ("fields.score", "lte", 9, False),
        ("fields.ratio", "gt", 2, True),
        ("fields.plan", "gt", "abc", True),  # strings compare as strings
        ("fields.plan", "lt", "abc", False),
        ("fields.score", "gt", "5", False),  # a type mismatch is simply false
        ("fields.missing", "gt", 1, False),
        ("fields.missing", "lte", 1, False),
        ("fields.plan", "contains", "r", True),
        ("fields.plan", "contains", "x", False),
        ("fields.score", "contains", "1", False),  # not a string: nothing to look into
        ("fields.plan", "not_contains", "x", True),
        ("fields.plan", "not_contains", "pr", False),
        ("fields.missing", "not_contains", "x", True),
        ("fields.plan", "exists", None, True),
        ("fields.score", "exists", None, True),
        ("fields.empty", "exists", None, False),
        ("fields.nothing", "exists", None, False),
        ("fields.missing", "exists", None, False),
        ("fields.missing", "not_exists", None, True),
        ("fields.empty", "not_exists", None, True),
        ("fields.plan", "not_exists", None, False),
        ("tags", "contains", "vip", True),
        ("tags", "contains", "vi", False),  # tags are whole strings, not substrings
        ("tags", "not_contains", "vip", False),
        ("tags", "not_contains", "customer", True),
        ("tags", "exists", None, True),
        ("tags", "not_exists", None, False),
        ("email", "eq", "ada@example.com", True),
        ("email", "ne", "ada@example.com", False),
        ("email", "contains", "@example.com", True),
        ("email", "not_contains", "@example.org", True),
        ("email", "exists", None, True),
        ("email", "not_exists", None, False),
        ("phone", "eq", "+15550001", True),
        ("external_id", "eq", "crm-1", True),
    ],
)
def test_evaluate_every_op(field: str, op: str, value: Any, expected: bool) -> None:
    assert evaluate(cond(field, op, value), PERSON) is expected


@pytest.mark.parametrize(
    ("field", "op", "expected"),
    [
        ("tags", "exists", False),
        ("tags", "not_exists", True),
        ("email", "exists", False),
        ("email", "not_exists", True),
        ("phone", "exists", False),
    ],
)
def test_evaluate_on_an_empty_contact(field: str, op: str, expected: bool) -> None:
    assert evaluate(cond(field, op), contact()) is expected


def test_evaluate_tags_contains_on_empty_tags() -> None:
    assert evaluate(cond("tags", "contains", "vip"), contact()) is False
    assert evaluate(cond("tags", "not_contains", "vip"), contact()) is True
    assert evaluate(cond("email", "contains", "x"), contact()) is False


# --- message steps ----------------------------------------------------------------------------


def test_send_email_renders_placeholders_and_goes_on() -> None:
    defn = definition(
        [
            {
                "id": "hello",
                "type": "send_email",
                "subject": "Hi {{contact.fields.first_name}}",
                "body": "To {{ contact.email }}; plan [{{contact.fields.plan}}]",
                "next": "done",
            },
            {"id": "done", "type": "end"},
        ]
    )
    person = contact(email="ada@example.com", fields={"first_name": "Ada"})
    ex = execution(person)
    effects = run(defn, ex, person)
    assert trail(effects) == [
        ("hello", "sent", {"channel": "outbox", "message_id": ANY}),
        ("done", "completed", {}),
    ]
    assert effects.messages == [
        {
            "id": ANY,
            "kind": "email",
            "to": "ada@example.com",
            "subject": "Hi Ada",
            "body": "To ada@example.com; plan []",
            "step": "hello",
            "execution_id": ex.id,
            "contact_id": person.id,
            "channel": "outbox",
        }
    ]
    assert (ex.status, ex.outcome, ex.finished_at, ex.wake_at) == (
        "completed",
        "completed",
        NOW,
        None,
    )
    assert ex.current_step == "done"
    assert effects.steps_run == 2


def test_send_email_without_email_is_skipped() -> None:
    defn = definition(
        [
            {"id": "hello", "type": "send_email", "subject": "Hi", "body": "B", "next": "tag"},
            {"id": "tag", "type": "add_tag", "tag": "greeted"},
        ]
    )
    person = contact(phone="+1555")
    ex = execution(person)
    effects = run(defn, ex, person)
    assert trail(effects) == [
        ("hello", "skipped", {"reason": "contact has no email"}),
        ("tag", "done", {"tag": "greeted", "changed": True}),
    ]
    assert effects.messages == []
    assert ex.status == "completed"
    assert person.tags == ["greeted"]


def test_send_sms_renders_and_skips_without_phone() -> None:
    defn = definition(
        [{"id": "text", "type": "send_sms", "body": "Hey {{contact.fields.first_name}}!"}]
    )
    person = contact(phone="+15550001", fields={"first_name": "Bo"})
    ex = execution(person)
    effects = run(defn, ex, person)
    assert trail(effects) == [("text", "sent", {"channel": "outbox", "message_id": ANY})]
    assert [(m["kind"], m["to"], m["subject"], m["body"]) for m in effects.messages] == [
        ("sms", "+15550001", None, "Hey Bo!")
    ]
    assert ex.status == "completed"

    nobody = contact(email="x@example.com")
    ex = execution(nobody)
    effects = run(defn, ex, nobody)
    assert [(h["step"], h["result"]) for h in effects.history] == [("text", "skipped")]
    assert effects.messages == []
    assert ex.status == "completed"


def test_external_channel_hands_the_message_back() -> None:
    defn = definition(
        [
            {"id": "hello", "type": "send_email", "subject": "S", "body": "B", "next": "bye"},
            {"id": "bye", "type": "end"},
        ]
    )
    person = contact(email="a@example.com")
    ex = execution(person)
    effects = run(defn, ex, person, channels=Channels(email="smtp"))
    assert effects.history == [] and effects.messages == []
    assert [(c.step_id, c.kind, c.request["to"]) for c in effects.external] == [
        ("hello", "email", "a@example.com")
    ]
    assert (ex.status, ex.current_step) == ("active", "hello")
    done = Effects()
    external_done(defn, ex, effects.external[0], LATER, done, error=None, detail={"attempts": 1})
    message_id = str(effects.external[0].request["id"])
    assert trail(done) == [("hello", "sent", {"attempts": 1, "message_id": message_id})]
    assert (ex.status, ex.current_step, ex.wake_at) == ("active", "bye", LATER)


def test_failed_external_call_fails_the_execution() -> None:
    defn = definition([{"id": "call", "type": "http_request", "url": "https://example.com/x"}])
    person = contact(email="a@example.com")
    ex = execution(person)
    effects = run(defn, ex, person)
    assert effects.external[0].request["body"] == {"contact": person.as_mapping()}
    done = Effects()
    external_done(defn, ex, effects.external[0], NOW, done, error="HTTP 400", detail={})
    assert [(h["step"], h["result"], h["error"]) for h in done.history] == [
        ("call", "failed", "HTTP 400")
    ]
    assert (ex.status, ex.outcome, ex.error) == ("failed", "failed", "HTTP 400")


# --- contact steps ----------------------------------------------------------------------------


def test_add_and_remove_tag_are_idempotent() -> None:
    defn = definition(
        [
            {"id": "add", "type": "add_tag", "tag": "vip", "next": "again"},
            {"id": "again", "type": "add_tag", "tag": "vip", "next": "drop"},
            {"id": "drop", "type": "remove_tag", "tag": "lead", "next": "drop_again"},
            {"id": "drop_again", "type": "remove_tag", "tag": "lead"},
        ]
    )
    person = contact(tags=["lead"])
    ex = execution(person)
    effects = run(defn, ex, person)
    assert trail(effects) == [
        ("add", "done", {"tag": "vip", "changed": True}),
        ("again", "done", {"tag": "vip", "changed": False}),
        ("drop", "done", {"tag": "lead", "changed": True}),
        ("drop_again", "done", {"tag": "lead", "changed": False}),
    ]
    assert person.tags == ["vip"]
    assert person.added_tags == ["vip"]
    assert person.dirty
    assert ex.status == "completed"


def test_unchanged_tags_leave_the_contact_clean() -> None:
    defn = definition([{"id": "add", "type": "add_tag", "tag": "vip"}])
    person = contact(tags=["vip"])
    run(defn, execution(person), person)
    assert not person.dirty and person.added_tags == []


def test_update_field_targets_and_placeholders() -> None:
    defn = definition(
        [
            {
                "id": "mail",
                "type": "update_field",
                "field": "email",
                "value": "new@example.com",
                "next": "tel",
            },
            {
                "id": "tel",
                "type": "update_field",
                "field": "phone",
                "value": "+1999",
                "next": "greet",
            },
            {
                "id": "greet",
                "type": "update_field",
                "field": "fields.greeting",
                "value": "Hi {{contact.fields.first_name}} <{{contact.email}}>",
                "next": "score",
            },
            {
                "id": "score",
                "type": "update_field",
                "field": "fields.score",
                "value": 5,
                "next": "same",
            },
            {"id": "same", "type": "update_field", "field": "fields.score", "value": 5},
        ]
    )
    person = contact(email="old@example.com", fields={"first_name": "Ada", "score": 1})
    ex = execution(person)
    effects = run(defn, ex, person)
    assert trail(effects) == [
        ("mail", "done", {"field": "email", "changed": True}),
        ("tel", "done", {"field": "phone", "changed": True}),
        ("greet", "done", {"field": "fields.greeting", "changed": True}),
        ("score", "done", {"field": "fields.score", "changed": True}),
        ("same", "done", {"field": "fields.score", "changed": False}),
    ]
    assert person.email == "new@example.com"
    assert person.phone == "+1999"
    assert person.fields == {
        "first_name": "Ada",
        "score": 5,
        "greeting": "Hi Ada <new@example.com>",
    }
    assert person.changed_fields == ["email", "phone", "fields.greeting", "fields.score"]
    assert ex.status == "completed"


# --- condition, end, start --------------------------------------------------------------------


BRANCHING = [
    {
        "id": "check",
        "type": "condition",
        "if": {"field": "tags", "op": "contains", "value": "vip"},
        "then": "vip",
        "else": "plain",
    },
    {"id": "vip", "type": "add_tag", "tag": "offered"},
    {"id": "plain", "type": "add_tag", "tag": "nurtured"},
]


def test_condition_then_and_else() -> None:
    defn = definition(BRANCHING)
    vip = contact(tags=["vip"])
    effects = run(defn, execution(vip), vip)
    assert trail(effects) == [
        ("check", "branch", {"result": "then"}),
        ("vip", "done", {"tag": "offered", "changed": True}),
    ]
    other = contact()
    effects = run(defn, execution(other), other)
    assert trail(effects) == [
        ("check", "branch", {"result": "else"}),
        ("plain", "done", {"tag": "nurtured", "changed": True}),
    ]


def test_condition_without_else_completes() -> None:
    defn = definition(
        [
            {
                "id": "check",
                "type": "condition",
                "if": {"field": "fields.score", "op": "gte", "value": 10},
                "then": "big",
            },
            {"id": "big", "type": "add_tag", "tag": "big"},
        ]
    )
    person = contact(fields={"score": 3})
    ex = execution(person)
    effects = run(defn, ex, person)
    assert trail(effects) == [("check", "branch", {"result": "else"})]
    assert (ex.status, ex.outcome, ex.current_step) == ("completed", "completed", "check")
    assert person.tags == []


def test_end_stops_and_start_is_honoured() -> None:
    defn = definition(
        [
            {"id": "never", "type": "add_tag", "tag": "never"},
            {"id": "first", "type": "end"},
        ],
        start="first",
    )
    person = contact()
    ex = execution(person)
    effects = run(defn, ex, person)
    assert trail(effects) == [("first", "completed", {})]
    assert (ex.status, ex.outcome, ex.current_step) == ("completed", "completed", "first")
    assert person.tags == []


def test_missing_step_fails() -> None:
    defn = definition([{"id": "a", "type": "end"}])
    person = contact()
    ex = execution(person, current_step="gone")
    effects = run(defn, ex, person)
    assert [(h["step"], h["result"]) for h in effects.history] == [("gone", "failed")]
    assert ex.status == "failed"
    assert ex.error == "step 'gone' does not exist in version 1"


def test_a_run_is_bounded() -> None:
    # A loop through a zero-length wait cannot exist, but a long chain is cut per run.
    steps = [
        {"id": f"s{i}", "type": "add_tag", "tag": "t", "next": f"s{i + 1}"}
        for i in range(MAX_STEPS_PER_RUN + 5)
    ]
    steps.append({"id": f"s{MAX_STEPS_PER_RUN + 5}", "type": "end"})
    defn = definition(steps)
    person = contact()
    ex = execution(person)
    effects = run(defn, ex, person)
    assert effects.steps_run == MAX_STEPS_PER_RUN
    assert (ex.status, ex.current_step) == ("active", f"s{MAX_STEPS_PER_RUN}")
    effects = run(defn, ex, person)
    assert ex.status == "completed"
    assert effects.steps_run == 6


def test_a_run_takes_a_smaller_step_budget_and_stays_due() -> None:
    defn = definition(
        [
            {"id": "a", "type": "add_tag", "tag": "a", "next": "b"},
            {"id": "b", "type": "add_tag", "tag": "b", "next": "c"},
            {"id": "c", "type": "add_tag", "tag": "c"},
        ]
    )
    person = contact()
    ex = execution(person)
    effects = Effects()
    advance(defn, ex, person, NOW, effects, max_steps=2)
    assert effects.steps_run == 2
    assert (ex.status, ex.current_step, ex.wake_at) == ("active", "c", NOW)
    advance(defn, ex, person, NOW, effects, max_steps=2)
    assert (effects.steps_run, ex.status, person.tags) == (3, "completed", ["a", "b", "c"])


# --- waits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wait", "delta"),
    [
        ({"duration": "2d"}, dt.timedelta(days=2)),
        ({"duration": "P1D"}, dt.timedelta(days=1)),
        ({"duration": "PT1H30M"}, dt.timedelta(hours=1, minutes=30)),
        ({"duration": "45s"}, dt.timedelta(seconds=45)),
    ],
)
def test_duration_wait(wait: dict[str, Any], delta: dt.timedelta) -> None:
    defn = definition(
        [
            {"id": "pause", "type": "wait", **wait, "next": "after"},
            {"id": "after", "type": "add_tag", "tag": "woke"},
        ]
    )
    person = contact()
    ex = execution(person)
    effects = run(defn, ex, person)
    wake = NOW + delta
    assert trail(effects) == [
        ("pause", "waiting", {"kind": "duration", "wake_at": wake.isoformat()})
    ]
    assert (ex.status, ex.current_step, ex.wake_at, ex.wait_started_at) == (
        "waiting",
        "pause",
        wake,
        NOW,
    )
    effects = run(defn, ex, person, now=wake)
    assert trail(effects) == [
        ("pause", "woke", {}),
        ("after", "done", {"tag": "woke", "changed": True}),
    ]
    assert (ex.status, ex.finished_at) == ("completed", wake)


def test_until_wait_in_the_future_and_in_the_past() -> None:
    future = NOW + dt.timedelta(days=5)
    defn = definition(
        [
            {"id": "pause", "type": "wait", "until": future.isoformat(), "next": "after"},
            {"id": "after", "type": "end"},
        ]
    )
    person = contact()
    ex = execution(person)
    effects = run(defn, ex, person)
    assert trail(effects) == [
        ("pause", "waiting", {"kind": "until", "wake_at": future.isoformat()})
    ]
    assert ex.wake_at == future

    past = definition(
        [
            {"id": "pause", "type": "wait", "until": "2020-01-01T00:00:00Z", "next": "after"},
            {"id": "after", "type": "end"},
        ]
    )
    ex = execution(person)
    effects = run(past, ex, person)
    # A past instant: due at once (the worker picks it up again in the same drain).
    assert trail(effects) == [("pause", "waiting", {"kind": "until", "wake_at": NOW.isoformat()})]
    assert (ex.status, ex.wake_at) == ("waiting", NOW)
    effects = run(past, ex, person)
    assert trail(effects) == [("pause", "woke", {}), ("after", "completed", {})]


EVENT_WAIT = [
    {
        "id": "hold",
        "type": "wait",
        "event": "clicked",
        "timeout": "3d",
        "timeout_next": "late",
        "next": "clicked",
    },
    {"id": "clicked", "type": "add_tag", "tag": "clicked"},
    {"id": "late", "type": "add_tag", "tag": "late"},
]


def test_event_wait_gets_its_event() -> None:
    defn = definition(EVENT_WAIT)
    person = contact()
    ex = execution(person)
    effects = run(defn, ex, person)
    wake = NOW + dt.timedelta(days=3)
    assert trail(effects) == [
        ("hold", "waiting", {"kind": "event", "event": "clicked", "wake_at": wake.isoformat()})
    ]
    other = Effects()
    assert deliver_event(defn, ex, person, "opened", NOW, other) is False
    assert other.history == [] and ex.status == "waiting"
    effects = Effects()
    assert deliver_event(defn, ex, person, "clicked", NOW, effects) is True
    assert trail(effects) == [("hold", "event", {"event": "clicked"})]
    assert (ex.status, ex.current_step, ex.wake_at) == ("active", "clicked", NOW)
    # Once it left the wait, the same event does nothing more.
    assert deliver_event(defn, ex, person, "clicked", NOW, Effects()) is False


def test_event_wait_times_out_to_timeout_next() -> None:
    defn = definition(EVENT_WAIT)
    person = contact()
    ex = execution(person)
    run(defn, ex, person)
    effects = run(defn, ex, person, now=NOW + dt.timedelta(days=3))
    assert trail(effects) == [
        ("hold", "timeout", {"event": "clicked"}),
        ("late", "done", {"tag": "late", "changed": True}),
    ]
    assert person.tags == ["late"]


def test_event_wait_timeout_without_timeout_next_goes_to_next() -> None:
    defn = definition(
        [
            {"id": "hold", "type": "wait", "event": "clicked", "timeout": "1h", "next": "after"},
            {"id": "after", "type": "end"},
        ]
    )
    person = contact()
    ex = execution(person)
    run(defn, ex, person)
    effects = run(defn, ex, person, now=NOW + dt.timedelta(hours=1))
    assert trail(effects) == [("hold", "timeout", {"event": "clicked"}), ("after", "completed", {})]


def test_event_wait_without_timeout_has_no_wake_time() -> None:
    defn = definition([{"id": "hold", "type": "wait", "event": "clicked"}])
    person = contact()
    ex = execution(person)
    effects = run(defn, ex, person)
    assert trail(effects) == [("hold", "waiting", {"kind": "event", "event": "clicked"})]
    assert (ex.status, ex.wake_at) == ("waiting", None)
    effects = Effects()
    deliver_event(defn, ex, person, "clicked", LATER, effects)
    assert (ex.status, ex.outcome, ex.finished_at) == ("completed", "completed", LATER)


# --- goals ------------------------------------------------------------------------------------


GOAL_FLOW = [
    {"id": "pause", "type": "wait", "duration": "2d", "next": "nudge"},
    {"id": "nudge", "type": "add_tag", "tag": "nudged"},
    {"id": "thanks", "type": "add_tag", "tag": "thanked"},
]


def test_event_goal_cuts_a_wait_short_and_jumps() -> None:
    defn = definition(GOAL_FLOW, goals=[{"id": "bought", "event": "purchase", "then": "thanks"}])
    person = contact()
    ex = execution(person)
    run(defn, ex, person)
    effects = Effects()
    assert deliver_event(defn, ex, person, "purchase", NOW, effects) is True
    assert trail(effects) == [
        ("pause", "cut_short", {"goal": "bought"}),
        ("bought", "goal", {"then": "thanks"}),
    ]
    assert (ex.status, ex.current_step, ex.wake_at, ex.fired_goals) == (
        "active",
        "thanks",
        NOW,
        ["bought"],
    )
    effects = run(defn, ex, person)
    assert trail(effects) == [("thanks", "done", {"tag": "thanked", "changed": True})]
    assert (ex.status, ex.outcome) == ("completed", "completed")


def test_goal_without_then_completes_with_its_outcome() -> None:
    defn = definition(GOAL_FLOW, goals=[{"id": "bought", "event": "purchase"}])
    person = contact()
    ex = execution(person)
    run(defn, ex, person)
    effects = Effects()
    deliver_event(defn, ex, person, "purchase", NOW, effects)
    assert trail(effects) == [
        ("pause", "cut_short", {"goal": "bought"}),
        ("bought", "goal", {"then": None}),
    ]
    assert (ex.status, ex.outcome, ex.finished_at, ex.wake_at) == (
        "completed",
        "goal:bought",
        NOW,
        None,
    )


def test_goal_fires_once() -> None:
    defn = definition(
        [
            {"id": "pause", "type": "wait", "event": "never", "next": "after"},
            {"id": "after", "type": "end"},
            {"id": "thanks", "type": "wait", "duration": "1d", "next": "after"},
        ],
        goals=[{"id": "bought", "event": "purchase", "then": "thanks"}],
    )
    person = contact()
    ex = execution(person)
    run(defn, ex, person)
    assert deliver_event(defn, ex, person, "purchase", NOW, Effects()) is True
    run(defn, ex, person)
    assert (ex.status, ex.current_step) == ("waiting", "thanks")
    again = Effects()
    assert deliver_event(defn, ex, person, "purchase", NOW, again) is False
    assert again.history == []
    assert (ex.status, ex.current_step, ex.fired_goals) == ("waiting", "thanks", ["bought"])


def test_event_goal_with_if_needs_the_condition() -> None:
    defn = definition(
        GOAL_FLOW,
        goals=[
            {
                "id": "big",
                "event": "purchase",
                "if": {"field": "fields.amount", "op": "gte", "value": 100},
            }
        ],
    )
    person = contact(fields={"amount": 10})
    ex = execution(person)
    run(defn, ex, person)
    assert deliver_event(defn, ex, person, "purchase", NOW, Effects()) is False
    assert ex.status == "waiting"
    person.fields["amount"] = 150
    # An event goal is not a condition goal: a contact change alone does not fire it.
    assert check_condition_goals(defn, ex, person, NOW, Effects()) is False
    assert deliver_event(defn, ex, person, "purchase", NOW, Effects()) is True
    assert ex.outcome == "goal:big"


def test_condition_goal_is_checked_before_each_step() -> None:
    defn = definition(
        [
            {"id": "tag", "type": "add_tag", "tag": "customer", "next": "mail"},
            {"id": "mail", "type": "send_email", "subject": "Buy", "body": "now"},
            {"id": "thanks", "type": "send_email", "subject": "Thanks", "body": "!"},
        ],
        goals=[
            {
                "id": "converted",
                "if": {"field": "tags", "op": "contains", "value": "customer"},
                "then": "thanks",
            }
        ],
    )
    person = contact(email="a@example.com")
    ex = execution(person)
    effects = run(defn, ex, person)
    assert trail(effects) == [
        ("tag", "done", {"tag": "customer", "changed": True}),
        ("converted", "goal", {"then": "thanks"}),
        ("thanks", "sent", {"channel": "outbox", "message_id": ANY}),
    ]
    assert [m["subject"] for m in effects.messages] == ["Thanks"]
    assert (ex.status, ex.fired_goals) == ("completed", ["converted"])


def test_condition_goal_checked_when_a_wait_ends() -> None:
    defn = definition(
        GOAL_FLOW,
        goals=[{"id": "pro", "if": {"field": "fields.plan", "op": "eq", "value": "pro"}}],
    )
    person = contact()
    ex = execution(person)
    run(defn, ex, person)
    person.fields["plan"] = "pro"
    effects = run(defn, ex, person, now=NOW + dt.timedelta(days=2))
    assert trail(effects) == [
        ("pause", "cut_short", {"goal": "pro"}),
        ("pro", "goal", {"then": None}),
    ]
    assert (ex.status, ex.outcome) == ("completed", "goal:pro")
    assert person.tags == []


def test_condition_goal_that_already_fired_is_skipped() -> None:
    defn = definition(
        GOAL_FLOW,
        goals=[
            {
                "id": "pro",
                "if": {"field": "fields.plan", "op": "eq", "value": "pro"},
                "then": "thanks",
            }
        ],
    )
    person = contact(fields={"plan": "pro"})
    ex = execution(person, fired_goals=["pro"])
    effects = run(defn, ex, person)
    assert trail(effects)[0][:2] == ("pause", "waiting")
    assert check_condition_goals(defn, ex, person, NOW, Effects()) is False
