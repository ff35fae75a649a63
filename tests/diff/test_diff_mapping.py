"""``suggested_mapping`` proposes a step of the same type at the same place in the graph."""

from __future__ import annotations

from typing import Any

from revflow.diff import compare


def nurture(wait_id: str, duration: str, *, wait_type: str = "wait") -> dict[str, Any]:
    wait: dict[str, Any] = {"id": wait_id, "type": wait_type, "next": "tips"}
    if wait_type == "wait":
        wait["duration"] = duration
    else:
        wait["tag"] = "nurtured"
    return {
        "trigger": {"type": "tag_added", "tag": "lead"},
        "steps": [
            {"id": "welcome", "type": "send_email", "subject": "Hi", "body": "b", "next": wait_id},
            wait,
            {"id": "tips", "type": "send_email", "subject": "Tips", "body": "b"},
        ],
    }


def test_a_wait_replaced_by_a_wait_at_the_same_place_is_suggested() -> None:
    comparison = compare(nurture("nurture_wait", "2d"), nurture("tips_wait", "3d"))
    assert comparison.suggested_mapping == {"nurture_wait": "tips_wait"}


def test_a_step_of_another_type_at_the_same_place_is_not_suggested() -> None:
    comparison = compare(nurture("nurture_wait", "2d"), nurture("tag_it", "", wait_type="add_tag"))
    assert comparison.suggested_mapping == {"nurture_wait": None}


def test_a_wait_elsewhere_in_the_graph_is_not_suggested() -> None:
    before = nurture("nurture_wait", "2d")
    after = nurture("nurture_wait", "2d")
    after["steps"][1] = {"id": "other", "type": "send_sms", "body": "x", "next": "tips"}
    after["steps"][0]["next"] = "other"
    after["steps"].append({"id": "late_wait", "type": "wait", "duration": "9d"})
    after["steps"][2]["next"] = "late_wait"
    comparison = compare(before, after)
    assert comparison.suggested_mapping == {"nurture_wait": None}
