"""Pruning shared and interrupted on PostgreSQL, with real processes: two ``revflow prune``
running at once delete every row once between them; one killed with SIGKILL in the middle
leaves no execution half-pruned, and the next run finishes the work.

Every wait is bounded by a deadline (a hang fails the test); nothing is asserted on durations.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from revflow.config import Settings
from revflow.db import Database
from revflow.models import Execution
from revflow.retention.service import KINDS, Run, prunable
from tests.retention.command import counts, prune_command, prune_environment, run_prune
from tests.support.retention import (
    Aged,
    check_consistent,
    history_state,
    messages_left,
    seed_aged,
)

AGE = dt.timedelta(days=200)
DEADLINE_S = 240.0


@pytest.fixture
async def pg_db(backend: str, fresh_database_url: str) -> AsyncIterator[Database]:
    if backend != "postgresql":
        pytest.skip("runs that overlap, and killed processes, are PostgreSQL's case")
    database = Database(fresh_database_url, pool_size=2)
    yield database
    await database.dispose()


def expected(aged: Aged) -> dict[str, int]:
    found = dict.fromkeys(KINDS, 0)
    found["history"] = len(aged.old) * aged.history
    found["messages"] = len(aged.old)
    return found


async def check_done(db: Database, aged: Aged) -> None:
    assert check_consistent(await history_state(db, aged), aged) == len(aged.old)
    assert await messages_left(db, aged) == aged.live


async def test_two_prune_processes_at_once_delete_each_row_once(
    pg_db: Database, fresh_database_url: str, tmp_path: Path
) -> None:
    aged = await seed_aged(pg_db, old=4000, live=100, history=5, age=AGE)
    command = prune_command(fresh_database_url)
    processes = [
        subprocess.Popen(
            command,
            cwd=tmp_path,
            env=prune_environment(batch_size=50),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=DEADLINE_S) for p in processes]
    for process, (_out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    removed = [counts(out) for out, _err in outputs]
    assert {kind: removed[0][kind] + removed[1][kind] for kind in KINDS} == expected(aged)
    await check_done(pg_db, aged)


async def test_two_runs_racing_in_one_process_add_up(
    pg_db: Database, fresh_database_url: str
) -> None:
    aged = await seed_aged(pg_db, old=600, live=20, history=4, age=AGE)
    settings = Settings(database_url=fresh_database_url, prune_batch_size=25)
    now = dt.datetime.now(dt.UTC)
    assert await prunable(pg_db, settings, now) == expected(aged)
    other = Database(fresh_database_url, pool_size=2)

    async def run(db: Database) -> dict[str, int]:
        done = dict.fromkeys(KINDS, 0)
        async for batch in Run(db, settings, now).batches():
            done[batch.kind] += batch.rows
            await asyncio.sleep(0)  # let the other run take its turn between batches
        return done

    try:
        first, second = await asyncio.gather(run(pg_db), run(other))
    finally:
        await other.dispose()
    assert {kind: first[kind] + second[kind] for kind in KINDS} == expected(aged)
    assert first["history"] > 0 and second["history"] > 0, "both runs took a share"
    await check_done(pg_db, aged)


async def pruned_executions(db: Database, aged: Aged) -> int:
    async with db.session() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(Execution)
                .where(
                    Execution.account_id == aged.account_id,
                    Execution.history_pruned_at.is_not(None),
                )
            )
            or 0
        )


async def test_a_prune_killed_midway_leaves_whole_batches_and_the_next_run_finishes(
    pg_db: Database, fresh_database_url: str, tmp_path: Path
) -> None:
    # Batches of 50 entries take ten executions each: 300 batches, of which the kill, once a
    # tenth of the executions is pruned, leaves some 270 to do, back to back, each in a
    # transaction of its own.
    aged = await seed_aged(pg_db, old=3000, live=200, history=5, age=AGE)
    process = subprocess.Popen(
        prune_command(fresh_database_url),
        cwd=tmp_path,
        env=prune_environment(batch_size=50),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + DEADLINE_S
        while (seen := await pruned_executions(pg_db, aged)) < len(aged.old) // 10:
            assert process.poll() is None, "it finished before it could be killed"
            assert time.monotonic() < deadline, "pruning never got going"
            await asyncio.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    at_rest = check_consistent(await history_state(pg_db, aged), aged)
    assert seen <= at_rest < len(aged.old), f"killed at {at_rest} of {len(aged.old)}"

    rest = run_prune(fresh_database_url, cwd=tmp_path, batch_size=500)
    assert rest.returncode == 0, rest.stderr
    again = counts(rest.stdout)
    assert again["history"] == (len(aged.old) - at_rest) * aged.history
    await check_done(pg_db, aged)
