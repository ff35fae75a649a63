"""Migrating onto a version nobody released answers 409 ``not_released`` unless the body says
``allow_unreleased``; the dry run warns either way (SPEC §6)."""

from __future__ import annotations

from typing import Any

from tests.support.engine import Engine


def definition(subject: str) -> dict[str, Any]:
    return {
        "trigger": {"type": "manual"},
        "steps": [
            {"id": "pause", "type": "wait", "duration": "2d", "next": "mail"},
            {"id": "mail", "type": "send_email", "subject": subject, "body": "b"},
        ],
    }


async def test_a_never_released_target_needs_allow_unreleased(engine: Engine) -> None:
    wf = await engine.workflow(definition("v1"))
    await engine.enroll(wf, await engine.contact(email="nr@example.com"))
    await engine.run()
    await engine.new_version(wf, definition("v2"), 1, publish=False)  # a draft
    url = f"/api/v1/workflows/{wf}/versions/2/migrate"

    dry = await engine.tenant.request("POST", url, json={"from_version": 1, "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert [w["code"] for w in dry.json()["warnings"]] == ["not_released"]

    refused = await engine.tenant.request("POST", url, json={"from_version": 1})
    assert refused.status_code == 409
    assert refused.json()["code"] == "not_released"
    listing = await engine.tenant.request("GET", f"/api/v1/workflows/{wf}/migrations")
    assert listing.json()["items"] == []

    allowed = await engine.tenant.request(
        "POST", url, json={"from_version": 1, "allow_unreleased": True}
    )
    assert allowed.status_code == 202, allowed.text
    assert [w["code"] for w in allowed.json()["report"]["warnings"]] == ["not_released"]


async def test_a_published_target_migrates_without_warning(engine: Engine) -> None:
    wf = await engine.workflow(definition("v1"))
    await engine.enroll(wf, await engine.contact(email="rel@example.com"))
    await engine.run()
    await engine.new_version(wf, definition("v2"), 1)
    dry = await engine.tenant.request(
        "POST",
        f"/api/v1/workflows/{wf}/versions/2/migrate",
        json={"from_version": 1, "dry_run": True},
    )
    assert dry.status_code == 200 and dry.json().get("warnings", []) == []
