"""Migrations run by real ``revflow worker`` processes on PostgreSQL (SPEC §6): a worker killed
in the middle of a migration loses and doubles nothing, and a migration running while the
engine steps the same executions never moves one half-way through a step.

Every wait is bounded by a deadline (a hang fails the test); no assertion is made on durations.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import distinct, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from revflow.engine import store
from revflow.executions.enrollment import enroll
from revflow.models import Contact, Execution, HistoryEntry, Migration, MigrationItem, Workflow
from tests.support.tenants import Tenant, make_tenant
from tests.support.workers import WorkerProcess

# Deadlines that tell a stalled worker from a slow machine (a worker's start-up and its first
# batches took 15 s alone, and longer inside the whole suite, on a slow two-core machine):
# generous, since passing them fails the test, never speeds it up.
START_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 300.0


@pytest.fixture
def pg_url(backend: str, fresh_database_url: str) -> str:
    if backend != "postgresql":
        pytest.skip("worker processes and FOR UPDATE SKIP LOCKED batches: PostgreSQL only")
    return fresh_database_url


@dataclass
class Service:
    """The API in-process (the migration is started through it) and a database handle."""

    db: Database
    tenant: Tenant

    async def create_workflow(self, definition: dict[str, Any]) -> uuid.UUID:
        created = await self.tenant.request(
            "POST",
            "/api/v1/workflows",
            json={"name": "crash", "definition": definition, "change_summary": "v1"},
        )
        assert created.status_code == 201, created.text
        workflow_id = created.json()["id"]
        published = await self.tenant.request(
            "POST", f"/api/v1/workflows/{workflow_id}/versions/1/publish"
        )
        assert published.status_code == 200, published.text
        return uuid.UUID(workflow_id)

    async def new_version(
        self, workflow_id: uuid.UUID, definition: dict[str, Any], *, publish: bool
    ) -> None:
        response = await self.tenant.request(
            "POST",
            f"/api/v1/workflows/{workflow_id}/versions",
            json={
                "definition": definition,
                "change_summary": "v2",
                "base_version": 1,
                "publish": publish,
            },
        )
        assert response.status_code == 201, response.text
        assert response.json()["number"] == 2

    async def contacts(self, count: int, tier_of: Any = None) -> list[uuid.UUID]:
        """Bulk-inserted contacts (one request each would only measure the API)."""
        account_id = uuid.UUID(self.tenant.account_id)
        now = dt.datetime.now(dt.UTC)
        rows = [
            {
                "id": uuid.uuid4(),
                "account_id": account_id,
                "external_id": f"c-{uuid.uuid4().hex}",
                "email": f"c{i}@example.com",
                "phone": None,
                "fields": {"tier": tier_of(i)} if tier_of else {},
                "tags": [],
                "created_at": now,
                "updated_at": now,
            }
            for i in range(count)
        ]
        async with self.db.session(write=True) as session:
            for start in range(0, count, 5000):
                await session.execute(insert(Contact), rows[start : start + 5000])
            await session.commit()
        return [row["id"] for row in rows]

    async def enroll(
        self, workflow_id: uuid.UUID, contacts: list[uuid.UUID], now: dt.datetime
    ) -> list[uuid.UUID]:
        """Enroll with the product's ``enroll``, 5,000 contacts a transaction."""
        executions: list[uuid.UUID] = []
        for start in range(0, len(contacts), 5000):
            async with self.db.session(write=True) as session:
                # enroll's INSERT … ON CONFLICT names the partial unique index with a bound
                # parameter; once PostgreSQL switches the (cached, prepared) statement to a
                # generic plan — after 5 identical 1,000-row chunks on one connection — it can
                # no longer infer that index and fails. Custom plans only, here.
                await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
                account_id = uuid.UUID(self.tenant.account_id)
                workflow = await session.get(Workflow, (account_id, workflow_id))
                assert workflow is not None and workflow.current_version is not None
                key = (workflow.id, workflow.current_version)
                definition = (await store.definitions(session, [account_id], [key]))[key]
                result = await enroll(
                    session, workflow, definition, contacts[start : start + 5000], now
                )
                assert result.skipped == [], result.skipped[:3]
                executions += result.executions
                await session.commit()
        return executions

    async def start_migration(self, workflow_id: uuid.UUID, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.tenant.request(
            "POST",
            f"/api/v1/workflows/{workflow_id}/versions/2/migrate",
            json={"from_version": 1, "allow_unreleased": True, **body},
        )
        assert response.status_code == 202, response.text
        migration: dict[str, Any] = response.json()
        return migration

    async def migration(self, migration_id: str) -> Migration:
        async with self.db.session() as session:
            account_id = uuid.UUID(self.tenant.account_id)
            found = await session.get(Migration, (account_id, uuid.UUID(migration_id)))
            assert found is not None
            return found

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncSession]:
        """A read session whose statements all see one snapshot (REPEATABLE READ)."""
        async with self.db.session() as session:
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.db.session() as session:
            return await session.scalar(text(sql), params)

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.db.session() as session:
            return list((await session.execute(text(sql), params)).all())


