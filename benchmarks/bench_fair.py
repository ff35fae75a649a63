"""Benchmark fair claims: a small account's delay beside a large account's backlog.

Run: ``python benchmarks/bench_fair.py [--database sqlite|postgresql|both] [--big 10000]
[--small 50] [--small-every 0.02] [--rounds 2] [--json]``.

Each run, on a fresh database (``CREATE DATABASE`` with a unique name on ``--pg-admin-dsn``, or a
temporary SQLite file), migrated with ``revflow.migrate.upgrade``:

- set-up (not timed): a big account whose published workflow is the engine benchmark's five
  internal steps (``update_field`` → ``add_tag`` → ``condition`` → ``send_email`` to the
  outbox → ``end``), ``--big`` contacts enrolled; a small account whose workflow has one step
  (``add_tag``), ``--small`` contacts enrolled; every execution's ``wake_at`` is then moved a
  year ahead, so that nothing is due while the workers start;
- the workers: ``revflow worker`` processes (two on PostgreSQL, one on SQLite, where one
  worker runs inside the server), ``REVFLOW_WORKER_POLL_SECONDS=0.1``, the default batch size
  and account share; started and ready before the window;
- the window opens at t0 (half a second after one transaction has made every big execution due
  at t0 and the small account's executions due one every ``--small-every`` seconds from t0, so
  they fall due while the backlog drains) and closes at the poll (every 0.05 s) that finds no
  live execution left;
- measured: each small execution's delay, from its ``wake_at`` to the ``at`` of its first
  history entry (the time of the claim that took it); the big account's steps (history rows)
  per second of the window; the engine's total steps (both accounts) per second.

The baseline, in the same run: the same workload as revflow ran it before fair claims — the
schema of the revision before them (``0011``: no ``ix_executions_due_by_account`` to keep up
on every write) and all due executions claimed oldest first
(``revflow.engine.store.claim_oldest``, which the workers of this script put in place of
``claim_due``: ``python bench_fair.py worker --claim oldest``; its statuses are written into the
statement, so on SQLite it is faster than the claim it replaces: a stricter baseline).
Each round runs the baseline and then fair claims; throughputs are the medians of the rounds,
delays are pooled over them. The drop is the total throughput lost to fair claims, in percent:
the median of the rounds' drops (each round's pair ran back to back, under the same load).
Beside the wall-clock numbers, which other work on the machine moves, the CPU time of the
workers and of their PostgreSQL backends per 1,000 steps (from /proc) shows what the claims
cost whatever else runs (``fair_cpu_increase_pct``: the median of the rounds' increases).

Goals: the small account's p95 delay <= 1 s, and a drop <= 10 %. Exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, select, text, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_engine import (
    WORKLOAD,
    CpuMeter,
    enrolled_workflow,
    launch,
    libpq_dsn,
    local_db,
    running,
    setup_database,
    wait_started,
)
from benchmarks.common import (
    PG_ADMIN_DSN,
    backends,
    database_version,
    environment,
    fresh_database,
    load_average,
    revflow_env,
    say,
)
from revflow.bench import exit_on_sigterm
from revflow.config import Settings
from revflow.db import Database
from revflow.engine.store import EXECUTIONS
from revflow.migrate import upgrade
from revflow.models import LIVE_STATUSES, Execution, HistoryEntry

GOAL_P95_DELAY_MS = 1_000.0
GOAL_DROP_PCT = 10.0
POLL_S = 0.05
LEAD_S = 0.5  # t0 is this far after the commit that makes the work due
RUN_TIMEOUT_S = 600.0
ENROLL_CHUNK = 10_000
BEFORE_FAIR_CLAIMS = "0011"  # the schema revision of the baseline

SMALL_WORKLOAD: dict[str, Any] = {
    "trigger": {"type": "manual"},
    "steps": [{"id": "tag", "type": "add_tag", "tag": "served"}],
}


# --- the worker this script starts ---------------------------------------------------------------


def worker_main(claim: str) -> None:
    """``revflow worker``, with the oldest-first claim in place of fair claims for ``oldest``."""
    from revflow.engine import store
    from revflow.logging import configure
    from revflow.worker import Worker

    if claim == "oldest":

        async def oldest_first(
            session: Any, now: dt.datetime, limit: int, *, share: int, after: Any = None
        ) -> store.Claimed:
            return store.Claimed(await store.claim_oldest(session, now, limit), None)

        store.claim_due = oldest_first
    settings = Settings()
    configure(settings.log_level, settings.log_json)

    async def work() -> None:
        db = Database(settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
        worker = Worker(db, settings)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
        try:
            await worker.run()
        finally:
            await db.dispose()

    asyncio.run(work())


# --- set-up ------------------------------------------------------------------------------------


@dataclass
class Prepared:
    big: uuid.UUID
    small: uuid.UUID
    small_executions: list[uuid.UUID]


async def prepare(url: str, big: int, small: int) -> Prepared:
    settings = Settings(database_url=url)
    db = setup_database(url)
    try:
        big_account, _, _ = await enrolled_workflow(db, settings, "big", WORKLOAD, big)
        small_account, _, small_executions = await enrolled_workflow(
            db, settings, "small", SMALL_WORKLOAD, small
        )
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
        async with db.session(write=True) as session:
            await session.execute(update(EXECUTIONS).values(wake_at=later))
            await session.commit()
        if url.startswith("postgresql"):
            async with db.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("VACUUM ANALYZE"))
        return Prepared(big_account.account_id, small_account.account_id, small_executions)
    finally:
        await db.dispose()


# --- the window --------------------------------------------------------------------------------


@dataclass
class Run:
    claim: str
    database: str
    workers: int
    big_steps: int
    small_steps: int
    wall_s: float
    delays_ms: list[float]
    cpu_s: float  # the workers', and their database backends' on a local PostgreSQL

    @property
    def big_per_s(self) -> float:
        return self.big_steps / self.wall_s

    @property
    def total_per_s(self) -> float:
        return (self.big_steps + self.small_steps) / self.wall_s

    @property
    def cpu_ms_per_1000_steps(self) -> float:
        return 1e6 * self.cpu_s / (self.big_steps + self.small_steps)


async def _start(
    url: str, prepared: Prepared, every: float
) -> tuple[dt.datetime, dict[uuid.UUID, dt.datetime]]:
    """Make the work due from t0 on; answers t0 and each small execution's ``wake_at``."""
    db = Database(url, pool_size=1)
    try:
        t0 = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=LEAD_S)
        due = {
            ex: t0 + dt.timedelta(seconds=i * every)
            for i, ex in enumerate(prepared.small_executions)
        }
        async with db.session(write=True) as session:
            await session.execute(
                update(EXECUTIONS).where(EXECUTIONS.c.account_id == prepared.big).values(wake_at=t0)
            )
            await session.execute(
                update(EXECUTIONS)
                .where(EXECUTIONS.c.id == bindparam("_id"))
                .values(wake_at=bindparam("_wake_at")),
                [{"_id": ex, "_wake_at": at} for ex, at in due.items()],
            )
            await session.commit()
        return t0, due
    finally:
        await db.dispose()


