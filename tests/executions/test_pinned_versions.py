"""The core promise: a running contact keeps the version it started on (SPEC §3)."""

from __future__ import annotations

from typing import Any

from tests.support.engine import Engine


def welcome(subject: str, wait: str = "2d") -> dict[str, Any]:
    return {
        "trigger": {"type": "manual"},
        "steps": [
            {
                "id": "hello",
                "type": "send_email",
                "subject": subject,
                "body": "Hi",
                "next": "pause",
            },
            {"id": "pause", "type": "wait", "duration": wait, "next": "tag"},
            {"id": "tag", "type": "add_tag", "tag": f"done-{subject}", "next": "bye"},
            {"id": "bye", "type": "send_email", "subject": f"bye {subject}", "body": "Bye"},
        ],
    }


async def test_each_contact_runs_its_own_version_to_the_end(engine: Engine) -> None:
    wf = await engine.workflow(welcome("v1"))
    early = [await engine.contact(email=f"early{i}@example.com") for i in range(5)]
    enrolled_early = await engine.enroll(wf, *early)
    await engine.run()  # they send "v1" and start waiting two days
    v2 = welcome("v2", wait="1h")
    v2["steps"].insert(
        2,
        {
            "id": "extra",
            "type": "update_field",
            "field": "fields.seen",
            "value": "v2",
            "next": "tag",
        },
    )
    v2["steps"][1]["next"] = "extra"
    assert await engine.new_version(wf, v2, 1) == 2
    late = [await engine.contact(email=f"late{i}@example.com") for i in range(5)]
    enrolled_late = await engine.enroll(wf, *late)
    await engine.run()
    await engine.advance(hours=2)  # the v2 contacts' one-hour wait is over; v1 still waits
    for execution_id in enrolled_early["executions"]:
        ex = await engine.execution(execution_id)
        assert ex["version"] == 1 and ex["status"] == "waiting"
    await engine.advance(days=2)
    for execution_id in enrolled_early["executions"]:
        ex = await engine.execution(execution_id)
        assert ex["version"] == 1 and ex["status"] == "completed"
        steps = [h["step"] for h in ex["history"]]
        assert steps == ["hello", "pause", "pause", "tag", "bye"]
    for execution_id in enrolled_late["executions"]:
        ex = await engine.execution(execution_id)
        assert ex["version"] == 2 and ex["status"] == "completed"
        steps = [h["step"] for h in ex["history"]]
        assert steps == ["hello", "pause", "pause", "extra", "tag", "bye"]
    subjects = sorted(m["subject"] for m in await engine.messages())
    assert subjects == sorted(["v1"] * 5 + ["bye v1"] * 5 + ["v2"] * 5 + ["bye v2"] * 5)
