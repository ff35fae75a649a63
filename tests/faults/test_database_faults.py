"""The database failing under a running deployment (PostgreSQL; SPEC §9): one ``revflow serve``,
two ``revflow worker`` processes, contacts being enrolled through the API and a migration in
progress, while every revflow connection is terminated (several times), a session holds a hot
row's lock for 20 s, the API's connection pool runs dry and — where this machine lets the test
restart it — PostgreSQL itself restarts.

What must hold: no process exits; the API answers every request, with a 503 problem document
and ``Retry-After`` while the database cannot serve it (never a 500, never a hang); ``/readyz``
answers 503 while the database is away and 200 once it is back; the engine keeps going; and at
the end every execution has exactly its expected history and message (none lost, none doubled),
the migration's counts add up and ``revflow audit verify`` passes.

Every wait is bounded by a deadline (a hang fails the test); no assertion is made on durations.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from benchmarks.common import control_postgresql, postgresql_control
from sqlalchemy import text
from sqlalchemy.engine import make_url

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from revflow.models import MIGRATION_UNFINISHED, Migration
from tests.support.processes import revflow_command
from tests.support.servers import RevflowServers
from tests.support.tenants import Tenant, make_tenant
from tests.support.workers import WorkerProcess
from tests.support.workload import (
    Workload,
    check_workload,
    create_workload,
    workload_definition,
)
from tests.support.workload import status_counts as workload_status

CONTACTS = 600
ENROLL_CHUNK = 25
MIGRATED = 1_500
LOCK_HOLD_S = 20.0
REQUEST_TIMEOUT_S = 30.0  # a request still unanswered after this is a hang
# The 503s of a busy deployment: the database's (a lock or a connection not had in time) and
# the server's (a request that waited too long for its turn, kit.admission).
BUSY = {"database_busy", "server_busy"}
RUN_TIMEOUT_S = 240.0
READY_TIMEOUT_S = 60.0

SERVER_ENV = {
    # A small pool and short waits, so that a held lock or a burst of requests exhausts them.
    "REVFLOW_DB_POOL_SIZE": "2",
    "REVFLOW_DB_POOL_TIMEOUT_SECONDS": "1",
    "REVFLOW_DB_LOCK_TIMEOUT_MS": "1000",
}


@pytest.fixture
def pg_url(backend: str, fresh_database_url: str) -> str:
    if backend != "postgresql":
        pytest.skip("server and worker processes sharing one database server: PostgreSQL only")
    return fresh_database_url


def migration_v1() -> dict[str, Any]:
    return {
        "trigger": {"type": "manual"},
        "steps": [
            {"id": "pause", "type": "wait", "duration": "30d", "next": "done"},
            {"id": "done", "type": "end"},
        ],
    }


def migration_v2() -> dict[str, Any]:
    return {
        "trigger": {"type": "manual"},
        "steps": [
            {"id": "hold", "type": "wait", "duration": "30d", "next": "done"},
            {"id": "done", "type": "end"},
        ],
    }


@dataclass
class Calls:
    """Every answer the API gave during the run, by status."""

    statuses: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def record(self, response: httpx.Response) -> None:
        self.statuses[response.status_code] += 1
        if response.status_code >= 500:
            body = response.json()
            if response.status_code != 503 or body.get("code") not in BUSY:
                self.problems.append(f"{response.status_code}: {response.text[:300]}")
            elif "retry-after" not in response.headers:
                self.problems.append(f"503 without Retry-After: {response.text[:200]}")


@dataclass
class Deployment:
    database_url: str
    db: Database
    servers: RevflowServers
    workers: list[WorkerProcess]
    workload: Workload
    migrating: Tenant
    calls: Calls = field(default_factory=Calls)

    @property
    def url(self) -> str:
        return self.servers.urls[0]

    def check_alive(self) -> None:
        for worker in self.workers:
            if not worker.running:
                pytest.fail(f"worker {worker.name} exited:\n{worker.log_tail()}")
        for server in self.servers.servers:
            if server.process.poll() is not None:
                pytest.fail(f"revflow serve exited:\n{server.log_tail()}")

    async def request(
        self, client: httpx.AsyncClient, method: str, path: str, key: str, **kwargs: Any
    ) -> httpx.Response:
        response = await client.request(
            method,
            self.url + path,
            headers={"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})},
            timeout=REQUEST_TIMEOUT_S,
            **kwargs,
        )
        self.calls.record(response)
        return response

    async def enroll_everyone(self, client: httpx.AsyncClient) -> None:
        """Enroll the workload's contacts a chunk at a time through the served API; a chunk
        answered 503 is sent again with the same ``Idempotency-Key``."""
        ids = [str(c) for c in self.workload.contacts]
        for start in range(0, len(ids), ENROLL_CHUNK):
            key = uuid.uuid4().hex
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while True:
                response = await self.request(
                    client,
                    "POST",
                    f"/api/v1/workflows/{self.workload.workflow_id}/enrollments",
                    self.workload.api_key,
                    json={"contact_ids": ids[start : start + ENROLL_CHUNK]},
                    headers={"Idempotency-Key": key},
                )
                if response.status_code == 201:
                    body = response.json()
                    assert body["skipped"] == [], body
                    self.workload.executions += [uuid.UUID(e) for e in body["executions"]]
                    break
                assert response.status_code == 503, response.text
                assert time.monotonic() < deadline, "enrollment never got through"
                await asyncio.sleep(float(response.headers["retry-after"]) / 4)
            await asyncio.sleep(0.05)

    async def ready(self, client: httpx.AsyncClient) -> int:
        try:
            response = await client.get(self.url + "/readyz", timeout=REQUEST_TIMEOUT_S)
        except httpx.TimeoutException:
            pytest.fail("/readyz did not answer")
        return response.status_code

    async def wait_ready(self, client: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while await self.ready(client) != 200:
            assert time.monotonic() < deadline, "/readyz never answered 200 again"
            self.check_alive()
            await asyncio.sleep(0.1)

    async def history_rows(self) -> int:
        async with self.db.session() as session:
            return int(await session.scalar(text("SELECT count(*) FROM execution_history")) or 0)

    async def engine_moves(self) -> None:
        """The engine writes history again (bounded wait)."""
        before = await self.history_rows()
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while await self.history_rows() == before:
            assert time.monotonic() < deadline, "the engine made no progress"
            self.check_alive()
            await asyncio.sleep(0.1)

    async def terminate_connections(self) -> int:
        """``pg_terminate_backend`` on every connection to this database but the test's own
        (revflow's, made by the test's login: it may not end the server's own processes)."""
        name = make_url(self.database_url).database
        async with self.db.session() as session:
            killed = await session.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :name AND usename = current_user "
                    "AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
        return int(killed or 0)


async def start_migration(deployment: Deployment, client: httpx.AsyncClient) -> str:
    tenant = deployment.migrating
    created = await tenant.request(
        "POST",
        "/api/v1/workflows",
        json={"name": "moving", "definition": migration_v1(), "change_summary": "v1"},
    )
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]
    published = await tenant.request("POST", f"/api/v1/workflows/{workflow_id}/versions/1/publish")
    assert published.status_code == 200, published.text
    version = await tenant.request(
        "POST",
        f"/api/v1/workflows/{workflow_id}/versions",
        json={"definition": migration_v2(), "change_summary": "v2", "base_version": 1},
    )
    assert version.status_code == 201, version.text
    async with deployment.db.session(write=True) as session:
        await session.execute(
            text(
                "INSERT INTO contacts (id, account_id, external_id, fields, tags, created_at, "
                "updated_at) SELECT gen_random_uuid(), CAST(:account AS uuid), 'm-' || n, "
                "'{}', '[]', now(), now() FROM generate_series(1, :count) AS n"
            ),
            {"account": tenant.account_id, "count": MIGRATED},
        )
        await session.execute(
            text(
                "INSERT INTO executions (id, account_id, workflow_id, version, contact_id, "
                "status, current_step, wake_at, wait_started_at, started_at, fired_goals) "
                "SELECT gen_random_uuid(), c.account_id, CAST(:workflow AS uuid), 1, c.id, "
                "'waiting', 'pause', now() + interval '30 days', now(), now(), '[]' "
                "FROM contacts c WHERE c.account_id = CAST(:account AS uuid)"
            ),
            {"account": tenant.account_id, "workflow": workflow_id},
        )
        await session.commit()
    started = await deployment.request(
        client,
        "POST",
        f"/api/v1/workflows/{workflow_id}/versions/2/migrate",
        tenant.key,
        json={
            "from_version": 1,
            "allow_unreleased": True,
            "strategy": "gradual",
            "batch_size": 50,
            "interval_seconds": 0.5,
            "mapping": {"pause": "hold"},
        },
    )
    assert started.status_code == 202, started.text
    migration_id: str = started.json()["id"]
    return migration_id


