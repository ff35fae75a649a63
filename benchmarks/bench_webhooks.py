"""Benchmark webhook deliveries: deliveries per second of ``revflow worker`` processes to a
loopback receiver, and the engine's steps per second beside a receiver that answers in 2 s.

Run: ``python benchmarks/bench_webhooks.py [--deliveries 20000] [--subscriptions 4]
[--workers 2] [--executions 20000] [--pairs 3] [--slow-delay 2] [--slow-backlog 2000]
[--concurrency N] [--batch-size N] [--verify-every 10] [--no-engine | --no-deliveries]
[--profile DIR] [--json]``.

Both parts run on fresh PostgreSQL databases (``CREATE DATABASE`` with a unique name on
``--pg-admin-dsn``, migrated with ``revflow.migrate.upgrade``, dropped at the end); the workers
are ``revflow worker`` subprocesses with ``REVFLOW_EGRESS_ALLOW=127.0.0.0/8`` (the receiver is on
loopback, which the egress policy refuses by default) and otherwise default webhook settings
(``--concurrency`` and ``--batch-size`` change ``REVFLOW_WEBHOOK_CONCURRENCY`` and
``REVFLOW_WEBHOOK_BATCH_SIZE``). ``--profile DIR`` records the first worker of part 1 with
``py-spy`` (idle samples included) and prints its top functions.
The receiver is ``webhook_receiver.py``, a process of its own answering ``204`` on keep-alive
connections; it verifies the first request of every subscription and one in ``--verify-every``
with ``standardwebhooks``' ``Webhook(secret).verify``.

1. **Deliveries per second.** Set-up (not timed): one account, one workflow, ``--subscriptions``
   subscriptions to ``workflow.paused`` on the receiver (one path and secret each), and
   ``--deliveries`` pending deliveries written by the product's own outbox path
   (``revflow.webhooks.service.emit_many`` with the workflow's real ``workflow.paused`` data,
   so every body has the size and shape of a real event), held back in the same transaction
   (``next_attempt_at`` a day ahead) so that the workers cannot start early. The workers start
   (until each logs ``worker_started``), then one ``UPDATE`` makes every delivery due. The timed
   window runs from that commit to the last delivery's ``finished_at`` (the moment its worker
   recorded it); a poll of the pending deliveries every 0.2 s waits for the end. Afterwards:
   every delivery is ``delivered`` with one attempt, the receiver got every ``webhook-id`` at
   least once and no other, duplicates are counted, and no signature check failed.
2. **The engine beside a slow receiver.** The workload of ``bench_engine.py`` (its own code:
   ``--executions`` executions of the five-step workflow, two ``revflow worker`` processes),
   run ``--pairs`` times alone and as often with a second receiver that answers every
   request after ``--slow-delay`` seconds and ``--slow-backlog`` deliveries due for it before
   the workers start (so each worker holds its full ``REVFLOW_WEBHOOK_CONCURRENCY`` of sends
   open for the whole run; the backlog must still be pending at the end, which is checked).
   The window starts once the slow receiver got its second round of requests from both
   workers: the sends are in their steady state, not opening their first connections.
   The two runs of a pair take turns going first. The end of each run is polled every 0.05 s.
   The drop is ``1 - median(with) / median(alone)``.
   Beside it, for information, the workers' CPU per step with and without the slow receiver
   (CPU time moves far less than wall time when other work shares the machine).

Goals: >= 1,000 deliveries/s with two workers; the engine's steps/s drop by <= 10 % beside the
slow receiver. Exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import select, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_engine as engine
from benchmarks import webhook_receiver
from benchmarks.bench_engine import CpuMeter, Proc, Run, launch, libpq_dsn, local_db
from benchmarks.common import (
    PG_ADMIN_DSN,
    database_version,
    environment,
    free_port,
    fresh_database,
    load_average,
    process_cpu_seconds,
    revflow_command,
    revflow_env,
    say,
)
from revflow.audit.service import Actor
from revflow.auth.service import Principal
from revflow.bench import exit_on_sigterm
from revflow.config import Settings
from revflow.db import Database
from revflow.kit.egress import EgressPolicy
from revflow.migrate import upgrade
from revflow.models import WebhookDelivery, Workflow
from revflow.webhooks import service as webhooks
from revflow.webhooks.schemas import SubscriptionCreate
from revflow.workflows import service as workflows
from revflow.workflows.events import workflow_data
from revflow.workflows.schemas import WorkflowCreate

GOAL_DELIVERIES_PER_S = 1_000.0  # with two workers
GOAL_ENGINE_DROP_PCT = 10.0  # beside the slow receiver, at most
EGRESS_ALLOW = "127.0.0.0/8"
EVENT = "workflow.paused"
HELD_BACK = dt.timedelta(days=1)
ENGINE_POLL_S = 0.05
SETTLE_TIMEOUT_S = 120.0


# --- the receiver ------------------------------------------------------------------------------


@contextmanager
def receiver(
    secrets: dict[str, str], port: int, delay: float, verify_every: int, workdir: Path
) -> Iterator[Proc]:
    """``webhook_receiver.py`` on ``port`` until the block ends."""
    command = [
        sys.executable,
        str(Path(webhook_receiver.__file__).resolve()),
        "--port",
        str(port),
        "--delay",
        str(delay),
        "--verify-every",
        str(verify_every),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVFLOW_")}
    env["BENCH_WEBHOOK_SECRETS"] = json.dumps(secrets)
    proc = launch(command, env, workdir, f"receiver-{port}")
    with engine.running([proc]):
        engine.wait_started([proc], webhook_receiver.READY_MARKER)
        yield proc


def receiver_report(port: int) -> dict[str, Any]:
    report: dict[str, Any] = httpx.get(f"http://127.0.0.1:{port}/_report", timeout=30).json()
    return report


# --- set-up ------------------------------------------------------------------------------------


async def subscribe_and_queue(
    url: str, principal: Principal, port: int, subscriptions: int, deliveries: int, *, held: bool
) -> dict[str, str]:
    """Subscriptions to ``EVENT`` on the receiver (``/hooks/<i>``) and ``deliveries`` pending
    deliveries for them through the outbox, in one transaction; answers path → secret. ``held``
    deliveries are due a day from now."""
    db = Database(url, pool_size=1)
    now = dt.datetime.now(dt.UTC)
    secrets: dict[str, str] = {}
    try:
        async with db.session(write=True) as session:
            workflow = await session.scalar(
                select(Workflow).where(Workflow.account_id == principal.account_id).limit(1)
            )
            assert workflow is not None
            for i in range(subscriptions):
                hook = await webhooks.create(
                    session,
                    principal.account_id,
                    Actor(user="bench"),
                    SubscriptionCreate(url=f"http://127.0.0.1:{port}/hooks/{i}", events=[EVENT]),
                    EgressPolicy.parse(EGRESS_ALLOW),
                    now,
                )
                secrets[f"/hooks/{i}"] = hook.secret
            items = [(principal.account_id, workflow_data(workflow))] * (
                deliveries // subscriptions
            )
            queued = await webhooks.emit_many(session, EVENT, items, now=now)
            if queued != deliveries:
                raise RuntimeError(f"queued {queued} deliveries, expected {deliveries}")
            if held:
                await session.execute(
                    update(WebhookDelivery).values(next_attempt_at=now + HELD_BACK)
                )
            await session.commit()
    finally:
        await db.dispose()
    return secrets


async def prepare_deliveries(url: str) -> Principal:
    """An account and a workflow (whose ``workflow.paused`` data the deliveries carry)."""
    db = Database(url, pool_size=1)
    try:
        principal = await engine.new_account(db, "bench")
        async with db.session(write=True) as session:
            await workflows.create_workflow(
                session,
                principal,
                WorkflowCreate(
                    name="webhook benchmark", definition=engine.WORKLOAD, change_summary="bench"
                ),
                Settings(database_url=url),
                dt.datetime.now(dt.UTC),
            )
            await session.commit()
        return principal
    finally:
        await db.dispose()


async def release(dsn: str) -> tuple[float, dt.datetime]:
    """Make every held delivery due now; the ``perf_counter`` and the time after the commit."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE status = 'pending'"
        )
        return time.perf_counter(), dt.datetime.now(dt.UTC)
    finally:
        await conn.close()


