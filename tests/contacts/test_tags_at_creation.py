"""A contact created (or upserted into existence) with tags fires ``contact_created`` and then
``tag_added`` once per tag (SPEC §2); ``field_changed`` is for later changes only."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.engine import Engine


def workflow(trigger: dict[str, Any]) -> dict[str, Any]:
    return {
        "trigger": trigger,
        "steps": [{"id": "hold", "type": "wait", "duration": "7d"}],
    }


async def enrolled(engine: Engine, workflow_id: str) -> list[str]:
    return [e["contact_id"] for e in await engine.executions(workflow_id)]


async def test_tags_given_at_creation_fire_tag_added_once_each(engine: Engine) -> None:
    tag = f"lead-{uuid.uuid4().hex[:6]}"
    lead = await engine.workflow(workflow({"type": "tag_added", "tag": tag}), name="lead")
    other = await engine.workflow(workflow({"type": "tag_added", "tag": "unrelated"}), name="o")
    tags_changed = await engine.workflow(
        workflow({"type": "field_changed", "field": "tags"}), name="tags"
    )
    created = await engine.contact(email=f"{tag}@example.com", tags=[tag, tag])
    upsert = await engine.tenant.request(
        "PUT", f"/api/v1/contacts/by-external-id/{tag}", json={"tags": [tag]}
    )
    assert upsert.status_code == 201, upsert.text
    upserted = upsert.json()["id"]
    assert sorted(await enrolled(engine, lead)) == sorted([created, upserted])
    assert await enrolled(engine, other) == []
    assert await enrolled(engine, tags_changed) == []


async def test_a_new_tagged_contact_enters_both_created_and_tag_workflows(engine: Engine) -> None:
    tag = f"vip-{uuid.uuid4().hex[:6]}"
    by_tag = await engine.workflow(workflow({"type": "tag_added", "tag": tag}), name="by-tag")
    on_create = await engine.workflow(workflow({"type": "contact_created"}), name="on-create")
    person = await engine.contact(email=f"{tag}@example.com", tags=[tag])
    [first] = await engine.executions(on_create)
    [second] = await engine.executions(by_tag)
    assert first["contact_id"] == second["contact_id"] == person
