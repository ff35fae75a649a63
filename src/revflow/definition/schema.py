"""The JSON Schema of a workflow definition, generated from its models, with an example.

The schema describes what :func:`revflow.definition.validate_definition` accepts one object at a
time; the rules across the document (unique ids, references, cycles through a wait, sizes) are
the validator's, which answers each problem with its JSON Pointer.
"""

from __future__ import annotations

from typing import Any

from revflow.definition.models import Definition

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

EXAMPLE: dict[str, Any] = {
    "trigger": {"type": "tag_added", "tag": "lead"},
    "start": "welcome",
    "steps": [
        {
            "id": "welcome",
            "type": "send_email",
            "subject": "Welcome, {{contact.fields.first_name}}!",
            "body": "Thanks for signing up. Your account is ready at https://app.example.com.",
            "next": "pause",
        },
        {"id": "pause", "type": "wait", "duration": "2d", "next": "is_vip"},
        {
            "id": "is_vip",
            "type": "condition",
            "if": {"field": "tags", "op": "contains", "value": "vip"},
            "then": "vip_offer",
            "else": "nurture",
        },
        {
            "id": "vip_offer",
            "type": "send_sms",
            "body": "{{contact.fields.first_name}}, as a VIP you get 20% off: code VIP20.",
        },
        {"id": "nurture", "type": "add_tag", "tag": "nurture"},
        {
            "id": "thank_you",
            "type": "send_email",
            "subject": "Thank you for your order!",
            "body": "We are preparing it now.",
        },
    ],
    "goals": [{"id": "purchased", "event": "purchase", "then": "thank_you"}],
}
"""A complete definition: welcome email, a two-day wait, a VIP branch, an SMS, a purchase goal
(the README shows the same one)."""


def definition_schema(ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
    """The definition's JSON Schema (2020-12); with another ``ref_template`` its ``$defs`` are
    left for the caller to place (e.g. under an OpenAPI document's components)."""
    schema = Definition.model_json_schema(by_alias=True, ref_template=ref_template)
    schema["examples"] = [EXAMPLE]
    return schema


def standalone_definition_schema() -> dict[str, Any]:
    """The schema as one document, as ``GET /api/v1/schema/definition`` serves it."""
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": "urn:revflow:schema:definition",
        **definition_schema(),
    }
