"""How fast the engine gets its throughput back after each database fault (PostgreSQL).

One ``revflow serve`` and two ``revflow worker`` processes on a fresh database run a steady
engine workload: ``--executions`` executions of the engine benchmark's steps with a one-second
wait that loops back to the first step, so the due work never runs out and the workers are busy
all the time (steps/s is the engine's capacity, not the rate work arrives). Steps are counted
from the database: the history rows committed, read every ``--poll`` seconds; the throughput is
the rate over sliding windows of ``--window`` seconds.

After ``--warmup`` seconds, the steady rate is measured over ``--steady-seconds``; then each
fault of ``--faults`` in turn, each judged against the steady rate of the ``--steady-seconds``
just before it:

- ``terminate``: ``pg_terminate_backend`` of every connection of the workers and the server,
  three times, a second apart;
- ``lock``: an idle-in-transaction session holds ``FOR UPDATE`` locks on the workload's
  workflow row and on one of its contacts for ``--lock-seconds``;
- ``pool``: slow requests exhaust the server's connection pool for ``--pool-seconds``: three
  times as many concurrent version creates as the pool holds, on a workflow whose row another
  session holds, each waiting for that lock until the server's lock timeout;
- ``restart``: PostgreSQL stopped, down for ``--down-seconds``, started again. It disrupts
  everything else on this PostgreSQL, so it runs only with ``--restart-postgresql`` or with
  ``REVFLOW_TEST_RESTART_POSTGRESQL=1`` or ``REVFLOW_TEST_PG_CONTROL`` set (as the fault tests);
  otherwise it is reported as skipped.

Recovery is the time from the end of the fault until the end of the first window, starting at
or after the end, whose rate is at least ``--share`` (90 %) of the steady rate; goal: 30 s. A
fault whose rate is not back within ``--recovery-timeout`` has no recovery time (goal missed).
Beside it: the lowest window rate from the fault's start until the recovery, and the rate over
the ``--steady-seconds`` after the recovery (whether it holds).

Checks: no worker or server exits; a probe requesting one workflow every 0.2 s through the API
gets only 200 or a 503 ``database_busy`` with ``Retry-After`` (no 500, no hang); no execution
of the workload fails.

    python benchmarks/bench_recovery.py --json
    python benchmarks/bench_recovery.py --restart-postgresql     # every fault, restart included
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_engine import (
    WORKLOAD,
    Proc,
    launch,
    libpq_dsn,
    prepare_revflow,
    resume,
    running,
    wait_started,
)
from benchmarks.common import (
    PG_ADMIN_DSN,
    Server,
    control_postgresql,
    database_version,
    environment,
    fresh_database,
    load_average,
    postgresql_control,
    revflow_command,
    revflow_env,
    revflow_server,
    run_revflow,
    say,
)
from revflow.bench import exit_on_sigterm
from revflow.migrate import upgrade

GOAL_S = 30.0
FAULTS = ("terminate", "lock", "pool", "restart")
API = "/api/v1"
PROBE_EVERY_S = 0.2
REQUEST_TIMEOUT_S = 30.0
# The server's settings: the pool the ``pool`` fault exhausts and how long a request waits for
# a connection or a lock (the deployment's defaults would only make the fault longer).
POOL_SIZE = 4
SERVER_ENV = {
    "REVFLOW_DB_POOL_SIZE": str(POOL_SIZE),
    "REVFLOW_DB_POOL_TIMEOUT_SECONDS": "1",
    "REVFLOW_DB_LOCK_TIMEOUT_MS": "1000",
    "REVFLOW_LOG_LEVEL": "WARNING",
}

# The engine benchmark's steps, then a one-second wait back to the first: a workload that never
# runs out, so that steps/s is what the workers can do.
LOOP: dict[str, Any] = {
    **WORKLOAD,
    "steps": [
        *(step for step in WORKLOAD["steps"] if step["id"] != "welcome"),
        {**next(s for s in WORKLOAD["steps"] if s["id"] == "welcome"), "next": "rest"},
        {"id": "rest", "type": "wait", "duration": "1s", "next": "set_stage"},
    ],
}

QUIET = {"id": "quiet", "type": "wait", "duration": "30d", "next": "done"}
QUIET_DEFINITION: dict[str, Any] = {
    "trigger": {"type": "manual"},
    "steps": [QUIET, {"id": "done", "type": "end"}],
}


# --- steps counted from the database -----------------------------------------------------------


class Meter:
    """Committed history rows, counted every ``poll_s`` on a connection of its own.

    Each count reads only the rows above a mark (the highest id seen ``lag_s`` ago): ids are
    taken when a batch writes its history, moments before its commit, so a row below a mark that
    old is either committed and counted or never will be. The connection is opened again after
    a fault closed it; a poll missed meanwhile makes the next interval longer, not the count
    wrong.
    """

    def __init__(self, dsn: str, poll_s: float, lag_s: float) -> None:
        self.dsn = dsn
        self.poll_s = poll_s
        self.lag_s = lag_s
        self.samples: list[tuple[float, int]] = []
        self.pid: int | None = None

    async def run(self, stop: asyncio.Event) -> None:
        conn: asyncpg.Connection | None = None
        low, below_low = 0, 0
        marks: deque[tuple[float, int]] = deque()
        try:
            while not stop.is_set():
                try:
                    if conn is None or conn.is_closed():
                        conn = await asyncpg.connect(self.dsn, timeout=2)
                        self.pid = conn.get_server_pid()
                    at = time.monotonic()
                    mark = low
                    while marks and marks[0][0] <= at - self.lag_s:
                        mark = max(mark, marks.popleft()[1])
                    row = await conn.fetchrow(
                        "SELECT count(*) FILTER (WHERE id <= $2) AS settled, "
                        "count(*) FILTER (WHERE id > $2) AS recent, max(id) AS top "
                        "FROM execution_history WHERE id > $1",
                        low,
                        mark,
                        timeout=5,
                    )
                    assert row is not None
                    below_low += int(row["settled"])
                    low = mark
                    self.samples.append((at, below_low + int(row["recent"])))
                    marks.append((at, int(row["top"] or low)))
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    if conn is not None:
                        conn.terminate()
                    conn = None
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_s)
        finally:
            if conn is not None:
                conn.terminate()

    def rate(self, start: float, end: float) -> float | None:
        """Steps/s between the first sample at or after ``start`` and the last at or before
        ``end`` (``None`` with fewer than two samples there)."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] <= 0:
            return None
        (t0, n0), (t1, n1) = inside[0], inside[-1]
        return (n1 - n0) / (t1 - t0)

    def windows(self, start: float, window: float) -> list[tuple[float, float]]:
        """(end, steps/s) of every window of ``window`` seconds that begins at or after
        ``start`` and ends at a sample."""
        out = []
        for at, _ in self.samples:
            if at - window >= start:
                rate = self.rate(at - window, at)
                if rate is not None:
                    out.append((at, rate))
        return out


