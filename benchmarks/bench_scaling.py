"""Throughput with more processes: the engine's steps/s and the API's requests/s with 1, 2 and 4
``revflow worker`` processes and 1 and 2 ``revflow serve`` processes on one PostgreSQL.

Run: ``python benchmarks/bench_scaling.py [--workers 1 2 4] [--api-processes 1 2]
[--executions 50000] [--seconds 10] [--warmup 2] [--api-rate 50] [--json]``.

Every configuration (each worker count with each API-process count, API-process counts outer)
runs on a fresh database (``CREATE DATABASE`` with a unique name on ``--pg-admin-dsn``, migrated,
dropped at the end):

- set-up (not timed): the engine benchmark's backlog (``bench_engine.prepare_revflow``: an
  account, the five-step workload ``update_field`` → ``add_tag`` → ``condition`` →
  ``send_email`` → ``end`` published, ``--executions`` contacts enrolled and due, the workflow
  paused); a second account, the shop, whose published workflow starts on the event
  ``purchased`` (stamp the contact, send a receipt, end: three steps);
- the processes: the API processes (``revflow serve``) and the workers (``revflow worker``),
  each ready (``/readyz`` answers 200, the worker logged ``worker_started``) before anything is
  timed;
- the API load, from the moment the processes are ready to the end of the window: the shop's
  light, steady traffic — ``--api-rate`` requests per second offered in total, paced by 8
  clients of one asyncio loop in this process (``httpx.AsyncClient``), spread evenly over the
  API processes: contact upserts by external id 50 % (half of them new contacts), events 25 %
  (each starts the shop's workflow for its contact, or advances nothing when one is running),
  reads 25 % (a contact 15 %, the first page of the shop workflow's executions 10 %). A client
  that falls behind its pace sends at once, so requests/s below the offered rate means the API
  did not keep up;
- the window: the backlog's workflow is resumed; after ``--warmup`` s (the workers' first
  batches), ``--seconds`` s in which are counted the steps (history rows written, both
  accounts), the API answers and their latency, and the CPU (``/proc``) of the workers, of the
  API processes, of the run database's PostgreSQL backends (``common.database_cpu_seconds``),
  of this process (the load generator) and of the whole machine, each in cores busy.

Checks: every API answer had its expected status, and the backlog lasted past the window (else
the steps/s would be the end of the backlog, not the throughput: raise ``--executions``). A row
whose check failed has a null rate. Each row stands beside the first one (1 worker, 1 API
process) of the same run, as ratios: other work on a shared machine moves absolute numbers, so
only rows of one run are compared. Information, no goal: exits 1 only when a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_engine import (
    launch,
    libpq_dsn,
    prepare_revflow,
    running,
    set_workflow_status,
    wait_started,
)
from benchmarks.bench_load import purchase_definition
from benchmarks.common import (
    PG_ADMIN_DSN,
    Server,
    database_cpu_seconds,
    database_version,
    environment,
    fresh_database,
    load_average,
    machine_cpu_ticks,
    process_cpu_seconds,
    revflow_command,
    revflow_env,
    revflow_server,
    say,
)
from revflow.audit.service import Actor
from revflow.auth import service as auth_service
from revflow.auth.service import Principal
from revflow.bench import exit_on_sigterm
from revflow.config import Settings
from revflow.db import Database
from revflow.migrate import upgrade

API = "/api/v1"
CLIENTS = 8
MIX = {"upsert_contact": 50, "send_event": 25, "get_contact": 15, "list_executions": 10}
EXPECTED = {
    "upsert_contact": {200, 201},
    "send_event": {202},
    "get_contact": {200},
    "list_executions": {200},
}
REQUEST_TIMEOUT_S = 30.0


# --- the API load ------------------------------------------------------------------------------


@dataclass
class Answer:
    """One API request: when it finished, what it was, how it went."""

    done: float  # perf_counter at the end of the answer
    operation: str
    ms: float
    ok: bool
    error: str = ""


@dataclass
class Load:
    """The shop's traffic: its key, its workflow, the contacts known so far, what was answered."""

    account_id: uuid.UUID
    api_key: str
    workflow_id: str = ""
    contacts: list[tuple[str, int]] = field(default_factory=list)  # (id, external number)
    created: int = 0  # external numbers handed out
    answers: list[Answer] = field(default_factory=list)


