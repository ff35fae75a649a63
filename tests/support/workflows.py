"""Definitions, workflows and versions for tests, made through the API."""

from __future__ import annotations

from typing import Any

from tests.support.tenants import Tenant


def simple_definition(subject: str = "Hi {{contact.fields.first_name}}") -> dict[str, Any]:
    return {
        "trigger": {"type": "tag_added", "tag": "lead"},
        "start": "welcome",
        "steps": [
            {
                "id": "welcome",
                "type": "send_email",
                "subject": subject,
                "body": "Hello",
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
            {"id": "vip_offer", "type": "send_sms", "body": "Offer"},
            {"id": "nurture", "type": "add_tag", "tag": "nurture"},
            {"id": "thank_you", "type": "send_email", "subject": "Thank you!", "body": "..."},
        ],
        "goals": [{"id": "purchased", "event": "purchase", "then": "thank_you"}],
    }


def spec_example() -> dict[str, Any]:
    """The SPEC §2 example definition, as the SPEC writes it."""
    definition = simple_definition()
    welcome, _, _, offer, _, _ = definition["steps"]
    welcome["body"] = offer["body"] = "..."
    return definition


async def create_workflow(tenant: Tenant, name: str = "Welcome") -> dict[str, Any]:
    response = await tenant.request("POST", "/api/v1/workflows", json={"name": name})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def create_version(
    tenant: Tenant,
    workflow_id: str,
    definition: dict[str, Any],
    base: int | None,
    *,
    publish: bool = False,
    summary: str = "change",
) -> dict[str, Any]:
    response = await tenant.request(
        "POST",
        f"/api/v1/workflows/{workflow_id}/versions",
        json={
            "definition": definition,
            "change_summary": summary,
            "base_version": base,
            "publish": publish,
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def manual_workflow(*steps: dict[str, Any], trigger: str = "manual") -> dict[str, Any]:
    """A definition with a manual trigger (re-enrolment after finishing allowed)."""
    return {"trigger": {"type": trigger}, "steps": list(steps)}


def migration_v1() -> dict[str, Any]:
    """Version 1 of the migration tests' workflow: hello, a 2-day pause, an offer."""
    return {
        "trigger": {"type": "manual"},
        "steps": [
            {"id": "hello", "type": "send_email", "subject": "v1", "body": "b", "next": "pause"},
            {"id": "pause", "type": "wait", "duration": "2d", "next": "old_offer"},
            {"id": "old_offer", "type": "send_email", "subject": "old", "body": "b"},
        ],
    }


def migration_v2() -> dict[str, Any]:
    # "pause" now waits 1 day; "old_offer" is renamed "offer" with new content.
    return {
        "trigger": {"type": "manual"},
        "steps": [
            {"id": "hello", "type": "send_email", "subject": "v2", "body": "b", "next": "pause"},
            {"id": "pause", "type": "wait", "duration": "1d", "next": "offer"},
            {"id": "offer", "type": "send_email", "subject": "new", "body": "b"},
        ],
    }