# --- the API probe -----------------------------------------------------------------------------


@dataclass
class Probe:
    """Every answer one client got from the server while the faults came and went."""

    url: str
    key: str
    path: str
    statuses: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def record(self, response: httpx.Response) -> None:
        self.statuses[str(response.status_code)] += 1
        if response.status_code < 500:
            return
        body = response.json() if "json" in response.headers.get("content-type", "") else {}
        if response.status_code != 503 or body.get("code") != "database_busy":
            self.problems.append(f"{response.status_code}: {response.text[:300]}")
        elif "retry-after" not in response.headers:
            self.problems.append(f"503 without Retry-After: {response.text[:200]}")

    async def run(self, stop: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        async with httpx.AsyncClient(base_url=self.url, headers=headers) as client:
            while not stop.is_set():
                try:
                    self.record(await client.get(self.path, timeout=REQUEST_TIMEOUT_S))
                except httpx.TimeoutException:
                    self.problems.append(f"GET {self.path}: no answer in {REQUEST_TIMEOUT_S:g} s")
                except httpx.TransportError as exc:
                    self.problems.append(f"GET {self.path}: {type(exc).__name__}")
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), PROBE_EVERY_S)


# --- the faults --------------------------------------------------------------------------------


@dataclass
class Deployment:
    """What the faults act on."""

    dsn: str
    database: str
    engine_workflow: str
    server: Server
    api_key: str
    quiet_workflow: str
    meter: Meter
    args: argparse.Namespace


