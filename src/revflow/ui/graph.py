"""A workflow definition as a Graphviz (DOT) graph of cards (pure; drawn in the browser).

Graphviz lays it out (the vendored ``@viz-js/viz``); this module only says what the nodes and
edges are: one card per step with an icon, a one-line description and the number of live
executions on it; ``then``/``else`` branches, wait outcomes, goals; and, in the compare view,
added / removed / modified steps coloured.

The editor draws whatever is typed, so a definition that is not valid still gives a graph:
unknown shapes are skipped and a reference to a missing step ends on a red "missing" node.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ICONS = {
    "send_email": "✉",
    "send_sms": "☎",
    "add_tag": "+",
    "remove_tag": "\u2212",  # minus sign
    "update_field": "✎",
    "http_request": "⇄",
    "wait": "◷",
    "condition": "◆",
    "end": "■",
}
MARKS = {
    # fill, border, label shown on the card
    "added": ("#dcfce7", "#16a34a", "+ added"),
    "removed": ("#fee2e2", "#dc2626", "\u2212 removed"),
    "modified": ("#fef3c7", "#d97706", "~ modified"),
}
PLAIN = ("#ffffff", "#94a3b8")
EDGE = "#64748b"
MAX_TEXT = 44


def _text(value: Any, limit: int = MAX_TEXT) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _html(value: str) -> str:
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def describe(step: Mapping[str, Any]) -> str:
    """One line saying what a step does, as on a builder's card."""
    kind = step.get("type")
    if kind == "send_email":
        return f"Email: {step.get('subject', '')}"
    if kind == "send_sms":
        return f"SMS: {step.get('body', '')}"
    if kind in ("add_tag", "remove_tag"):
        verb = "Add" if kind == "add_tag" else "Remove"
        return f"{verb} tag {step.get('tag', '')}"
    if kind == "update_field":
        return f"Set {step.get('field', '')} = {step.get('value', '')}"
    if kind == "http_request":
        return f"{step.get('method', 'POST')} {step.get('url', '')}"
    if kind == "wait":
        if "duration" in step:
            return f"Wait {step['duration']}"
        if "until" in step:
            return f"Wait until {step['until']}"
        timeout = f" (timeout {step['timeout']})" if step.get("timeout") else ""
        return f"Wait for event {step.get('event', '?')}{timeout}"
    if kind == "condition":
        raw_rule = step.get("if")
        rule: Mapping[str, Any] = raw_rule if isinstance(raw_rule, Mapping) else {}
        value = f" {rule.get('value')}" if "value" in rule else ""
        return f"If {rule.get('field', '?')} {rule.get('op', '?')}{value}"
    if kind == "end":
        return "End"
    return f"Unknown step type {kind!r}"


def _trigger_text(trigger: Any) -> str:
    if not isinstance(trigger, Mapping):
        return "Trigger: none"
    kind = str(trigger.get("type", "?"))
    detail = trigger.get("tag") or trigger.get("field") or trigger.get("event") or ""
    return _text(f"When {kind.replace('_', ' ')} {detail}".strip())


def _card(
    node_id: str,
    title: str,
    line: str,
    *,
    live: int = 0,
    mark: str | None = None,
    dashed: bool = False,
) -> str:
    fill, border = MARKS[mark][:2] if mark else PLAIN
    badge = f'<TD ALIGN="RIGHT"><FONT COLOR="#1d4ed8"><B>● {live:,}</B></FONT></TD>' if live else ""
    note = (
        f'<TR><TD ALIGN="LEFT" COLSPAN="2"><FONT POINT-SIZE="9" COLOR="{border}">'
        f"<B>{MARKS[mark][2]}</B></FONT></TD></TR>"
        if mark
        else ""
    )
    label = (
        '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="2">'
        f'<TR><TD ALIGN="LEFT"><B>{_html(title)}</B></TD>{badge}</TR>'
        f'<TR><TD ALIGN="LEFT" COLSPAN="2"><FONT POINT-SIZE="10" COLOR="#475569">'
        f"{_html(_text(line))}</FONT></TD></TR>{note}</TABLE>>"
    )
    style = "rounded,filled,dashed" if dashed else "rounded,filled"
    width = "2" if mark else "1.2"
    return (
        f"  {_quoted(node_id)} [id={_quoted(node_id)} label={label} style={_quoted(style)} "
        f'fillcolor="{fill}" color="{border}" penwidth={width}];'
    )


