"""Migrations through the API, run by the worker (SPEC §6)."""

from __future__ import annotations

from typing import Any

from tests.support.engine import Engine, EngineFactory
from tests.support.workflows import migration_v1 as v1
from tests.support.workflows import migration_v2 as v2


async def setup(engine: Engine, n: int = 6) -> tuple[str, list[str]]:
    wf = await engine.workflow(v1())
    contacts = [await engine.contact(email=f"m{i}@example.com") for i in range(n)]
    enrolled = await engine.enroll(wf, *contacts)
    await engine.run()  # all wait on "pause"
    await engine.new_version(wf, v2(), 1)
    return wf, enrolled["executions"]


async def migrate(engine: Engine, wf: str, body: dict[str, Any]) -> Any:
    return await engine.tenant.request(
        "POST", f"/api/v1/workflows/{wf}/versions/2/migrate", json={"from_version": 1, **body}
    )


async def test_dry_run_reports_and_moves_nothing(engine: Engine) -> None:
    wf, executions = await setup(engine)
    # Put two executions on "old_offer" (a step v2 removed) by letting them wake early? No:
    # dry-run groups by the live population: all six wait on "pause".
    response = await migrate(engine, wf, {"dry_run": True})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "total": 6,
        "movable": 6,
        "unmovable": 0,
        "groups": [{"step": "pause", "count": 6, "target": "pause", "reason": None}],
    }
    for execution_id in executions:
        assert (await engine.execution(execution_id))["version"] == 1
    listing = await engine.tenant.request("GET", f"/api/v1/workflows/{wf}/migrations")
    assert listing.json()["items"] == []


async def test_unmapped_group_then_mapping_makes_it_movable(engine: Engine) -> None:
    wf = await engine.workflow(
        {
            "trigger": {"type": "manual"},
            "steps": [
                {"id": "hello", "type": "send_email", "subject": "v1", "body": "b", "next": "hold"},
                {"id": "hold", "type": "wait", "duration": "2d", "next": "done"},
                {"id": "done", "type": "end"},
            ],
        }
    )
    contacts = [await engine.contact(email=f"u{i}@example.com") for i in range(3)]
    enrolled = await engine.enroll(wf, *contacts)
    await engine.run()
    await engine.new_version(
        wf,
        {
            "trigger": {"type": "manual"},
            "steps": [
                {"id": "hello", "type": "send_email", "subject": "v2", "body": "b", "next": "rest"},
                {"id": "rest", "type": "wait", "duration": "2d", "next": "done"},
                {"id": "done", "type": "end"},
            ],
        },
        1,
    )
    dry = await migrate(engine, wf, {"dry_run": True})
    assert dry.json()["groups"] == [
        {"step": "hold", "count": 3, "target": None, "reason": "step_removed"}
    ]
    assert dry.json()["unmovable"] == 3
    bad = await migrate(engine, wf, {"dry_run": True, "mapping": {"nope": "rest"}})
    assert bad.status_code == 422 and bad.json()["errors"][0]["pointer"] == "/mapping/nope"
    mapped = await migrate(engine, wf, {"dry_run": True, "mapping": {"hold": "rest"}})
    assert mapped.json()["movable"] == 3
    started = await migrate(engine, wf, {"mapping": {"hold": "rest"}})
    assert started.status_code == 202, started.text
    await engine.run()
    migration = (
        await engine.tenant.request("GET", f"/api/v1/migrations/{started.json()['id']}")
    ).json()
    assert (migration["status"], migration["total"], migration["migrated"]) == ("completed", 3, 3)
    for execution_id in enrolled["executions"]:
        ex = await engine.execution(execution_id)
        assert (ex["version"], ex["current_step"], ex["status"]) == (2, "rest", "waiting")
        assert ex["history"][-1]["result"] == "migrated"


