"""Claims are fair across accounts: one account's backlog does not hold up another account's due
executions, and the backlog still drains (both databases; the concurrent claims on PostgreSQL).

Every test uses a database of its own, so that only its accounts have due executions.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, text

from revflow.config import Settings
from revflow.db import Database
from revflow.engine import store
from revflow.engine.clock import ManualClock
from revflow.models import Execution, HistoryEntry
from revflow.worker import Worker
from tests.support.workload import Workload, check_workload, create_workload


def worker_on(database_url: str, clock: ManualClock, **overrides: int) -> Worker:
    settings = Settings(database_url=database_url, log_json=False, **overrides)
    return Worker(Database(database_url, pool_size=3), settings, clock=clock)


async def steps_taken(db: Database, workload: Workload) -> int:
    async with db.session() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(HistoryEntry)
            .where(HistoryEntry.account_id == workload.account_id)
        )
    return int(count or 0)


async def drain(worker: Worker, clock: ManualClock) -> int:
    """Batches until nothing is due, then past the workload's one-second wait, and again."""
    batches = 0
    for _ in range(2):
        while (await worker.engine.run_once()).executions:
            batches += 1
        clock.advance(dt.timedelta(seconds=2))
    return batches


async def test_a_small_account_is_served_in_the_first_batch_beside_a_large_backlog(
    fresh_database_url: str,
) -> None:
    # Three batches' worth: oldest first, the first batch would be the big account's alone.
    big = await create_workload(fresh_database_url, 600)
    small = await create_workload(fresh_database_url, 1)  # enrolled last: its wake_at is latest
    clock = ManualClock(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
    worker = worker_on(fresh_database_url, clock, worker_batch_size=200)
    try:
        first = await worker.engine.run_once()
        assert first.executions == 200
        # Oldest first, the small account would wait for all 600 of the big one's.
        assert await steps_taken(worker.db, small) > 0
        assert await steps_taken(worker.db, big) > 0

        # The big account's backlog drains completely, every execution exactly once.
        await drain(worker, clock)
        assert await check_workload(worker.db, big) == []
        assert await check_workload(worker.db, small) == []
    finally:
        await worker.db.dispose()


async def test_a_lone_backlog_fills_whole_batches(fresh_database_url: str) -> None:
    """The share per account does not cap a batch when no other account is due."""
    await create_workload(fresh_database_url, 450)
    clock = ManualClock(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
    worker = worker_on(fresh_database_url, clock, worker_batch_size=200, worker_account_share=50)
    try:
        sizes = []
        while done := (await worker.engine.run_once()).executions:
            sizes.append(done)
        assert sizes == [200, 200, 50]
    finally:
        await worker.db.dispose()


async def test_accounts_take_turns_when_their_shares_exceed_a_batch(
    fresh_database_url: str,
) -> None:
    """Three accounts with backlogs, room for two shares a batch: the third account is served
    in the second batch (round robin), not after the first two have drained."""
    workloads = [await create_workload(fresh_database_url, 10) for _ in range(3)]
    clock = ManualClock(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
    worker = worker_on(fresh_database_url, clock, worker_batch_size=4, worker_account_share=2)
    try:
        served: list[set[uuid.UUID]] = []
        for _ in range(2):
            before = {w.account_id: await steps_taken(worker.db, w) for w in workloads}
            assert (await worker.engine.run_once()).executions == 4
            after = {w.account_id: await steps_taken(worker.db, w) for w in workloads}
            served.append({account for account in after if after[account] > before[account]})
        assert [len(accounts) for accounts in served] == [2, 2]
        assert set().union(*served) == {w.account_id for w in workloads}

        await drain(worker, clock)
        for workload in workloads:
            assert await check_workload(worker.db, workload) == []
    finally:
        await worker.db.dispose()


async def test_concurrent_claims_share_the_accounts_without_overlap(
    backend: str, fresh_database_url: str
) -> None:
    """Two transactions claim at the same time (PostgreSQL): the second skips what the first
    holds — the small account's one execution included — and still gets a full batch."""
    if backend != "postgresql":
        pytest.skip("several workers claim at once on PostgreSQL only")
    big = await create_workload(fresh_database_url, 600)
    small = await create_workload(fresh_database_url, 1)
    db = Database(fresh_database_url, pool_size=3)
    now = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    try:
        async with db.session(write=True) as first, db.session(write=True) as second:
            one = await store.claim_due(first, now, 200, share=50)
            two = await store.claim_due(second, now, 200, share=50)
            ids_one = [ex.id for _, ex in one.executions]
            ids_two = [ex.id for _, ex in two.executions]
            assert len(ids_one) == len(set(ids_one)) == 200
            assert len(ids_two) == len(set(ids_two)) == 200
            assert not set(ids_one) & set(ids_two)
            assert small.account_id in {account for account, _ in one.executions}
            assert {account for account, _ in two.executions} == {big.account_id}
            await second.rollback()
            await first.rollback()
        async with db.session() as session:
            live = await session.scalar(
                select(func.count())
                .select_from(Execution)
                .where(Execution.account_id == big.account_id, Execution.status == "active")
            )
        assert live == 600  # claiming alone changes nothing
    finally:
        await db.dispose()


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in plan_nodes(child))]


async def test_the_claim_reads_the_due_index_not_the_whole_backlog(
    backend: str, fresh_database_url: str
) -> None:
    """With one workflow in the database, leaving out the paused workflows as an anti-join made
    PostgreSQL expect one due execution and sort the whole backlog (from a sequential scan)
    to take a batch; the claim must read the due executions in ``wake_at`` order from an
    index and stop at the batch."""
    if backend != "postgresql":
        pytest.skip("the plan of PostgreSQL's claim")
    await create_workload(fresh_database_url, 3000)
    db = Database(fresh_database_url, pool_size=1)
    try:
        async with db.session() as session:
            await session.execute(text("ANALYZE"))
            statement = store.claim_statement(200, 50, after=False).params(
                now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
            )
            sql = statement.compile(
                dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True}
            )
            explained = await session.scalar(text(f"EXPLAIN (FORMAT JSON) {sql}"))
    finally:
        await db.dispose()
    nodes = plan_nodes(explained[0]["Plan"])
    on_executions = [n for n in nodes if n.get("Relation Name") == "executions"]
    assert on_executions and all(n["Node Type"] == "Index Scan" for n in on_executions), nodes
    assert not [n for n in nodes if n["Node Type"] == "Sort" and "wake_at" in str(n["Sort Key"])]
