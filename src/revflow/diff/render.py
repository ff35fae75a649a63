"""Human-readable renderings of a comparison: plain unified text and coloured rich text."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text

from revflow.diff.model import Breaking, Change, Comparison

# A line is a list of (text, style) segments; one builder feeds both renderings so the plain
# text and the coloured version can never drift apart.
_Segment = tuple[str, str]
_Line = list[_Segment]

_MARKERS = {"added": "+", "removed": "-", "modified": "~"}
_STYLES = {
    "header": "bold",
    "summary": "bold",
    "added": "green",
    "removed": "red",
    "modified": "yellow",
    "breaking": "bold red",
    "field": "",
    "mapping": "cyan",
}

DEFAULT_MAX_VALUE_CHARS = 200


def render_text(
    comparison: Comparison,
    before_label: str,
    after_label: str,
    *,
    max_value_chars: int | None = DEFAULT_MAX_VALUE_CHARS,
    affected: Sequence[int] | None = None,
) -> str:
    """Render a comparison as unified, human-readable text.

    A ``--- before`` / ``+++ after`` header, a summary line with the suggested bump, the
    breaking changes with their reasons, the suggested mapping of removed steps, then each
    change marked ``+`` (added), ``-`` (removed) or ``~`` (modified) with its field lines
    (``  /subject: "Hi" -> "Hello"``). Values are shown as JSON, cut to ``max_value_chars``
    characters (``None``: never cut). ``affected`` gives, in the order of
    ``comparison.breaking``, the live executions each breaking change reaches; each breaking
    line then says how many (``  ! step offer: step removed (3 live executions)``).
    """
    lines = _lines(comparison, before_label, after_label, max_value_chars, affected)
    return "\n".join("".join(text for text, _ in line) for line in lines) + "\n"


def render_rich(
    comparison: Comparison,
    before_label: str,
    after_label: str,
    *,
    max_value_chars: int | None = DEFAULT_MAX_VALUE_CHARS,
    affected: Sequence[int] | None = None,
) -> Text:
    """Render a comparison as coloured ``rich`` text, line for line the same as :func:`render_text`.

    Added things are green, removed red, modified yellow, breaking changes bold red.
    """
    out = Text()
    for line in _lines(comparison, before_label, after_label, max_value_chars, affected):
        for text, style in line:
            out.append(text, style=_STYLES[style] or None)
        out.append("\n")
    return out


def _lines(
    comparison: Comparison,
    before_label: str,
    after_label: str,
    limit: int | None,
    affected: Sequence[int] | None,
) -> list[_Line]:
    lines: list[_Line] = [
        [(f"--- {before_label}", "header")],
        [(f"+++ {after_label}", "header")],
        [(_summary_text(comparison), "summary")],
    ]
    if comparison.breaking:
        lines.append([])
        lines.append([(f"breaking changes ({len(comparison.breaking)}):", "breaking")])
        for i, breaking in enumerate(comparison.breaking):
            count = affected[i] if affected is not None and i < len(affected) else None
            lines.append([(f"  ! {_breaking_text(breaking, count)}", "breaking")])
    if comparison.suggested_mapping:
        lines.append([])
        lines.append([("suggested mapping (removed step -> step of the new version):", "mapping")])
        for old, new in comparison.suggested_mapping.items():
            lines.append([(f"  {old} -> {new if new is not None else '(none)'}", "mapping")])
    if comparison.changes:
        lines.append([])
    reasons = {("step", b.step): b.reason for b in comparison.breaking if b.step is not None}
    reasons.update({("goal", b.goal): b.reason for b in comparison.breaking if b.goal is not None})
    for change in comparison.changes:
        reason = reasons.get((change.entity, change.id)) if change.id is not None else None
        lines.extend(_change_lines(change, reason, limit))
    return lines


def _summary_text(comparison: Comparison) -> str:
    summary = comparison.summary
    if not comparison.changes:
        return "no changes; suggested bump: patch"
    parts = []
    for count, noun, verb in (
        (summary.steps_added, "step", "added"),
        (summary.steps_removed, "step", "removed"),
        (summary.steps_modified, "step", "modified"),
        (summary.goals_changed, "goal", "changed"),
    ):
        if count:
            parts.append(f"{count} {noun}{'' if count == 1 else 's'} {verb}")
    if summary.trigger_changed:
        parts.append("trigger changed")
    if summary.start_changed:
        parts.append("start changed")
    return f"{', '.join(parts)}; suggested bump: {comparison.suggested_bump}"


def _breaking_text(breaking: Breaking, affected: int | None) -> str:
    where = f"step {breaking.step}" if breaking.step is not None else f"goal {breaking.goal}"
    if affected is None:
        return f"{where}: {breaking.reason}"
    plural = "" if affected == 1 else "s"
    return f"{where}: {breaking.reason} ({affected} live execution{plural})"


def _change_lines(change: Change, reason: str | None, limit: int | None) -> list[_Line]:
    style = change.kind
    marker = _MARKERS[change.kind]
    if change.entity == "start":
        if change.kind == "modified":
            text = f"~ start: {_value(change.before, limit)} -> {_value(change.after, limit)}"
        else:
            value = change.after if change.kind == "added" else change.before
            text = f"{marker} start: {_value(value, limit)}"
        return [[(text, style)]]

    header: _Line = [(f"{marker} {_title(change)}", style)]
    if change.rewired:
        header.append((" (rewired)", style))
    if reason is not None:
        header.append((f"  [breaking: {reason}]", "breaking"))
    lines = [header]
    if change.kind == "modified":
        for field in change.fields:
            before = _field_value(change.before, field.path, field.before, limit)
            after = _field_value(change.after, field.path, field.after, limit)
            lines.append([(f"  {field.path or '/'}: {before} -> {after}", "field")])
        return lines
    entity = change.after if change.kind == "added" else change.before
    if isinstance(entity, Mapping):
        for key, value in entity.items():
            if key == "id" and change.entity != "trigger":
                continue
            lines.append([(f"{marker}   /{key}: {_value(value, limit)}", style)])
    return lines


def _title(change: Change) -> str:
    if change.entity == "trigger":
        return "trigger"
    entity = change.after if change.after is not None else change.before
    kind = entity.get("type") if isinstance(entity, Mapping) else None
    suffix = f" ({kind})" if change.entity == "step" and kind is not None else ""
    return f"{change.entity} {change.id}{suffix}"


def _field_value(entity: Any, path: str, value: Any, limit: int | None) -> str:
    # The JSON shape reports a missing key as null; people should see it is absent.
    if value is None and not _exists(entity, path):
        return "(absent)"
    return _value(value, limit)


def _exists(entity: Any, path: str) -> bool:
    node = entity
    for token in path.split("/")[1:]:
        key = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return False
    return True


def _value(value: Any, limit: int | None) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    if limit is not None and len(text) > limit:
        return text[: max(limit - 1, 0)] + "…"
    return text