@pytest.fixture
async def service(pg_url: str) -> AsyncIterator[Service]:
    settings = Settings(database_url=pg_url, log_json=False)
    db = Database(pg_url, pool_size=3)
    app = create_app(settings, db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://revflow.test", timeout=120
    ) as client:
        tenant = await make_tenant(db, client, f"crash-{uuid.uuid4().hex[:6]}")
        yield Service(db, tenant)
    await db.dispose()


# --- a worker killed in the middle of a migration ---------------------------------------------

# Ten batches of 500: each kill (past 15 %, then past 55 %) leaves batches done and batches to
# do, and lands inside a batch's transaction (``wait_inside_a_batch``).
EXECUTIONS = 5_000


def crash_v1() -> dict[str, Any]:
    return {
        "trigger": {"type": "manual"},
        "steps": [
            {"id": "hello", "type": "send_email", "subject": "Hi", "body": "b", "next": "pause"},
            {"id": "pause", "type": "wait", "duration": "30d", "next": "done"},
            {"id": "done", "type": "end"},
        ],
    }


def crash_v2() -> dict[str, Any]:
    # The wait is renamed: its executions only move with the mapping pause → hold.
    return {
        "trigger": {"type": "manual"},
        "steps": [
            {"id": "hello", "type": "send_email", "subject": "Hi", "body": "b", "next": "hold"},
            {"id": "hold", "type": "wait", "duration": "30d", "next": "done"},
            {"id": "done", "type": "end"},
        ],
    }


async def put_waiting(service: Service, workflow_id: uuid.UUID, now: dt.datetime) -> None:
    """Bring every enrolled execution to where the engine would: "hello" sent (history and
    outbox message), waiting on "pause" until now + 30 days (history entry and wake time)."""
    wake_at = now + dt.timedelta(days=30)
    params = {"workflow": workflow_id, "now": now, "wake_at": wake_at}
    async with service.db.session(write=True) as session:
        await session.execute(
            text(
                "UPDATE executions SET status = 'waiting', current_step = 'pause', "
                "wake_at = :wake_at, wait_started_at = :now WHERE workflow_id = :workflow"
            ),
            params,
        )
        await session.execute(
            text(
                'INSERT INTO messages (id, account_id, channel, kind, "to", subject, body, '
                "contact_id, execution_id, step, created_at) "
                "SELECT gen_random_uuid(), e.account_id, 'outbox', 'email', c.email, 'Hi', 'b', "
                "c.id, e.id, 'hello', :now "
                "FROM executions e JOIN contacts c ON c.id = e.contact_id "
                "WHERE e.workflow_id = :workflow ORDER BY e.id"
            ),
            params,
        )
        await session.execute(
            text(
                "INSERT INTO execution_history "
                "(account_id, execution_id, at, step, result, detail) "
                "SELECT e.account_id, e.id, :now, 'hello', 'sent', "
                "jsonb_build_object('channel', 'outbox', 'to', c.email) "
                "FROM executions e JOIN contacts c ON c.id = e.contact_id "
                "WHERE e.workflow_id = :workflow ORDER BY e.id"
            ),
            params,
        )
        await session.execute(
            text(
                "INSERT INTO execution_history "
                "(account_id, execution_id, at, step, result, detail) "
                "SELECT account_id, id, :now, 'pause', 'waiting', jsonb_build_object("
                "'kind', 'duration', 'wake_at', CAST(:wake_iso AS text)) "
                "FROM executions WHERE workflow_id = :workflow ORDER BY id"
            ),
            {**params, "wake_iso": wake_at.isoformat()},
        )
        await session.commit()