async def _wait_done(url: str, procs: Sequence[Any]) -> dt.datetime:
    """Poll until no live execution is left; the time of that poll."""
    db = Database(url, pool_size=1)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while True:
            async with db.session() as session:
                live = await session.scalar(
                    select(func.count())
                    .select_from(Execution)
                    .where(Execution.status.in_(LIVE_STATUSES))
                )
            if not live:
                return dt.datetime.now(dt.UTC)
            for proc in procs:
                if proc.process.poll() is not None:
                    raise RuntimeError(f"a worker died:\n{proc.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{live} executions left after {RUN_TIMEOUT_S:g} s")
            await asyncio.sleep(POLL_S)
    finally:
        await db.dispose()


async def _outcome(
    url: str, prepared: Prepared, due: dict[uuid.UUID, dt.datetime]
) -> tuple[int, int, list[float]]:
    """(big steps, small steps, each small execution's delay in ms)."""
    db = Database(url, pool_size=1)
    try:
        async with db.session() as session:
            steps = dict(
                (
                    await session.execute(
                        select(HistoryEntry.account_id, func.count()).group_by(
                            HistoryEntry.account_id
                        )
                    )
                )
                .tuples()
                .all()
            )
            failed = await session.scalar(
                select(func.count()).select_from(Execution).where(Execution.status != "completed")
            )
            first = (
                await session.execute(
                    select(HistoryEntry.execution_id, func.min(HistoryEntry.at))
                    .where(HistoryEntry.account_id == prepared.small)
                    .group_by(HistoryEntry.execution_id)
                )
            ).all()
    finally:
        await db.dispose()
    if failed:
        raise RuntimeError(f"{failed} executions did not complete")
    delays = [(at - due[ex]).total_seconds() * 1000 for ex, at in first]
    if len(delays) != len(prepared.small_executions):
        raise RuntimeError(f"{len(delays)} of {len(prepared.small_executions)} small ones ran")
    return steps.get(prepared.big, 0), steps.get(prepared.small, 0), delays


