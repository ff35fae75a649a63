"""Valid definitions: every trigger, step type, wait kind and goal shape, and what comes back."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from revflow.definition import (
    CONDITION_OPS,
    STEP_TYPES,
    TRIGGER_TYPES,
    ConditionStep,
    Definition,
    DefinitionInvalid,
    EventTrigger,
    FieldChangedTrigger,
    HttpRequestStep,
    TagAddedTrigger,
    UpdateFieldStep,
    WaitStep,
    canonical_json,
    step_references,
    validate_definition,
    wait_kind,
)
from tests.support.workflows import spec_example

SPEC_EXAMPLE: dict[str, Any] = spec_example()

EVERY_STEP: dict[str, Any] = {
    "trigger": {"type": "event", "event": "signed_up", "reenroll": "30d"},
    "steps": [
        {
            "id": "welcome",
            "type": "send_email",
            "subject": "Welcome {{ contact.fields.first_name }}",
            "body": "Your id is {{contact.id}}, tags: {{contact.tags}}",
            "next": "sms",
        },
        {
            "id": "sms",
            "type": "send_sms",
            "body": "Hi {{contact.phone}} / {{contact.external_id}}",
            "next": "tag",
        },
        {"id": "tag", "type": "add_tag", "tag": "welcomed", "next": "untag"},
        {"id": "untag", "type": "remove_tag", "tag": "new", "next": "set_plan"},
        {
            "id": "set_plan",
            "type": "update_field",
            "field": "fields.plan",
            "value": {"name": "pro", "since": "{{contact.email}}"},
            "next": "set_email",
        },
        {
            "id": "set_email",
            "type": "update_field",
            "field": "email",
            "value": None,
            "next": "hook",
        },
        {
            "id": "hook",
            "type": "http_request",
            "url": "https://crm.example.com/contacts/{{contact.id}}",
            "method": "PUT",
            "body": {"tags": ["{{contact.tags}}"], "n": 1, "ok": True, "none": None},
            "headers": {"X-Source": "revflow", "X-Contact": "{{contact.id}}"},
            "max_attempts": 20,
            "next": "default_hook",
        },
        {"id": "default_hook", "type": "http_request", "url": "http://10.0.0.1/", "next": "pause"},
        {"id": "pause", "type": "wait", "duration": "PT1H30M", "next": "until"},
        {"id": "until", "type": "wait", "until": "2030-06-01T09:00:00+02:00", "next": "naive"},
        {"id": "naive", "type": "wait", "until": "2030-06-01T09:00:00", "next": "reply"},
        {
            "id": "reply",
            "type": "wait",
            "event": "replied",
            "timeout": "3d",
            "timeout_next": "no_reply",
            "next": "score",
        },
        {
            "id": "score",
            "type": "condition",
            "if": {"field": "fields.score", "op": "gte", "value": 10},
            "then": "plain_event",
        },
        {"id": "plain_event", "type": "wait", "event": "clicked", "next": "done"},
        {
            "id": "no_reply",
            "type": "condition",
            "if": {"field": "email", "op": "not_exists"},
            "then": "done",
            "else": "pause",
        },
        {"id": "done", "type": "end"},
    ],
    "goals": [
        {"id": "bought", "event": "purchase", "then": "done"},
        {"id": "is_vip", "if": {"field": "tags", "op": "contains", "value": "vip"}},
        {
            "id": "big_spender",
            "event": "purchase",
            "if": {"field": "fields.total", "op": "gt", "value": 1000},
        },
    ],
}


def test_spec_example_is_valid() -> None:
    validated = validate_definition(SPEC_EXAMPLE)
    assert validated.warnings == []
    assert validated.model.start_step_id() == "welcome"
    assert isinstance(validated.model.trigger, TagAddedTrigger)
    assert validated.model.trigger.reenroll == "after_finish"
    assert validated.definition == SPEC_EXAMPLE
    assert validated.canonical == canonical_json(SPEC_EXAMPLE)
    assert validated.content_hash == hashlib.sha256(validated.canonical).hexdigest()


def test_every_step_type_is_valid_and_typed() -> None:
    validated = validate_definition(EVERY_STEP)
    assert validated.warnings == []
    steps = validated.model.step_map()
    assert [step.type for step in validated.model.steps] == [
        "send_email",
        "send_sms",
        "add_tag",
        "remove_tag",
        "update_field",
        "update_field",
        "http_request",
        "http_request",
        "wait",
        "wait",
        "wait",
        "wait",
        "condition",
        "wait",
        "condition",
        "end",
    ]
    hook, default_hook = steps["hook"], steps["default_hook"]
    assert isinstance(hook, HttpRequestStep) and isinstance(default_hook, HttpRequestStep)
    assert (hook.method, hook.max_attempts, hook.headers) == (
        "PUT",
        20,
        {"X-Source": "revflow", "X-Contact": "{{contact.id}}"},
    )
    assert (default_hook.method, default_hook.body, default_hook.max_attempts) == (
        "POST",
        None,
        None,
    )
    set_email = steps["set_email"]
    assert isinstance(set_email, UpdateFieldStep) and set_email.value is None
    score = steps["score"]
    assert isinstance(score, ConditionStep)
    assert (score.if_.field, score.if_.op, score.if_.value, score.else_) == (
        "fields.score",
        "gte",
        10,
        None,
    )
    trigger = validated.model.trigger
    assert isinstance(trigger, EventTrigger) and trigger.reenroll == timedelta(days=30)
    assert [goal.id for goal in validated.model.goals] == ["bought", "is_vip", "big_spender"]


def test_wait_kinds_and_their_values() -> None:
    steps = validate_definition(EVERY_STEP).model.step_map()
    pause, until, naive, reply = steps["pause"], steps["until"], steps["naive"], steps["reply"]
    assert isinstance(pause, WaitStep) and isinstance(until, WaitStep)
    assert isinstance(naive, WaitStep) and isinstance(reply, WaitStep)
    assert [wait_kind(step) for step in (pause, until, naive, reply)] == [
        "duration",
        "until",
        "until",
        "event",
    ]
    assert pause.duration == timedelta(hours=1, minutes=30)
    assert until.until == datetime(2030, 6, 1, 7, 0, tzinfo=UTC)
    assert naive.until == datetime(2030, 6, 1, 9, 0, tzinfo=UTC)
    assert (reply.event, reply.timeout, reply.timeout_next) == (
        "replied",
        timedelta(days=3),
        "no_reply",
    )


@pytest.mark.parametrize(
    ("trigger", "reenroll"),
    [
        ({"type": "manual"}, "after_finish"),
        ({"type": "contact_created", "reenroll": "never"}, "never"),
        ({"type": "tag_added", "tag": "lead", "reenroll": "after_finish"}, "after_finish"),
        ({"type": "field_changed", "field": "fields.plan", "reenroll": "P1W"}, timedelta(weeks=1)),
        ({"type": "field_changed", "field": "email"}, "after_finish"),
        ({"type": "event", "event": "purchase", "reenroll": "12h"}, timedelta(hours=12)),
    ],
)
def test_every_trigger(trigger: dict[str, Any], reenroll: object) -> None:
    validated = validate_definition({"trigger": trigger, "steps": [{"id": "x", "type": "end"}]})
    assert validated.model.trigger.type == trigger["type"]
    assert validated.model.trigger.reenroll == reenroll
    if isinstance(validated.model.trigger, FieldChangedTrigger):
        assert validated.model.trigger.field == trigger["field"]


@pytest.mark.parametrize(
    "if_",
    [
        {"field": "email", "op": "eq", "value": "a@example.com"},
        {"field": "phone", "op": "ne", "value": None},
        {"field": "external_id", "op": "exists"},
        {"field": "fields.age", "op": "lt", "value": 18},
        {"field": "fields.signup", "op": "lte", "value": "2025-01-01"},
        {"field": "fields.score", "op": "gt", "value": 1.5},
        {"field": "fields.bio", "op": "not_contains", "value": "spam"},
        {"field": "tags", "op": "not_exists"},
        {"field": "tags", "op": "exists", "value": None},
        {"field": "fields.prénom", "op": "eq", "value": {"any": ["json"]}},
        {"field": "fields.first-name_2", "op": "contains", "value": True},
    ],
)
def test_condition_shapes(if_: dict[str, Any]) -> None:
    raw = {
        "trigger": {"type": "manual"},
        "steps": [
            {"id": "c", "type": "condition", "if": if_, "then": "done"},
            {"id": "done", "type": "end"},
        ],
        "goals": [{"id": "g", "if": if_}],
    }
    validate_definition(raw)


def test_start_defaults_to_the_first_step_and_can_be_set() -> None:
    steps = [{"id": "a", "type": "end"}, {"id": "b", "type": "add_tag", "tag": "x", "next": "a"}]
    assert (
        validate_definition({"trigger": {"type": "manual"}, "steps": steps}).model.start_step_id()
        == "a"
    )
    explicit = validate_definition({"trigger": {"type": "manual"}, "start": "b", "steps": steps})
    assert explicit.model.start_step_id() == "b"
    assert explicit.warnings == []


def test_unreachable_steps_are_warnings() -> None:
    raw = {
        "trigger": {"type": "manual"},
        "steps": [
            {"id": "a", "type": "add_tag", "tag": "x"},
            {"id": "orphan", "type": "send_sms", "body": "hi", "next": "orphan_child"},
            {"id": "orphan_child", "type": "end"},
            {"id": "by_goal", "type": "end"},
        ],
        "goals": [{"id": "g", "event": "buy", "then": "by_goal"}],
    }
    validated = validate_definition(raw)
    assert validated.warnings == [
        {"pointer": "/steps/1", "message": "step 'orphan' is unreachable"},
        {"pointer": "/steps/2", "message": "step 'orphan_child' is unreachable"},
    ]


def test_every_branch_makes_steps_reachable() -> None:
    raw = {
        "trigger": {"type": "manual"},
        "steps": [
            {
                "id": "w",
                "type": "wait",
                "event": "e",
                "timeout": "1d",
                "timeout_next": "late",
                "next": "c",
            },
            {
                "id": "c",
                "type": "condition",
                "if": {"field": "email", "op": "exists"},
                "then": "t",
                "else": "e",
            },
            {"id": "t", "type": "end"},
            {"id": "e", "type": "end"},
            {"id": "late", "type": "end"},
        ],
    }
    assert validate_definition(raw).warnings == []


def test_a_loop_through_a_wait_is_accepted() -> None:
    raw = {
        "trigger": {"type": "manual"},
        "steps": [
            {
                "id": "nag",
                "type": "send_email",
                "subject": "Still there?",
                "body": "...",
                "next": "pause",
            },
            {"id": "pause", "type": "wait", "duration": "1w", "next": "check"},
            {
                "id": "check",
                "type": "condition",
                "if": {"field": "tags", "op": "contains", "value": "replied"},
                "then": "done",
                "else": "nag",
            },
            {"id": "done", "type": "end"},
            {"id": "self", "type": "wait", "event": "ping", "next": "self"},
        ],
        "goals": [{"id": "g", "event": "x", "then": "self"}],
    }
    assert validate_definition(raw).warnings == []


def test_model_dump_gives_the_document_keys_and_validates_again() -> None:
    model = validate_definition(EVERY_STEP).model
    dumped = model.model_dump(mode="json")
    condition = dumped["steps"][12]
    assert "if" in condition and "else" in condition and "if_" not in condition
    assert validate_definition(dumped).model == model
    assert Definition.model_validate(json.loads(json.dumps(dumped))) == model


def test_models_are_frozen() -> None:
    model = validate_definition(SPEC_EXAMPLE).model
    with pytest.raises(ValidationError):
        model.start = "pause"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        model.steps[0].id = "other"  # type: ignore[misc]


def test_step_map_is_cached_without_changing_equality() -> None:
    first = validate_definition(SPEC_EXAMPLE).model
    second = validate_definition(SPEC_EXAMPLE).model
    steps = first.step_map()
    steps.clear()
    assert list(first.step_map()) == [
        "welcome",
        "pause",
        "is_vip",
        "vip_offer",
        "nurture",
        "thank_you",
    ]
    assert first == second


def test_step_map_and_references() -> None:
    model = validate_definition(EVERY_STEP).model
    steps = model.step_map()
    assert list(steps) == [step.id for step in model.steps]
    assert step_references(steps["welcome"]) == {"next": "sms"}
    assert step_references(steps["reply"]) == {"next": "score", "timeout_next": "no_reply"}
    assert step_references(steps["score"]) == {"then": "plain_event"}
    assert step_references(steps["no_reply"]) == {"then": "done", "else": "pause"}
    assert step_references(steps["done"]) == {}


def test_definition_is_a_copy_in_json_types() -> None:
    raw: dict[str, Any] = {
        "trigger": {"type": "manual"},
        "steps": ({"id": "a", "type": "add_tag", "tag": "x"},),
    }
    validated = validate_definition(raw)
    assert validated.definition == {
        "steps": [{"id": "a", "tag": "x", "type": "add_tag"}],
        "trigger": {"type": "manual"},
    }
    raw["trigger"]["type"] = "event"
    assert validated.definition["trigger"] == {"type": "manual"}


@pytest.mark.parametrize("step_type", STEP_TYPES)
def test_every_listed_step_type_is_known(step_type: str) -> None:
    raw = {"trigger": {"type": "manual"}, "steps": [{"id": "a", "type": step_type}]}
    try:
        validate_definition(raw)
    except DefinitionInvalid as exc:
        assert "/steps/0/type" not in [error["pointer"] for error in exc.errors]


@pytest.mark.parametrize("trigger_type", TRIGGER_TYPES)
def test_every_listed_trigger_type_is_known(trigger_type: str) -> None:
    raw = {"trigger": {"type": trigger_type}, "steps": [{"id": "a", "type": "end"}]}
    try:
        validate_definition(raw)
    except DefinitionInvalid as exc:
        assert "/trigger/type" not in [error["pointer"] for error in exc.errors]


def test_condition_ops() -> None:
    assert CONDITION_OPS == (
        "eq",
        "ne",
        "gt",
        "gte",
        "lt",
        "lte",
        "contains",
        "not_contains",
        "exists",
        "not_exists",
    )