async def terminate_every_connection(deployment: Deployment) -> str:
    killed = []
    conn = await asyncpg.connect(deployment.dsn)
    try:
        for i in range(3):
            if i:
                await asyncio.sleep(1.0)
            killed.append(
                await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid() AND pid <> $2",
                    deployment.database,
                    deployment.meter.pid or 0,
                )
            )
    finally:
        await conn.close()
    return f"connections terminated: {killed}"


async def hold_hot_rows(deployment: Deployment) -> str:
    conn = await asyncpg.connect(deployment.dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                "SELECT id FROM workflows WHERE id = $1 FOR UPDATE",
                deployment.engine_workflow,
            )
            contact = await conn.fetchval(
                "SELECT contact_id FROM executions WHERE workflow_id = $1 "
                "ORDER BY contact_id LIMIT 1",
                deployment.engine_workflow,
            )
            await conn.execute("SELECT id FROM contacts WHERE id = $1 FOR UPDATE", contact)
            await asyncio.sleep(deployment.args.lock_seconds)
            raise _Release
    except _Release:
        pass
    finally:
        await conn.close()
    return f"workflow row and one contact held {deployment.args.lock_seconds:g} s"


class _Release(Exception):
    """Ends the holding transaction with a rollback."""


async def exhaust_the_pool(deployment: Deployment) -> str:
    """Three times the pool's connections (pool and overflow) in concurrent version creates on
    a workflow whose row is held, sent again as each is answered, for ``--pool-seconds``."""
    holder = await asyncpg.connect(deployment.dsn)
    statuses: Counter[int] = Counter()
    path = f"{API}/workflows/{deployment.quiet_workflow}/versions"
    body = {"definition": QUIET_DEFINITION, "change_summary": "slow"}
    headers = {"Authorization": f"Bearer {deployment.api_key}"}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    until = time.monotonic() + deployment.args.pool_seconds

    async def slow(client: httpx.AsyncClient) -> None:
        while time.monotonic() < until:
            try:
                response = await client.post(path, json=body, timeout=REQUEST_TIMEOUT_S)
                statuses[response.status_code] += 1
            except httpx.TransportError as exc:
                statuses[-1] += 1
                say(f"  slow request: {type(exc).__name__}")

    try:
        async with holder.transaction():
            await holder.execute(
                "SELECT id FROM workflows WHERE id = $1 FOR UPDATE", deployment.quiet_workflow
            )
            async with httpx.AsyncClient(
                base_url=deployment.server.base_url, headers=headers, limits=limits
            ) as client:
                await asyncio.gather(*(slow(client) for _ in range(3 * 2 * POOL_SIZE)))
    finally:
        await holder.close()
    return f"{3 * 2 * POOL_SIZE} concurrent slow requests, answers {dict(statuses)}"


async def restart_postgresql(deployment: Deployment) -> str:
    command = postgresql_control()
    if command is None:
        raise RuntimeError("restarting PostgreSQL needs REVFLOW_TEST_PG_CONTROL or root")
    await asyncio.to_thread(control_postgresql, command, "stop")
    try:
        await asyncio.sleep(deployment.args.down_seconds)
    finally:
        await asyncio.to_thread(control_postgresql, command, "start")
    return f"{' '.join(command)} stop, {deployment.args.down_seconds:g} s down, start"


INJECT: dict[str, Callable[[Deployment], Awaitable[str]]] = {
    "terminate": terminate_every_connection,
    "lock": hold_hot_rows,
    "pool": exhaust_the_pool,
    "restart": restart_postgresql,
}


def restart_allowed(args: argparse.Namespace) -> bool:
    return bool(
        args.restart_postgresql
        or os.environ.get("REVFLOW_TEST_RESTART_POSTGRESQL")
        or os.environ.get("REVFLOW_TEST_PG_CONTROL")
    )


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Watch:
    """The processes whose exit is a failed check."""

    workers: list[Proc]
    server: Server

    def exited(self) -> list[str]:
        gone = [
            f"worker {i} exited: {proc.log()[-1000:]}"
            for i, proc in enumerate(self.workers)
            if proc.process.poll() is not None
        ]
        if self.server.process.poll() is not None:
            gone.append(f"revflow serve exited: {self.server.log_tail(1000)}")
        return gone


