"""Races on one workflow (SPEC §1, §4): gapless numbers, one published version, idempotency.

The racing requests reach the database through different processes (``tests.support.servers``): two
``revflow serve`` processes on PostgreSQL; one ``revflow serve`` process and the in-process
application on SQLite. Nothing inside one process can serialise them, so only the database's
locks and constraints can make these tests pass. Each race runs several rounds.

The race tests of a backend share one fresh database and its server processes (each test works
in an account and a workflow of its own), so that processes start once per backend.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from revflow.db import Database
from revflow.models import Version
from tests.support.databases import DatabaseFactory
from tests.support.servers import Racers, RevflowServers, race, racing_clients, racing_server_count
from tests.support.tenants import Tenant
from tests.support.workflows import create_version, create_workflow, simple_definition

ROUNDS = 3
CREATORS = 10
PUBLISHERS = 6


@pytest.fixture(scope="module")
def race_servers(
    backend: str, database_factories: dict[str, DatabaseFactory]
) -> Iterator[RevflowServers]:
    """A fresh database of this module's own, served by ``revflow serve`` processes."""
    database_url = database_factories[backend].create()
    with RevflowServers(database_url, racing_server_count(backend)) as servers:
        yield servers


@pytest.fixture
async def racers(backend: str, race_servers: RevflowServers) -> AsyncIterator[Racers]:
    async with racing_clients(backend, race_servers.database_url, servers=race_servers) as clients:
        yield clients


def _versions_url(workflow_id: str) -> str:
    return f"/api/v1/workflows/{workflow_id}/versions"


def _new_version(subject: str, base: int | None) -> dict[str, Any]:
    return {
        "definition": simple_definition(subject),
        "change_summary": f"edit {subject}",
        "base_version": base,
    }


