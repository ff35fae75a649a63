"""Unit tests of revflow.diff.compare: one test per kind of change (SPEC §5)."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from revflow.diff import (
    Breaking,
    Change,
    FieldChange,
    compare,
    diff_fields,
    json_equal,
    suggested_bump,
)
from tests.support.workflows import spec_example


def step(definition: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in definition["steps"] if s["id"] == step_id)


def only_change(before: dict[str, Any], after: dict[str, Any]) -> Change:
    comparison = compare(before, after)
    assert len(comparison.changes) == 1, comparison.changes
    return comparison.changes[0]


def test_identical_definitions_have_no_changes() -> None:
    comparison = compare(spec_example(), spec_example())
    assert comparison.changes == []
    assert comparison.breaking == []
    assert not comparison.has_changes
    assert comparison.suggested_bump == "patch"
    assert comparison.suggested_mapping == {}
    assert comparison.to_dict()["summary"] == {
        "steps_added": 0,
        "steps_removed": 0,
        "steps_modified": 0,
        "goals_changed": 0,
        "trigger_changed": False,
        "start_changed": False,
    }


def test_trigger_modified() -> None:
    after = spec_example()
    after["trigger"] = {"type": "tag_added", "tag": "customer", "reenroll": "never"}
    comparison = compare(spec_example(), after)
    [change] = comparison.changes
    assert change.entity == "trigger"
    assert change.kind == "modified"
    assert change.id is None
    assert change.fields == [
        FieldChange("/tag", "lead", "customer"),
        FieldChange("/reenroll", None, "never"),
    ]
    assert comparison.summary.trigger_changed
    assert comparison.breaking == []
    assert comparison.suggested_bump == "minor"


def test_trigger_type_change_is_not_breaking() -> None:
    after = spec_example()
    after["trigger"] = {"type": "manual"}
    comparison = compare(spec_example(), after)
    assert comparison.breaking == []
    assert comparison.suggested_bump == "minor"
    assert {f.path for f in comparison.changes[0].fields} == {"/type", "/tag"}


def test_start_changed() -> None:
    after = spec_example()
    after["start"] = "pause"
    change = only_change(spec_example(), after)
    assert (change.entity, change.kind, change.before, change.after) == (
        "start",
        "modified",
        "welcome",
        "pause",
    )
    assert change.fields == [FieldChange("", "welcome", "pause")]
    comparison = compare(spec_example(), after)
    assert comparison.summary.start_changed
    assert comparison.suggested_bump == "minor"


def test_omitted_start_equal_to_first_step_is_not_a_change() -> None:
    after = spec_example()
    del after["start"]
    assert compare(spec_example(), after).changes == []
    assert compare(after, spec_example()).changes == []


def test_omitted_start_follows_the_first_step() -> None:
    before, after = spec_example(), spec_example()
    del before["start"], after["start"]
    after["steps"].insert(0, after["steps"].pop(1))
    comparison = compare(before, after)
    assert [(c.entity, c.before, c.after) for c in comparison.changes] == [
        ("start", "welcome", "pause")
    ]


def test_step_added() -> None:
    after = spec_example()
    new = {"id": "follow_up", "type": "send_sms", "body": "Still there?"}
    after["steps"].append(new)
    comparison = compare(spec_example(), after)
    [change] = comparison.changes
    assert change == Change("step", "added", "follow_up", None, new)
    assert comparison.summary.steps_added == 1
    assert comparison.breaking == []
    assert comparison.suggested_bump == "minor"


def test_step_removed_is_breaking() -> None:
    after = spec_example()
    after["steps"] = [s for s in after["steps"] if s["id"] != "nurture"]
    step(after, "is_vip").pop("else")
    comparison = compare(spec_example(), after)
    kinds = [(c.entity, c.kind, c.id) for c in comparison.changes]
    assert kinds == [("step", "modified", "is_vip"), ("step", "removed", "nurture")]
    removed = comparison.changes[1]
    assert removed.before == step(spec_example(), "nurture")
    assert removed.after is None
    assert comparison.breaking == [Breaking(step="nurture", goal=None, reason="step removed")]
    assert comparison.summary.steps_removed == 1
    assert comparison.suggested_bump == "major"
    assert comparison.suggested_mapping == {"nurture": None}


def test_step_modified_reports_exact_field_paths() -> None:
    after = spec_example()
    step(after, "welcome")["subject"] = "Hello"
    step(after, "is_vip")["if"]["value"] = "gold"
    comparison = compare(spec_example(), after)
    assert [(c.id, c.fields, c.rewired) for c in comparison.changes] == [
        ("welcome", [FieldChange("/subject", "Hi {{contact.fields.first_name}}", "Hello")], False),
        ("is_vip", [FieldChange("/if/value", "vip", "gold")], False),
    ]
    assert comparison.summary.steps_modified == 2
    assert comparison.breaking == []
    assert comparison.suggested_bump == "patch"


def test_field_removed_and_added_are_reported_with_none() -> None:
    after = spec_example()
    step(after, "pause")["duration"] = "3d"
    del step(after, "welcome")["next"]
    step(after, "vip_offer")["next"] = "thank_you"
    comparison = compare(spec_example(), after)
    fields = {c.id: c.fields for c in comparison.changes}
    assert fields == {
        "welcome": [FieldChange("/next", "pause", None)],
        "pause": [FieldChange("/duration", "2d", "3d")],
        "vip_offer": [FieldChange("/next", None, "thank_you")],
    }


@pytest.mark.parametrize(
    ("step_id", "key", "value"),
    [
        ("welcome", "next", "is_vip"),
        ("is_vip", "then", "thank_you"),
        ("is_vip", "else", "thank_you"),
        ("pause", "timeout_next", "thank_you"),
    ],
)
def test_rewired_when_wiring_changes(step_id: str, key: str, value: str) -> None:
    after = spec_example()
    step(after, step_id)[key] = value
    change = only_change(spec_example(), after)
    assert change.rewired
    assert change.fields == [FieldChange(f"/{key}", step(spec_example(), step_id).get(key), value)]
    assert compare(spec_example(), after).suggested_bump == "patch"


def test_content_change_is_not_rewired() -> None:
    after = spec_example()
    step(after, "welcome")["body"] = "new body"
    assert not only_change(spec_example(), after).rewired


def test_type_change_is_breaking() -> None:
    after = spec_example()
    step(after, "nurture")["type"] = "remove_tag"
    comparison = compare(spec_example(), after)
    assert comparison.changes[0].fields == [FieldChange("/type", "add_tag", "remove_tag")]
    assert comparison.breaking == [
        Breaking(step="nurture", goal=None, reason="type changed from add_tag to remove_tag")
    ]
    assert comparison.suggested_bump == "major"


def test_type_change_from_wait_reports_one_breaking_entry() -> None:
    after = spec_example()
    after["steps"][1] = {"id": "pause", "type": "add_tag", "tag": "x", "next": "is_vip"}
    comparison = compare(spec_example(), after)
    assert [b.reason for b in comparison.breaking] == ["type changed from wait to add_tag"]


@pytest.mark.parametrize(
    ("new_wait", "reason"),
    [
        ({"until": "2030-01-01T00:00:00Z"}, "wait kind changed from duration to until"),
        ({"event": "opened", "timeout": "3d"}, "wait kind changed from duration to event"),
    ],
)
def test_wait_kind_change_is_breaking(new_wait: dict[str, Any], reason: str) -> None:
    after = spec_example()
    after["steps"][1] = {"id": "pause", "type": "wait", **new_wait, "next": "is_vip"}
    comparison = compare(spec_example(), after)
    assert comparison.breaking == [Breaking(step="pause", goal=None, reason=reason)]
    assert comparison.suggested_bump == "major"
    assert not comparison.changes[0].rewired


def test_wait_duration_change_is_not_breaking() -> None:
    after = spec_example()
    step(after, "pause")["duration"] = "5d"
    comparison = compare(spec_example(), after)
    assert comparison.breaking == []
    assert comparison.suggested_bump == "patch"


def wait_for_event(event: str, timeout: str = "3d") -> dict[str, Any]:
    definition = spec_example()
    definition["steps"][1] = {
        "id": "pause",
        "type": "wait",
        "event": event,
        "timeout": timeout,
        "timeout_next": "thank_you",
        "next": "is_vip",
    }
    return definition


def test_wait_event_change_is_breaking() -> None:
    comparison = compare(wait_for_event("opened"), wait_for_event("clicked"))
    assert comparison.breaking == [
        Breaking(step="pause", goal=None, reason='awaited event changed from "opened" to "clicked"')
    ]
    assert comparison.changes[0].fields == [FieldChange("/event", "opened", "clicked")]


def test_wait_event_timeout_change_is_not_breaking() -> None:
    comparison = compare(wait_for_event("opened"), wait_for_event("opened", timeout="7d"))
    assert comparison.breaking == []
    assert comparison.suggested_bump == "patch"


def test_goal_added() -> None:
    after = spec_example()
    after["goals"].append({"id": "unsubscribed", "event": "unsubscribe"})
    comparison = compare(spec_example(), after)
    [change] = comparison.changes
    assert (change.entity, change.kind, change.id) == ("goal", "added", "unsubscribed")
    assert comparison.summary.goals_changed == 1
    assert comparison.breaking == []
    assert comparison.suggested_bump == "minor"


def test_goal_added_when_before_had_no_goals() -> None:
    before = spec_example()
    del before["goals"]
    comparison = compare(before, spec_example())
    assert [(c.entity, c.kind) for c in comparison.changes] == [("goal", "added")]


def test_goal_removed_is_breaking() -> None:
    after = spec_example()
    after["goals"] = []
    comparison = compare(spec_example(), after)
    [change] = comparison.changes
    assert (change.entity, change.kind, change.id) == ("goal", "removed", "purchased")
    assert comparison.breaking == [Breaking(step=None, goal="purchased", reason="goal removed")]
    assert comparison.to_dict()["breaking"] == [
        {"step": None, "goal": "purchased", "reason": "goal removed"}
    ]
    assert comparison.suggested_bump == "major"


def test_goal_modified_is_patch_and_rewired_on_then() -> None:
    after = spec_example()
    after["goals"][0] = {"id": "purchased", "event": "order", "then": "nurture"}
    comparison = compare(spec_example(), after)
    [change] = comparison.changes
    assert change.kind == "modified"
    assert change.fields == [
        FieldChange("/event", "purchase", "order"),
        FieldChange("/then", "thank_you", "nurture"),
    ]
    assert change.rewired
    assert comparison.summary.goals_changed == 1
    assert comparison.breaking == []
    assert comparison.suggested_bump == "patch"


def test_moving_steps_in_the_list_is_not_a_change() -> None:
    after = spec_example()
    after["steps"].reverse()
    after["goals"].reverse()
    assert compare(spec_example(), after).changes == []


def test_key_order_inside_a_step_is_not_a_change() -> None:
    after = spec_example()
    after["steps"] = [dict(reversed(list(s.items()))) for s in after["steps"]]
    assert compare(spec_example(), after).changes == []


def test_change_order_is_trigger_start_steps_goals() -> None:
    before = spec_example()
    after = spec_example()
    after["trigger"]["tag"] = "customer"
    after["start"] = "pause"
    after["steps"] = [s for s in after["steps"] if s["id"] not in ("vip_offer", "nurture")]
    step(after, "is_vip").update({"then": "new_b", "else": "new_a"})
    after["steps"].insert(0, {"id": "new_a", "type": "end"})
    after["steps"].append({"id": "new_b", "type": "end"})
    step(after, "thank_you")["subject"] = "Thanks!"
    after["goals"] = [{"id": "g2", "event": "x"}]
    order = [(c.entity, c.kind, c.id) for c in compare(before, after).changes]
    assert order == [
        ("trigger", "modified", None),
        ("start", "modified", None),
        ("step", "added", "new_a"),
        ("step", "modified", "is_vip"),
        ("step", "modified", "thank_you"),
        ("step", "added", "new_b"),
        ("step", "removed", "vip_offer"),
        ("step", "removed", "nurture"),
        ("goal", "added", "g2"),
        ("goal", "removed", "purchased"),
    ]


def test_bool_and_number_are_different_values() -> None:
    update = {"id": "a", "type": "update_field", "field": "fields.vip", "value": 1}
    before: dict[str, Any] = {"trigger": {"type": "manual"}, "steps": [update]}
    after = copy.deepcopy(before)
    after["steps"][0]["value"] = True
    assert only_change(before, after).fields == [FieldChange("/value", 1, True)]
    same_number = copy.deepcopy(before)
    same_number["steps"][0]["value"] = 1.0
    assert compare(before, same_number).changes == []


def test_renamed_step_is_suggested_in_the_mapping() -> None:
    after = spec_example()
    step(after, "vip_offer")["id"] = "vip_sms"
    step(after, "is_vip")["then"] = "vip_sms"
    comparison = compare(spec_example(), after)
    assert comparison.suggested_mapping == {"vip_offer": "vip_sms"}
    assert [(c.kind, c.id) for c in comparison.changes] == [
        ("modified", "is_vip"),
        ("added", "vip_sms"),
        ("removed", "vip_offer"),
    ]


def test_mapping_prefers_exact_content_over_rewired_content() -> None:
    after = spec_example()
    after["steps"] = [s for s in after["steps"] if s["id"] != "welcome"]
    rewired = {**step(spec_example(), "welcome"), "id": "hello_rewired", "next": "is_vip"}
    exact = {**step(spec_example(), "welcome"), "id": "hello_exact"}
    after["steps"] += [rewired, exact]
    after["start"] = "hello_exact"
    assert compare(spec_example(), after).suggested_mapping == {"welcome": "hello_exact"}


def test_mapping_ignores_wiring_when_no_exact_match() -> None:
    after = spec_example()
    after["steps"] = [s for s in after["steps"] if s["id"] != "welcome"]
    after["steps"].append({**step(spec_example(), "welcome"), "id": "hello", "next": "is_vip"})
    after["start"] = "hello"
    assert compare(spec_example(), after).suggested_mapping == {"welcome": "hello"}


def test_mapping_follows_renamed_chains() -> None:
    # a -> b renamed together to a2 -> b2: neither matches exactly (a's next changed), but the
    # wiring agrees once the renames are known, so each goes to its own counterpart even though
    # both have identical loose content.
    wait = {"type": "wait", "duration": "1d"}
    before = {
        "trigger": {"type": "manual"},
        "steps": [{"id": "a", **wait, "next": "b"}, {"id": "b", **wait}],
    }
    after = {
        "trigger": {"type": "manual"},
        "steps": [{"id": "b2", **wait}, {"id": "a2", **wait, "next": "b2"}],
    }
    assert compare(before, after).suggested_mapping == {"a": "a2", "b": "b2"}


def test_mapping_needs_same_type_and_content() -> None:
    after = spec_example()
    after["steps"] = [s for s in after["steps"] if s["id"] != "nurture"]
    after["steps"].append({"id": "nurture2", "type": "remove_tag", "tag": "nurture"})
    after["steps"].append({"id": "nurture3", "type": "add_tag", "tag": "other"})
    step(after, "is_vip")["else"] = "nurture2"
    assert compare(spec_example(), after).suggested_mapping == {"nurture": None}


def test_mapping_uses_each_added_step_once() -> None:
    before: dict[str, Any] = {
        "trigger": {"type": "manual"},
        "steps": [{"id": "x", "type": "end"}, {"id": "y", "type": "end"}],
    }
    after: dict[str, Any] = {
        "trigger": {"type": "manual"},
        "steps": [{"id": "p", "type": "end"}, {"id": "q", "type": "end"}],
    }
    assert compare(before, after).suggested_mapping == {"x": "p", "y": "q"}
    after["steps"].pop()
    assert compare(before, after).suggested_mapping == {"x": "p", "y": None}


@pytest.mark.parametrize(
    ("edit", "bump"),
    [
        (lambda d: None, "patch"),
        (lambda d: step(d, "welcome").update(body="x"), "patch"),
        (lambda d: step(d, "welcome").update(next="is_vip"), "patch"),
        (lambda d: d["goals"][0].update(event="order"), "patch"),
        (lambda d: d["steps"].append({"id": "z", "type": "end"}), "minor"),
        (lambda d: d["goals"].append({"id": "z", "event": "z"}), "minor"),
        (lambda d: d["trigger"].update(tag="z"), "minor"),
        (lambda d: d.update(start="pause"), "minor"),
        (lambda d: d["steps"].pop(), "major"),
        (lambda d: d["goals"].pop(), "major"),
        (lambda d: step(d, "pause").update(type="end"), "major"),
    ],
)
def test_bump_rules(edit: Any, bump: str) -> None:
    after = spec_example()
    edit(after)
    assert compare(spec_example(), after).suggested_bump == bump


def test_breaking_wins_over_additions() -> None:
    after = spec_example()
    after["steps"].pop()
    after["steps"].append({"id": "z", "type": "end"})
    assert compare(spec_example(), after).suggested_bump == "major"


def test_to_dict_is_json_and_has_the_spec_shape() -> None:
    after = spec_example()
    step(after, "welcome")["subject"] = "Hello"
    after["goals"] = []
    data = compare(spec_example(), after).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {
        "changes",
        "summary",
        "breaking",
        "breaking_count",
        "suggested_bump",
        "suggested_mapping",
    }
    assert data["breaking_count"] == 1
    assert data["changes"][0] == {
        "entity": "step",
        "kind": "modified",
        "id": "welcome",
        "before": step(spec_example(), "welcome"),
        "after": step(after, "welcome"),
        "fields": [
            {"path": "/subject", "before": "Hi {{contact.fields.first_name}}", "after": "Hello"}
        ],
        "rewired": False,
    }


def test_compare_does_not_mutate_its_inputs() -> None:
    before, after = spec_example(), spec_example()
    step(after, "welcome")["subject"] = "Hello"
    after["steps"].pop()
    snapshot = copy.deepcopy((before, after))
    compare(before, after).to_dict()
    assert (before, after) == snapshot


def test_duplicate_step_ids_are_rejected() -> None:
    bad = spec_example()
    bad["steps"].append({"id": "welcome", "type": "end"})
    with pytest.raises(ValueError, match="duplicate step id 'welcome'"):
        compare(spec_example(), bad)


def test_step_without_id_is_rejected() -> None:
    bad = spec_example()
    bad["steps"].append({"type": "end"})
    with pytest.raises(ValueError, match="has no id"):
        compare(bad, spec_example())


def test_diff_fields_lists_and_pointer_escaping() -> None:
    before = {"a/b": 1, "t~": [1, 2], "l": [1, 2], "n": {"x": {"y": 1}}}
    after = {"a/b": 2, "t~": [1, 3], "l": [1, 2, 3], "n": {"x": {"y": 1, "z": 2}}}
    assert diff_fields(before, after) == [
        FieldChange("/a~1b", 1, 2),
        FieldChange("/t~0/1", 2, 3),
        FieldChange("/l", [1, 2], [1, 2, 3]),
        FieldChange("/n/x/z", None, 2),
    ]


def test_json_equal() -> None:
    assert json_equal({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]})
    assert not json_equal({"a": True}, {"a": 1})
    assert not json_equal({"a": 0}, {"a": False})
    assert not json_equal({"a": 1}, {"a": 1, "b": 2})
    assert not json_equal([1, 2], [2, 1])
    assert not json_equal("1", 1)
    assert not json_equal(None, {})


_EDITS = st.lists(
    st.sampled_from(
        [
            "text",  # a message's content
            "retype",  # a step of another type (breaking)
            "wait for an event",  # the wait's kind (breaking)
            "event",  # the awaited event (breaking once it waits for one)
            "duration",  # the wait's duration (not breaking)
            "remove step",  # breaking
            "add step",  # minor
            "rename step",  # removed and added: breaking
            "rewire",  # next elsewhere
            "trigger",  # minor
            "trigger flag as number",  # true written 1 in the trigger: a change (minor)
            "flag as number",  # true written 1 in a step: a modification (patch)
            "start",  # minor
            "remove goal",  # breaking
            "add goal",  # minor
            "goal event",  # a goal modified (patch)
        ]
    ),
    max_size=4,
)


def _edit(definition: dict[str, Any], edit: str) -> None:
    steps, goals = definition["steps"], definition["goals"]
    pause = next((s for s in steps if s["type"] == "wait"), None)
    if edit == "text":
        steps[0]["subject"] = steps[0].get("subject", "") + "!"
    elif edit == "retype" and len(steps) > 4:
        steps[4] = {"id": steps[4]["id"], "type": "remove_tag", "tag": "x"}
    elif edit == "wait for an event" and pause is not None:
        pause.pop("duration", None)
        pause["event"] = "clicked"
    elif edit == "event" and pause is not None and "event" in pause:
        pause["event"] += "_again"
    elif edit == "duration" and pause is not None and "duration" in pause:
        pause["duration"] = "3d"
    elif edit == "remove step" and len(steps) > 1:
        steps.pop()
    elif edit == "add step":
        steps.append({"id": f"extra_{len(steps)}", "type": "add_tag", "tag": "x"})
    elif edit == "rename step":
        steps[-1]["id"] += "_renamed"
    elif edit == "rewire":
        steps[0]["next"] = steps[-1]["id"]
    elif edit == "trigger":
        definition["trigger"] = {"type": "tag_added", "tag": "customer"}
    elif edit == "trigger flag as number":
        definition["trigger"]["flag"] = 1 if definition["trigger"].get("flag") is True else True
    elif edit == "flag as number":
        steps[0]["flag"] = 1 if steps[0].get("flag") is True else True
    elif edit == "start":
        definition["start"] = steps[-1]["id"]
    elif edit == "remove goal" and goals:
        goals.pop()
    elif edit == "add goal":
        goals.append({"id": f"goal_{len(goals)}", "event": "x"})
    elif edit == "goal event" and goals:
        goals[0]["event"] += "_again"


@given(_EDITS, _EDITS)
def test_the_suggested_bump_alone_is_the_comparisons(earlier: list[str], later: list[str]) -> None:
    """What a new version's semver takes: ``suggested_bump`` agrees with ``compare`` on every
    kind of edit, alone and together (the definitions need not be valid: the diff is pure)."""
    before = spec_example()
    for edit in earlier:
        _edit(before, edit)
    after = copy.deepcopy(before)
    for edit in later:
        _edit(after, edit)
    bump = compare(before, after).suggested_bump
    assert suggested_bump(before, after) == bump
    # Given each step's JSON, as the validation writes it: the same bump.
    keys = (_step_keys(before), _step_keys(after))
    assert suggested_bump(before, after, step_keys=keys) == bump


def _step_keys(definition: dict[str, Any]) -> list[bytes]:
    return [orjson.dumps(step, option=orjson.OPT_SORT_KEYS) for step in definition["steps"]]


@pytest.mark.parametrize(
    ("edit", "bump"),
    [
        ("content", "patch"),
        ("type", "major"),
        ("wait kind", "major"),
        ("flag as number", "patch"),
    ],
)
def test_only_the_steps_whose_json_changed_are_compared(edit: str, bump: str) -> None:
    """With the steps' JSON given, a step edited in place is compared and the others are not."""
    before = spec_example()
    after = copy.deepcopy(before)
    steps = after["steps"]
    if edit == "content":
        steps[0]["body"] += " (edited)"
    elif edit == "type":
        steps[-2] = {"id": steps[-2]["id"], "type": "remove_tag", "tag": "nurture"}
    elif edit == "wait kind":
        steps[1] = {"id": "pause", "type": "wait", "until": {"event": "x"}, "next": "is_vip"}
    else:
        steps[0]["flag"] = 1
        before["steps"][0]["flag"] = True

    class Uncomparable(dict[str, Any]):
        def __eq__(self, other: object) -> bool:
            raise AssertionError("a step whose JSON did not change was compared")

        def __ne__(self, other: object) -> bool:
            raise AssertionError("a step whose JSON did not change was compared")

        __hash__ = None  # type: ignore[assignment]

    keys = (_step_keys(before), _step_keys(after))
    for position, (key_before, key_after) in enumerate(zip(*keys, strict=True)):
        if key_before == key_after:
            before["steps"][position] = Uncomparable(before["steps"][position])
    assert suggested_bump(before, after, step_keys=keys) == bump
