"""The definition's JSON Schema: generated from the models, documented field by field, served
at ``GET /api/v1/schema/definition`` and in the OpenAPI document; the README's example is valid."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema

from revflow.definition import STEP_TYPES, TRIGGER_TYPES, validate_definition
from revflow.definition.models import CONDITION_OPS
from revflow.definition.schema import EXAMPLE, definition_schema, standalone_definition_schema

ROOT = Path(__file__).resolve().parents[2]


def readme_example() -> Any:
    """The JSON block of the README's "Workflow definitions" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Workflow definitions", 1)[1]
    match = re.search(r"```json\n(.*?)\n```", section, re.S)
    assert match, "the README's definition section has no JSON example"
    return json.loads(match.group(1))


def properties(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    models = {"Definition": schema, **schema["$defs"]}
    return [
        (model, name, prop)
        for model, body in models.items()
        for name, prop in body.get("properties", {}).items()
    ]


def test_every_field_has_a_description_and_an_example() -> None:
    schema = definition_schema()
    undocumented = [
        f"{model}.{name}"
        for model, name, prop in properties(schema)
        if not prop.get("description") or not (prop.get("examples") or "const" in prop)
    ]
    assert undocumented == []
    assert len(properties(schema)) > 40


def test_the_schema_names_every_step_trigger_and_operator() -> None:
    schema = definition_schema()
    consts = {prop.get("const") for _, name, prop in properties(schema) if name == "type"}
    assert set(STEP_TYPES) | set(TRIGGER_TYPES) <= consts
    assert set(schema["$defs"]["Condition"]["properties"]["op"]["enum"]) == set(CONDITION_OPS)


def test_the_example_is_valid_and_the_readme_shows_it() -> None:
    assert readme_example() == EXAMPLE
    validated = validate_definition(readme_example())
    assert validated.warnings == []
    jsonschema.Draft202012Validator(standalone_definition_schema()).validate(EXAMPLE)


def test_the_schema_refuses_what_the_validator_refuses_one_object_at_a_time() -> None:
    validator = jsonschema.Draft202012Validator(standalone_definition_schema())
    for broken in (
        {**EXAMPLE, "unknown": 1},
        {**EXAMPLE, "steps": []},
        {**EXAMPLE, "trigger": {"type": "webhook"}},
        {**EXAMPLE, "steps": [{"id": "x", "type": "teleport"}]},
    ):
        assert not validator.is_valid(broken), broken


async def test_the_schema_is_served_and_is_the_documents_definition(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/schema/definition")
    assert response.status_code == 200, response.text
    served = response.json()
    assert served == standalone_definition_schema()
    assert served["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert schemas["Definition"]["properties"].keys() == served["properties"].keys()
    assert schemas["WaitStep"] == json.loads(
        json.dumps(served["$defs"]["WaitStep"]).replace("#/$defs/", "#/components/schemas/")
    )
    for body in ("VersionCreate", "WorkflowCreate"):
        definition = schemas[body]["properties"]["definition"]
        assert definition["allOf"] == [{"$ref": "#/components/schemas/Definition"}], body
