"""Property tests of revflow.diff.compare over generated definitions and random edits."""

from __future__ import annotations

import copy
import json
from collections.abc import Collection
from typing import Any

from deepdiff import DeepDiff
from hypothesis import given, settings
from hypothesis import strategies as st

from revflow.diff import (
    Change,
    Comparison,
    compare,
    effective_start,
    json_equal,
    render_text,
    wait_kind,
)

fast = settings(max_examples=100, deadline=None)

STEP_TYPES = [
    "send_email",
    "send_sms",
    "add_tag",
    "remove_tag",
    "update_field",
    "http_request",
    "wait",
    "condition",
    "end",
]
WIRING = ("next", "then", "else", "timeout_next")

# Small pools make equal contents (and so ambiguous renames) frequent.
ids = st.text(alphabet="abcxyz_-09", min_size=1, max_size=4)
words = st.sampled_from(["Hi", "Hello", "lead", "vip", "2d", "", "{{contact.email}}"]) | st.text(
    max_size=4
)
# No floats: DeepDiff (the oracle below) sees 1 and 1.0 as different; JSON does not.
scalars = st.none() | st.booleans() | st.integers(-2, 2) | words
values = scalars | st.lists(scalars, max_size=3) | st.dictionaries(words, scalars, max_size=2)
events = st.sampled_from(["purchase", "opened", "clicked"])


@st.composite
def steps(draw: st.DrawFn, step_id: str, refs: list[str]) -> dict[str, Any]:
    """One step of a random type, wired to random ids of ``refs``."""
    kind = draw(st.sampled_from(STEP_TYPES))
    step: dict[str, Any] = {"id": step_id, "type": kind}
    ref = st.sampled_from(refs)
    maybe_ref = st.none() | ref
    if kind == "send_email":
        step["subject"] = draw(words)
        step["body"] = draw(words)
    elif kind in ("send_sms",):
        step["body"] = draw(words)
    elif kind in ("add_tag", "remove_tag"):
        step["tag"] = draw(words)
    elif kind == "update_field":
        step["field"] = draw(st.sampled_from(["email", "phone", "fields.plan"]))
        step["value"] = draw(values)
    elif kind == "http_request":
        step["url"] = "https://example.test/" + draw(words)
        step["method"] = draw(st.sampled_from(["GET", "POST"]))
        if draw(st.booleans()):
            step["body"] = draw(values)
    elif kind == "wait":
        which = draw(st.sampled_from(["duration", "until", "event"]))
        if which == "duration":
            step["duration"] = draw(st.sampled_from(["30s", "2d", "P2D"]))
        elif which == "until":
            step["until"] = "2030-01-01T00:00:00Z"
        else:
            step["event"] = draw(events)
            if draw(st.booleans()):
                step["timeout"] = "3d"
                step["timeout_next"] = draw(ref)
    elif kind == "condition":
        step["if"] = {
            "field": draw(st.sampled_from(["tags", "email", "fields.plan"])),
            "op": draw(st.sampled_from(["eq", "contains", "exists"])),
            "value": draw(values),
        }
        step["then"] = draw(ref)
        if (other := draw(maybe_ref)) is not None:
            step["else"] = other
    if kind not in ("condition", "end") and (nxt := draw(maybe_ref)) is not None:
        step["next"] = nxt
    return step


@st.composite
def definitions(draw: st.DrawFn) -> dict[str, Any]:
    """A valid-looking definition: unique step ids, mixed types, references to its steps."""
    step_ids = draw(st.lists(ids, min_size=1, max_size=10, unique=True))
    definition: dict[str, Any] = {
        "trigger": draw(
            st.sampled_from(
                [
                    {"type": "manual"},
                    {"type": "tag_added", "tag": "lead"},
                    {"type": "event", "event": "signup", "reenroll": "never"},
                ]
            )
        ),
        "steps": [draw(steps(step_id, step_ids)) for step_id in step_ids],
    }
    if draw(st.booleans()):
        definition["start"] = draw(st.sampled_from(step_ids))
    goal_ids: list[str] = draw(
        st.lists(st.sampled_from(["g1", "g2", "g3"]), max_size=3, unique=True)
    )
    # "goals": [] and no "goals" key must both work.
    with_goals: bool = draw(st.booleans())
    if goal_ids or with_goals:
        definition["goals"] = []
        for goal_id in goal_ids:
            goal: dict[str, Any] = {"id": goal_id, "event": draw(events)}
            if (then := draw(st.none() | st.sampled_from(step_ids))) is not None:
                goal["then"] = then
            definition["goals"].append(goal)
    return definition


def unused_ids(taken: Collection[str]) -> st.SearchStrategy[str]:
    """Step ids not in ``taken``."""
    return ids.filter(lambda step_id: step_id not in taken)


def rename_refs(definition: dict[str, Any], old: str, new: str) -> None:
    """Point every reference to step ``old`` at ``new`` (start, wiring, goals)."""
    if definition.get("start") == old:
        definition["start"] = new
    for item in [*definition["steps"], *definition.get("goals", [])]:
        for key in WIRING:
            if item.get(key) == old:
                item[key] = new


