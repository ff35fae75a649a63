"""Reading definitions from JSON and YAML text."""

from __future__ import annotations

import json

import pytest

from revflow.definition import load_definition_text, validate_definition
from revflow.definition.samples import make_definition

YAML_TEXT = """
# A hand-written workflow
trigger:
  type: tag_added
  tag: on            # stays the string "on", not a boolean
steps:
  - id: welcome
    type: send_email
    subject: "Hi {{contact.fields.first_name}}"
    body: |
      Welcome aboard!
    next: until
  - id: until
    type: wait
    until: 2030-01-31T09:00:00Z   # stays a string, not a datetime
    next: check
  - id: check
    type: condition
    if: {field: fields.score, op: gte, value: 10}
    then: done
    else: done
  - {id: done, type: end}
goals:
  - id: bought
    event: purchase
"""


def test_yaml_is_read_as_json_values() -> None:
    document = load_definition_text(YAML_TEXT)
    assert isinstance(document, dict)
    assert document["trigger"] == {"type": "tag_added", "tag": "on"}
    assert document["steps"][1]["until"] == "2030-01-31T09:00:00Z"
    assert document["steps"][2]["if"] == {"field": "fields.score", "op": "gte", "value": 10}
    assert document["steps"][0]["body"] == "Welcome aboard!\n"
    validated = validate_definition(document)
    assert validated.warnings == []


def test_yaml_and_json_of_the_same_definition_hash_alike() -> None:
    definition = make_definition(30, seed=2)
    from_json = load_definition_text(json.dumps(definition, indent=2))
    from_yaml = load_definition_text(
        "\n".join(f"{key}: {json.dumps(value)}" for key, value in definition.items())
    )
    assert from_json == from_yaml == definition
    assert (
        validate_definition(from_json).content_hash == validate_definition(from_yaml).content_hash
    )


def test_json_booleans_survive() -> None:
    assert load_definition_text("a: true\nb: False\nc: yes\nd: null") == {
        "a": True,
        "b": False,
        "c": "yes",
        "d": None,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ('{"trigger": {"type": "manual",}', "invalid JSON at line 1"),
        ("[1, 2", "invalid JSON at line 1"),
        ("trigger: [unclosed", "invalid YAML"),
        ("a: b: c", "invalid YAML"),
        ("base: &b {type: end}\nsteps: [*b, *b]", "aliases"),
        ("1: one", "keys must be strings"),
        ("x: !!binary aGk=", "not a JSON value"),
        ("x: !!python/object:object {}", "invalid YAML"),
        ('{"next": "a", "next": "b"}', "duplicate key 'next'"),
        ("steps:\n  - id: a\n    next: b\n    next: c", "duplicate key 'next'"),
    ],
)
def test_unparseable_text_is_a_clear_value_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_definition_text(text)


def test_a_scalar_document_is_returned_for_validation_to_refuse() -> None:
    assert load_definition_text("just text") == "just text"
    assert load_definition_text("[1, 2]") == [1, 2]


def test_yaml_flow_style_that_is_not_json() -> None:
    assert load_definition_text("{trigger: {type: manual}, steps: [{id: a, type: end}]}") == {
        "trigger": {"type": "manual"},
        "steps": [{"id": "a", "type": "end"}],
    }


def test_deep_nesting_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        load_definition_text("[" * 100_000 + "]" * 100_000)