async def test_immediate_migration_finishes_on_new_version_without_rerunning(
    engine: Engine,
) -> None:
    wf, executions = await setup(engine)
    before = {e: (await engine.execution(e))["wake_at"] for e in executions}
    started = await migrate(engine, wf, {"mapping": {"old_offer": "offer"}})
    assert started.status_code == 202, started.text
    assert started.json()["total"] == 6
    running = await migrate(engine, wf, {})
    assert running.status_code == 409 and running.json()["code"] == "migration_running"
    await engine.run()
    migration = (
        await engine.tenant.request("GET", f"/api/v1/migrations/{started.json()['id']}")
    ).json()
    assert migration["status"] == "completed"
    assert (migration["migrated"], migration["skipped"], migration["failed"]) == (6, 0, 0)
    for e in executions:
        ex = await engine.execution(e)
        assert ex["version"] == 2 and ex["wake_at"] == before[e]  # wait_policy keep
    await engine.advance(days=3)
    for e in executions:
        ex = await engine.execution(e)
        assert ex["status"] == "completed"
        steps = [(h["step"], h["result"]) for h in ex["history"]]
        # "hello" ran once, on v1; the v2 steps after the wait ran once.
        assert steps == [
            ("hello", "sent"),
            ("pause", "waiting"),
            ("pause", "migrated"),
            ("pause", "woke"),
            ("offer", "sent"),
        ]
    subjects = sorted(m["subject"] for m in await engine.messages())
    assert subjects == ["new"] * 6 + ["v1"] * 6


async def test_restart_policy_and_revert(engine: Engine) -> None:
    wf, executions = await setup(engine, n=4)
    before = {e: await engine.execution(e) for e in executions}
    started = await migrate(engine, wf, {"wait_policy": "restart"})
    await engine.run()
    moved = await engine.execution(executions[0])
    assert moved["version"] == 2 and moved["wake_at"] != before[executions[0]]["wake_at"]
    # One execution advances after the move: revert must leave it alone.
    await engine.tenant.request("POST", f"/api/v1/executions/{executions[3]}/cancel")
    reverted = await engine.tenant.request(
        "POST", f"/api/v1/migrations/{started.json()['id']}/revert"
    )
    assert reverted.status_code == 202, reverted.text
    await engine.run()
    back = (
        await engine.tenant.request("GET", f"/api/v1/migrations/{reverted.json()['id']}")
    ).json()
    assert (back["status"], back["migrated"], back["skipped"]) == ("completed", 3, 1)
    for e in executions[:3]:
        ex = await engine.execution(e)
        assert (ex["version"], ex["current_step"], ex["status"], ex["wake_at"]) == (
            1,
            "pause",
            "waiting",
            before[e]["wake_at"],
        )