@st.composite
def edited(draw: st.DrawFn, original: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``original`` after 0-5 random edits: add, remove, modify, rename, move…"""
    result = copy.deepcopy(original)
    for _ in range(draw(st.integers(0, 5))):
        step_ids = [s["id"] for s in result["steps"]]
        edit = draw(
            st.sampled_from(
                [
                    "add",
                    "remove",
                    "retype",
                    "field",
                    "rewire",
                    "rename",
                    "move",
                    "trigger",
                    "start",
                    "goal",
                ]
            )
        )
        if edit == "add":
            new_id = draw(unused_ids(step_ids))
            position = draw(st.integers(0, len(step_ids)))
            result["steps"].insert(position, draw(steps(new_id, [*step_ids, new_id])))
        elif edit == "remove" and len(step_ids) > 1:
            del result["steps"][draw(st.integers(0, len(step_ids) - 1))]
        elif edit == "retype":
            index = draw(st.integers(0, len(step_ids) - 1))
            result["steps"][index] = draw(steps(step_ids[index], step_ids))
        elif edit == "field":
            step = result["steps"][draw(st.integers(0, len(step_ids) - 1))]
            editable = [k for k in step if k not in ("id", "type", *WIRING)]
            # A step with no content (``end``) gets a new key instead.
            key = draw(st.sampled_from(editable or ["note"]))
            if key == "if" and isinstance(step["if"], dict) and draw(st.booleans()):
                step["if"] = {**step["if"], "value": draw(values)}
            else:
                step[key] = draw(values)
        elif edit == "rewire":
            step = result["steps"][draw(st.integers(0, len(step_ids) - 1))]
            key = draw(st.sampled_from(WIRING))
            if (target := draw(st.none() | st.sampled_from(step_ids))) is None:
                step.pop(key, None)
            else:
                step[key] = target
        elif edit == "rename":
            index = draw(st.integers(0, len(step_ids) - 1))
            new_id = draw(unused_ids(step_ids))
            old_id = result["steps"][index]["id"]
            result["steps"][index]["id"] = new_id
            if draw(st.booleans()):
                rename_refs(result, old_id, new_id)
        elif edit == "move":
            result["steps"] = draw(st.permutations(result["steps"]))
        elif edit == "trigger":
            result["trigger"] = {"type": "tag_added", "tag": draw(words)}
        elif edit == "start":
            result["start"] = draw(st.sampled_from(step_ids))
        elif edit == "goal":
            goals = result.setdefault("goals", [])
            goal_id = draw(st.sampled_from(["g1", "g2", "g3", "g4"]))
            goals[:] = [g for g in goals if g["id"] != goal_id]
            if draw(st.booleans()):
                goals.append({"id": goal_id, "event": draw(events)})
    return result


@st.composite
def pairs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    original = draw(definitions())
    return original, draw(edited(original))


def by_key(comparison: Comparison) -> dict[tuple[str, str | None], Change]:
    return {(c.entity, c.id): c for c in comparison.changes}


def apply_fields(change: Change) -> Any:
    """Rebuild ``after`` from ``before`` using only the field changes."""
    result = copy.deepcopy(change.before)
    for field in change.fields:
        if field.path == "":
            result = field.after
            continue
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in field.path.split("/")[1:]]
        parent, source = result, change.after
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
            source = source[int(token)] if isinstance(source, list) else source[token]
        last = tokens[-1]
        if isinstance(parent, list):
            parent[int(last)] = field.after
        elif last in source:
            parent[last] = field.after
        else:
            del parent[last]
    return result


@fast
@given(definitions())
def test_a_definition_equals_itself(definition: dict[str, Any]) -> None:
    for other in (definition, copy.deepcopy(definition)):
        comparison = compare(definition, other)
        assert comparison.changes == []
        assert comparison.breaking == []
        assert comparison.suggested_bump == "patch"
        assert comparison.suggested_mapping == {}


@fast
@given(definitions(), st.randoms(use_true_random=False))
def test_step_and_goal_order_is_not_a_change(definition: dict[str, Any], rnd: Any) -> None:
    moved = copy.deepcopy(definition)
    moved["start"] = effective_start(definition)
    rnd.shuffle(moved["steps"])
    rnd.shuffle(moved.get("goals", []))
    assert compare(definition, moved).changes == []


@fast
@given(pairs())
def test_swapping_sides_mirrors_the_comparison(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    a, b = pair
    forward, backward = by_key(compare(a, b)), by_key(compare(b, a))
    assert forward.keys() == backward.keys()
    mirror = {"added": "removed", "removed": "added", "modified": "modified"}
    for key, change in forward.items():
        back = backward[key]
        assert back.kind == mirror[change.kind]
        assert (back.before, back.after) == (change.after, change.before)
        assert back.rewired == change.rewired
        assert sorted((f.path, f.after, f.before) for f in back.fields) == sorted(
            (f.path, f.before, f.after) for f in change.fields
        ), key
    summary, back_summary = compare(a, b).summary, compare(b, a).summary
    assert (summary.steps_added, summary.steps_removed) == (
        back_summary.steps_removed,
        back_summary.steps_added,
    )
    assert summary.steps_modified == back_summary.steps_modified
    assert summary.goals_changed == back_summary.goals_changed


@fast
@given(pairs())
def test_every_step_id_is_accounted_for(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    a, b = pair
    comparison = compare(a, b)
    before = {s["id"]: s for s in a["steps"]}
    after = {s["id"]: s for s in b["steps"]}
    step_changes = [c for c in comparison.changes if c.entity == "step"]
    changed_ids = [c.id for c in step_changes]
    assert len(changed_ids) == len(set(changed_ids))
    kinds = {c.id: c.kind for c in step_changes}
    for step_id in before.keys() | after.keys():
        if step_id in before and step_id in after:
            if json_equal(before[step_id], after[step_id]):
                assert step_id not in kinds
            else:
                assert kinds[step_id] == "modified"
        else:
            assert kinds[step_id] == ("removed" if step_id in before else "added")
    summary = comparison.summary
    assert summary.steps_added == sum(k == "added" for k in kinds.values())
    assert summary.steps_removed == sum(k == "removed" for k in kinds.values())
    assert summary.steps_modified == sum(k == "modified" for k in kinds.values())


@fast
@given(pairs())
def test_modified_steps_agree_with_deepdiff(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    a, b = pair
    after = {s["id"]: s for s in b["steps"]}
    changed = {c.id for c in compare(a, b).changes if c.entity == "step"}
    for step in a["steps"]:
        if step["id"] in after:
            differs = bool(DeepDiff(step, after[step["id"]]))
            assert differs == (step["id"] in changed), step["id"]


@fast
@given(pairs())
def test_field_changes_rebuild_the_after_side(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    for change in compare(*pair).changes:
        if change.kind == "modified":
            assert change.fields
            assert json_equal(apply_fields(change), change.after), change
            wired = change.entity in ("step", "goal")
            wiring_changed = wired and any(
                not json_equal(change.before.get(k), change.after.get(k)) for k in WIRING
            )
            assert change.rewired == wiring_changed
        else:
            assert change.fields == []
            assert not change.rewired


@fast
@given(pairs())
def test_breaking_and_bump_follow_the_rules(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    a, b = pair
    comparison = compare(a, b)
    expected: set[tuple[str | None, str | None]] = set()
    for change in comparison.changes:
        if change.kind == "removed" and change.entity == "step":
            expected.add((change.id, None))
        elif change.kind == "removed" and change.entity == "goal":
            expected.add((None, change.id))
        elif change.kind == "modified" and change.entity == "step":
            old, new = change.before, change.after
            retyped = old["type"] != new["type"] or wait_kind(old) != wait_kind(new)
            new_event = wait_kind(old) == "event" and old.get("event") != new.get("event")
            if retyped or new_event:
                expected.add((change.id, None))
    found = [(x.step, x.goal) for x in comparison.breaking]
    assert len(found) == len(set(found))
    assert set(found) == expected

    added = any(c.kind == "added" and c.entity in ("step", "goal") for c in comparison.changes)
    top = comparison.summary.trigger_changed or comparison.summary.start_changed
    if comparison.breaking:
        assert comparison.suggested_bump == "major"
    elif added or top:
        assert comparison.suggested_bump == "minor"
    else:
        assert comparison.suggested_bump == "patch"


@fast
@given(pairs())
def test_suggested_mapping_pairs_removed_with_added_of_the_same_type(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    comparison = compare(*pair)
    removed = {c.id: c.before for c in comparison.changes if c.kind == "removed"}
    added = {c.id: c.after for c in comparison.changes if c.kind == "added"}
    removed = {k: v for k, v in removed.items() if k is not None and "type" in v}
    assert comparison.suggested_mapping.keys() == removed.keys()
    targets = [t for t in comparison.suggested_mapping.values() if t is not None]
    assert len(targets) == len(set(targets))
    for old, new in comparison.suggested_mapping.items():
        if new is not None:
            assert added[new]["type"] == removed[old]["type"]


@fast
@given(definitions(), st.data())
def test_a_renamed_step_is_mapped_to_its_new_id(definition: dict[str, Any], data: Any) -> None:
    renamed = copy.deepcopy(definition)
    index = data.draw(st.integers(0, len(renamed["steps"]) - 1))
    old_id = renamed["steps"][index]["id"]
    taken = {s["id"] for s in renamed["steps"]}
    new_id = data.draw(unused_ids(taken))
    renamed["steps"][index]["id"] = new_id
    if data.draw(st.booleans()):
        rename_refs(renamed, old_id, new_id)
    comparison = compare(definition, renamed)
    assert comparison.suggested_mapping == {old_id: new_id}


@fast
@given(pairs())
def test_outputs_are_json_and_render(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    comparison = compare(*pair)
    data = comparison.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["breaking_count"] == len(data["breaking"])
    text = render_text(comparison, "v1", "v2", max_value_chars=None)
    assert text.startswith("--- v1\n+++ v2\n")
    for change in comparison.changes:
        if change.id is not None:
            assert f"{change.entity} {change.id}" in text
