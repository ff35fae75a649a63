"""Invalid definitions: every problem is reported, each at the right JSON Pointer."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revflow.definition import DefinitionInvalid, validate_definition

END = {"id": "done", "type": "end"}


def doc(*steps: Any, **top: Any) -> dict[str, Any]:
    """A definition with a manual trigger and the given steps (an end step by default)."""
    return {"trigger": {"type": "manual"}, "steps": list(steps) if steps else [END], **top}


def email(step_id: str = "a", **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "send_email", "subject": "Hi", "body": "Hello", **extra}


def wait(step_id: str = "w", **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "wait", **extra}


def condition(if_: dict[str, Any], then: str = "done", **extra: Any) -> dict[str, Any]:
    return {"id": "c", "type": "condition", "if": if_, "then": then, **extra}


def http(**extra: Any) -> dict[str, Any]:
    return {"id": "h", "type": "http_request", "url": "https://example.com/hook", **extra}


INVALID: list[tuple[str, Any, list[str]]] = [
    ("unknown top-level key", doc(extra=1), ["/extra"]),
    ("missing trigger", {"steps": [END]}, ["/trigger"]),
    ("trigger not an object", {"trigger": "manual", "steps": [END]}, ["/trigger"]),
    ("unknown trigger type", {"trigger": {"type": "webhook"}, "steps": [END]}, ["/trigger/type"]),
    ("trigger without type", {"trigger": {"tag": "x"}, "steps": [END]}, ["/trigger/type"]),
    ("tag_added without tag", {"trigger": {"type": "tag_added"}, "steps": [END]}, ["/trigger/tag"]),
    (
        "unknown key on a trigger",
        {"trigger": {"type": "manual", "tag": "x"}, "steps": [END]},
        ["/trigger/tag"],
    ),
    (
        "reenroll not a duration",
        {"trigger": {"type": "manual", "reenroll": "sometimes"}, "steps": [END]},
        ["/trigger/reenroll"],
    ),
    (
        "reenroll zero",
        {"trigger": {"type": "event", "event": "x", "reenroll": "0d"}, "steps": [END]},
        ["/trigger/reenroll"],
    ),
    (
        "field_changed on an unknown field",
        {"trigger": {"type": "field_changed", "field": "name"}, "steps": [END]},
        ["/trigger/field"],
    ),
    ("no steps", doc(steps=[]), ["/steps"]),
    ("steps missing", {"trigger": {"type": "manual"}}, ["/steps"]),
    ("steps not a list", doc(steps={"a": END}), ["/steps"]),
    ("step not an object", doc("send", END), ["/steps/0"]),
    ("unknown step type", doc({"id": "a", "type": "send_fax"}), ["/steps/0/type"]),
    ("step without type", doc({"id": "a"}, END), ["/steps/0/type"]),
    ("step type not a string", doc({"id": "a", "type": ["end"]}), ["/steps/0/type"]),
    ("step id with a space", doc({"id": "a b", "type": "end"}), ["/steps/0/id"]),
    ("step id too long", doc({"id": "x" * 65, "type": "end"}), ["/steps/0/id"]),
    ("step without id", doc({"type": "end"}), ["/steps/0/id"]),
    ("duplicate step id", doc(END, END), ["/steps/1/id"]),
    ("unknown key on a step", doc(email(then="done"), END), ["/steps/0/then"]),
    ("next on an end step", doc({"id": "e", "type": "end", "next": "e"}), ["/steps/0/next"]),
    (
        "next on a condition",
        doc(condition({"field": "email", "op": "exists"}, next="done"), END),
        ["/steps/0/next"],
    ),
    (
        "email without subject",
        doc({"id": "a", "type": "send_email", "body": "x"}),
        ["/steps/0/subject"],
    ),
    ("empty tag", doc({"id": "t", "type": "add_tag", "tag": ""}), ["/steps/0/tag"]),
    ("next names no step", doc(email(next="nowhere")), ["/steps/0/next"]),
    ("start names no step", doc(start="nowhere"), ["/start"]),
    (
        "then and else name no step",
        doc(condition({"field": "email", "op": "exists"}, then="x", **{"else": "y"})),
        ["/steps/0/else", "/steps/0/then"],
    ),
    (
        "condition without then",
        doc({"id": "c", "type": "condition", "if": {"field": "email", "op": "exists"}}),
        ["/steps/0/then"],
    ),
    (
        "condition without if",
        doc({"id": "c", "type": "condition", "then": "done"}, END),
        ["/steps/0/if"],
    ),
    (
        "unknown operator",
        doc(condition({"field": "email", "op": "like", "value": "x"}), END),
        ["/steps/0/if/op"],
    ),
    (
        "unknown condition field",
        doc(condition({"field": "name", "op": "exists"}), END),
        ["/steps/0/if/field"],
    ),
    (
        "condition field id is not a field",
        doc(condition({"field": "fields.", "op": "exists"}), END),
        ["/steps/0/if/field"],
    ),
    (
        "comparison without value",
        doc(condition({"field": "email", "op": "eq"}), END),
        ["/steps/0/if/value"],
    ),
    (
        "exists with a value",
        doc(condition({"field": "email", "op": "exists", "value": "x"}), END),
        ["/steps/0/if/value"],
    ),
    (
        "gt with an object",
        doc(condition({"field": "fields.n", "op": "gt", "value": {}}), END),
        ["/steps/0/if/value"],
    ),
    (
        "contains null",
        doc(condition({"field": "fields.n", "op": "contains", "value": None}), END),
        ["/steps/0/if/value"],
    ),
    (
        "eq on tags",
        doc(condition({"field": "tags", "op": "eq", "value": "vip"}), END),
        ["/steps/0/if/op"],
    ),
    (
        "unknown key in if",
        doc(condition({"field": "email", "op": "exists", "x": 1}), END),
        ["/steps/0/if/x"],
    ),
    ("wait of no kind", doc(wait()), ["/steps/0"]),
    ("wait of two kinds", doc(wait(duration="1d", event="x")), ["/steps/0"]),
    ("bad duration", doc(wait(duration="two days")), ["/steps/0/duration"]),
    ("duration in months", doc(wait(duration="P1M")), ["/steps/0/duration"]),
    ("duration as a number", doc(wait(duration=60)), ["/steps/0/duration"]),
    ("zero duration", doc(wait(duration="0s")), ["/steps/0/duration"]),
    ("until without a time", doc(wait(until="2030-01-01")), ["/steps/0/until"]),
    ("until not a date", doc(wait(until="tomorrow at noon")), ["/steps/0/until"]),
    (
        "timeout on a duration wait",
        doc(wait(duration="1d", timeout="2d", timeout_next="done"), END),
        ["/steps/0/timeout", "/steps/0/timeout_next"],
    ),
    (
        "timeout_next without timeout",
        doc(wait(event="x", timeout_next="done"), END),
        ["/steps/0/timeout_next"],
    ),
    (
        "timeout_next names no step",
        doc(wait(event="x", timeout="1d", timeout_next="zz")),
        ["/steps/0/timeout_next"],
    ),
    ("bad timeout", doc(wait(event="x", timeout="soon")), ["/steps/0/timeout"]),
    ("placeholder outside contact", doc(email(subject="Hi {{user.name}}")), ["/steps/0/subject"]),
    ("unknown contact placeholder", doc(email(body="{{contact.name}}")), ["/steps/0/body"]),
    (
        "unterminated placeholder",
        doc({"id": "s", "type": "send_sms", "body": "Hi {{contact.email"}),
        ["/steps/0/body"],
    ),
    (
        "placeholder deep in an http body",
        doc(http(body={"items": [{"text": "ok"}, {"text": "{{ account.id }}"}]})),
        ["/steps/0/body/items/1/text"],
    ),
    (
        "placeholder under a key with a slash",
        doc(http(body={"a/b~c": "{{x}}"})),
        ["/steps/0/body/a~1b~0c"],
    ),
    (
        "placeholder in a url",
        doc(http(url="https://x.test/{{contact.password}}")),
        ["/steps/0/url"],
    ),
    ("placeholder in a header", doc(http(headers={"X-Id": "{{id}}"})), ["/steps/0/headers/X-Id"]),
    (
        "placeholder in an update value",
        doc({"id": "u", "type": "update_field", "field": "fields.note", "value": ["{{now}}"]}),
        ["/steps/0/value/0"],
    ),
    (
        "update of tags",
        doc({"id": "u", "type": "update_field", "field": "tags", "value": "x"}),
        ["/steps/0/field"],
    ),
    (
        "update without value",
        doc({"id": "u", "type": "update_field", "field": "fields.x"}),
        ["/steps/0/value"],
    ),
    (
        "email set to a number",
        doc({"id": "u", "type": "update_field", "field": "email", "value": 5}),
        ["/steps/0/value"],
    ),
    ("url not http", doc(http(url="ftp://example.com")), ["/steps/0/url"]),
    ("lower-case method", doc(http(method="post")), ["/steps/0/method"]),
    ("max_attempts too high", doc(http(max_attempts=21)), ["/steps/0/max_attempts"]),
    ("max_attempts as a string", doc(http(max_attempts="3")), ["/steps/0/max_attempts"]),
    ("max_attempts as a boolean", doc(http(max_attempts=True)), ["/steps/0/max_attempts"]),
    ("bad header name", doc(http(headers={"Bad Header": "x"})), ["/steps/0/headers/Bad Header"]),
    (
        "header value with a line break",
        doc(http(headers={"X-A": "a\r\nB: c"})),
        ["/steps/0/headers/X-A"],
    ),
    (
        "loop without a wait",
        doc(
            {"id": "a", "type": "add_tag", "tag": "x", "next": "c"},
            condition({"field": "email", "op": "exists"}, then="a"),
        ),
        ["/steps/0"],
    ),
    (
        "step looping on itself",
        doc(END, {"id": "t", "type": "add_tag", "tag": "x", "next": "t"}),
        ["/steps/1"],
    ),
    ("goal without event or if", doc(goals=[{"id": "g"}]), ["/goals/0"]),
    (
        "goal then names no step",
        doc(goals=[{"id": "g", "event": "buy", "then": "zz"}]),
        ["/goals/0/then"],
    ),
    (
        "duplicate goal id",
        doc(goals=[{"id": "g", "event": "a"}, {"id": "g", "event": "b"}]),
        ["/goals/1/id"],
    ),
    ("goal id of a step", doc(goals=[{"id": "done", "event": "a"}]), ["/goals/0/id"]),
    ("unknown key on a goal", doc(goals=[{"id": "g", "event": "a", "foo": 1}]), ["/goals/0/foo"]),
    (
        "goal condition on an unknown field",
        doc(goals=[{"id": "g", "if": {"field": "x", "op": "exists"}}]),
        ["/goals/0/if/field"],
    ),
    ("goals not a list", doc(goals={"id": "g"}), ["/goals"]),
]


@pytest.mark.parametrize(
    ("raw", "pointers"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_invalid_definition_reports_exact_pointers(raw: Any, pointers: list[str]) -> None:
    with pytest.raises(DefinitionInvalid) as info:
        validate_definition(raw)
    assert [error["pointer"] for error in info.value.errors] == pointers
    assert all(error["message"] for error in info.value.errors)


@pytest.mark.parametrize("raw", [[], ["trigger"], "definition", None, 42, True])
def test_non_object_is_one_error_at_the_root(raw: object) -> None:
    with pytest.raises(DefinitionInvalid) as info:
        validate_definition(raw)
    assert info.value.errors == [{"pointer": "", "message": "a definition must be a JSON object"}]


@pytest.mark.parametrize(
    "bad_value", [float("nan"), float("inf"), {1, 2}, object(), b"bytes"], ids=repr
)
def test_non_json_values_are_one_error_at_the_root(bad_value: object) -> None:
    raw = doc(email(subject=bad_value))
    with pytest.raises(DefinitionInvalid) as info:
        validate_definition(raw)
    assert [error["pointer"] for error in info.value.errors] == [""]


def test_all_problems_are_collected_in_document_order() -> None:
    raw = {
        "trigger": {"type": "tag_added"},
        "start": "nowhere",
        "steps": [
            email(next="missing"),
            {"id": "b", "type": "teleport"},
            wait(duration="soon"),
            condition({"field": "email", "op": "like"}, then="a"),
            email(),
        ],
        "goals": [{"id": "g"}],
        "version": 2,
    }
    with pytest.raises(DefinitionInvalid) as info:
        validate_definition(raw)
    assert [error["pointer"] for error in info.value.errors] == [
        "/goals/0",
        "/start",
        "/steps/0/next",
        "/steps/1/type",
        "/steps/2/duration",
        "/steps/3/if/op",
        "/steps/4/id",
        "/trigger/tag",
        "/version",
    ]


def test_messages_name_the_problem() -> None:
    raw = doc(email(next="nowhere", cc="x"), {"id": "x", "type": "fax"}, email())
    with pytest.raises(DefinitionInvalid) as info:
        validate_definition(raw)
    messages = {error["pointer"]: error["message"] for error in info.value.errors}
    assert messages == {
        "/steps/0/cc": "unknown key 'cc' on a send_email step",
        "/steps/0/next": "unknown step 'nowhere'",
        "/steps/1/type": (
            "unknown step type 'fax'; expected one of: send_email, send_sms, add_tag, "
            "remove_tag, update_field, http_request, wait, condition, end"
        ),
        "/steps/2/id": "duplicate step id 'a' (already used by /steps/0)",
    }
    assert (
        str(info.value)
        == "invalid definition: /steps/0/cc: unknown key 'cc' on a send_email step (and 3 more)"
    )


def test_a_loop_is_named_in_the_message() -> None:
    raw = doc(
        {"id": "tag", "type": "add_tag", "tag": "x", "next": "c"},
        condition({"field": "tags", "op": "contains", "value": "y"}, then="tag"),
    )
    with pytest.raises(DefinitionInvalid) as info:
        validate_definition(raw)
    assert info.value.errors == [
        {
            "pointer": "/steps/0",
            "message": (
                "the steps tag → c → tag form a loop without a wait step; add a wait to the loop"
            ),
        }
    ]


def test_every_busy_loop_is_reported_once() -> None:
    raw = doc(
        {"id": "a", "type": "add_tag", "tag": "x", "next": "b"},
        {"id": "b", "type": "remove_tag", "tag": "x", "next": "a"},
        {"id": "pause", "type": "wait", "duration": "1h", "next": "c"},
        {"id": "c", "type": "send_sms", "body": "hi", "next": "d"},
        {"id": "d", "type": "send_sms", "body": "hi", "next": "c"},
    )
    with pytest.raises(DefinitionInvalid) as info:
        validate_definition(raw)
    assert [error["pointer"] for error in info.value.errors] == ["/steps/0", "/steps/3"]


def test_max_steps() -> None:
    steps = [{"id": f"s{i}", "type": "add_tag", "tag": "x", "next": f"s{i + 1}"} for i in range(3)]
    raw = doc(*steps, {"id": "s3", "type": "end"})
    validate_definition(raw, max_steps=4)
    with pytest.raises(DefinitionInvalid) as info:
        validate_definition(raw, max_steps=3)
    assert info.value.errors == [
        {"pointer": "/steps", "message": "at most 3 steps are allowed; there are 4"}
    ]


def test_max_definition_bytes_counts_canonical_utf8_bytes() -> None:
    raw = doc({"id": "a", "type": "send_sms", "body": "é" * 100})
    size = len(validate_definition(raw).canonical)
    validate_definition(raw, max_definition_bytes=size)
    with pytest.raises(DefinitionInvalid) as info:
        validate_definition(raw, max_definition_bytes=size - 1)
    assert info.value.errors == [
        {
            "pointer": "",
            "message": f"the definition is {size} bytes; at most {size - 1} are allowed",
        }
    ]


def test_an_oversized_definition_is_not_examined_further() -> None:
    raw = {"steps": [{"id": "bad id", "type": "nope", "body": "x" * 2000}] * 600}
    with pytest.raises(DefinitionInvalid) as info:
        validate_definition(raw)
    assert [error["pointer"] for error in info.value.errors] == [""]


@pytest.mark.parametrize("depth", [300, 5000])
def test_deep_nesting_is_one_error_at_the_root(depth: int) -> None:
    body: Any = "x"
    for _ in range(depth):
        body = [body]
    with pytest.raises(DefinitionInvalid) as info:
        validate_definition(doc(http(body=body)))
    assert info.value.errors == [{"pointer": "", "message": "the definition is nested too deeply"}]


def test_moderate_nesting_is_fine() -> None:
    body: Any = "{{contact.email}}"
    for _ in range(100):
        body = {"level": [body]}
    validate_definition(doc(http(body=body)))


# Small graphs of busy steps (tags, conditions) and waits, wired at random, backwards too.
_wiring = st.integers(min_value=1, max_value=8).flatmap(
    lambda n: st.lists(
        st.tuples(
            st.sampled_from(["add_tag", "condition", "wait"]),
            st.none() | st.integers(min_value=0, max_value=n - 1),
            st.none() | st.integers(min_value=0, max_value=n - 1),
        ),
        min_size=n,
        max_size=n,
    )
)


def _has_busy_cycle(wiring: list[tuple[str, int | None, int | None]]) -> bool:
    busy = [kind != "wait" for kind, _, _ in wiring]
    edges = [
        [j for j in (first, second if kind == "condition" else None) if j is not None and busy[j]]
        for kind, first, second in wiring
    ]
    for start, is_busy in enumerate(busy):
        seen, pending = set(), list(edges[start]) if is_busy else []
        while pending:
            node = pending.pop()
            if node == start:
                return True
            if node not in seen:
                seen.add(node)
                pending.extend(edges[node])
    return False


@given(_wiring)
def test_a_busy_loop_is_reported_exactly_when_there_is_one(
    wiring: list[tuple[str, int | None, int | None]],
) -> None:
    steps: list[dict[str, Any]] = []
    for i, (kind, first, second) in enumerate(wiring):
        step: dict[str, Any] = {"id": f"s{i}", "type": kind}
        if kind == "add_tag":
            step["tag"] = "t"
        elif kind == "wait":
            step["duration"] = "1h"
        if kind == "condition":
            step["if"] = {"field": "email", "op": "exists"}
            step["then"] = f"s{first if first is not None else i}"
            if second is not None:
                step["else"] = f"s{second}"
        elif first is not None:
            step["next"] = f"s{first}"
        steps.append(step)
    try:
        validate_definition(doc(*steps))
        loops = []
    except DefinitionInvalid as exc:
        loops = [e for e in exc.errors if "form a loop without a wait" in e["message"]]
    # A condition without a chosen `then` loops on itself: count that edge too.
    wired = [
        (kind, first if first is not None or kind != "condition" else i, second)
        for i, (kind, first, second) in enumerate(wiring)
    ]
    assert bool(loops) == _has_busy_cycle(wired)