async def test_manual_pause_resume_cancel(engine: Engine) -> None:
    wf, executions = await setup(engine, n=5)
    manual = await migrate(engine, wf, {"strategy": "manual", "execution_ids": executions[:2]})
    assert manual.status_code == 202 and manual.json()["total"] == 2
    await engine.run()
    versions = [(await engine.execution(e))["version"] for e in executions]
    assert versions == [2, 2, 1, 1, 1]
    gradual = await migrate(
        engine, wf, {"strategy": "gradual", "batch_size": 1, "interval_seconds": 60}
    )
    assert gradual.status_code == 202 and gradual.json()["total"] == 3
    mid = gradual.json()["id"]
    await engine.run()  # one batch; the next is due in a minute
    assert (await engine.tenant.request("GET", f"/api/v1/migrations/{mid}")).json()["migrated"] == 1
    paused = await engine.tenant.request("POST", f"/api/v1/migrations/{mid}/pause")
    assert paused.json()["status"] == "paused"
    await engine.advance(minutes=5)
    assert (await engine.tenant.request("GET", f"/api/v1/migrations/{mid}")).json()["migrated"] == 1
    await engine.tenant.request("POST", f"/api/v1/migrations/{mid}/resume")
    await engine.run()
    assert (await engine.tenant.request("GET", f"/api/v1/migrations/{mid}")).json()["migrated"] == 2
    cancelled = await engine.tenant.request("POST", f"/api/v1/migrations/{mid}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    await engine.advance(minutes=5)
    final = (await engine.tenant.request("GET", f"/api/v1/migrations/{mid}")).json()
    assert (final["status"], final["migrated"]) == ("cancelled", 2)


async def test_rollback_with_migrate_moves_executions_back_in_one_transaction(
    engine: Engine,
) -> None:
    wf = await engine.workflow(v1())
    await engine.new_version(wf, v2(), 1)  # v2 published; v1 retired
    contacts = [await engine.contact(email=f"r{i}@example.com") for i in range(3)]
    enrolled = await engine.enroll(wf, *contacts)
    await engine.run()  # on v2, waiting on "pause"
    response = await engine.tenant.request(
        "POST",
        f"/api/v1/workflows/{wf}/versions/1/rollback",
        json={"reason": "v2 offer is wrong", "migrate": {"mapping": {"offer": "old_offer"}}},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "published" and body["migration"]["from_version"] == 2
    assert body["migration"]["to_version"] == 1 and body["migration"]["total"] == 3
    await engine.run()
    for e in enrolled["executions"]:
        assert (await engine.execution(e))["version"] == 1
    audit = (
        await engine.tenant.request("GET", "/api/v1/audit", params={"workflow_id": wf})
    ).json()["items"]
    actions = [a["action"] for a in audit]
    assert "migration.created" in actions and "migration.finished" in actions


async def test_gradual_migration_pauses_itself_when_moved_executions_fail(
    make_engine: EngineFactory, database_url: str
) -> None:
    # Room in the bulkhead for the 25 calls at once: a call that waits for a slot longer than
    # http_slot_wait_seconds (real time) is deferred, not failed, and this test's timeline is
    # the manual clock's alone.
    async with make_engine(
        database_url, http_concurrency_per_account_host=30, http_concurrency_per_account=30
    ) as engine:
        wf = await engine.workflow(
            {
                "trigger": {"type": "manual"},
                "steps": [
                    {"id": "pause", "type": "wait", "duration": "1h", "next": "done"},
                    {"id": "done", "type": "end"},
                ],
            }
        )
        contacts = [await engine.contact(email=f"g{i}@example.com") for i in range(30)]
        await engine.enroll(wf, *contacts)
        await engine.run()
        await engine.new_version(
            wf,
            {
                "trigger": {"type": "manual"},
                "steps": [
                    {"id": "pause", "type": "wait", "duration": "1h", "next": "call"},
                    # Nothing listens on port 9 of loopback: every call fails.
                    {
                        "id": "call",
                        "type": "http_request",
                        "url": "http://127.0.0.1:9/hook",
                        "max_attempts": 1,
                    },
                ],
            },
            1,
        )
        started = await migrate(
            engine, wf, {"strategy": "gradual", "batch_size": 25, "interval_seconds": 86400}
        )
        mid = started.json()["id"]
        url = f"/api/v1/migrations/{mid}"
        await engine.run()  # first batch: 25 moved; the next is due in a day
        await engine.advance(hours=2)  # they wake and fail on the new step
        assert len(await engine.executions(wf, status="failed")) == 25
        migration = (await engine.tenant.request("GET", url)).json()
        assert (migration["status"], migration["migrated"]) == ("in_progress", 25), migration
        await engine.advance(days=1)  # the next batch is due: the failure rate halts it
        migration = (await engine.tenant.request("GET", url)).json()
        assert migration["status"] == "paused", migration
        assert (migration["migrated"], migration["skipped"], migration["batches"]) == (25, 0, 1)
        assert "paused itself" in migration["status_reason"]


async def test_a_dry_run_with_an_idempotency_key_replays_its_report(engine: Engine) -> None:
    wf, _ = await setup(engine, n=2)
    headers = {"Idempotency-Key": "dry-1"}
    url = f"/api/v1/workflows/{wf}/versions/2/migrate"
    body = {"from_version": 1, "dry_run": True}
    first = await engine.tenant.request("POST", url, json=body, headers=headers)
    again = await engine.tenant.request("POST", url, json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() and first.json()["total"] == 2
    assert again.headers.get("Idempotent-Replayed") == "true"


async def test_a_migration_started_again_with_its_idempotency_key_is_the_same_one(
    engine: Engine,
) -> None:
    wf, executions = await setup(engine, n=2)
    headers = {"Idempotency-Key": "migrate-1"}
    url = f"/api/v1/workflows/{wf}/versions/2/migrate"
    body = {"from_version": 1, "mapping": {"old_offer": "offer"}}

    first = await engine.tenant.request("POST", url, json=body, headers=headers)
    again = await engine.tenant.request("POST", url, json=body, headers=headers)
    other = await engine.tenant.request(
        "POST", url, json={**body, "batch_size": 1}, headers=headers
    )

    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    listing = await engine.tenant.request("GET", f"/api/v1/workflows/{wf}/migrations")
    assert [m["id"] for m in listing.json()["items"]] == [first.json()["id"]]
    created = await engine.tenant.request(
        "GET", "/api/v1/audit", params={"workflow_id": wf, "action": "migration.created"}
    )
    assert len(created.json()["items"]) == 1
    await engine.run()
    for e in executions:
        ex = await engine.execution(e)
        assert ex["version"] == 2
        assert [h["result"] for h in ex["history"]].count("migrated") == 1