async def _request(
    http: httpx.AsyncClient, operation: str, load: Load, rng: random.Random
) -> Answer:
    method, path, body = "GET", "", None
    if operation != "upsert_contact" and not load.contacts:
        operation = "upsert_contact"  # nothing to read or send an event about yet
    if operation == "upsert_contact":
        if load.contacts and rng.random() < 0.5:
            n = rng.choice(load.contacts)[1]
        else:
            n, load.created = load.created, load.created + 1
        method, path = "PUT", f"{API}/contacts/by-external-id/shop-{n}"
        body = {"email": f"shop{n}@example.com", "fields": {"score": rng.randrange(100)}}
    elif operation == "send_event":
        method, path = "POST", f"{API}/events"
        body = {"contact_id": rng.choice(load.contacts)[0], "name": "purchased", "data": {}}
    elif operation == "get_contact":
        path = f"{API}/contacts/{rng.choice(load.contacts)[0]}"
    else:
        path = f"{API}/workflows/{load.workflow_id}/executions?limit=20"
    started = time.perf_counter()
    try:
        response = await http.request(method, path, json=body)
    except httpx.HTTPError as failure:
        now = time.perf_counter()
        return Answer(now, operation, (now - started) * 1000, False, type(failure).__name__)
    now = time.perf_counter()
    ok = response.status_code in EXPECTED[operation]
    if ok and operation == "upsert_contact" and response.status_code == 201:
        load.contacts.append((response.json()["id"], int(path.rsplit("-", 1)[1])))
    error = "" if ok else f"{method} {path}: {response.status_code} {response.text[:200]}"
    return Answer(now, operation, (now - started) * 1000, ok, error)


async def _client(
    index: int, http: httpx.AsyncClient, load: Load, rate: float, stop: asyncio.Event
) -> None:
    """Send one request every ``CLIENTS / rate`` seconds until ``stop``; when behind, at once."""
    rng = random.Random(index)
    names, weights = list(MIX), list(MIX.values())
    interval = CLIENTS / rate
    due = time.perf_counter() + interval * index / CLIENTS
    while not stop.is_set():
        wait = due - time.perf_counter()
        if wait > 0:
            try:
                await asyncio.wait_for(stop.wait(), wait)
                return
            except TimeoutError:
                pass
        due = max(due + interval, time.perf_counter() - interval)
        load.answers.append(await _request(http, rng.choices(names, weights)[0], load, rng))