def run_once(args: argparse.Namespace, database: str, claim: str) -> Run:
    workers = 2 if database == "postgresql" else 1
    label = f"{database}, {claim} claims, {workers} worker{'s' if workers > 1 else ''}"
    with (
        tempfile.TemporaryDirectory(prefix="revflow-bench-fair-") as tmp,
        fresh_database(database, Path(tmp), args.pg_admin_dsn) as url,
    ):
        workdir = Path(tmp)
        say(f"[bold]{label}[/bold]: set up {args.big} + {args.small} executions")
        upgrade(url, BEFORE_FAIR_CLAIMS if claim == "oldest" else "head")
        prepared = asyncio.run(prepare(url, args.big, args.small))
        env = revflow_env(url, {"REVFLOW_WORKER_POLL_SECONDS": "0.1"})
        command = [sys.executable, str(Path(__file__).resolve()), "worker", "--claim", claim]
        procs = [launch(command, env, workdir, f"worker-{i}") for i in range(workers)]
        with running(procs):
            wait_started(procs, "worker_started")
            meter = CpuMeter(
                [p.process.pid for p in procs],
                libpq_dsn(url) if database == "postgresql" else "",
                database == "postgresql" and local_db(args),
            )
            t0, due = asyncio.run(_start(url, prepared, args.small_every))
            end = asyncio.run(_wait_done(url, procs))
            worker_cpu_s, db_cpu_s, _busy = meter.stop()
        big_steps, small_steps, delays = asyncio.run(_outcome(url, prepared, due))
    run = Run(
        claim,
        database,
        workers,
        big_steps,
        small_steps,
        (end - t0).total_seconds(),
        delays,
        worker_cpu_s + (db_cpu_s or 0.0),
    )
    say(
        f"[bold]{label}[/bold]: {run.total_per_s:,.0f} steps/s; small account's p95 delay "
        f"{p95(delays):,.0f} ms"
    )
    return run


def p95(samples: Sequence[float]) -> float:
    if len(samples) < 2:
        return samples[0] if samples else math.nan
    return statistics.quantiles(samples, n=100, method="inclusive")[94]


# --- report ------------------------------------------------------------------------------------


def summary(runs: list[Run], database: str) -> dict[str, Any]:
    def of(claim: str) -> tuple[float, float, float, float, float]:
        mine = [r for r in runs if r.database == database and r.claim == claim]
        delays = [d for r in mine for d in r.delays_ms]
        return (
            statistics.median(r.big_per_s for r in mine),
            statistics.median(r.total_per_s for r in mine),
            p95(delays),
            statistics.median(delays),
            statistics.median(r.cpu_ms_per_1000_steps for r in mine),
        )

    fair_big, fair_total, fair_p95, fair_p50, fair_cpu = of("fair")
    base_big, base_total, base_p95, base_p50, base_cpu = of("oldest")
    # Each round ran the baseline and then fair claims back to back: the drop is the median of
    # the rounds' drops, so that a change of the machine's load between rounds cancels out.
    pairs = zip(
        [r for r in runs if r.database == database and r.claim == "oldest"],
        [r for r in runs if r.database == database and r.claim == "fair"],
        strict=True,
    )
    paired = list(pairs)
    drop = statistics.median(100 * (1 - f.total_per_s / b.total_per_s) for b, f in paired)
    cpu_increase = statistics.median(
        100 * (f.cpu_ms_per_1000_steps / b.cpu_ms_per_1000_steps - 1) for b, f in paired
    )
    return {
        "database": database,
        "fair_small_tenant_p95_delay_ms": round(fair_p95, 1),
        "fair_small_tenant_p50_delay_ms": round(fair_p50, 1),
        "fair_big_tenant_steps_per_s": round(fair_big, 1),
        "fair_engine_steps_per_s": round(fair_total, 1),
        "fair_cpu_ms_per_1000_steps": round(fair_cpu, 1),
        "fair_baseline_small_tenant_p95_delay_ms": round(base_p95, 1),
        "fair_baseline_small_tenant_p50_delay_ms": round(base_p50, 1),
        "fair_baseline_big_tenant_steps_per_s": round(base_big, 1),
        "fair_baseline_engine_steps_per_s": round(base_total, 1),
        "fair_baseline_cpu_ms_per_1000_steps": round(base_cpu, 1),
        "fair_throughput_drop_pct": round(drop, 2),
        "fair_cpu_increase_pct": round(cpu_increase, 2),
        "passed": fair_p95 <= GOAL_P95_DELAY_MS and drop <= GOAL_DROP_PCT,
    }