async def measure_fault(
    deployment: Deployment, watch: Watch, name: str, started_at: float
) -> dict[str, Any]:
    args, meter = deployment.args, deployment.meter
    before = time.monotonic()
    steady = meter.rate(before - args.steady_seconds, before)
    say(f"recovery: {name}, steady before it {steady or 0:,.0f} steps/s")
    detail = await INJECT[name](deployment)
    ended = time.monotonic()
    recovered: float | None = None
    after: float | None = None
    while time.monotonic() < ended + args.recovery_timeout and not watch.exited():
        windows = meter.windows(ended, args.window)
        good = [at for at, rate in windows if steady and rate >= args.share * steady]
        if good:
            recovered = good[0] - ended
            break
        await asyncio.sleep(args.poll)
    during = meter.windows(before, args.window)
    lowest = min((rate for at, rate in during if at <= ended + (recovered or 0)), default=None)
    say(f"recovery: {name}: {detail}; back in {recovered} s")
    # The steady window that follows (the next fault's): whether the rate holds once back.
    await asyncio.sleep(args.steady_seconds)
    if recovered is not None:
        after = meter.rate(ended + recovered, ended + recovered + args.steady_seconds)
    return {
        "fault": name,
        "detail": detail,
        "at_s": round(before - started_at, 1),
        "fault_s": round(ended - before, 1),
        "steady_steps_per_s": None if steady is None else round(steady, 1),
        "lowest_steps_per_s": None if lowest is None else round(lowest, 1),
        "recovery_s": None if recovered is None else round(recovered, 1),
        "after_steps_per_s": None if recovered is None or after is None else round(after, 1),
        "met": recovered is not None and recovered <= GOAL_S,
    }


async def failed_executions(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM executions WHERE status = 'failed'"))
    finally:
        await conn.close()


async def drive(deployment: Deployment, watch: Watch, probe: Probe) -> dict[str, Any]:
    args, meter = deployment.args, deployment.meter
    stop = asyncio.Event()
    tasks = [asyncio.create_task(meter.run(stop)), asyncio.create_task(probe.run(stop))]
    started_at = time.monotonic()
    faults: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(args.warmup + args.steady_seconds)
        for name in args.faults:
            if name == "restart" and not restart_allowed(args):
                faults.append({"fault": name, "skipped": SKIPPED_RESTART, "recovery_s": None})
                continue
            faults.append(await measure_fault(deployment, watch, name, started_at))
            if watch.exited():
                break
        # The steady rate at the start, and the timeline of the whole run.
        first = started_at + args.warmup
        steady = meter.rate(first, first + args.steady_seconds)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    timeline = [
        (round(at - started_at, 1), round(rate)) for at, rate in meter.windows(started_at, 1.0)
    ]
    return {"steady": steady, "faults": faults, "timeline": timeline}


SKIPPED_RESTART = (
    "restarts this machine's PostgreSQL: runs with --restart-postgresql, "
    "REVFLOW_TEST_RESTART_POSTGRESQL=1 or REVFLOW_TEST_PG_CONTROL"
)


def run(args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="revflow-recovery-") as tmp,
        fresh_database("postgresql", Path(tmp), args.pg_admin_dsn) as url,
    ):
        workdir = Path(tmp)
        dsn = libpq_dsn(url)
        say(f"recovery: migrate, enroll {args.executions} executions of a looping workload")
        upgrade(url)
        _principal, engine_workflow = asyncio.run(prepare_revflow(url, args.executions, LOOP))
        env = revflow_env(url, SERVER_ENV)
        created = json.loads(run_revflow(["accounts", "create", "faults"], env, workdir))
        worker_env = revflow_env(url)
        with revflow_server(env, workdir) as server:
            headers = {"Authorization": f"Bearer {created['api_key']}"}
            made = httpx.post(
                f"{server.base_url}{API}/workflows",
                headers=headers,
                json={"name": "quiet", "definition": QUIET_DEFINITION, "change_summary": "v1"},
                timeout=60,
            )
            made.raise_for_status()
            quiet = made.json()["id"]
            procs = [
                launch(revflow_command("worker"), worker_env, workdir, f"worker-{i}")
                for i in range(2)
            ]
            with running(procs):
                wait_started(procs, "worker_started")
                asyncio.run(resume(url, _principal, engine_workflow))
                meter = Meter(dsn, args.poll, lag_s=max(args.lock_seconds, 10.0) + 10.0)
                deployment = Deployment(
                    dsn,
                    str(make_url(url).database),
                    str(engine_workflow),
                    server,
                    created["api_key"],
                    quiet,
                    meter,
                    args,
                )
                watch = Watch(procs, server)
                probe = Probe(server.base_url, created["api_key"], f"{API}/workflows/{quiet}")
                outcome = asyncio.run(drive(deployment, watch, probe))
                problems = watch.exited() + probe.problems[:20]
            failed = asyncio.run(failed_executions(dsn))
    if failed:
        problems.append(f"{failed} executions failed")
    return {**outcome, "api_statuses": dict(probe.statuses), "problems": problems}


