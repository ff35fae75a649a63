"""Retention on PostgreSQL: revflow's batched pruning of aged history against dropping a
monthly partition, with the latency of a small write beside each (the engine's impact).

The same rows are measured both ways on a database created for the run (and dropped after):
``--executions`` finished executions with ``--entries`` history entries each, finished 200
days ago, plus as many live executions with recent history that must stay.

- **batched delete**: ``revflow.retention.service.Run`` with ``--batch-size`` — what the
  worker and ``revflow prune`` do — while a probe commits one history entry every 10 ms on
  another connection (as the engine would); before it, the probe alone, for a baseline.
- **partition drop**: the same aged rows in a copy of ``execution_history`` partitioned by
  month of ``at``; ``DROP TABLE`` of the aged month's partition (after ``DETACH``), with the
  same probe writing into the partitioned table.

Run: ``python benchmarks/bench_retention.py [--executions 100000] [--entries 10] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    PG_ADMIN_DSN,
    database_version,
    environment,
    fresh_database,
    load_average,
    say,
)
from revflow.bench import exit_on_sigterm
from revflow.config import Settings
from revflow.db import Database
from revflow.migrate import upgrade
from revflow.retention.service import Run

PROBE_INTERVAL_S = 0.01
AGE_DAYS = 200


def dsn_of(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def seed(conn: asyncpg.Connection, executions: int, entries: int) -> dict[str, Any]:
    """One account and workflow; ``executions`` finished ones with aged history and as many
    live ones with recent history, written with set-based SQL."""
    account, workflow = uuid.uuid4(), uuid.uuid4()
    await conn.execute(
        "INSERT INTO accounts (id, name, created_at) VALUES ($1, 'bench', now())", account
    )
    await conn.execute(
        "INSERT INTO workflows (id, account_id, name, description, status, version_count, "
        "revision, created_at, updated_at) VALUES ($1, $2, 'bench', '', 'active', 1, 1, "
        "now(), now())",
        workflow,
        account,
    )
    await conn.execute(
        "INSERT INTO contacts (id, account_id, fields, tags, created_at, updated_at) "
        "SELECT gen_random_uuid(), $1, '{}', '[]', now(), now() FROM generate_series(1, $2)",
        account,
        2 * executions,
    )
    await conn.execute(
        """
        INSERT INTO executions (id, account_id, workflow_id, version, contact_id, status,
            current_step, started_at, finished_at, wake_at, fired_goals)
        SELECT gen_random_uuid(), $1, $2, 1, c.id,
            CASE WHEN c.n <= $3 THEN 'completed' ELSE 'waiting' END,
            CASE WHEN c.n <= $3 THEN NULL ELSE 'long' END,
            now() - make_interval(days => $4),
            CASE WHEN c.n <= $3 THEN now() - make_interval(days => $4) END,
            CASE WHEN c.n <= $3 THEN NULL ELSE now() + interval '400 days' END,
            '[]'
        FROM (SELECT id, row_number() OVER () AS n FROM contacts WHERE account_id = $1) c
        """,
        account,
        workflow,
        executions,
        AGE_DAYS,
    )
    await conn.execute(
        """
        INSERT INTO execution_history (account_id, execution_id, at, step, result, detail)
        SELECT $1, e.id,
            CASE WHEN e.status = 'completed' THEN e.finished_at ELSE now() END,
            's' || k, 'ok', '{"note": "an entry of a realistic size"}'
        FROM executions e, generate_series(1, $2) k
        WHERE e.account_id = $1
        """,
        account,
        entries,
    )
    await conn.execute("ANALYZE")
    live = await conn.fetchval(
        "SELECT id FROM executions WHERE account_id = $1 AND status = 'waiting' LIMIT 1", account
    )
    return {"account": account, "live": live}


class Probe:
    """Commits one history entry every 10 ms on its own connection, timing each commit."""

    def __init__(self, conn: asyncpg.Connection, table: str, account: uuid.UUID, live: uuid.UUID):
        self.conn, self.table, self.account, self.live = conn, table, account, live
        self.samples: list[float] = []

    async def run(self, until: Callable[[], bool]) -> None:
        while not until():
            began = time.perf_counter()
            await self.conn.execute(
                f"INSERT INTO {self.table} (account_id, execution_id, at, step, result, detail) "
                "VALUES ($1, $2, now(), 'probe', 'ok', '{}')",
                self.account,
                self.live,
            )
            self.samples.append((time.perf_counter() - began) * 1000)
            await asyncio.sleep(PROBE_INTERVAL_S)

    def stats(self) -> dict[str, float]:
        ordered = sorted(self.samples) or [0.0]
        return {
            "n": len(self.samples),
            "p50_ms": round(ordered[int(0.5 * (len(ordered) - 1))], 2),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
            "max_ms": round(ordered[-1], 2),
        }


async def probed(
    dsn: str, table: str, world: dict[str, Any], work: Callable[[], Awaitable[Any]]
) -> tuple[float, dict[str, float]]:
    """Run ``work`` beside a probe; answers the seconds it took and the probe's latencies."""
    conn = await asyncpg.connect(dsn)
    done = False
    probe = Probe(conn, table, world["account"], world["live"])
    task = asyncio.create_task(probe.run(lambda: done))
    try:
        began = time.perf_counter()
        await work()
        seconds = time.perf_counter() - began
    finally:
        done = True
        await task
        await conn.close()
    return seconds, probe.stats()