async def _workflow(racers: Racers, workflow_id: str) -> dict[str, Any]:
    response = await racers.call(0, "GET", f"/api/v1/workflows/{workflow_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _all_versions(racers: Racers, workflow_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 200, "include_archived": "true"}
        if cursor:
            params["cursor"] = cursor
        response = await racers.call(1, "GET", _versions_url(workflow_id), params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def _add_version(racers: Racers, workflow_id: str, subject: str, base: int | None) -> int:
    response = await racers.call(
        0, "POST", _versions_url(workflow_id), json=_new_version(subject, base)
    )
    assert response.status_code == 201, response.text
    number: int = response.json()["number"]
    return number


async def _newest_audit_entry(racers: Racers, workflow_id: str) -> dict[str, Any]:
    response = await racers.call(
        0, "GET", "/api/v1/audit", params={"workflow_id": workflow_id, "limit": 1}
    )
    assert response.status_code == 200, response.text
    entry: dict[str, Any] = response.json()["items"][0]
    return entry


def _assert_one_published(versions: list[dict[str, Any]], workflow: dict[str, Any]) -> int:
    published = [v["number"] for v in versions if v["status"] == "published"]
    assert len(published) == 1, [(v["number"], v["status"]) for v in versions]
    assert workflow["current_version"] == published[0]
    return published[0]


async def test_concurrent_version_creations_one_wins_and_numbers_stay_gapless(
    racers: Racers,
) -> None:
    workflow = await racers.call(0, "POST", "/api/v1/workflows", json={"name": "raced"})
    assert workflow.status_code == 201, workflow.text
    workflow_id = workflow.json()["id"]
    url = _versions_url(workflow_id)
    base: int | None = None  # the first round races for version 1 (base_version null)
    for round_ in range(ROUNDS):
        responses = await race(
            [
                partial(
                    racers.call,
                    i,
                    "POST",
                    url,
                    json=_new_version(f"round {round_} editor {i}", base),
                )
                for i in range(CREATORS)
            ]
        )
        expected = (base or 0) + 1
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [409] * (CREATORS - 1), [r.text for r in responses]
        (winner,) = [r for r in responses if r.status_code == 201]
        assert winner.json()["number"] == expected
        assert winner.json()["parent"] == base
        for loser in (r for r in responses if r.status_code == 409):
            assert loser.headers["content-type"].startswith("application/problem+json")
            problem = loser.json()
            assert problem["code"] == "stale_base", problem
            assert problem["latest_version"] == expected, problem
        base = expected

    versions = await _all_versions(racers, workflow_id)
    assert [v["number"] for v in versions] == list(range(ROUNDS, 0, -1))
    assert {v["status"] for v in versions} == {"draft"}
    assert (await _workflow(racers, workflow_id))["version_count"] == ROUNDS
    # The losers changed nothing: one version.created entry per round.
    audit = await racers.call(
        0,
        "GET",
        "/api/v1/audit",
        params={"workflow_id": workflow_id, "action": "version.created"},
    )
    assert [e["details"]["number"] for e in audit.json()["items"]] == list(range(ROUNDS, 0, -1))


async def test_concurrent_publishes_leave_exactly_one_published_version(racers: Racers) -> None:
    workflow = await racers.call(0, "POST", "/api/v1/workflows", json={"name": "published"})
    workflow_id = workflow.json()["id"]
    latest = await _add_version(racers, workflow_id, "first", None)
    first = await racers.call(0, "POST", f"{_versions_url(workflow_id)}/{latest}/publish")
    assert first.status_code == 200, first.text
    for round_ in range(ROUNDS):
        drafts = []
        for i in range(PUBLISHERS):
            latest = await _add_version(racers, workflow_id, f"r{round_} draft {i}", latest)
            drafts.append(latest)
        responses = await race(
            [
                partial(racers.call, i, "POST", f"{_versions_url(workflow_id)}/{n}/publish")
                for i, n in enumerate(drafts)
            ]
        )
        assert [r.status_code for r in responses] == [200] * PUBLISHERS, [r.text for r in responses]

        versions = await _all_versions(racers, workflow_id)
        current = _assert_one_published(versions, await _workflow(racers, workflow_id))
        assert current in drafts
        assert {v["status"] for v in versions if v["number"] != current} == {"retired"}
        # The published one is the last publish to commit.
        newest = await _newest_audit_entry(racers, workflow_id)
        assert newest["action"] == "version.published"
        assert newest["details"]["number"] == current


async def test_concurrent_publishes_and_rollbacks_leave_exactly_one_published_version(
    racers: Racers,
) -> None:
    workflow = await racers.call(0, "POST", "/api/v1/workflows", json={"name": "mixed"})
    workflow_id = workflow.json()["id"]
    url = _versions_url(workflow_id)
    latest: int | None = None
    for i in range(3):  # versions 1 and 2 retired, 3 published
        latest = await _add_version(racers, workflow_id, f"published {i}", latest)
        assert (await racers.call(0, "POST", f"{url}/{latest}/publish")).status_code == 200
    for round_ in range(ROUNDS):
        # Roll back to two retired versions, and to the current one (a no-op if it still is).
        versions = await _all_versions(racers, workflow_id)
        current = _assert_one_published(versions, await _workflow(racers, workflow_id))
        retired = sorted(v["number"] for v in versions if v["status"] == "retired")
        rollbacks = [*retired[-2:], current]
        drafts = []
        for i in range(3):
            latest = await _add_version(racers, workflow_id, f"r{round_} draft {i}", latest)
            drafts.append(latest)
        calls = [("publish", n, None) for n in drafts] + [
            ("rollback", n, {"reason": f"round {round_}: back to {n}"}) for n in rollbacks
        ]
        responses = await race(
            [
                partial(racers.call, i, "POST", f"{url}/{n}/{op}", json=body)
                for i, (op, n, body) in enumerate(calls)
            ]
        )
        assert [r.status_code for r in responses] == [200] * len(calls), [r.text for r in responses]

        versions = await _all_versions(racers, workflow_id)
        current = _assert_one_published(versions, await _workflow(racers, workflow_id))
        assert current in drafts + rollbacks
        assert {v["status"] for v in versions if v["number"] != current} == {"retired"}
        newest = await _newest_audit_entry(racers, workflow_id)
        assert newest["action"] in ("version.published", "version.rolled_back")
        assert newest["details"]["number"] == current


async def test_concurrent_creations_with_one_idempotency_key_create_one_version(
    racers: Racers,
) -> None:
    workflow = await racers.call(0, "POST", "/api/v1/workflows", json={"name": "idempotent"})
    workflow_id = workflow.json()["id"]
    url = _versions_url(workflow_id)
    base: int | None = None
    for round_ in range(ROUNDS):
        headers = {"Idempotency-Key": f"create-{round_}-{uuid.uuid4()}"}
        body = _new_version(f"idempotent {round_}", base)
        responses = await race(
            [
                partial(racers.call, i, "POST", url, json=body, headers=headers)
                for i in range(CREATORS)
            ]
        )
        assert [r.status_code for r in responses] == [201] * CREATORS, [r.text for r in responses]
        first = responses[0].json()
        assert all(r.json() == first for r in responses)
        assert len({r.headers["etag"] for r in responses}) == 1
        assert sum(r.headers.get("idempotent-replayed") != "true" for r in responses) == 1
        expected = (base or 0) + 1
        assert first["number"] == expected
        base = expected

    versions = await _all_versions(racers, workflow_id)
    assert [v["number"] for v in versions] == list(range(ROUNDS, 0, -1))
    audit = await racers.call(
        0,
        "GET",
        "/api/v1/audit",
        params={"workflow_id": workflow_id, "action": "version.created"},
    )
    assert len(audit.json()["items"]) == ROUNDS


def _raw_version(workflow: dict[str, Any], account_id: str, number: int, status: str) -> Version:
    return Version(
        account_id=uuid.UUID(account_id),
        workflow_id=uuid.UUID(workflow["id"]),
        number=number,
        status=status,
        definition=simple_definition(f"raw {number}"),
        content_hash=f"{number:064x}",
        change_summary="inserted behind the application's back",
        created_by="test",
        parent=None,
        semver=f"{number}.0.0",
    )


async def _insert(db: Database, *versions: Version) -> None:
    async with db.session(write=True) as session:
        session.add_all(versions)
        await session.commit()


@pytest.mark.parametrize("status", ["published", "canary"])
async def test_database_allows_one_published_and_one_canary_version_per_workflow(
    db: Database, tenant: Tenant, status: str
) -> None:
    workflow = await create_workflow(tenant)
    await create_version(tenant, workflow["id"], simple_definition(), None)
    # The control: the row itself is acceptable as long as the status is unique.
    await _insert(db, _raw_version(workflow, tenant.account_id, 2, status))
    with pytest.raises(IntegrityError):
        await _insert(db, _raw_version(workflow, tenant.account_id, 3, status))
    # A second workflow has a status of its own.
    other = await create_workflow(tenant, "other")
    await _insert(db, _raw_version(other, tenant.account_id, 1, status))


async def test_database_refuses_a_duplicate_version_number(db: Database, tenant: Tenant) -> None:
    workflow = await create_workflow(tenant)
    await create_version(tenant, workflow["id"], simple_definition(), None)
    with pytest.raises(IntegrityError):
        await _insert(db, _raw_version(workflow, tenant.account_id, 1, "draft"))
    await _insert(db, _raw_version(workflow, tenant.account_id, 2, "draft"))
    listing = await tenant.request("GET", _versions_url(workflow["id"]))
    assert [v["number"] for v in listing.json()["items"]] == [2, 1]


async def test_concurrent_upserts_of_one_external_id_all_succeed_on_one_contact(
    racers: Racers,
) -> None:
    external_id = f"crm-{uuid.uuid4().hex[:8]}"
    url = f"/api/v1/contacts/by-external-id/{external_id}"
    upserts = 20
    responses = await race(
        [partial(racers.call, i, "PUT", url, json={"fields": {f"f{i}": i}}) for i in range(upserts)]
    )
    assert sorted({r.status_code for r in responses}) <= [200, 201], [r.text for r in responses]
    assert [r.status_code for r in responses].count(201) == 1
    assert len({r.json()["id"] for r in responses}) == 1
    listing = await racers.call(0, "GET", "/api/v1/contacts", params={"limit": 200})
    same = [c for c in listing.json()["items"] if c["external_id"] == external_id]
    assert len(same) == 1
    # Nothing lost: every upsert's field was merged into the one contact.
    assert same[0]["fields"] == {f"f{i}": i for i in range(upserts)}