@pytest.fixture
async def deployment(pg_url: str, tmp_path: Path) -> AsyncIterator[Deployment]:
    workload = await create_workload(pg_url, CONTACTS, wait="1s", enroll=False)
    db = Database(pg_url, pool_size=2)
    app = create_app(Settings(database_url=pg_url, log_json=False), db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://revflow.test", timeout=120
    ) as local:
        migrating = await make_tenant(db, local, f"moving-{uuid.uuid4().hex[:6]}")
        workers = [
            WorkerProcess(pg_url, tmp_path, f"worker-{i}", env={"REVFLOW_DB_POOL_SIZE": "3"})
            for i in range(2)
        ]
        async with RevflowServers(pg_url, 1, env=SERVER_ENV) as servers:
            for worker in workers:
                worker.start()
            try:
                yield Deployment(pg_url, db, servers, workers, workload, migrating)
            finally:
                for worker in workers:
                    worker.stop()
    await db.dispose()


async def finish(deployment: Deployment, client: httpx.AsyncClient, migration_id: str) -> None:
    """Wait for the engine and the migration, then check everything they wrote."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        counts = await workload_status(deployment.db, deployment.workload)
        async with deployment.db.session() as session:
            account_id = uuid.UUID(deployment.migrating.account_id)
            migration = await session.get(Migration, (account_id, uuid.UUID(migration_id)))
            assert migration is not None
        done = sum(n for s, n in counts.items() if s not in ("active", "waiting"))
        if done == CONTACTS and migration.status not in MIGRATION_UNFINISHED:
            break
        assert time.monotonic() < deadline, (counts, migration.status, migration.migrated)
        deployment.check_alive()
        await asyncio.sleep(0.2)
    assert await check_workload(deployment.db, deployment.workload) == []
    assert (migration.status, migration.failed) == ("completed", 0), migration.errors
    assert migration.migrated + migration.skipped == migration.total == MIGRATED
    async with deployment.db.session() as session:
        moved = await session.scalar(
            text("SELECT count(*) FROM executions WHERE version = 2 AND current_step = 'hold'")
        )
    assert moved == migration.migrated
    assert deployment.calls.problems == []
    verify = subprocess.run(
        [*revflow_command(), "audit", "verify"],
        env={**os.environ, "REVFLOW_DATABASE_URL": deployment.database_url},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    deployment.check_alive()


async def test_terminated_connections_a_held_lock_and_a_dry_pool(
    deployment: Deployment,
) -> None:
    async with httpx.AsyncClient() as client:
        migration_id = await start_migration(deployment, client)
        enrolling = asyncio.create_task(deployment.enroll_everyone(client))
        await deployment.engine_moves()

        # Every revflow connection terminated, three times over.
        for _ in range(3):
            assert await deployment.terminate_connections() > 0
            await asyncio.sleep(1.0)
        await deployment.wait_ready(client)
        await deployment.engine_moves()
        deployment.check_alive()

        # A session holds the workload's workflow row for 20 s: requests that need that row
        # answer 503 (lock timeout, or no free connection left in the pool) instead of
        # waiting; the engine goes on meanwhile.
        holder = await deployment.db.engine.connect()
        try:
            transaction = await holder.begin()
            await holder.execute(
                text("SELECT id FROM workflows WHERE id = :id FOR UPDATE"),
                {"id": deployment.workload.workflow_id},
            )
            held_until = time.monotonic() + LOCK_HOLD_S
            burst = await asyncio.gather(
                *(
                    deployment.request(
                        client,
                        "POST",
                        f"/api/v1/workflows/{deployment.workload.workflow_id}/versions",
                        deployment.workload.api_key,
                        json={"definition": workload_definition(), "change_summary": "blocked"},
                    )
                    for _ in range(12)
                )
            )
            assert {r.status_code for r in burst} == {503}, [r.text for r in burst]
            assert {r.json()["code"] for r in burst} <= BUSY
            assert all("retry-after" in r.headers for r in burst)
            assert await deployment.ready(client) == 200
            await deployment.engine_moves()
            await asyncio.sleep(max(0.0, held_until - time.monotonic()))
            await transaction.rollback()
        finally:
            await holder.close()

        await asyncio.wait_for(enrolling, RUN_TIMEOUT_S)
        await finish(deployment, client, migration_id)
    assert deployment.calls.statuses[201] >= CONTACTS // ENROLL_CHUNK


async def test_postgresql_restarts_under_the_deployment(deployment: Deployment) -> None:
    if not (
        os.environ.get("CI")
        or os.environ.get("REVFLOW_TEST_RESTART_POSTGRESQL")
        or os.environ.get("REVFLOW_TEST_PG_CONTROL")
    ):
        # A developer's PostgreSQL serves their other work too; CI's is the run's own.
        pytest.skip(
            "restarts the machine's PostgreSQL: runs under CI, or with "
            "REVFLOW_TEST_RESTART_POSTGRESQL=1"
        )
    command = postgresql_control()
    if command is None:
        pytest.fail("restarting PostgreSQL needs root and pg_ctlcluster or systemctl")
    async with httpx.AsyncClient() as client:
        migration_id = await start_migration(deployment, client)
        enrolling = asyncio.create_task(deployment.enroll_everyone(client))
        await deployment.engine_moves()

        await deployment.db.engine.dispose()
        control_postgresql(command, "stop")
        try:
            # Away: /readyz says so, and requests answer 503 rather than hang.
            assert await deployment.ready(client) == 503
            away = await deployment.request(
                client,
                "GET",
                f"/api/v1/workflows/{deployment.workload.workflow_id}",
                deployment.workload.api_key,
            )
            assert away.status_code == 503, away.text
            await asyncio.sleep(2.0)
            deployment.check_alive()
        finally:
            control_postgresql(command, "start")
        await deployment.wait_ready(client)
        await deployment.engine_moves()
        await asyncio.wait_for(enrolling, RUN_TIMEOUT_S)
        await finish(deployment, client, migration_id)