async def baseline(dsn: str, table: str, world: dict[str, Any], seconds: float) -> dict[str, float]:
    return (await probed(dsn, table, world, lambda: asyncio.sleep(seconds)))[1]


async def size_mb(conn: asyncpg.Connection, table: str) -> float:
    size: int = await conn.fetchval(f"SELECT pg_total_relation_size('{table}')")
    return round(size / 2**20, 1)


async def batched_delete(
    url: str, world: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    dsn = dsn_of(url)
    conn = await asyncpg.connect(dsn)
    before_mb = await size_mb(conn, "execution_history")
    settings = Settings(
        database_url=url, prune_batch_size=args.batch_size, message_retention_days=0
    )
    db = Database(url, pool_size=2)
    deleted = {"rows": 0, "batches": 0}

    async def prune() -> None:
        async for batch in Run(db, settings, dt.datetime.now(dt.UTC)).batches():
            if batch.kind == "history":
                deleted["rows"] += batch.rows
                deleted["batches"] += 1

    say(f"probe alone (baseline), {args.baseline_seconds} s")
    quiet = await baseline(dsn, "execution_history", world, args.baseline_seconds)
    say(f"batched delete, {args.batch_size} rows a batch")
    seconds, busy = await probed(dsn, "execution_history", world, prune)
    await db.dispose()
    after_mb = await size_mb(conn, "execution_history")
    await conn.close()
    return {
        "rows": deleted["rows"],
        "batches": deleted["batches"],
        "seconds": round(seconds, 2),
        "rows_per_s": round(deleted["rows"] / seconds),
        "table_mb_before": before_mb,
        "table_mb_after_without_vacuum": after_mb,
        "probe_quiet": quiet,
        "probe_during": busy,
    }


async def partition_drop(
    url: str, world: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """The aged rows in a monthly-partitioned copy; dropping their month."""
    dsn = dsn_of(url)
    conn = await asyncpg.connect(dsn)
    aged = dt.datetime.now(dt.UTC) - dt.timedelta(days=AGE_DAYS)
    month = aged.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (month + dt.timedelta(days=32)).replace(day=1)
    await conn.execute(
        "CREATE TABLE history_by_month (LIKE execution_history INCLUDING DEFAULTS) "
        "PARTITION BY RANGE (at)"
    )
    # DDL takes no parameters: the bounds are written in, from datetimes of our own.
    await conn.execute(
        "CREATE TABLE history_aged PARTITION OF history_by_month "
        f"FOR VALUES FROM ('{month.isoformat()}') TO ('{following.isoformat()}')"
    )
    await conn.execute("CREATE TABLE history_rest PARTITION OF history_by_month DEFAULT")
    await conn.execute("ALTER TABLE history_by_month ADD PRIMARY KEY (id, at)")
    await conn.execute("CREATE INDEX ON history_by_month (account_id, execution_id, id)")
    say("copying the rows into the partitioned table")
    await conn.execute("INSERT INTO history_by_month SELECT * FROM execution_history")
    rows = await conn.fetchval("SELECT count(*) FROM history_aged")
    await conn.execute("ANALYZE history_by_month")
    await conn.close()

    async def drop() -> None:
        ddl = await asyncpg.connect(dsn)
        try:
            await ddl.execute("ALTER TABLE history_by_month DETACH PARTITION history_aged")
            await ddl.execute("DROP TABLE history_aged")
        finally:
            await ddl.close()

    say(f"probe alone on the partitioned table (baseline), {args.baseline_seconds} s")
    quiet = await baseline(dsn, "history_by_month", world, args.baseline_seconds)
    say("detach and drop the aged month")
    seconds, busy = await probed(dsn, "history_by_month", world, drop)
    return {
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds) if seconds else None,
        "probe_quiet": quiet,
        "probe_during": busy,
    }


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn_of(url))
    say(f"seeding {args.executions} finished executions of {args.entries} entries, as many live")
    began = time.perf_counter()
    world = await seed(conn, args.executions, args.entries)
    await conn.close()
    say(f"seeded in {time.perf_counter() - began:.1f} s")
    # The partitioned copy is taken first, while the aged rows are all there.
    dropped = await partition_drop(url, world, args)
    deleted = await batched_delete(url, world, args)
    return {"batched_delete": deleted, "partition_drop": dropped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=10, help="history entries per execution")
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument(
        "--baseline-seconds", type=float, default=3.0, help="how long the probe runs alone"
    )
    parser.add_argument("--pg-admin-dsn", default=PG_ADMIN_DSN)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    config = {
        "executions": args.executions,
        "entries": args.entries,
        "batch_size": args.batch_size,
        "database": database_version("postgresql", args.pg_admin_dsn),
    }
    env = {**environment(), "load_1min_at_start": load_average()}
    with fresh_database("postgresql", Path("."), args.pg_admin_dsn) as url:
        upgrade(url)
        result = asyncio.run(measure(url, args))
    env["load_1min_at_end"] = load_average()
    document = {"config": config, "environment": env, **result}
    print(json.dumps(document, indent=None if args.json else 2))
    sys.exit(0)


if __name__ == "__main__":
    exit_on_sigterm()
    main()
