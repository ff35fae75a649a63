"""Reading a definition from text: JSON, or YAML for files written by hand."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_BOOL_TAG = "tag:yaml.org,2002:bool"


class _DefinitionLoader(yaml.SafeLoader):
    """A safe loader whose results are JSON values and nothing else.

    YAML 1.1 turns unquoted date-times into datetime objects and ``yes``/``no``/``on``/``off``
    into booleans; neither is JSON, and both surprise authors (a tag named ``on``), so only
    ``true`` and ``false`` are booleans and date-times stay strings. Aliases are refused: they
    let a few bytes of text expand into a document of any size.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a definition", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # PyYAML keeps the last of two equal keys; in a hand-written file that is a mistake
        # (two `next:` in one step) that would otherwise go unnoticed.
        seen: set[object] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key_node.value}'", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_DefinitionLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag not in (_TIMESTAMP_TAG, _BOOL_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_DefinitionLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_definition_text(text: str) -> object:
    """Parse a definition written as JSON or YAML and return the document.

    The result is made of JSON values only; it still needs :func:`validate_definition`.
    Unparseable text raises :class:`ValueError` with the position of the problem.
    """
    if not text.strip():
        raise ValueError("the definition text is empty")
    try:
        return _load(text)
    except RecursionError:
        raise ValueError("the definition is nested too deeply") from None


def _load(text: str) -> object:
    try:
        return json.loads(text, object_pairs_hook=_object_without_duplicate_keys)
    except _DuplicateKeyError as exc:
        raise ValueError(f"invalid JSON: duplicate key '{exc.key}'") from None
    except json.JSONDecodeError as exc:
        json_error = exc
    try:
        # A SafeLoader subclass: it builds plain data only, like yaml.safe_load.
        document = yaml.load(text, Loader=_DefinitionLoader)
    except yaml.YAMLError as exc:
        # Text that opens like JSON was most likely meant as JSON: its error is the useful one.
        if text.lstrip().startswith(("{", "[")):
            raise ValueError(
                f"invalid JSON at line {json_error.lineno}, column {json_error.colno}: "
                f"{json_error.msg}"
            ) from None
        raise ValueError(f"invalid YAML: {exc}") from None
    _check_json_values(document, "")
    return document


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys; like YAML above, refuse them instead.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _check_json_values(value: object, pointer: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"keys must be strings; {key!r} at '{pointer or '/'}' is not")
            _check_json_values(item, f"{pointer}/{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json_values(item, f"{pointer}/{i}")
    elif not (value is None or isinstance(value, str | int | float | bool)):
        raise ValueError(f"the value at '{pointer or '/'}' is not a JSON value: {value!r}")
