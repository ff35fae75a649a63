"""Retention and archival (SPEC §7, §1 version statuses, §4 ``include_archived`` and rollback).

The rule archives versions that are not current and not a canary, have no live executions, were
last published (drafts: created) over ``archive_after_days`` ago and are not among the newest
``keep_versions`` of their workflow. It runs in the worker once per ``archive_interval_hours``
across all workers, and as ``revflow archive [--dry-run]``. Every test has a database of its own:
the rule scans every account.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import uuid
from typing import Any

from sqlalchemy import func, select, update

from revflow.models import AuditEntry, Version
from revflow.workflows.lifecycle import archive
from tests.support.engine import EngineFactory, WorkflowEngine
from tests.support.processes import revflow_command
from tests.support.tenants import Tenant, make_tenant
from tests.support.workflows import manual_workflow

RULE = {"keep_versions": 2, "archive_after_days": 0}


def definition(label: str) -> dict[str, Any]:
    return manual_workflow(
        {"id": "hello", "type": "send_email", "subject": label, "body": "b", "next": "pause"},
        {"id": "pause", "type": "wait", "duration": "30d"},
    )


async def add_version(tenant: Tenant, workflow_id: str, how: str) -> int:
    """One more version: ``publish`` it, leave it a ``draft``, or make it the ``canary``."""
    versions = f"/api/v1/workflows/{workflow_id}/versions"
    latest = (await tenant.request("GET", f"/api/v1/workflows/{workflow_id}")).json()
    base = latest["version_count"] or None
    response = await tenant.request(
        "POST",
        versions,
        json={
            "definition": definition(f"{workflow_id} v{(base or 0) + 1}"),
            "change_summary": f"{how} {(base or 0) + 1}",
            "base_version": base,
            "publish": how == "publish",
        },
    )
    assert response.status_code == 201, response.text
    number: int = response.json()["number"]
    if how == "canary":
        canary = await tenant.request(
            "POST", f"{versions}/{number}/publish", json={"canary_percent": 10}
        )
        assert canary.status_code == 200, canary.text
    return number


async def new_workflow(tenant: Tenant, *plan: str, name: str = "kept") -> str:
    created = await tenant.request("POST", "/api/v1/workflows", json={"name": name})
    assert created.status_code == 201, created.text
    workflow_id: str = created.json()["id"]
    for how in plan:
        await add_version(tenant, workflow_id, how)
    return workflow_id


async def statuses(tenant: Tenant, workflow_id: str, **params: Any) -> dict[int, str]:
    response = await tenant.request(
        "GET", f"/api/v1/workflows/{workflow_id}/versions", params={"limit": 200, **params}
    )
    assert response.status_code == 200, response.text
    return {v["number"]: v["status"] for v in response.json()["items"]}


async def archived_entries(tenant: Tenant) -> list[tuple[str, int]]:
    """(workflow id, number) of every ``version.archived`` audit entry of the tenant."""
    response = await tenant.request(
        "GET", "/api/v1/audit", params={"action": "version.archived", "limit": 200}
    )
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return sorted((e["workflow_id"], e["details"]["number"]) for e in response.json()["items"])


async def etag(tenant: Tenant, workflow_id: str) -> str:
    value: str = (await tenant.request("GET", f"/api/v1/workflows/{workflow_id}")).json()["etag"]
    return value


async def later(e: WorkflowEngine, **delta: float) -> None:
    """Move the clock on (versions are stamped by the wall clock, a moment before it)."""
    e.clock.advance(dt.timedelta(**(delta or {"minutes": 1})))


async def test_the_rule_archives_old_versions_only(
    make_engine: EngineFactory, fresh_database_url: str
) -> None:
    async with make_engine(fresh_database_url, **RULE) as e:
        tenant = e.tenant
        wf = await new_workflow(tenant, "publish", "publish", "draft", "publish")
        # Version 4 is current: a contact enrolled now stays on it (waits 30 days).
        person = await e.contact(email="ada@example.com")
        enrolled = await e.enroll(wf, person)
        await e.run()
        for how in ("publish", "canary", "draft", "draft"):
            await add_version(tenant, wf, how)
        assert await statuses(tenant, wf) == {
            1: "retired",
            2: "retired",
            3: "draft",
            4: "retired",
            5: "published",
            6: "canary",
            7: "draft",
            8: "draft",
        }
        young = await new_workflow(tenant, "publish", "publish", name="young")
        before = {wf: await etag(tenant, wf), young: await etag(tenant, young)}

        await later(e)
        archived = await e.worker.run_scheduled(force=True)
        assert archived is not None
        assert sorted((str(a.workflow_id), a.number) for a in archived) == [
            (wf, 1),
            (wf, 2),
            (wf, 3),
        ]
        # Current (5), canary (6), with a live execution (4), the newest two (7, 8): kept.
        after = await statuses(tenant, wf, include_archived="true")
        assert after == {
            1: "archived",
            2: "archived",
            3: "archived",
            4: "retired",
            5: "published",
            6: "canary",
            7: "draft",
            8: "draft",
        }
        assert await statuses(tenant, young) == {1: "retired", 2: "published"}
        assert await etag(tenant, wf) != before[wf]
        assert await etag(tenant, young) == before[young]
        entries = await e.audit("version.archived")
        assert sorted((x["workflow_id"], x["details"]["number"]) for x in entries) == [
            (wf, 1),
            (wf, 2),
            (wf, 3),
        ]
        assert {x["actor"]["user"] for x in entries} == {"system"}
        version_ids = {
            n: (await e.get(f"/api/v1/workflows/{wf}/versions/{n}"))["id"] for n in (1, 2, 3)
        }
        assert {x["object_id"] for x in entries} == set(version_ids.values())

        # Its execution finished, version 4 goes at the next run (a day later).
        await e.advance(days=31)
        assert (await e.execution(enrolled["executions"][0]))["status"] == "completed"
        archived = await e.worker.run_scheduled(force=True)
        assert archived is not None
        assert [(str(a.workflow_id), a.number) for a in archived] == [(wf, 4)]
        assert (await statuses(tenant, wf, include_archived="true"))[4] == "archived"
        assert len(await e.audit("version.archived")) == 4
        # Nothing is archived twice.
        await later(e, days=2)
        assert await e.worker.run_scheduled(force=True) == []
        assert len(await e.audit("version.archived")) == 4


async def _backdate(
    e: WorkflowEngine, workflow_id: str, number: int, **stamps: dt.datetime
) -> None:
    async with e.db.session(write=True) as session:
        await session.execute(
            update(Version)
            .where(Version.workflow_id == uuid.UUID(workflow_id), Version.number == number)
            .values(**stamps)
        )
        await session.commit()


async def test_age_counts_from_the_last_publication_or_for_drafts_the_creation(
    make_engine: EngineFactory, fresh_database_url: str
) -> None:
    async with make_engine(fresh_database_url, keep_versions=0) as e:  # 90 days by default
        assert e.settings.archive_after_days == 90
        wf = await new_workflow(e.tenant, "publish", "publish", "draft", "draft", "publish")
        now = e.clock.now()
        await _backdate(e, wf, 1, published_at=now - dt.timedelta(days=100))
        # Created long ago but published (then retired) recently: kept.
        await _backdate(
            e,
            wf,
            2,
            created_at=now - dt.timedelta(days=200),
            published_at=now - dt.timedelta(days=10),
        )
        await _backdate(e, wf, 3, created_at=now - dt.timedelta(days=100))
        await _backdate(e, wf, 4, created_at=now - dt.timedelta(days=89))
        # The current version is kept whatever its age, even with keep_versions 0.
        await _backdate(e, wf, 5, published_at=now - dt.timedelta(days=400))

        archived = await e.worker.run_scheduled(force=True)
        assert archived is not None
        assert [a.number for a in archived] == [1, 3]

        await later(e, days=2)
        assert [a.number for a in await e.worker.run_scheduled(force=True) or []] == [4]
        await later(e, days=79)
        assert [a.number for a in await e.worker.run_scheduled(force=True) or []] == [2]
        assert await statuses(e.tenant, wf, include_archived="true") == {
            1: "archived",
            2: "archived",
            3: "archived",
            4: "archived",
            5: "published",
        }
        assert await statuses(e.tenant, wf) == {5: "published"}


async def test_archived_versions_are_hidden_readable_comparable_and_can_be_rolled_back_to(
    make_engine: EngineFactory, fresh_database_url: str
) -> None:
    async with make_engine(fresh_database_url, **RULE) as e:
        tenant = e.tenant
        wf = await new_workflow(tenant, "publish", "publish", "publish", "publish")
        url = f"/api/v1/workflows/{wf}"
        await later(e)
        await e.worker.run_scheduled(force=True)

        assert await statuses(tenant, wf) == {4: "published", 3: "retired"}
        assert await statuses(tenant, wf, include_archived="true") == {
            4: "published",
            3: "retired",
            2: "archived",
            1: "archived",
        }
        assert await statuses(tenant, wf, status="archived") == {2: "archived", 1: "archived"}
        counts = (await e.get(url))["versions_by_status"]
        assert counts.get("archived") == 2, counts

        one = await e.get(f"{url}/versions/1")
        assert one["status"] == "archived"
        assert one["definition"] == definition(f"{wf} v1")
        assert one["live_executions"] == 0

        for a, b in ((1, 4), (4, 1), (1, 2)):
            diff = await e.get(f"{url}/versions/compare", **{"from": a, "to": b})
            assert diff["summary"]["steps_modified"] == 1, diff
        text = await tenant.request(
            "GET", f"{url}/versions/compare", params={"from": 1, "to": 4, "format": "text"}
        )
        assert text.status_code == 200 and "v1" in text.text

        # Publishing an archived version is a rollback's job.
        refused = await tenant.request("POST", f"{url}/versions/2/publish")
        assert refused.status_code == 409 and refused.json()["code"] == "use_rollback"
        rolled = await e.post(f"{url}/versions/2/rollback", {"reason": "v4 misbehaves"})
        assert rolled["status"] == "published"
        workflow = await e.get(url)
        assert workflow["current_version"] == 2
        assert await statuses(tenant, wf) == {4: "retired", 3: "retired", 2: "published"}
        assert await statuses(tenant, wf, include_archived="true") == {
            4: "retired",
            3: "retired",
            2: "published",
            1: "archived",
        }
        rollbacks = await e.audit("version.rolled_back", wf)
        assert [r["details"]["number"] for r in rollbacks] == [2]
        assert rollbacks[0]["details"]["reason"] == "v4 misbehaves"

        # New enrollments run version 2 again.
        person = await e.contact()
        execution = (await e.enroll(wf, person))["executions"][0]
        assert (await e.execution(execution))["version"] == 2

        # Two newer drafts: 3 and 4 leave the newest two and go; the current one never does.
        await add_version(tenant, wf, "draft")
        await add_version(tenant, wf, "draft")
        await later(e, days=1)
        archived = await e.worker.run_scheduled(force=True)
        assert [a.number for a in archived or []] == [3, 4]
        assert (await statuses(tenant, wf, include_archived="true"))[2] == "published"


async def test_the_job_runs_once_per_interval(
    make_engine: EngineFactory, fresh_database_url: str
) -> None:
    async with make_engine(fresh_database_url, **RULE, archive_interval_hours=24) as e:
        wf = await new_workflow(e.tenant, "publish", "publish", "publish")
        await later(e)
        assert [a.number for a in await e.worker.run_scheduled(force=True) or []] == [1]
        await add_version(e.tenant, wf, "publish")
        await later(e, hours=23)
        assert await e.worker.run_scheduled(force=True) is None
        assert await e.new_worker("worker-2").run_scheduled(force=True) is None
        await later(e, hours=1)
        second = e.new_worker("worker-2")
        assert [a.number for a in await second.run_scheduled(force=True) or []] == [2]
        assert await e.worker.run_scheduled(force=True) is None
        # Without force a worker looks at most once a minute (of its own).
        await later(e, days=2)
        await add_version(e.tenant, wf, "publish")
        assert await e.worker.run_scheduled() is None
        assert [a.number for a in await e.new_worker("w3").run_scheduled() or []] == [3]


async def _populate(tenant: Tenant, workflows: int, versions: int) -> list[str]:
    return [
        await new_workflow(tenant, *["publish"] * versions, name=f"wf{i}") for i in range(workflows)
    ]


async def _audit_rows(e: WorkflowEngine) -> list[tuple[str, int]]:
    """Every ``version.archived`` entry of every account: (version id, count)."""
    async with e.db.session() as session:
        rows = await session.execute(
            select(AuditEntry.object_id, func.count())
            .where(AuditEntry.action == "version.archived")
            .group_by(AuditEntry.object_id)
        )
        return [(str(r[0]), int(r[1])) for r in rows.all()]


async def _archived_ids(e: WorkflowEngine) -> set[str]:
    async with e.db.session() as session:
        ids = await session.scalars(select(Version.id).where(Version.status == "archived"))
        return {str(i) for i in ids}


async def test_two_workers_at_once_archive_each_version_once(
    make_engine: EngineFactory, fresh_database_url: str
) -> None:
    async with make_engine(fresh_database_url, **RULE) as e:
        other = await make_tenant(e.db, e.tenant.client, "second")
        for tenant in (e.tenant, other):
            await _populate(tenant, workflows=3, versions=5)  # 3 archivable each
        expected = 18
        for round_ in range(3):
            await later(e, days=1)
            w1, w2 = e.new_worker(f"a{round_}"), e.new_worker(f"b{round_}")
            results = await asyncio.gather(
                w1.run_scheduled(force=True), w2.run_scheduled(force=True)
            )
            ran = [r for r in results if r is not None]
            assert len(ran) == 1, results  # one claim per interval across workers
            assert len(ran[0]) == expected
            rows = await _audit_rows(e)
            assert all(count == 1 for _, count in rows), rows
            assert {version for version, _ in rows} == await _archived_ids(e)
            # More old versions for the next round.
            for tenant in (e.tenant, other):
                await _populate(tenant, workflows=1, versions=4)
            expected = 4  # per tenant: versions 1-2 of the new workflow
        assert len(await archived_entries(e.tenant)) + len(await archived_entries(other)) == 18 + 8


async def test_two_archive_runs_at_once_archive_each_version_once(
    make_engine: EngineFactory, fresh_database_url: str
) -> None:
    """Even past the per-interval claim (the CLI has none), two runs at once archive each
    version once: each archive is a conditional UPDATE."""
    async with make_engine(fresh_database_url, **RULE) as e:
        other = await make_tenant(e.db, e.tenant.client, "second")
        for tenant in (e.tenant, other):
            await _populate(tenant, workflows=4, versions=6)
        await later(e)

        async def run() -> int:
            async with e.db.session(write=True) as session:
                done = await archive(session, e.settings, e.clock.now())
                await session.commit()
                return len(done)

        for _ in range(2):
            counts = await asyncio.gather(run(), run(), run())
            rows = await _audit_rows(e)
            assert all(count == 1 for _, count in rows), rows
            assert {version for version, _ in rows} == await _archived_ids(e)
            assert len(rows) == 2 * 4 * 4
        assert sum(counts) == 0  # the second round found everything done


async def _revflow(url: str, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "REVFLOW_DATABASE_URL": url,
        "REVFLOW_KEEP_VERSIONS": "2",
        "REVFLOW_ARCHIVE_AFTER_DAYS": "0",
        "REVFLOW_LOG_JSON": "false",
        "COLUMNS": "200",
    }
    process = await asyncio.create_subprocess_exec(
        *revflow_command(),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _count(output: str, dry_run: bool) -> int:
    # The title wraps to the table's width: compare with the whitespace collapsed.
    flat = " ".join(output.split())
    found = re.search(rf"(\d+) version\(s\) {'would be ' if dry_run else ''}archived", flat)
    assert found, output
    return int(found.group(1))


async def test_two_revflow_archive_processes_at_once(
    make_engine: EngineFactory, fresh_database_url: str
) -> None:
    async with make_engine(fresh_database_url) as e:
        other = await make_tenant(e.db, e.tenant.client, "second")
        for tenant in (e.tenant, other):
            await _populate(tenant, workflows=3, versions=6)
        results = await asyncio.gather(
            _revflow(fresh_database_url, "archive"), _revflow(fresh_database_url, "archive")
        )
        for code, out, err in results:
            assert code == 0, (out, err)
        assert sum(_count(out, False) for _, out, _ in results) == 2 * 3 * 4
        rows = await _audit_rows(e)
        assert len(rows) == 2 * 3 * 4 and all(count == 1 for _, count in rows), rows
        assert {version for version, _ in rows} == await _archived_ids(e)
        # The hash chains of both accounts hold (each entry was appended once, in order).
        code, out, err = await _revflow(fresh_database_url, "audit", "verify")
        assert code == 0, (out, err)


async def test_dry_run_lists_without_changing_anything(
    make_engine: EngineFactory, fresh_database_url: str
) -> None:
    async with make_engine(fresh_database_url) as e:
        first = await new_workflow(e.tenant, "publish", "publish", "draft", "publish")
        second = await new_workflow(e.tenant, "publish", "publish", "publish", "publish")
        before = {
            wf: (await statuses(e.tenant, wf, include_archived="true"), await etag(e.tenant, wf))
            for wf in (first, second)
        }
        code, out, err = await _revflow(fresh_database_url, "archive", "--dry-run")
        assert code == 0, (out, err)
        assert _count(out, True) == 4
        listed = sorted(re.findall(r"([0-9a-f-]{36})\s*│\s*(\d+)", out))
        assert listed == sorted([(first, "1"), (first, "2"), (second, "1"), (second, "2")]), out
        after = {
            wf: (await statuses(e.tenant, wf, include_archived="true"), await etag(e.tenant, wf))
            for wf in (first, second)
        }
        assert after == before
        assert await archived_entries(e.tenant) == []

        # The real run archives exactly what the dry run listed.
        code, out, err = await _revflow(fresh_database_url, "archive")
        assert code == 0, (out, err)
        assert _count(out, False) == 4
        assert await archived_entries(e.tenant) == sorted((wf, int(n)) for wf, n in listed)
        code, out, err = await _revflow(fresh_database_url, "archive", "--dry-run")
        assert code == 0 and _count(out, True) == 0
