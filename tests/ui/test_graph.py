"""The graph's DOT text and the editor's pointer lines (pure)."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

from revflow.config import Settings
from revflow.ui.editor_text import as_text, locate, parse, pointer_lines
from revflow.ui.graph import describe, to_dot
from revflow.ui.session import Signer, secret_key
from tests.support.workflows import simple_definition


def test_every_step_branch_wait_and_goal_is_drawn() -> None:
    definition = simple_definition()
    definition["steps"][1] = {
        "id": "pause",
        "type": "wait",
        "event": "clicked",
        "timeout": "2d",
        "next": "is_vip",
        "timeout_next": "nurture",
    }
    dot = to_dot(definition, live={"pause": 1204})
    for step in ("welcome", "pause", "is_vip", "vip_offer", "nurture", "thank_you"):
        assert f'"step:{step}" [id="step:{step}"' in dot
    assert '"trigger" -> "step:welcome"' in dot
    assert '"step:is_vip" -> "step:vip_offer" [color="#64748b" xlabel="then"' in dot
    assert '"step:is_vip" -> "step:nurture" [color="#64748b" xlabel="else"' in dot
    assert 'xlabel="event"' in dot and 'xlabel="timeout"' in dot and 'style="dashed"' in dot
    assert '"goal:purchased" -> "step:thank_you"' in dot
    assert "● 1,204" in dot and dot.count("●") == 1


def test_compare_marks_colour_steps_and_goals() -> None:
    dot = to_dot(
        simple_definition(),
        marks={"welcome": "modified", "nurture": "removed"},
        goal_marks={"purchased": "added"},
    )
    assert "~ modified" in dot and "\u2212 removed" in dot and "+ added" in dot
    assert 'fillcolor="#fef3c7"' in dot and 'fillcolor="#fee2e2"' in dot


def test_an_unfinished_definition_still_draws() -> None:
    assert to_dot(None).startswith("digraph")
    dot = to_dot({"steps": [{"id": "a", "type": "send_email", "next": "gone"}, "junk", {}]})
    assert '"step:gone" [id="missing:gone"' in dot and "missing step gone" in dot
    assert '"trigger" -> "step:a"' in dot
    # Texts are escaped for Graphviz's HTML labels and quoted strings.
    dot = to_dot({"steps": [{"id": 'x"y', "type": "send_email", "subject": "<b>&"}]})
    assert "&lt;b&gt;&amp;" in dot and '"step:x\\"y"' in dot


def test_describe_says_what_a_step_does() -> None:
    assert describe({"type": "wait", "duration": "2d"}) == "Wait 2d"
    assert (
        describe({"type": "wait", "event": "e", "timeout": "1h"}) == "Wait for event e (timeout 1h)"
    )
    condition = {"type": "condition", "if": {"field": "tags", "op": "contains", "value": "vip"}}
    assert describe(condition) == "If tags contains vip"
    assert describe({"type": "http_request", "url": "https://x"}) == "POST https://x"


def test_pointers_find_their_lines_in_yaml_and_json() -> None:
    yaml_text = "trigger:\n  type: manual\nsteps:\n  - id: a\n    type: end\n"
    lines = pointer_lines(yaml_text)
    assert lines["/trigger/type"] == 2 and lines["/steps/0"] == 4 and lines["/steps/0/type"] == 5
    json_text = '{\n "steps": [\n  {"id": "a",\n   "type": "end"}\n ]\n}'
    assert pointer_lines(json_text)["/steps/0/type"] == 4
    located = locate(
        [{"pointer": "/definition/steps/0/nope", "message": "m"}], yaml_text, "/definition"
    )
    assert located == [{"pointer": "/steps/0/nope", "message": "m", "line": 4}]
    assert pointer_lines("a: [") == {}


def test_editor_text_round_trips() -> None:
    document, error = parse(as_text(simple_definition()))
    assert error is None and document == simple_definition()
    assert parse("a: [")[1] is not None
    assert as_text("kept: [as typed") == "kept: [as typed"


def test_the_embedded_secret_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    first = secret_key(settings)
    path = tmp_path / "r.db.secret-key"
    assert path.read_text() == first and len(first) >= 48
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert secret_key(settings) == first
    assert secret_key(settings.model_copy(update={"secret_key": "set"})) == "set"
    # A session signed with one key is not read with another.
    _, cookie = Signer(first).new_session(uuid.uuid4())
    assert Signer(first).read_session(cookie) is not None
    assert Signer("another").read_session(cookie) is None
