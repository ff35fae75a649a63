"""Tests of the text / rich renderings of a comparison and of next_semver."""

from __future__ import annotations

from typing import Any

import pytest
from rich.text import Text

from revflow.diff import (
    FIRST_SEMVER,
    Comparison,
    compare,
    next_semver,
    render_rich,
    render_text,
)


def definition() -> dict[str, Any]:
    return {
        "trigger": {"type": "tag_added", "tag": "lead"},
        "steps": [
            {"id": "welcome", "type": "send_email", "subject": "Hi", "body": "b", "next": "pause"},
            {"id": "pause", "type": "wait", "duration": "2d", "next": "offer"},
            {"id": "offer", "type": "send_sms", "body": "Deal!"},
            {"id": "old", "type": "add_tag", "tag": "x"},
        ],
        "goals": [{"id": "purchased", "event": "purchase"}],
    }


def changed() -> dict[str, Any]:
    after = definition()
    after["trigger"]["tag"] = "customer"
    after["start"] = "pause"
    after["steps"][0]["subject"] = "Hello"
    after["steps"][1] = {"id": "pause", "type": "wait", "event": "opened", "next": "new_offer"}
    after["steps"][2]["id"] = "new_offer"
    after["steps"].pop()
    after["goals"] = [{"id": "clicked", "event": "click"}]
    return after


def test_render_text_of_a_full_comparison() -> None:
    text = render_text(compare(definition(), changed()), "v1", "v2")
    assert text == "\n".join(
        [
            "--- v1",
            "+++ v2",
            "1 step added, 2 steps removed, 2 steps modified, 2 goals changed, trigger changed, "
            "start changed; suggested bump: major",
            "",
            "breaking changes (4):",
            "  ! step pause: wait kind changed from duration to event",
            "  ! step offer: step removed",
            "  ! step old: step removed",
            "  ! goal purchased: goal removed",
            "",
            "suggested mapping (removed step -> step of the new version):",
            "  offer -> new_offer",
            "  old -> (none)",
            "",
            "~ trigger",
            '  /tag: "lead" -> "customer"',
            '~ start: "welcome" -> "pause"',
            "~ step welcome (send_email)",
            '  /subject: "Hi" -> "Hello"',
            "~ step pause (wait) (rewired)  [breaking: wait kind changed from duration to event]",
            '  /event: (absent) -> "opened"',
            '  /next: "offer" -> "new_offer"',
            '  /duration: "2d" -> (absent)',
            "+ step new_offer (send_sms)",
            '+   /type: "send_sms"',
            '+   /body: "Deal!"',
            "- step offer (send_sms)  [breaking: step removed]",
            '-   /type: "send_sms"',
            '-   /body: "Deal!"',
            "- step old (add_tag)  [breaking: step removed]",
            '-   /type: "add_tag"',
            '-   /tag: "x"',
            "+ goal clicked",
            '+   /event: "click"',
            "- goal purchased  [breaking: goal removed]",
            '-   /event: "purchase"',
            "",
        ]
    )


def test_render_text_without_changes() -> None:
    text = render_text(compare(definition(), definition()), "v3", "v3 (copy)")
    assert text == "--- v3\n+++ v3 (copy)\nno changes; suggested bump: patch\n"


def test_render_text_shows_null_values_and_cuts_long_ones() -> None:
    before = definition()
    after = definition()
    before["steps"][3] = {"id": "old", "type": "update_field", "field": "phone", "value": None}
    after["steps"][3] = {"id": "old", "type": "update_field", "field": "phone", "value": "x" * 50}
    text = render_text(compare(before, after), "a", "b", max_value_chars=10)
    assert '  /value: null -> "xxxxxxxx…' in text
    full = render_text(compare(before, after), "a", "b", max_value_chars=None)
    assert '"' + "x" * 50 + '"' in full


def test_render_rich_colours_each_kind() -> None:
    rendered = render_rich(compare(definition(), changed()), "v1", "v2")
    assert isinstance(rendered, Text)
    assert rendered.plain == render_text(compare(definition(), changed()), "v1", "v2")

    def style_of(fragment: str) -> str:
        start = rendered.plain.index(fragment)
        styles = [str(span.style) for span in rendered.spans if span.start <= start < span.end]
        return styles[-1] if styles else ""

    assert style_of("+ step new_offer") == "green"
    assert style_of("- step old") == "red"
    assert style_of("~ step welcome") == "yellow"
    assert style_of("  [breaking: step removed]") == "bold red"
    assert style_of("breaking changes (4):") == "bold red"


@pytest.mark.parametrize(
    ("parent", "bump", "expected"),
    [
        (None, "major", "1.0.0"),
        (None, "patch", "1.0.0"),
        ("1.0.0", "patch", "1.0.1"),
        ("1.0.7", "minor", "1.1.0"),
        ("1.4.7", "major", "2.0.0"),
        ("2.9.9", "minor", "2.10.0"),
        ("10.0.0", "patch", "10.0.1"),
    ],
)
def test_next_semver(parent: str | None, bump: Any, expected: str) -> None:
    assert next_semver(parent, bump) == expected


def test_first_semver() -> None:
    assert FIRST_SEMVER == "1.0.0"


@pytest.mark.parametrize("parent", ["1.0", "v1.0.0", "1.0.0-beta", "01.0.0", "", "a.b.c"])
def test_next_semver_rejects_malformed_parents(parent: str) -> None:
    with pytest.raises(ValueError, match=r"MAJOR\.MINOR\.PATCH"):
        next_semver(parent, "patch")


def test_next_semver_rejects_unknown_bumps() -> None:
    with pytest.raises(ValueError, match="unknown bump"):
        next_semver("1.0.0", "huge")  # type: ignore[arg-type]


def test_bump_of_a_comparison_feeds_next_semver() -> None:
    assert next_semver("1.2.3", compare(definition(), changed()).suggested_bump) == "2.0.0"


def test_render_text_says_how_many_live_executions_each_break_reaches() -> None:
    comparison = compare(definition(), changed())
    text = render_text(comparison, "v1", "v2", affected=[0, 1, 2, 5])
    assert "  ! step pause: wait kind changed from duration to event (0 live executions)\n" in text
    assert "  ! step offer: step removed (1 live execution)\n" in text
    assert "  ! goal purchased: goal removed (5 live executions)\n" in text
    assert render_rich(comparison, "v1", "v2", affected=[0, 1, 2, 5]).plain == text


def test_a_comparison_reads_back_from_its_json() -> None:
    comparison = compare(definition(), changed())
    assert Comparison.from_dict(comparison.to_dict()) == comparison
