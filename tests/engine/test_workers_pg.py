"""Real ``revflow worker`` processes sharing PostgreSQL (SPEC §3, §9): no step runs twice, no
execution is lost — also when workers are killed at random moments.

Each worker process connects as a PostgreSQL role of its own, and the test database's
``execution_history`` gets an extra column defaulting to ``current_user`` (test instrumentation
only: the product never names it), so that the history tells which worker wrote each entry.

Every wait is bounded by a deadline (a hang fails the test); no assertion is made on durations.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from revflow.db import Database
from tests.support.workers import WorkerProcess
from tests.support.workload import Workload, check_workload, create_workload, enroll_workload
from tests.support.workload import status_counts as workload_status

START_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 300.0


@pytest.fixture
def pg_url(backend: str, fresh_database_url: str) -> str:
    if backend != "postgresql":
        pytest.skip("several worker processes share the work on PostgreSQL only")
    return fresh_database_url


class Cluster:
    """Worker processes on one database, each as a PostgreSQL role of its own."""

    def __init__(self, database_url: str, logs: Path, count: int) -> None:
        self.database_url = database_url
        self.tag = uuid.uuid4().hex[:8]
        self.roles = [f"revflow_worker_{self.tag}_{i}" for i in range(count)]
        url = make_url(database_url)
        self.owner = url.username  # the login that owns the tables
        self.workers = [
            WorkerProcess(url.set(username=role).render_as_string(False), logs, role)
            for role in self.roles
        ]
        self.db = Database(database_url, pool_size=2)

    async def prepare(self) -> None:
        async with self.db.session(write=True) as session:
            for role in self.roles:
                await session.execute(text(f'CREATE ROLE "{role}" LOGIN'))
                await session.execute(text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
                await session.execute(text(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"'))
                await session.execute(
                    text(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
                )
                # A worker sees every account as the tables' owner does (README, PostgreSQL).
                await session.execute(text(f'GRANT "{self.owner}" TO "{role}"'))
            await session.execute(
                text(
                    "ALTER TABLE execution_history "
                    "ADD COLUMN written_by text NOT NULL DEFAULT current_user"
                )
            )
            await session.commit()

    async def cleanup(self) -> None:
        for worker in self.workers:
            worker.stop()
        async with self.db.session(write=True) as session:
            for role in self.roles:
                for grant in ("ALL TABLES IN SCHEMA", "ALL SEQUENCES IN SCHEMA", "SCHEMA"):
                    await session.execute(text(f'REVOKE ALL ON {grant} public FROM "{role}"'))
                await session.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
            await session.commit()
        await self.db.dispose()

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    async def wait_ready(self, workers: list[WorkerProcess] | None = None) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        for worker in workers or self.workers:
            while not worker.ready:
                if not worker.running:
                    pytest.fail(f"worker {worker.name} exited at start:\n{worker.log_tail()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"worker {worker.name} did not start:\n{worker.log_tail()}")
                await asyncio.sleep(0.05)

    def check_alive(self) -> None:
        for worker in self.workers:
            if not worker.running:
                pytest.fail(f"worker {worker.name} died on its own:\n{worker.log_tail()}")

    async def wait_finished(self, workload: Workload, deadline: float) -> dict[str, int]:
        """Until every execution has finished; fails (with the counts) past ``deadline``."""
        while True:
            counts = await workload_status(self.db, workload)
            if sum(n for s, n in counts.items() if s not in ("active", "waiting")) == len(
                workload.executions
            ):
                return counts
            if time.monotonic() > deadline:
                pytest.fail(f"the workload did not finish in time: {counts}\n{self.diagnostics()}")
            self.check_alive()
            await asyncio.sleep(0.1)

    async def entries_by_worker(self, workload: Workload) -> dict[str, int]:
        async with self.db.session() as session:
            rows = await session.execute(
                text(
                    "SELECT written_by, count(*) FROM execution_history "
                    "WHERE account_id = :account GROUP BY written_by"
                ),
                {"account": workload.account_id},
            )
            return dict(cast(list[tuple[str, int]], rows.all()))

    def errors(self) -> list[str]:
        """Tracebacks and error-level lines in any worker's logs (killed runs included)."""
        found = []
        for path in sorted(self.workers[0].logs.glob("*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if "Traceback" in line or '"level": "error"' in line or "never retrieved" in line:
                    found.append(f"{path.name}: {line}")
        return found

    def diagnostics(self) -> str:
        """Per worker: runs, exit codes, log events by kind, the last aborted batches."""
        lines = []
        for w in self.workers:
            events = w.all_events()
            kinds = Counter(str(e.get("event")) for e in events)
            aborted = [str(e.get("error")) for e in events if e.get("event") == "batch_aborted"]
            lines.append(
                f"{w.name}: runs {w.runs}, exit codes {w.exit_codes}, events {dict(kinds)}, "
                f"last aborted batches {aborted[-3:]}"
            )
        return "\n".join(lines)

    def aborted_batches(self) -> int:
        return sum(
            1 for w in self.workers for e in w.all_events() if e.get("event") == "batch_aborted"
        )


@pytest.fixture
async def cluster(pg_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    the_cluster = Cluster(pg_url, tmp_path, 2)
    await the_cluster.prepare()
    try:
        yield the_cluster
    finally:
        await the_cluster.cleanup()


@pytest.fixture
def seed() -> Iterator[int]:
    value = int(os.environ.get("REVFLOW_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed {value} (rerun with REVFLOW_TEST_SEED={value})")
    yield value


async def test_two_workers_share_the_work_and_run_each_step_once(
    cluster: Cluster, pg_url: str
) -> None:
    workload = await create_workload(pg_url, 2000, enroll=False)
    cluster.start()
    await cluster.wait_ready()
    await enroll_workload(workload)
    counts = await cluster.wait_finished(workload, time.monotonic() + RUN_TIMEOUT_S)

    assert counts == {"completed": 2000}
    for worker in cluster.workers:
        assert worker.stop() == 0, (worker.log_tail(), cluster.diagnostics())
        assert any(e.get("event") == "worker_stopped" for e in worker.events())
    assert await check_workload(cluster.db, workload) == []
    assert cluster.errors() == [], cluster.diagnostics()
    by_worker = await cluster.entries_by_worker(workload)
    assert sum(by_worker.values()) == 2000 * 8
    # Both did some of the work.
    assert set(by_worker) == set(cluster.roles), (by_worker, cluster.diagnostics())


async def test_workers_killed_at_random_moments_lose_and_double_nothing(
    cluster: Cluster, pg_url: str, seed: int
) -> None:
    rng = random.Random(seed)
    workload = await create_workload(pg_url, 3000, wait="2s", enroll=False)
    cluster.start()
    await cluster.wait_ready()
    await enroll_workload(workload)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    kills: Counter[str] = Counter()
    mid_run_kills = 0
    while sum(kills.values()) < 5:
        if time.monotonic() > deadline:
            pytest.fail(f"could not kill five times in time ({kills})")
        await asyncio.sleep(rng.uniform(0.05, 0.5))
        up = [w for w in cluster.workers if w.ready]
        if not up:
            await cluster.wait_ready()
            continue
        victim = rng.choice(up)
        counts = await workload_status(cluster.db, workload)
        mid_run_kills += bool(counts.get("active", 0) + counts.get("waiting", 0))
        victim.kill()
        kills[victim.name] += 1
        victim.start()
    await cluster.wait_ready()
    counts = await cluster.wait_finished(workload, deadline)

    assert counts == {"completed": 3000}
    for worker in cluster.workers:
        assert worker.exit_codes.count(-signal.SIGKILL) == kills[worker.name]
        assert worker.stop() == 0, (worker.log_tail(), cluster.diagnostics())
    assert await check_workload(cluster.db, workload) == []
    assert cluster.errors() == [], cluster.diagnostics()
    by_worker = await cluster.entries_by_worker(workload)
    assert sum(by_worker.values()) == 3000 * 8
    print(
        f"kills {dict(kills)} ({mid_run_kills} while executions were live), "
        f"history entries by worker {by_worker}, aborted batches {cluster.aborted_batches()}\n"
        + cluster.diagnostics()
    )