async def check_at_rest(service: Service, migration_id: str, workflow_id: uuid.UUID) -> int:
    """With no worker running: what the migration row says is exactly what the rows say (a
    killed batch left nothing half-done), all read in one snapshot. Answers the number moved."""
    ids = {"m": uuid.UUID(migration_id), "w": workflow_id}
    async with service.snapshot() as session:
        account_id = uuid.UUID(service.tenant.account_id)
        migration = await session.get(Migration, (account_id, ids["m"]))
        assert migration is not None
        items = dict(
            (
                await session.execute(
                    text(
                        "SELECT state, count(*) FROM migration_items WHERE migration_id = :m "
                        "GROUP BY state"
                    ),
                    ids,
                )
            ).all()
        )
        positions = {
            f"{v}:{s}:{st}": n
            for v, s, st, n in await session.execute(
                text(
                    "SELECT version, current_step, status, count(*) FROM executions "
                    "WHERE workflow_id = :w GROUP BY 1, 2, 3"
                ),
                ids,
            )
        }
        entries = await session.scalar(
            text(
                "SELECT count(*) FROM execution_history h JOIN executions e "
                "ON e.id = h.execution_id WHERE e.workflow_id = :w AND h.result = 'migrated'"
            ),
            ids,
        )
    moved = migration.migrated
    assert (migration.skipped, migration.failed) == (0, 0)
    assert items.get("migrated", 0) == moved, (items, moved)
    assert items.get("pending", 0) == EXECUTIONS - moved, items
    expected = {"1:pause:waiting": EXECUTIONS - moved, "2:hold:waiting": moved}
    assert positions == {k: v for k, v in expected.items() if v}, positions
    assert entries == moved
    return moved


async def wait_inside_a_batch(service: Service, worker: WorkerProcess) -> str:
    """Wait until a connection is inside a transaction whose last statement is one of a
    migration batch's (they name the migration's tables), the moment to kill its worker;
    answers what that connection was doing."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        doing = await service.scalar(
            "SELECT string_agg(state || ': ' || left(regexp_replace(query, '\\s+', ' ', 'g'), "
            "70), '; ') FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
            "AND state IN ('active', 'idle in transaction') AND query ILIKE '%migration%'"
        )
        if doing:
            return str(doing)
        if time.monotonic() > deadline:
            pytest.fail(f"no migration batch under way\n{worker.log_tail()}")
        worker.check_alive()
        await asyncio.sleep(0.001)


async def wait_for_progress(
    service: Service, migration_id: str, worker: WorkerProcess, above: int
) -> int:
    """Poll the migration's count until it passes ``above``; answers the count seen."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        migration = await service.migration(migration_id)
        if migration.migrated > above:
            return migration.migrated
        if time.monotonic() > deadline:
            pytest.fail(f"no progress past {above}: {migration.migrated}\n{worker.log_tail()}")
        worker.check_alive()
        await asyncio.sleep(0.005)