async def pending(conn: asyncpg.Connection) -> int:
    """Deliveries not yet delivered; a failed attempt stops the benchmark (a benchmark of
    retries would measure the back-off, not the sending)."""
    left, failed = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE status = 'pending'), "
        "count(*) FILTER (WHERE status = 'failed' OR attempt_count > 0 AND status = 'pending') "
        "FROM webhook_deliveries"
    )
    if failed:
        error = await conn.fetchval(
            "SELECT attempts -> -1 ->> 'error' FROM webhook_deliveries "
            "WHERE attempt_count > 0 AND status <> 'delivered' LIMIT 1"
        )
        raise RuntimeError(f"{failed} deliveries had a failed attempt, e.g.: {error}")
    return int(left)


async def analyse(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def outcome(dsn: str) -> tuple[dict[str, int], set[str], dt.datetime | None]:
    """Deliveries by status and attempts, their ids, and the last ``finished_at``."""
    conn = await asyncpg.connect(dsn)
    try:
        checks: dict[str, int] = {}
        for status, count in await conn.fetch(
            "SELECT status, count(*) FROM webhook_deliveries GROUP BY status"
        ):
            checks[f"deliveries_{status}"] = int(count)
        checks["attempts"] = int(
            await conn.fetchval("SELECT coalesce(sum(attempt_count), 0) FROM webhook_deliveries")
        )
        ids = {str(row["id"]) for row in await conn.fetch("SELECT id FROM webhook_deliveries")}
        last = await conn.fetchval("SELECT max(finished_at) FROM webhook_deliveries")
        return checks, ids, last
    finally:
        await conn.close()


# --- 1. deliveries per second ------------------------------------------------------------------


@dataclass
class DeliveryRun:
    deliveries: int
    workers: int
    wall_s: float  # release → the last finished_at
    polled_wall_s: float  # release → the poll that found none pending
    startup_s: list[float]
    worker_cpu_s: float
    db_cpu_s: float | None
    receiver_cpu_s: float | None
    machine_cpu_busy: float
    checks: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.deliveries / self.wall_s


def run_deliveries(args: argparse.Namespace) -> DeliveryRun:
    label = f"deliveries, {args.workers} workers"
    with (
        tempfile.TemporaryDirectory(prefix="revflow-bench-webhooks-") as tmp,
        fresh_database("postgresql", Path(tmp), args.pg_admin_dsn) as url,
    ):
        workdir = Path(tmp)
        dsn = libpq_dsn(url)
        say(f"[bold]{label}[/bold]: migrate, queue {args.deliveries} deliveries (held back)")
        upgrade(url)
        principal = asyncio.run(prepare_deliveries(url))
        port = free_port()
        secrets = asyncio.run(
            subscribe_and_queue(
                url, principal, port, args.subscriptions, args.deliveries, held=True
            )
        )
        asyncio.run(analyse(dsn))
        env = revflow_env(
            url,
            {
                "REVFLOW_EGRESS_ALLOW": EGRESS_ALLOW,
                "REVFLOW_WORKER_POLL_SECONDS": str(args.poll_seconds),
                **webhook_settings(args),
            },
        )
        with receiver(secrets, port, 0.0, args.verify_every, workdir) as proc:
            procs = [
                launch(revflow_command("worker"), env, workdir, f"worker-{i}")
                for i in range(args.workers)
            ]
            with engine.running(procs):
                startup = engine.wait_started(procs, "worker_started")
                spy = engine.start_profiler(procs[0], args.profile) if args.profile else None
                meter = CpuMeter([p.process.pid for p in procs], dsn, local_db(args))
                receiver_cpu0 = process_cpu_seconds(proc.process.pid)
                t0, released = asyncio.run(release(dsn))
                t1 = asyncio.run(
                    engine.wait_done(dsn, args.deliveries, pending, [*procs, proc], label)
                )
                cpu_s, db_cpu_s, busy = meter.stop()
                receiver_cpu1 = process_cpu_seconds(proc.process.pid)
            report = receiver_report(port)
        if spy is not None:
            spy.wait(timeout=60)
        checks, ids, last = asyncio.run(outcome(dsn))
    received: dict[str, int] = report["ids"]
    checks.update(
        received_requests=report["requests"],
        receiver_connections=report["connections"] - 1,  # less the report's own
        received_ids=len(received),
        missing_ids=len(ids - received.keys()),
        unknown_ids=len(received.keys() - ids),
        duplicate_ids=sum(1 for n in received.values() if n > 1),
        duplicate_requests=sum(n - 1 for n in received.values()),
        signatures_verified=report["verified"],
        signatures_failed=report["verify_failed"],
    )
    assert last is not None
    run = DeliveryRun(
        deliveries=args.deliveries,
        workers=args.workers,
        wall_s=(last - released).total_seconds(),
        polled_wall_s=t1 - t0,
        startup_s=startup,
        worker_cpu_s=cpu_s,
        db_cpu_s=db_cpu_s,
        receiver_cpu_s=None
        if receiver_cpu0 is None or receiver_cpu1 is None
        else receiver_cpu1 - receiver_cpu0,
        machine_cpu_busy=busy,
        checks=checks,
        errors=report["errors"],
    )
    problems = delivery_problems(run)
    if problems:
        raise RuntimeError(f"{label}: {'; '.join(problems)} ({checks}, {run.errors})")
    say(f"[bold]{label}[/bold]: {run.deliveries} in {run.wall_s:.2f} s = {run.per_s:,.0f}/s")
    return run


def delivery_problems(run: DeliveryRun) -> list[str]:
    """What is wrong with a run's outcome (nothing, when every delivery arrived, signed)."""
    checks = run.checks
    problems = []
    if checks.get("deliveries_delivered") != run.deliveries:
        problems.append(f"{checks.get('deliveries_delivered')} of {run.deliveries} delivered")
    if checks["missing_ids"] or checks["unknown_ids"]:
        problems.append(
            f"{checks['missing_ids']} webhook-ids never received, "
            f"{checks['unknown_ids']} received that were never queued"
        )
    if checks["signatures_failed"] or not checks["signatures_verified"]:
        problems.append(
            f"{checks['signatures_failed']} signatures failed, "
            f"{checks['signatures_verified']} verified"
        )
    return problems


# --- 2. the engine beside a slow receiver ------------------------------------------------------


def slow_receiver(args: argparse.Namespace, facts: dict[str, Any]) -> engine.Around:
    """What runs beside the engine: a receiver answering in ``--slow-delay`` s and a backlog
    of deliveries due for it; what it saw goes to ``facts``."""

    @contextmanager
    def around(url: str, principal: Principal) -> Iterator[Callable[[], None]]:
        port = free_port()
        secrets = asyncio.run(
            subscribe_and_queue(url, principal, port, 1, args.slow_backlog, held=False)
        )
        with (
            tempfile.TemporaryDirectory(prefix="revflow-bench-slow-") as tmp,
            receiver(secrets, port, args.slow_delay, args.verify_every, Path(tmp)),
        ):

            def settled() -> None:
                """Until every worker has had a full round of slow answers and sent the next
                (the steady state, not the first connections, is what is measured)."""
                wave = 2 * (args.concurrency or Settings().webhook_concurrency)
                deadline = time.monotonic() + SETTLE_TIMEOUT_S
                while receiver_report(port)["requests"] < 2 * wave:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the slow receiver's second round never came")
                    time.sleep(0.1)

            yield settled
            report = receiver_report(port)
        checks, _ids, _last = asyncio.run(outcome(libpq_dsn(url)))
        facts.update(
            slow_requests_received=report["requests"],
            slow_deliveries_answered=checks.get("deliveries_delivered", 0),
            slow_deliveries_pending_after=checks.get("deliveries_pending", 0),
            slow_signatures_failed=report["verify_failed"],
        )
        if not facts["slow_deliveries_pending_after"]:
            raise RuntimeError("the slow receiver's backlog ran out before the engine finished")

    return around


@dataclass
class EnginePair:
    alone: Run
    slow: Run
    slow_facts: dict[str, Any]

    @property
    def drop_pct(self) -> float:
        return 100 * (1 - self.slow.per_s / self.alone.per_s)

    @property
    def cpu_increase_pct(self) -> float:
        """How much more worker CPU a step took beside the slow receiver (CPU time, unlike
        wall time, hardly moves with what else the machine runs)."""
        return 100 * (cpu_ms_per_1k_steps(self.slow) / cpu_ms_per_1k_steps(self.alone) - 1)


def cpu_ms_per_1k_steps(run: Run) -> float:
    return 1000 * run.worker_cpu_s / (run.units / 1000)


def run_engine_pairs(args: argparse.Namespace) -> list[EnginePair]:
    engine_args = argparse.Namespace(
        executions=args.executions,
        poll_seconds=args.poll_seconds,
        batch_size=None,
        pg_admin_dsn=args.pg_admin_dsn,
    )
    env = {"REVFLOW_EGRESS_ALLOW": EGRESS_ALLOW, **webhook_settings(args)}
    pairs = []
    for i in range(args.pairs):
        n = f"{i + 1}/{args.pairs}"
        facts: dict[str, Any] = {}
        alone = partial(
            engine.run_revflow,
            engine_args,
            2,
            env=env,
            poll_s=ENGINE_POLL_S,
            label=f"engine alone ({n})",
        )
        slow = partial(
            engine.run_revflow,
            engine_args,
            2,
            env=env,
            around=slow_receiver(args, facts),
            poll_s=ENGINE_POLL_S,
            label=f"engine beside a {args.slow_delay:g} s receiver ({n})",
        )
        # Alone first in odd pairs, second in even ones: a load that grows or shrinks while
        # the pairs run weighs on both sides alike.
        if i % 2 == 0:
            first = alone()
            pairs.append(EnginePair(first, slow(), facts))
        else:
            second = slow()
            pairs.append(EnginePair(alone(), second, facts))
    return pairs


# --- report ------------------------------------------------------------------------------------


@dataclass
class Summary:
    deliveries_per_s: float | None
    alone: float | None
    slow: float | None
    cpu_increase_pct: float | None

    @property
    def drop_pct(self) -> float | None:
        if self.alone is None or self.slow is None:
            return None
        return 100 * (1 - self.slow / self.alone)

    @property
    def deliveries_passed(self) -> bool | None:
        if self.deliveries_per_s is None:
            return None
        return self.deliveries_per_s >= GOAL_DELIVERIES_PER_S

    @property
    def drop_passed(self) -> bool | None:
        drop = self.drop_pct
        return None if drop is None else drop <= GOAL_ENGINE_DROP_PCT

    @property
    def passed(self) -> bool:
        return self.deliveries_passed is not False and self.drop_passed is not False


def summarize(delivery: DeliveryRun | None, pairs: Sequence[EnginePair]) -> Summary:
    alone = statistics.median(p.alone.per_s for p in pairs) if pairs else None
    slow = statistics.median(p.slow.per_s for p in pairs) if pairs else None
    cpu = statistics.median(p.cpu_increase_pct for p in pairs) if pairs else None
    return Summary(None if delivery is None else delivery.per_s, alone, slow, cpu)


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def document(
    args: argparse.Namespace,
    delivery: DeliveryRun | None,
    pairs: Sequence[EnginePair],
    facts: dict[str, Any],
) -> dict[str, Any]:
    summary = summarize(delivery, pairs)
    return {
        "webhook_deliveries_per_s": _round(summary.deliveries_per_s),
        "engine_steps_per_s_without_receiver": _round(summary.alone),
        "engine_steps_per_s_with_slow_receiver": _round(summary.slow),
        "engine_drop_with_slow_receiver_pct": _round(summary.drop_pct, 2),
        "engine_worker_cpu_increase_with_slow_receiver_pct": _round(summary.cpu_increase_pct, 2),
        "goals": {
            "webhook_deliveries_per_s": GOAL_DELIVERIES_PER_S,
            "engine_drop_with_slow_receiver_pct": GOAL_ENGINE_DROP_PCT,
            "webhook_deliveries_per_s_passed": summary.deliveries_passed,
            "engine_drop_passed": summary.drop_passed,
        },
        "passed": summary.passed,
        "config": config(args),
        "environment": environment(),
        "facts": facts,
        "deliveries": None
        if delivery is None
        else {**asdict(delivery), "per_s": round(delivery.per_s, 1)},
        "engine_pairs": [
            {
                "alone": {**asdict(p.alone), "per_s": round(p.alone.per_s, 1)},
                "with_slow_receiver": {**asdict(p.slow), "per_s": round(p.slow.per_s, 1)},
                "slow_receiver": p.slow_facts,
                "drop_pct": round(p.drop_pct, 2),
                "worker_cpu_ms_per_1k_steps": [
                    round(cpu_ms_per_1k_steps(p.alone), 1),
                    round(cpu_ms_per_1k_steps(p.slow), 1),
                ],
                "cpu_increase_pct": round(p.cpu_increase_pct, 2),
            }
            for p in pairs
        ],
    }


def verdict(ok: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "info"}[ok]


def print_table(
    args: argparse.Namespace,
    delivery: DeliveryRun | None,
    pairs: Sequence[EnginePair],
    facts: dict[str, Any],
) -> None:
    summary = summarize(delivery, pairs)
    print("bench_webhooks: " + ", ".join(f"{k}={v}" for k, v in config(args).items()))
    print("environment: " + ", ".join(f"{k}={v}" for k, v in environment().items()))
    for key, value in facts.items():
        print(f"{key}: {value}")
    print()
    header = f"{'measurement':<52} {'value':>10} {'goal':>10}  verdict"
    rule = "-" * len(header)
    print(header)
    print(rule)
    if delivery is not None:
        print(
            f"{'deliveries/s, ' + str(delivery.workers) + ' workers, receiver answering 204':<52} "
            f"{delivery.per_s:>10,.0f} {'>= 1,000':>10}  {verdict(summary.deliveries_passed)}"
        )
    if summary.alone is not None and summary.slow is not None and summary.drop_pct is not None:
        print(f"{'engine steps/s, 2 workers, alone (median)':<52} {summary.alone:>10,.0f}")
        label = f"engine steps/s beside a {args.slow_delay:g} s receiver (median)"
        print(f"{label:<52} {summary.slow:>10,.0f}")
        print(
            f"{'engine drop beside the slow receiver, %':<52} {summary.drop_pct:>10.1f} "
            f"{'<= 10':>10}  {verdict(summary.drop_passed)}"
        )
        if summary.cpu_increase_pct is not None:
            label = "worker CPU per step, beside the slow receiver, +%"
            print(f"{label:<52} {summary.cpu_increase_pct:>10.1f} {'-':>10}  info")
    print(rule)
    if delivery is not None:
        c = delivery.checks
        print(
            f"deliveries: {delivery.deliveries} in {delivery.wall_s:.2f} s (release → last "
            f"finished_at; the 0.2 s poll saw the end at {delivery.polled_wall_s:.2f} s); "
            f"start-up {'/'.join(f'{s:.1f}' for s in delivery.startup_s)} s; worker CPU "
            f"{delivery.worker_cpu_s:.1f} s, DB CPU {engine._cpu(delivery.db_cpu_s)} s, receiver "
            f"CPU {engine._cpu(delivery.receiver_cpu_s)} s, machine busy "
            f"{100 * delivery.machine_cpu_busy:.0f} %"
        )
        print(
            f"  checks: {c.get('deliveries_delivered', 0)} delivered, {c['attempts']} attempts, "
            f"{c['received_ids']} webhook-ids received ({c['missing_ids']} missing, "
            f"{c['unknown_ids']} unknown), {c['duplicate_ids']} received more than once "
            f"({c['duplicate_requests']} extra requests) on {c['receiver_connections']} "
            "connections, signatures: "
            f"{c['signatures_verified']} verified, {c['signatures_failed']} failed"
        )
    for i, p in enumerate(pairs, 1):
        f = p.slow_facts
        print(
            f"engine pair {i}: alone {p.alone.per_s:,.0f} steps/s ({p.alone.wall_s:.2f} s, busy "
            f"{100 * p.alone.machine_cpu_busy:.0f} %), beside the slow receiver "
            f"{p.slow.per_s:,.0f} ({p.slow.wall_s:.2f} s, busy "
            f"{100 * p.slow.machine_cpu_busy:.0f} %): drop {p.drop_pct:.1f} %; worker CPU "
            f"{cpu_ms_per_1k_steps(p.alone):.0f} → {cpu_ms_per_1k_steps(p.slow):.0f} ms per "
            f"1,000 steps ({p.cpu_increase_pct:+.1f} %); the slow "
            f"receiver got {f['slow_requests_received']} requests, "
            f"{f['slow_deliveries_answered']} answered, "
            f"{f['slow_deliveries_pending_after']} still pending after"
        )
    print()
    print(f"verdict: {verdict(summary.passed)}")


def print_profile(profile: dict[str, Any]) -> None:
    print()
    print(
        f"py-spy on the first worker: {profile['samples']} samples at 250 Hz incl. idle, "
        f"{profile['idle_in_epoll_pct']:.1f} % idle in epoll"
    )
    for title in ("self", "inclusive"):
        print(f"  top functions by {title} time (% of samples):")
        for frame, pct in profile[title]:
            print(f"    {pct:6.2f}  {frame}")


def webhook_settings(args: argparse.Namespace) -> dict[str, str]:
    """The workers' webhook settings that the command line changes (else their defaults)."""
    settings = {}
    if args.concurrency is not None:
        settings["REVFLOW_WEBHOOK_CONCURRENCY"] = str(args.concurrency)
    if args.batch_size is not None:
        settings["REVFLOW_WEBHOOK_BATCH_SIZE"] = str(args.batch_size)
    return settings


def config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "deliveries": 0 if args.no_deliveries else args.deliveries,
        "subscriptions": args.subscriptions,
        "workers": args.workers,
        "executions": 0 if args.no_engine else args.executions,
        "pairs": 0 if args.no_engine else args.pairs,
        "slow_delay_s": args.slow_delay,
        "slow_backlog": args.slow_backlog,
        "REVFLOW_WEBHOOK_CONCURRENCY": args.concurrency or Settings().webhook_concurrency,
        "REVFLOW_WEBHOOK_BATCH_SIZE": args.batch_size or Settings().webhook_batch_size,
        "REVFLOW_WORKER_POLL_SECONDS": args.poll_seconds,
        "verify_every": args.verify_every,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--subscriptions", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executions", type=int, default=20_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--slow-delay", type=float, default=2.0)
    parser.add_argument("--slow-backlog", type=int, default=2_000)
    parser.add_argument("--no-engine", action="store_true", help="measure deliveries only")
    parser.add_argument("--no-deliveries", action="store_true", help="the engine pairs only")
    parser.add_argument(
        "--verify-every", type=int, default=10, help="the receiver verifies 1 request in N"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="REVFLOW_WEBHOOK_CONCURRENCY (default: its default)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="REVFLOW_WEBHOOK_BATCH_SIZE (default: its default)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=0.1,
        help="REVFLOW_WORKER_POLL_SECONDS: how long an idle worker sleeps before looking again",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="py-spy records the first worker of the deliveries run (idle included) into this "
        "folder, and its summary is printed",
    )
    parser.add_argument("--pg-admin-dsn", default=PG_ADMIN_DSN, help="where to CREATE DATABASE")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.deliveries < 1 or args.deliveries % args.subscriptions:
        parser.error("--deliveries must be a positive multiple of --subscriptions")
    if min(args.workers, args.executions, args.pairs, args.slow_backlog, args.verify_every) < 1:
        parser.error("counts must be positive")

    load_at_start = load_average()
    facts: dict[str, Any] = {"database": database_version("postgresql", args.pg_admin_dsn)}
    delivery = None if args.no_deliveries else run_deliveries(args)
    pairs = [] if args.no_engine else run_engine_pairs(args)
    facts["load average (1 min)"] = f"{load_at_start} at start, {load_average()} at end"
    profile = None
    if args.profile is not None:
        profile = engine.summarize_py_spy(args.profile / "worker.folded")
    if args.json:
        print(json.dumps({**document(args, delivery, pairs, facts), "profile": profile}, indent=2))
    else:
        print_table(args, delivery, pairs, facts)
        if profile is not None:
            print_profile(profile)
    if not summarize(delivery, pairs).passed:
        raise SystemExit(1)


if __name__ == "__main__":
    exit_on_sigterm()
    main()