def summary(
    outcome: dict[str, Any], args: argparse.Namespace, load0: float, database: str
) -> dict[str, Any]:
    faults = outcome["faults"]
    by_name = {f["fault"]: f for f in faults}
    steady = outcome["steady"]
    measured = [f for f in faults if "skipped" not in f]
    return {
        "benchmark": "bench_recovery",
        "config": {
            k: getattr(args, k)
            for k in (
                "executions",
                "faults",
                "warmup",
                "steady_seconds",
                "window",
                "poll",
                "share",
                "lock_seconds",
                "pool_seconds",
                "down_seconds",
                "recovery_timeout",
            )
        }
        | {"workers": 2, "servers": 1, "server_env": SERVER_ENV},
        "environment": {**environment(), "load_1min": [load0, load_average()]},
        "database": database,
        "goal_s": GOAL_S,
        "recovery_steady_steps_per_s": None if steady is None else round(steady, 1),
        **{f"recovery_{name}_s": by_name.get(name, {}).get("recovery_s") for name in FAULTS},
        "faults": faults,
        "timeline": outcome["timeline"],
        "api_statuses": outcome["api_statuses"],
        "problems": outcome["problems"],
        "passed": not outcome["problems"] and all(f["met"] for f in measured),
    }


def print_table(document: dict[str, Any]) -> None:
    env = document["environment"]
    print(f"bench_recovery: {document['config']}")
    print(f"environment: cpus={env['cpus']}, load (1 min) {env['load_1min']}")
    print(f"database: {document['database']}")
    print(f"steady: {document['recovery_steady_steps_per_s']} steps/s")
    print()
    print(f"{'fault':<10} {'steady':>9} {'fault s':>8} {'lowest':>9} {'recovery s':>11}  verdict")
    for fault in document["faults"]:
        if "skipped" in fault:
            print(f"{fault['fault']:<10} skipped: {fault['skipped']}")
            continue
        verdict = "PASS" if fault["met"] else "FAIL"
        print(
            f"{fault['fault']:<10} {fault['steady_steps_per_s']!s:>9} {fault['fault_s']:>8} "
            f"{fault['lowest_steps_per_s']!s:>9} {fault['recovery_s']!s:>11}  {verdict}  "
            f"{fault['detail']}"
        )
    print()
    print(f"API probe: {document['api_statuses']}")
    print(f"checks: {'OK' if not document['problems'] else '; '.join(document['problems'])}")
    print(f"verdict: {'PASS' if document['passed'] else 'FAIL'} (goal: back within {GOAL_S:g} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--executions", type=int, default=20_000)
    parser.add_argument("--faults", nargs="+", choices=FAULTS, default=list(FAULTS))
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--steady-seconds", type=float, default=20.0)
    parser.add_argument("--window", type=float, default=2.0, help="seconds per rate window")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between counts")
    parser.add_argument("--share", type=float, default=0.9, help="of the steady rate")
    parser.add_argument("--lock-seconds", type=float, default=20.0)
    parser.add_argument("--pool-seconds", type=float, default=10.0)
    parser.add_argument("--down-seconds", type=float, default=2.0)
    parser.add_argument("--recovery-timeout", type=float, default=60.0)
    parser.add_argument("--restart-postgresql", action="store_true")
    parser.add_argument("--pg-admin-dsn", default=PG_ADMIN_DSN)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load0 = load_average()
    database = database_version("postgresql", args.pg_admin_dsn)
    document = summary(run(args), args, load0, database)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print_table(document)
    if not document["passed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    exit_on_sigterm()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