async def test_worker_killed_mid_migration_resumes_and_moves_each_execution_once(
    service: Service, pg_url: str, tmp_path: Path
) -> None:
    began = time.monotonic()
    workflow_id = await service.create_workflow(crash_v1())
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    contacts = await service.contacts(EXECUTIONS)
    executions = await service.enroll(workflow_id, contacts, now)
    assert len(executions) == EXECUTIONS
    await put_waiting(service, workflow_id, now)
    await service.new_version(workflow_id, crash_v2(), publish=True)
    started = await service.start_migration(
        workflow_id, {"strategy": "immediate", "mapping": {"pause": "hold"}, "batch_size": 500}
    )
    migration_id = started["id"]
    assert (started["total"], started["status"]) == (EXECUTIONS, "pending")

    setup_s = time.monotonic() - began
    worker = WorkerProcess(pg_url, tmp_path, poll_seconds=0.05)
    # (count seen just before the kill, what the worker's connection was doing, count at rest)
    kills: list[tuple[int, str, int]] = []
    seen = 0
    try:
        for fraction in (0.15, 0.55):  # two kills: early, and past the middle
            worker.start()
            seen = await wait_for_progress(
                service, migration_id, worker, max(seen, int(EXECUTIONS * fraction))
            )
            doing = await wait_inside_a_batch(service, worker)
            worker.kill()
            at_rest = await check_at_rest(service, migration_id, workflow_id)
            assert 0 < at_rest < EXECUTIONS, f"killed at {at_rest}: not in the middle"
            kills.append((seen, doing, at_rest))
            seen = at_rest
        worker.start()
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while (migration := await service.migration(migration_id)).status != "completed":
            if time.monotonic() > deadline:
                pytest.fail(f"not completed in time: {migration.status} {migration.migrated}")
            worker.check_alive()
            await asyncio.sleep(0.05)
    finally:
        code = worker.stop()
    assert code == 0, worker.log_tail()
    print(
        f"set-up {setup_s:.1f} s, migration with kills {time.monotonic() - began - setup_s:.1f} s; "
        f"kills (migrated seen, worker's connection, migrated at rest): {kills}; "
        f"batches {migration.batches}"
    )

    assert (migration.total, migration.migrated, migration.skipped, migration.failed) == (
        EXECUTIONS,
        EXECUTIONS,
        0,
        0,
    )
    assert await check_at_rest(service, migration_id, workflow_id) == EXECUTIONS
    ids = {"m": uuid.UUID(migration_id), "w": workflow_id}
    # Every execution: on version 2 at "hold", still waiting until the same time (policy keep).
    assert await service.rows(
        "SELECT version, current_step, status, wake_at, count(*) FROM executions "
        "WHERE workflow_id = :w GROUP BY 1, 2, 3, 4",
        **ids,
    ) == [(2, "hold", "waiting", now + dt.timedelta(days=30), EXECUTIONS)]
    # Exactly one `migrated` history entry per execution, naming this migration; its whole
    # history is what the engine wrote, then the move.
    histories = await service.rows(
        "SELECT string_agg(h.step || ':' || h.result, ' ' ORDER BY h.id), count(*) "
        "FROM executions e JOIN execution_history h ON h.execution_id = e.id "
        "WHERE e.workflow_id = :w GROUP BY e.id",
        **ids,
    )
    assert len(histories) == EXECUTIONS
    assert Counter(h for h, _ in histories) == {
        "hello:sent pause:waiting hold:migrated": EXECUTIONS
    }
    details = await service.rows(
        "SELECT h.detail->>'migration_id', h.detail->>'from_step', h.detail->>'step', "
        "(h.detail->>'from')::int, (h.detail->>'to')::int, count(DISTINCT h.execution_id) "
        "FROM execution_history h JOIN executions e ON e.id = h.execution_id "
        "WHERE e.workflow_id = :w AND h.result = 'migrated' GROUP BY 1, 2, 3, 4, 5",
        **ids,
    )
    assert details == [(migration_id, "pause", "hold", 1, 2, EXECUTIONS)]
    # Exactly one restore record per execution, each with where it was.
    async with service.db.session() as session:
        items = (
            await session.execute(
                select(
                    MigrationItem.state,
                    MigrationItem.from_step,
                    MigrationItem.from_status,
                    MigrationItem.from_wake_at,
                    MigrationItem.to_step,
                    func.count(),
                    func.count(distinct(MigrationItem.execution_id)),
                )
                .where(MigrationItem.migration_id == uuid.UUID(migration_id))
                .group_by(
                    MigrationItem.state,
                    MigrationItem.from_step,
                    MigrationItem.from_status,
                    MigrationItem.from_wake_at,
                    MigrationItem.to_step,
                )
            )
        ).all()
        all_items = await session.scalar(
            select(func.count())
            .select_from(MigrationItem)
            .where(
                MigrationItem.execution_id.in_(
                    select(Execution.id).where(Execution.workflow_id == workflow_id)
                )
            )
        )
    assert [tuple(row) for row in items] == [
        (
            "migrated",
            "pause",
            "waiting",
            now + dt.timedelta(days=30),
            "hold",
            EXECUTIONS,
            EXECUTIONS,
        )
    ]
    assert all_items == EXECUTIONS
    # The move sent nothing: still one outbox message per execution.
    assert (
        await service.scalar(
            "SELECT count(*) FROM messages WHERE account_id = :a",
            a=uuid.UUID(service.tenant.account_id),
        )
        == EXECUTIONS
    )


# --- a migration while the engine runs the same executions -----------------------------------

LIVE = 1500  # per wave; two waves