def _edge(source: str, target: str, label: str = "", *, dashed: bool = False) -> str:
    attrs = [f'color="{EDGE}"']
    if label:
        attrs.append(f"xlabel={_quoted(label)} fontcolor={_quoted(EDGE)}")
    if dashed:
        attrs.append('style="dashed"')
    return f"  {_quoted(source)} -> {_quoted(target)} [{' '.join(attrs)}];"


def _outgoing(step: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, label, dashed) of each edge leaving a step."""
    edges: list[tuple[str, str, bool]] = []
    if step.get("type") == "condition":
        for key in ("then", "else"):
            if isinstance(step.get(key), str):
                edges.append((step[key], key, False))
        return edges
    if isinstance(step.get("next"), str):
        label = "event" if step.get("type") == "wait" and "event" in step else ""
        edges.append((step["next"], label, False))
    if isinstance(step.get("timeout_next"), str):
        edges.append((step["timeout_next"], "timeout", True))
    return edges


def to_dot(
    definition: Any,
    *,
    live: Mapping[str, int] | None = None,
    marks: Mapping[str, str] | None = None,
    goal_marks: Mapping[str, str] | None = None,
) -> str:
    """The DOT text of ``definition``; ``live`` counts executions per step id, ``marks`` and
    ``goal_marks`` colour steps and goals ``added`` / ``removed`` / ``modified``."""
    live = live or {}
    marks = marks or {}
    goal_marks = goal_marks or {}
    document = definition if isinstance(definition, Mapping) else {}
    raw_steps = document.get("steps")
    steps = [
        s
        for s in (raw_steps if isinstance(raw_steps, list) else [])
        if isinstance(s, Mapping) and isinstance(s.get("id"), str)
    ]
    ids = {s["id"] for s in steps}
    lines = [
        "digraph workflow {",
        '  graph [rankdir=TB nodesep=0.35 ranksep=0.45 bgcolor="transparent" '
        'fontname="Helvetica" pad=0.2];',
        '  node [shape=box fontname="Helvetica" fontsize=11 margin="0.12,0.06"];',
        '  edge [fontname="Helvetica" fontsize=9 arrowsize=0.7];',
        _card("trigger", "▶ Trigger", _trigger_text(document.get("trigger"))),
    ]
    missing: set[str] = set()
    start = document.get("start")
    first = start if isinstance(start, str) else (steps[0]["id"] if steps else None)
    if first is not None:
        lines.append(_edge("trigger", f"step:{first}"))
        if first not in ids:
            missing.add(first)
    for step in steps:
        kind = step.get("type")
        title = f"{ICONS.get(str(kind), '?')} {step['id']}"
        lines.append(
            _card(
                f"step:{step['id']}",
                title,
                describe(step),
                live=live.get(step["id"], 0),
                mark=marks.get(step["id"]),
            )
        )
        for target, label, dashed in _outgoing(step):
            lines.append(_edge(f"step:{step['id']}", f"step:{target}", label, dashed=dashed))
            if target not in ids:
                missing.add(target)
    goals = document.get("goals")
    for goal in goals if isinstance(goals, list) else []:
        if not isinstance(goal, Mapping) or not isinstance(goal.get("id"), str):
            continue
        when = f"on event {goal['event']}" if goal.get("event") else "when its condition holds"
        node = f"goal:{goal['id']}"
        lines.append(
            _card(node, f"◎ goal {goal['id']}", when, mark=goal_marks.get(goal["id"]), dashed=True)
        )
        goal_target = goal.get("then")
        if isinstance(goal_target, str):
            lines.append(_edge(node, f"step:{goal_target}", "goal", dashed=True))
            if goal_target not in ids:
                missing.add(goal_target)
    for target in sorted(missing):
        lines.append(
            f"  {_quoted('step:' + target)} [id={_quoted('missing:' + target)} "
            f'label={_quoted("⚠ missing step " + _text(target, 30))} style="rounded,dashed" '
            'color="#dc2626" fontcolor="#dc2626"];'
        )
    lines.append("}")
    return "\n".join(lines)