def report(args: argparse.Namespace, runs: list[Run], facts: dict[str, Any]) -> bool:
    results = [summary(runs, database) for database in backends(args.database)]
    passed = all(r["passed"] for r in results)
    if args.json:
        document = {
            "benchmark": "fair claims",
            "config": config(args),
            "environment": environment(),
            "facts": facts,
            "goals": {
                "fair_small_tenant_p95_delay_ms": GOAL_P95_DELAY_MS,
                "fair_throughput_drop_pct": GOAL_DROP_PCT,
            },
            "results": results,
            "runs": [
                {
                    **{k: v for k, v in asdict(r).items() if k != "delays_ms"},
                    "small_p95_delay_ms": round(p95(r.delays_ms), 1),
                    "big_steps_per_s": round(r.big_per_s, 1),
                    "engine_steps_per_s": round(r.total_per_s, 1),
                    "cpu_ms_per_1000_steps": round(r.cpu_ms_per_1000_steps, 1),
                }
                for r in runs
            ],
            "passed": passed,
        }
        print(json.dumps(document, indent=2))
        return passed
    print("bench_fair: " + ", ".join(f"{k}={v}" for k, v in config(args).items()))
    print("environment: " + ", ".join(f"{k}={v}" for k, v in environment().items()))
    for key, value in facts.items():
        print(f"{key}: {value}")
    print()
    header = f"{'database':<11} {'claims':<14} {'small p50 ms':>12} {'small p95 ms':>12} "
    header += f"{'big steps/s':>12} {'all steps/s':>12} {'CPU ms/1k steps':>15}"
    print(header)
    print("-" * len(header))
    for r in results:
        for claim, prefix in (("oldest first", "fair_baseline_"), ("fair", "fair_")):
            print(
                f"{r['database']:<11} {claim:<14} "
                f"{r[prefix + 'small_tenant_p50_delay_ms']:>12,.1f} "
                f"{r[prefix + 'small_tenant_p95_delay_ms']:>12,.1f} "
                f"{r[prefix + 'big_tenant_steps_per_s']:>12,.0f} "
                f"{r[prefix + 'engine_steps_per_s']:>12,.0f} "
                f"{r[prefix + 'cpu_ms_per_1000_steps']:>15,.1f}"
            )
        print(
            f"{r['database']:<11} CPU per step {r['fair_cpu_increase_pct']:+.2f} %; "
            f"throughput drop {r['fair_throughput_drop_pct']:.2f} % "
            f"(goal <= {GOAL_DROP_PCT:g} %); small p95 goal <= {GOAL_P95_DELAY_MS:,.0f} ms: "
            f"{'PASS' if r['passed'] else 'FAIL'}"
        )
    print()
    print(f"verdict: {'PASS' if passed else 'FAIL'}")
    return passed


def config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "big": args.big,
        "small": args.small,
        "small_every_s": args.small_every,
        "rounds": args.rounds,
        "REVFLOW_WORKER_BATCH_SIZE": Settings().worker_batch_size,
        "REVFLOW_WORKER_ACCOUNT_SHARE": Settings().worker_account_share,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker = argparse.ArgumentParser(prog="bench_fair.py worker")
        worker.add_argument("--claim", choices=("fair", "oldest"), required=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        worker_main(worker.parse_args(sys.argv[2:]).claim)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--big", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=50)
    parser.add_argument("--small-every", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pg-admin-dsn", default=PG_ADMIN_DSN, help="where to CREATE DATABASE")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if min(args.big, args.small, args.rounds) < 1:
        parser.error("--big, --small and --rounds must be positive")

    facts: dict[str, Any] = {"load average (1 min) at start": load_average()}
    runs: list[Run] = []
    for database in backends(args.database):
        facts[database] = database_version(database, args.pg_admin_dsn)
        for _ in range(args.rounds):
            for claim in ("oldest", "fair"):
                runs.append(run_once(args, database, claim))
    facts["load average (1 min) at end"] = load_average()
    if not report(args, runs, facts):
        raise SystemExit(1)


if __name__ == "__main__":
    exit_on_sigterm()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