def live_v1() -> dict[str, Any]:
    return {
        "trigger": {"type": "manual"},
        "start": "stamp",
        "steps": [
            {
                "id": "stamp",
                "type": "update_field",
                "field": "fields.stage",
                "value": "one",
                "next": "tag",
            },
            {"id": "tag", "type": "add_tag", "tag": "seen", "next": "route"},
            {
                "id": "route",
                "type": "condition",
                "if": {"field": "fields.tier", "op": "eq", "value": "gold"},
                "then": "gold",
                "else": "basic",
            },
            {"id": "gold", "type": "add_tag", "tag": "gold", "next": "first_wait"},
            {"id": "basic", "type": "add_tag", "tag": "basic", "next": "first_wait"},
            {"id": "first_wait", "type": "wait", "duration": "1s", "next": "restamp"},
            {
                "id": "restamp",
                "type": "update_field",
                "field": "fields.stage",
                "value": "two",
                "next": "second_wait",
            },
            {"id": "second_wait", "type": "wait", "duration": "1s", "next": "done"},
            {"id": "done", "type": "end"},
        ],
    }


def live_v2() -> dict[str, Any]:
    # A step only version 2 has after the first wait; the second wait is renamed.
    v2 = live_v1()
    steps = {s["id"]: s for s in v2["steps"]}
    steps["first_wait"]["next"] = "v2_only"
    steps["restamp"]["next"] = "second_pause"
    steps["second_wait"]["id"] = "second_pause"
    v2["steps"].insert(6, {"id": "v2_only", "type": "add_tag", "tag": "v2", "next": "restamp"})
    return v2


MAPPING = {"second_wait": "second_pause"}


def expected_history(version: int, tier: str) -> list[tuple[str, str]]:
    """The (step, result) entries of a whole run of ``version``."""
    branch = "gold" if tier == "gold" else "basic"
    second = "second_wait" if version == 1 else "second_pause"
    return [
        ("stamp", "done"),
        ("tag", "done"),
        ("route", "branch"),
        (branch, "done"),
        ("first_wait", "waiting"),
        ("first_wait", "woke"),
        *([("v2_only", "done")] if version == 2 else []),
        ("restamp", "done"),
        (second, "waiting"),
        (second, "woke"),
        ("done", "completed"),
    ]


def history_problem(
    version: int, tier: str, entries: list[tuple[str, str, dict[str, Any]]]
) -> str | None:
    """Why this finished execution's history is not a run of version 1, or a run of version 1
    cut at a step boundary, one ``migrated`` entry, and the rest of a run of version 2 from the
    step it was moved to; None when it is."""
    pairs = [(step, result) for step, result, _ in entries]
    if len(set(pairs)) != len(pairs):
        return f"an entry is duplicated: {pairs}"
    v1, v2 = expected_history(1, tier), expected_history(2, tier)
    moves = [i for i, (_, result) in enumerate(pairs) if result == "migrated"]
    if not moves:
        return None if version == 1 and pairs == v1 else f"unmoved v{version}: {pairs}"
    if len(moves) > 1 or version != 2:
        return f"v{version} with {len(moves)} migrated entries: {pairs}"
    cut = moves[0]
    before, after = pairs[:cut], pairs[cut + 1 :]
    detail = entries[cut][2]
    if before != v1[:cut]:
        return f"before the move not a run of v1: {pairs}"
    # Where version 1 had it: on the wait it had begun, or at the step it had not run yet.
    waiting = bool(before) and before[-1][1] == "waiting"
    where = before[-1][0] if waiting else v1[cut][0]
    target = MAPPING.get(where, where)
    if (detail.get("from_step"), detail.get("step"), entries[cut][0]) != (where, target, target):
        return f"migrated entry {entries[cut]} but it was at {where!r}: {pairs}"
    starts = [i for i, (step, _) in enumerate(v2) if step == target]
    first = starts[-1] if waiting else starts[0]  # a wait resumes with its `woke`
    if after != v2[first:]:
        return f"after the move not the rest of a v2 run from {target!r}: {pairs}"
    return None


async def wait_until(
    service: Service, sql: str, workers: list[WorkerProcess], what: str, **params: Any
) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not await service.scalar(sql, **params):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        for worker in workers:
            worker.check_alive()
        await asyncio.sleep(0.05)


