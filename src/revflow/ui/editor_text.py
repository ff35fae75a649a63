"""The editor's text: parse it, show a document as YAML, and find the line of a JSON Pointer
(pure), so that a problem's pointer becomes a highlighted line."""

from __future__ import annotations

from typing import Any

import yaml

from revflow.definition import load_definition_text

STARTER: dict[str, Any] = {
    "trigger": {"type": "manual"},
    "steps": [
        {
            "id": "welcome",
            "type": "send_email",
            "subject": "Welcome, {{contact.fields.first_name}}",
            "body": "Thanks for signing up.",
        }
    ],
}


def parse(text: str) -> tuple[Any, str | None]:
    """(document, None), or (None, the reason it does not parse)."""
    try:
        return load_definition_text(text), None
    except ValueError as exc:
        return None, str(exc)


def as_text(definition: Any) -> str:
    """A stored definition as the editor shows it: YAML, or a draft's unparsed text as is."""
    if isinstance(definition, str):
        return definition
    return yaml.safe_dump(definition, sort_keys=False, allow_unicode=True, width=100)


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def pointer_lines(text: str) -> dict[str, int]:
    """1-based line of every JSON Pointer of the text's document (YAML or JSON); {} when it
    does not parse."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, pointer: str, line: int) -> None:
        lines[pointer] = line
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(value, f"{pointer}/{_escape(str(key.value))}", key.start_mark.line + 1)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{pointer}/{i}", item.start_mark.line + 1)

    if root is not None:
        walk(root, "", 1)
    return lines


def locate(problems: list[dict[str, Any]], text: str, prefix: str = "") -> list[dict[str, Any]]:
    """The problems with the line of their pointer (or of its nearest parent that exists);
    ``prefix`` (e.g. ``/definition``) is taken off the pointers first."""
    lines = pointer_lines(text)
    located = []
    for problem in problems:
        pointer = str(problem.get("pointer", ""))
        if prefix and pointer.startswith(prefix):
            pointer = pointer[len(prefix) :]
        probe = pointer
        while probe and probe not in lines:
            probe = probe.rsplit("/", 1)[0]
        located.append({**problem, "pointer": pointer, "line": lines.get(probe)})
    return located