async def _shop_workflow(base_url: str, load: Load) -> None:
    """The shop's event-triggered workflow, created and published through the API."""
    headers = {"Authorization": f"Bearer {load.api_key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as http:
        created = await http.post(
            f"{API}/workflows",
            json={"name": "purchases", "definition": purchase_definition(), "change_summary": "v1"},
        )
        created.raise_for_status()
        load.workflow_id = created.json()["id"]
        published = await http.post(f"{API}/workflows/{load.workflow_id}/versions/1/publish")
        published.raise_for_status()


async def _shop(url: str) -> Load:
    """The shop: a second account and its admin key, in the clear; its traffic to come."""
    db = Database(url, pool_size=1)
    try:
        async with db.session(write=True) as session:
            account, key = await auth_service.create_account(
                session, "shop", Actor(user="operator"), dt.datetime.now(dt.UTC)
            )
            await session.commit()
        return Load(account.id, key)
    finally:
        await db.dispose()


# --- one configuration -------------------------------------------------------------------------


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Reading:
    """What the counters say at one edge of the window."""

    at: float
    steps: int
    shop_steps: int
    workers_cpu_s: float
    api_cpu_s: float
    database_cpu_s: float | None
    client_cpu_s: float
    machine: tuple[int, int]
    load_1min: float


async def _read(
    conn: asyncpg.Connection,
    url: str,
    shop_account: uuid.UUID,
    worker_pids: list[int],
    servers: list[Server],
) -> Reading:
    steps = int(await conn.fetchval("SELECT count(*) FROM execution_history"))
    shop_steps = int(
        await conn.fetchval(
            "SELECT count(*) FROM execution_history WHERE account_id = $1", shop_account
        )
    )
    return Reading(
        at=time.perf_counter(),
        steps=steps,
        shop_steps=shop_steps,
        workers_cpu_s=sum(v for v in map(process_cpu_seconds, worker_pids) if v is not None),
        api_cpu_s=sum(v for v in (s.cpu_seconds() for s in servers) if v is not None),
        database_cpu_s=database_cpu_seconds(url),
        client_cpu_s=_own_cpu_s(),
        machine=machine_cpu_ticks(),
        load_1min=load_average(),
    )


@dataclass
class Row:
    """One configuration's window."""

    workers: int
    api_processes: int
    window_s: float
    steps: int
    shop_steps: int
    api_requests: int
    api_offered_per_s: float
    api_p50_ms: float | None
    api_p95_ms: float | None
    api_errors: int
    worker_cpu_cores: float
    api_cpu_cores: float
    database_cpu_cores: float | None
    client_cpu_cores: float
    machine_busy_cores: float
    other_cores: float | None
    """The machine's busy cores less the measured processes': other work, PostgreSQL's
    background processes, the kernel."""
    load_1min: list[float]
    backlog_left: int
    problems: list[str] = field(default_factory=list)

    @property
    def steps_per_s(self) -> float | None:
        return None if self.problems else round(self.steps / self.window_s, 1)

    @property
    def api_requests_per_s(self) -> float | None:
        return None if self.problems else round(self.api_requests / self.window_s, 1)

    @property
    def cpu_ms_per_1k_steps(self) -> float | None:
        """Workers' and database's CPU per 1,000 steps: grows when they contend."""
        if self.problems or not self.steps or self.database_cpu_cores is None:
            return None
        cpu_s = (self.worker_cpu_cores + self.database_cpu_cores) * self.window_s
        return round(cpu_s * 1e6 / self.steps, 1)


async def _window(
    args: argparse.Namespace,
    url: str,
    principal: Principal,
    backlog: uuid.UUID,
    load: Load,
    worker_pids: list[int],
    servers: list[Server],
) -> Row:
    """Run the API load, resume the backlog, and measure ``--seconds`` after ``--warmup``."""
    dsn = libpq_dsn(url)
    conn = await asyncpg.connect(dsn)
    headers = {"Authorization": f"Bearer {load.api_key}"}
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    https = [
        httpx.AsyncClient(
            base_url=s.base_url, headers=headers, timeout=REQUEST_TIMEOUT_S, limits=limits
        )
        for s in servers
    ]
    stop = asyncio.Event()
    clients = [
        asyncio.create_task(_client(i, https[i % len(https)], load, args.api_rate, stop))
        for i in range(CLIENTS)
    ]
    db = Database(url, pool_size=1)
    try:
        await set_workflow_status(db, principal, backlog, "active")
        await asyncio.sleep(args.warmup)
        first = await _read(conn, url, load.account_id, worker_pids, servers)
        await asyncio.sleep(args.seconds)
        last = await _read(conn, url, load.account_id, worker_pids, servers)
        backlog_left = int(
            await conn.fetchval(
                "SELECT count(*) FROM executions WHERE workflow_id = $1 "
                "AND status IN ('active', 'waiting')",
                backlog,
            )
        )
    finally:
        stop.set()
        await asyncio.gather(*clients)
        for http in https:
            await http.aclose()
        await db.dispose()
        await conn.close()
    return _row(args, len(worker_pids), len(servers), first, last, load, backlog_left)


def _row(
    args: argparse.Namespace,
    workers: int,
    api_processes: int,
    first: Reading,
    last: Reading,
    load: Load,
    backlog_left: int,
) -> Row:
    window = last.at - first.at
    answers = [a for a in load.answers if first.at <= a.done <= last.at]
    errors = [a for a in answers if not a.ok]
    latencies = sorted(a.ms for a in answers if a.ok)
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else None
    busy = (last.machine[0] - first.machine[0]) / max(last.machine[1] - first.machine[1], 1)
    database = (
        None
        if first.database_cpu_s is None or last.database_cpu_s is None
        else (last.database_cpu_s - first.database_cpu_s) / window
    )
    machine = busy * (os.cpu_count() or 1)
    measured = (
        last.workers_cpu_s
        - first.workers_cpu_s
        + last.api_cpu_s
        - first.api_cpu_s
        + last.client_cpu_s
        - first.client_cpu_s
    ) / window
    problems = [f"API: {a.operation}: {a.error}" for a in errors[:3]]
    if len(errors) > 3:
        problems.append(f"API: {len(errors) - 3} more errors")
    if backlog_left < workers * Settings().worker_batch_size:
        # Fewer than a full batch per worker left: the last claims were short, the rate is the
        # backlog's end, not the throughput.
        problems.append("the backlog ran out before the window ended: raise --executions")
    if database is not None and database < 0:
        database, problems = None, [*problems, "a database backend ended inside the window"]
    return Row(
        workers=workers,
        api_processes=api_processes,
        window_s=round(window, 3),
        steps=last.steps - first.steps,
        shop_steps=last.shop_steps - first.shop_steps,
        api_requests=len(answers) - len(errors),
        api_offered_per_s=args.api_rate,
        api_p50_ms=None if cuts is None else round(cuts[49], 1),
        api_p95_ms=None if cuts is None else round(cuts[94], 1),
        api_errors=len(errors),
        worker_cpu_cores=round((last.workers_cpu_s - first.workers_cpu_s) / window, 2),
        api_cpu_cores=round((last.api_cpu_s - first.api_cpu_s) / window, 2),
        database_cpu_cores=None if database is None else round(database, 2),
        client_cpu_cores=round((last.client_cpu_s - first.client_cpu_s) / window, 2),
        machine_busy_cores=round(machine, 2),
        other_cores=None if database is None else round(machine - measured - database, 2),
        load_1min=[first.load_1min, last.load_1min],
        backlog_left=backlog_left,
        problems=problems,
    )


def run_configuration(args: argparse.Namespace, workers: int, api_processes: int) -> Row:
    """One row: a fresh database, its backlog and shop, the processes, the window."""
    label = f"{workers} worker{'s' if workers > 1 else ''}, {api_processes} API"
    with (
        tempfile.TemporaryDirectory(prefix="revflow-bench-scaling-") as tmp,
        fresh_database("postgresql", Path(tmp), args.pg_admin_dsn) as url,
        ExitStack() as stack,
    ):
        workdir = Path(tmp)
        say(f"[bold]{label}[/bold]: migrate, set up {args.executions:,} enrolled contacts")
        upgrade(url)
        principal, backlog = asyncio.run(prepare_revflow(url, args.executions))
        load = asyncio.run(_shop(url))
        env = revflow_env(url, {"REVFLOW_WORKER_POLL_SECONDS": str(args.poll_seconds)})
        servers = [stack.enter_context(revflow_server(env, workdir)) for _ in range(api_processes)]
        asyncio.run(_shop_workflow(servers[0].base_url, load))
        procs = [
            launch(revflow_command("worker"), env, workdir, f"worker-{i}") for i in range(workers)
        ]
        stack.enter_context(running(procs))
        wait_started(procs, "worker_started")
        pids = [p.process.pid for p in procs]
        row = asyncio.run(_window(args, url, principal, backlog, load, pids, servers))
    say(
        f"[bold]{label}[/bold]: {row.steps:,} steps in {row.window_s:.2f} s = "
        f"{row.steps / row.window_s:,.0f}/s, API {row.api_requests / row.window_s:,.1f} req/s"
        + (f"; problems: {'; '.join(row.problems)}" if row.problems else "")
    )
    return row


# --- report ------------------------------------------------------------------------------------


def _ratio(value: float | None, baseline: float | None) -> float | None:
    return None if value is None or not baseline else round(value / baseline, 2)


def document(args: argparse.Namespace, rows: list[Row], facts: dict[str, Any]) -> dict[str, Any]:
    """The JSON ``revflow bench`` reads: the rows with their ratios to the first, and a summary."""
    baseline = rows[0]
    listed = [
        {
            **asdict(row),
            "steps_per_s": row.steps_per_s,
            "api_requests_per_s": row.api_requests_per_s,
            "cpu_ms_per_1k_steps": row.cpu_ms_per_1k_steps,
            "steps_per_s_vs_baseline": _ratio(row.steps_per_s, baseline.steps_per_s),
            "api_requests_per_s_vs_baseline": _ratio(
                row.api_requests_per_s, baseline.api_requests_per_s
            ),
        }
        for row in rows
    ]
    rated = [r for r in listed if r["steps_per_s"] is not None]
    best = max(rated, key=lambda r: r["steps_per_s"], default=None)
    cores = [r["database_cpu_cores"] for r in listed if r["database_cpu_cores"] is not None]
    problems = [
        f"{r['workers']} workers, {r['api_processes']} API: {p}"
        for r in listed
        for p in r["problems"]
    ]
    return {
        "benchmark": "bench_scaling",
        "scaling_baseline_steps_per_s": baseline.steps_per_s,
        "scaling_best_steps_per_s": None if best is None else best["steps_per_s"],
        "scaling_best_vs_baseline": None if best is None else best["steps_per_s_vs_baseline"],
        "scaling_best_workers": None if best is None else best["workers"],
        "scaling_best_api_processes": None if best is None else best["api_processes"],
        "scaling_database_cpu_cores_max": max(cores, default=None),
        "baseline": {"workers": baseline.workers, "api_processes": baseline.api_processes},
        "rows": listed,
        "config": config(args),
        "environment": environment(),
        "facts": facts,
        "problems": problems,
        "passed": not problems,
    }


def config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "workers": args.workers,
        "api_processes": args.api_processes,
        "executions": args.executions,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "api_rate": args.api_rate,
        "api_clients": CLIENTS,
        "api_mix_percent": MIX,
        "REVFLOW_WORKER_POLL_SECONDS": args.poll_seconds,
    }


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(doc: dict[str, Any]) -> None:
    print("bench_scaling: " + ", ".join(f"{k}={v}" for k, v in doc["config"].items()))
    print("environment: " + ", ".join(f"{k}={v}" for k, v in doc["environment"].items()))
    for key, value in doc["facts"].items():
        print(f"{key}: {value}")
    print()
    header = (
        f"{'workers':>7} {'API':>3} {'steps/s':>8} {'x base':>6} {'API req/s':>9} {'x base':>6} "
        f"{'API p95 ms':>10} {'DB cores':>8} {'wrk cores':>9} {'API cores':>9} {'client':>6} "
        f"{'machine':>7} {'other':>5} {'CPU ms/1k':>9} {'load':>11}  check"
    )
    rule = "-" * len(header)
    print(header)
    print(rule)
    for r in doc["rows"]:
        load = f"{r['load_1min'][0]:.1f}->{r['load_1min'][1]:.1f}"
        print(
            f"{r['workers']:>7} {r['api_processes']:>3} {_fmt(r['steps_per_s'], ',.0f'):>8} "
            f"{_fmt(r['steps_per_s_vs_baseline'], '.2f'):>6} "
            f"{_fmt(r['api_requests_per_s'], '.1f'):>9} "
            f"{_fmt(r['api_requests_per_s_vs_baseline'], '.2f'):>6} "
            f"{_fmt(r['api_p95_ms'], '.1f'):>10} {_fmt(r['database_cpu_cores'], '.2f'):>8} "
            f"{r['worker_cpu_cores']:>9.2f} {r['api_cpu_cores']:>9.2f} "
            f"{r['client_cpu_cores']:>6.2f} {r['machine_busy_cores']:>7.2f} "
            f"{_fmt(r['other_cores'], '.2f'):>5} "
            f"{_fmt(r['cpu_ms_per_1k_steps'], '.1f'):>9} {load:>11}  "
            + ("OK" if not r["problems"] else "; ".join(r["problems"]))
        )
    print(rule)
    print(
        "steps/s: history rows written in the window (both accounts); API req/s: answers with "
        f"their expected status ({doc['config']['api_rate']:g}/s offered); x base: over the "
        "first row (1 worker, 1 API process) of this run. Cores: CPU seconds per second of the "
        "window — DB: the run database's PostgreSQL backends; wrk: the workers; API: the "
        "revflow serve processes; client: the load generator; machine: every CPU of the "
        "machine, whatever runs there; other: machine less the measured processes (other work, "
        "PostgreSQL's background processes, the kernel). CPU ms/1k: workers' and database's "
        "CPU per 1,000 steps. "
        "load: 1-minute load average at the window's start and end."
    )
    print()
    print(f"checks: {'OK' if doc['passed'] else '; '.join(doc['problems'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--api-processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--executions",
        type=int,
        default=150_000,
        help="the backlog of each configuration (five steps each); it must outlast the window",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="the measured window")
    parser.add_argument("--warmup", type=float, default=2.0, help="from the resume to the window")
    parser.add_argument(
        "--api-rate", type=float, default=50.0, help="API requests per second offered in total"
    )
    parser.add_argument(
        "--poll-seconds", type=float, default=0.1, help="REVFLOW_WORKER_POLL_SECONDS"
    )
    parser.add_argument("--pg-admin-dsn", default=PG_ADMIN_DSN, help="where to CREATE DATABASE")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if min(args.workers + args.api_processes) < 1 or args.executions < 1 or args.api_rate <= 0:
        parser.error("--workers, --api-processes, --executions and --api-rate must be positive")
    load_at_start = load_average()
    started = time.monotonic()
    facts: dict[str, Any] = {"database": database_version("postgresql", args.pg_admin_dsn)}
    rows = [
        run_configuration(args, workers, api_processes)
        for api_processes in args.api_processes
        for workers in args.workers
    ]
    facts["load average (1 min)"] = f"{load_at_start} at start, {load_average()} at end"
    facts["duration_s"] = round(time.monotonic() - started, 1)
    doc = document(args, rows, facts)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print_table(doc)
    if not doc["passed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    exit_on_sigterm()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