async def test_migration_while_workers_step_the_executions_moves_none_half_way(
    service: Service, pg_url: str, tmp_path: Path
) -> None:
    workflow_id = await service.create_workflow(live_v1())
    await service.new_version(workflow_id, live_v2(), publish=False)  # enrollments stay on v1

    def tier_of(i: int) -> str:
        return "gold" if i % 3 == 0 else "basic"

    contacts = await service.contacts(2 * LIVE, tier_of)
    tiers = {c: tier_of(i) for i, c in enumerate(contacts)}
    workers = [WorkerProcess(pg_url, tmp_path, f"worker{i}", poll_seconds=0.05) for i in range(2)]
    for worker in workers:
        worker.start()
    try:
        await service.enroll(workflow_id, contacts[:LIVE], dt.datetime.now(dt.UTC))
        # The first wave is under way (some have already left their first wait) …
        await wait_until(
            service,
            "SELECT count(*) FROM execution_history h JOIN executions e "
            "ON e.id = h.execution_id WHERE e.workflow_id = :w AND h.step = 'first_wait' "
            "AND h.result = 'woke'",
            workers,
            "the first executions to wake",
            w=workflow_id,
        )
        # … a second wave is due at once, and the migration starts while both are stepped.
        await service.enroll(workflow_id, contacts[LIVE:], dt.datetime.now(dt.UTC))
        started = await service.start_migration(
            workflow_id, {"strategy": "immediate", "mapping": MAPPING, "batch_size": 100}
        )
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while True:
            migration = await service.migration(started["id"])
            live = await service.scalar(
                "SELECT count(*) FROM executions WHERE workflow_id = :w "
                "AND status IN ('active', 'waiting')",
                w=workflow_id,
            )
            if migration.status == "completed" and live == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"not done in time: {migration.status}, {live} live")
            for worker in workers:
                worker.check_alive()
            await asyncio.sleep(0.1)
    finally:
        codes = [worker.stop() for worker in workers]
    assert codes == [0, 0], [w.log_tail() for w in workers]

    async with service.db.session() as session:
        executions = {
            row.id: row
            for row in (
                await session.execute(
                    select(
                        Execution.id,
                        Execution.contact_id,
                        Execution.version,
                        Execution.status,
                        Execution.error,
                    ).where(Execution.workflow_id == workflow_id)
                )
            ).all()
        }
        history: dict[uuid.UUID, list[tuple[str, str, dict[str, Any]]]] = defaultdict(list)
        for row in (
            await session.execute(
                select(
                    HistoryEntry.execution_id,
                    HistoryEntry.step,
                    HistoryEntry.result,
                    HistoryEntry.detail,
                )
                .where(HistoryEntry.execution_id.in_(list(executions)))
                .order_by(HistoryEntry.id)
            )
        ).all():
            history[row.execution_id].append((row.step, row.result, row.detail))
        items = {
            row.execution_id: row
            for row in (
                await session.execute(
                    select(
                        MigrationItem.execution_id,
                        MigrationItem.state,
                        MigrationItem.reason,
                        MigrationItem.from_step,
                        MigrationItem.from_status,
                    ).where(MigrationItem.migration_id == uuid.UUID(started["id"]))
                )
            ).all()
        }

    assert len(executions) == 2 * LIVE, "an execution was lost or added"
    problems = []
    for execution_id, ex in executions.items():
        if ex.status != "completed":
            problems.append(f"{execution_id}: {ex.status} ({ex.error})")
            continue
        problem = history_problem(ex.version, tiers[ex.contact_id], history[execution_id])
        if problem:
            problems.append(f"{execution_id}: {problem}")
        item = items.get(execution_id)
        moved = ex.version == 2
        if moved != (item is not None and item.state == "migrated"):
            problems.append(f"{execution_id}: on v{ex.version}, item {item}")
    assert problems == [], problems[:10]

    migrated = sum(1 for item in items.values() if item.state == "migrated")
    skipped = Counter(item.reason for item in items.values() if item.state == "skipped")
    assert (migration.total, migration.migrated, migration.skipped, migration.failed) == (
        len(items),
        migrated,
        sum(skipped.values()),
        0,
    )
    assert set(skipped) <= {"finished"}, skipped
    assert migrated > 0
    moved_from = Counter(
        (item.from_step, item.from_status) for item in items.values() if item.state == "migrated"
    )
    print(
        f"migration: total {migration.total}, migrated {migrated}, skipped {dict(skipped)}, "
        f"batches {migration.batches}; moved from {dict(moved_from)}"
    )
