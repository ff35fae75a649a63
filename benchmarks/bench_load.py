"""Many clients at once against two ``revflow serve`` processes and two workers (PostgreSQL).

N concurrent clients (8, 32 and 128 by default) each run a realistic mix for a fixed time —
contact upserts and events (70 %), version creates, draft saves, compares and version lists
(25 %), publishes (5 %) — against two API processes while two ``revflow worker`` processes run
what the events start. Each N runs on a fresh PostgreSQL database with processes of its own, so
that every N starts from the same state: run one after another on one database, the later
levels found the versions, drafts and executions of the earlier ones and measured slower for
that, not for their clients (8 → 128 clients: 127 → 73 requests/s; 128 → 8: 92 → 86).
Reported per N: requests/s, the error rate (transport errors, timeouts, 5xx, and any status
the operation does not expect) and p50/p95/p99 of each operation.

Goals (SPEC §9 under load): no error and no 5xx at any N; requests/s at the highest N at least
90 % of the best N (no collapse under overload: the pool queues or answers 503 quickly); contact
upserts' p99 at most 50 ms at 32 clients. The clients are closed-loop, so at every N here they
keep the machine's cores busy and, by Little's law, the mix's mean latency is N ÷ requests/s;
what the product decides is which calls take that wait. Admission (README, "Ingest before
authoring") gives it to authoring: at 32 clients upserts wait for no turn, and their p99 is
their own round trips, each waiting for a core the servers, workers, database and this
generator share (BENCHMARKS.md, "Where an upsert's time goes at 32 clients").

The clients are ``httpx.AsyncClient``s on asyncio loops (uvloop's) — not Locust: on two cores
Locust's per-request overhead (gevent, its statistics) would take CPU from the servers being
measured, and the generator here is a few dozen lines whose cost is reported (the client's CPU
share). The clients are dealt to one generator process per core (``--generators``, at most 4),
which start their windows at the same wall-clock time: one loop timing all 32 clients made every
response it timed wait behind the others it was reading (that loop woke a task 8 ms late at the
p99), which put a third of the upserts' p99 into the generator's own queue (BENCHMARKS.md, "The
generator's own queue"). Each process reports how late its loop wakes a task
(``generator_lag_ms``): the queue every timed response waits in there too.
Each client has an ``AsyncClient`` of its own with one keep-alive connection, as separate users
would: shared by 64 clients, one ``AsyncClient`` per server cost the generator 2 to 3 times the CPU
per request at 128 clients that it cost at 8 (httpcore's pool goes through its waiting
requests and its connections on every request), CPU the servers on the same cores then lacked.
The CPU of the client, the API processes, the workers and the database's backends is reported
per request, with the share of the machine that was busy (other users' work included).
Each client owns a workflow for its version, draft and publish calls (no client waits on
another's lock), and all clients share one event-triggered workflow and the contact pool.

    python benchmarks/bench_load.py                 # 8, 32, 128 clients, 15 s each
    python benchmarks/bench_load.py --clients 8 32 --seconds 5 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import resource
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    PG_ADMIN_DSN,
    Server,
    Stats,
    database_cpu_seconds,
    environment,
    fresh_database,
    load_average,
    machine_cpu_ticks,
    process_cpu_seconds,
    revflow_command,
    revflow_env,
    revflow_server,
    run_revflow,
    say,
)
from revflow.bench import exit_on_sigterm

API = "/api/v1"
CONTACTS = 2_000
UPSERT_P99_GOAL_MS = 50.0
UPSERT_P99_AT = 32
NO_COLLAPSE_RATIO = 0.9
# One generator process per core (at most 4): one loop timing all the clients made every
# response wait behind the others it was reading (see the module's docstring).
GENERATORS = min(4, os.cpu_count() or 1)

# The mix, by weight (percent).
MIX = {
    "upsert_contact": 50,
    "send_event": 20,
    "create_version": 8,
    "save_draft": 7,
    "compare": 5,
    "list_versions": 5,
    "publish": 5,
}
EXPECTED = {
    "upsert_contact": {200, 201},
    "send_event": {200, 201, 202},
    "create_version": {201},
    "save_draft": {200, 201},
    "compare": {200},
    "list_versions": {200},
    "publish": {200},
}


def own_definition(revision: int) -> dict[str, Any]:
    """A client's workflow at one of its revisions (each differs in content, not shape)."""
    return {
        "trigger": {"type": "manual"},
        "start": "hello",
        "steps": [
            {
                "id": "hello",
                "type": "send_email",
                "subject": f"Hello, revision {revision}",
                "body": "Hi {{contact.fields.first_name}}",
                "next": "pause",
            },
            {"id": "pause", "type": "wait", "duration": "2d", "next": "offer"},
            {
                "id": "offer",
                "type": "condition",
                "if": {"field": "fields.tier", "op": "eq", "value": "gold"},
                "then": "gold",
                "else": "end",
            },
            {"id": "gold", "type": "add_tag", "tag": f"offer-{revision % 7}", "next": "end"},
            {"id": "end", "type": "end"},
        ],
    }


def purchase_definition() -> dict[str, Any]:
    """What the events start: stamp the contact, send a receipt, end (the engine's share)."""
    return {
        "trigger": {"type": "event", "event": "purchased", "reenroll": "after_finish"},
        "start": "stamp",
        "steps": [
            {
                "id": "stamp",
                "type": "update_field",
                "field": "fields.last_purchase",
                "value": "now",
                "next": "receipt",
            },
            {
                "id": "receipt",
                "type": "send_email",
                "subject": "Thank you",
                "body": "Receipt",
                "next": "end",
            },
            {"id": "end", "type": "end"},
        ],
    }


@dataclass
class Level:
    """What N clients did in the measured time."""

    clients: int
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    server_errors: int = 0
    client_cpu_s: float = 0.0
    servers: int = 0
    database_cpu_s: float | None = None
    servers_cpu_s: float = 0.0
    workers_cpu_s: float = 0.0
    machine_busy: float = 0.0  # the share of the machine's CPUs busy in the window, all users
    generators: int = 1  # generator processes
    lags_ms: list[float] = field(default_factory=list)  # the generators' loop lags

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values()) + sum(self.errors.values())

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def cpu_ms_per_request(self, seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds * 1000 / max(1, self.requests), 2)

    def to_dict(self) -> dict[str, Any]:
        operations = {}
        for name, samples in sorted(self.latencies.items()):
            if len(samples) >= 2:
                stats = Stats.of(samples)
                operations[name] = {
                    "n": stats.n,
                    "p50_ms": round(stats.p50, 2),
                    "p95_ms": round(stats.p95, 2),
                    "p99_ms": round(stats.p99, 2),
                    "statuses": dict(self.statuses[name]),
                }
        return {
            "clients": self.clients,
            "servers": self.servers,
            "seconds": round(self.seconds, 2),
            "requests": self.requests,
            "requests_per_s": round(self.requests / self.seconds, 1),
            "errors": self.failed,
            "error_rate": round(self.failed / max(1, self.requests), 5),
            "server_errors_5xx": self.server_errors,
            "error_kinds": dict(self.errors),
            "error_samples": self.error_samples,
            "client_cpu_share": round(self.client_cpu_s / self.seconds, 2),
            "database_cpu_share": None
            if self.database_cpu_s is None
            else round(self.database_cpu_s / self.seconds, 2),
            "servers_cpu_share": round(self.servers_cpu_s / self.seconds, 2),
            "workers_cpu_share": round(self.workers_cpu_s / self.seconds, 2),
            "machine_busy": round(self.machine_busy, 2),
            "generator_processes": self.generators,
            "generator_lag_ms": _lag_summary(self.lags_ms),
            "cpu_ms_per_request": {
                "client": self.cpu_ms_per_request(self.client_cpu_s),
                "servers": self.cpu_ms_per_request(self.servers_cpu_s),
                "workers": self.cpu_ms_per_request(self.workers_cpu_s),
                "database": self.cpu_ms_per_request(self.database_cpu_s),
            },
            "operations": operations,
        }


def _lag_summary(lags: list[float]) -> dict[str, float] | None:
    if len(lags) < 2:
        return None
    stats = Stats.of(lags)
    return {"p50": round(stats.p50, 2), "p99": round(stats.p99, 2), "max": round(max(lags), 2)}


@dataclass
class Own:
    """One client's workflow: its latest version and its draft's revision."""

    workflow_id: str
    latest: int = 1
    draft_revision: int | None = None


@dataclass
class Setup:
    api_key: str
    contacts: list[str]  # contact ids
    owned: list[Own]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _sum_cpu_seconds(pids: list[int]) -> float:
    return sum(v for v in map(process_cpu_seconds, pids) if v is not None)


async def prepare(urls: list[str], api_key: str, clients: int) -> Setup:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=urls[0], headers=headers, timeout=60) as http:
        created = await http.post(
            f"{API}/workflows",
            json={"name": "purchases", "definition": purchase_definition(), "change_summary": "v1"},
        )
        created.raise_for_status()
        published = await http.post(f"{API}/workflows/{created.json()['id']}/versions/1/publish")
        published.raise_for_status()
        owned = []
        for i in range(clients):
            made = await http.post(
                f"{API}/workflows",
                json={"name": f"own-{i}", "definition": own_definition(0), "change_summary": "v1"},
            )
            made.raise_for_status()
            owned.append(Own(made.json()["id"]))
        contacts = []
        for i in range(CONTACTS):
            answer = await http.put(
                f"{API}/contacts/by-external-id/load-{i}",
                json={"email": f"load{i}@example.com", "fields": {"tier": "gold" if i % 3 else ""}},
            )
            answer.raise_for_status()
            contacts.append(answer.json()["id"])
    return Setup(api_key, contacts, owned)


async def one_client(
    index: int,
    http: httpx.AsyncClient,
    setup: Setup,
    level: Level,
    stop_at: float,
    rng: random.Random,
) -> None:
    own = setup.owned[index]
    names = list(MIX)
    weights = [MIX[n] for n in names]
    while time.monotonic() < stop_at:
        operation = rng.choices(names, weights)[0]
        method, path = "GET", ""
        body: dict[str, object] | None = None
        if operation == "upsert_contact":
            n = rng.randrange(CONTACTS * 2)  # half the calls create, half change
            method, path = "PUT", f"{API}/contacts/by-external-id/load-{n}"
            body = {"fields": {"score": rng.randrange(100), "first_name": f"L{n}"}}
        elif operation == "send_event":
            method, path = "POST", f"{API}/events"
            body = {"contact_id": rng.choice(setup.contacts), "name": "purchased", "data": {}}
        elif operation == "create_version":
            method, path = "POST", f"{API}/workflows/{own.workflow_id}/versions"
            body = {
                "definition": own_definition(own.latest),
                "change_summary": f"revision {own.latest}",
                "base_version": own.latest,
            }
        elif operation == "save_draft":
            method, path = "PUT", f"{API}/workflows/{own.workflow_id}/draft"
            body = {
                "definition": own_definition(own.latest + 1000),
                "base_version": own.latest,
                "revision": own.draft_revision,
            }
        elif operation == "compare":
            path = f"{API}/workflows/{own.workflow_id}/versions/compare"
            path += f"?from=1&to={own.latest}"
        elif operation == "list_versions":
            path = f"{API}/workflows/{own.workflow_id}/versions?limit=50"
        else:
            method, path = (
                "POST",
                f"{API}/workflows/{own.workflow_id}/versions/{own.latest}/publish",
            )
        started = time.perf_counter()
        try:
            response = await http.request(method, path, json=body)
        except httpx.TimeoutException:
            level.errors[f"{operation}: timeout"] += 1
            continue
        except httpx.TransportError as exc:
            level.errors[f"{operation}: {type(exc).__name__}"] += 1
            continue
        elapsed_ms = (time.perf_counter() - started) * 1000
        level.statuses[operation][response.status_code] += 1
        if response.status_code >= 500:
            level.server_errors += 1
        if response.status_code not in EXPECTED[operation]:
            level.errors[f"{operation}: {response.status_code}"] += 1
            if len(level.error_samples) < 5:
                level.error_samples.append(f"{method} {path}: {response.text[:300]}")
            continue
        level.latencies[operation].append(elapsed_ms)
        if operation == "create_version":
            own.latest = response.json()["number"]
            own.draft_revision = None  # a new version replaces its author's working draft
        elif operation == "save_draft":
            own.draft_revision = response.json()["revision"]


WARM_UP_S = 1.0
LAG_TICK_S = 0.005


@dataclass
class Part:
    """What one generator process runs: its share of the clients (by index)."""

    urls: list[str]
    setup: Setup
    clients: int
    indices: list[int]
    seconds: float


@dataclass
class PartResult:
    """What one generator process measured in the window."""

    latencies: dict[str, list[float]]
    statuses: dict[str, Counter[int]]
    errors: Counter[str]
    error_samples: list[str]
    server_errors: int
    client_cpu_s: float
    seconds: float
    lags_ms: list[float]


def parts_of(clients: int, processes: int) -> list[list[int]]:
    """The clients' indexes dealt to ``processes`` generator processes in turn (each gets
    clients of both servers, as each client talks to server ``index % servers``)."""
    count = max(1, min(processes, clients))
    return [list(range(k, clients, count)) for k in range(count)]


def merge(level: Level, parts: list[PartResult]) -> None:
    """Add the generator processes' measurements to ``level``."""
    for part in parts:
        for name, samples in part.latencies.items():
            level.latencies[name].extend(samples)
        for name, counts in part.statuses.items():
            level.statuses[name].update(counts)
        level.errors.update(part.errors)
        level.error_samples.extend(part.error_samples[: 5 - len(level.error_samples)])
        level.server_errors += part.server_errors
        level.client_cpu_s += part.client_cpu_s
        level.lags_ms.extend(part.lags_ms)
    level.seconds = max(part.seconds for part in parts)


def run_level(
    servers: list[Server],
    worker_pids: list[int],
    setup: Setup,
    clients: int,
    seconds: float,
    database_url: str,
    processes: int,
) -> Level:
    """The clients, dealt to generator processes that start together; the servers', workers',
    database's and machine's CPU read around the measured window."""
    urls = [server.base_url for server in servers]
    server_pids = [server.pid for server in servers]
    level = Level(clients, seconds, servers=len(urls))
    context = multiprocessing.get_context("spawn")
    ready: Queue[int] = context.Queue()
    done: Queue[PartResult | str] = context.Queue()
    parts = parts_of(clients, processes)
    level.generators = len(parts)
    starts: list[Queue[float]] = [context.Queue() for _ in parts]
    generators = [
        context.Process(
            target=generate,
            args=(Part(urls, setup, clients, indices, seconds), ready, start, done),
            daemon=True,
        )
        for indices, start in zip(parts, starts, strict=True)
    ]
    for process in generators:
        process.start()
    try:
        for _ in generators:
            ready.get(timeout=120)  # each has made its clients
        start_at = time.time() + 0.2  # the warm-up's start, the same wall-clock time in all
        for start in starts:
            start.put(start_at)
        time.sleep(max(0.0, start_at + WARM_UP_S - time.time()))
        servers_before = _sum_cpu_seconds(server_pids)
        workers_before = _sum_cpu_seconds(worker_pids)
        machine_before = machine_cpu_ticks()
        database_before = database_cpu_seconds(database_url)
        results = [done.get(timeout=seconds + 120) for _ in generators]
        failed = [result for result in results if isinstance(result, str)]
        if failed:
            raise RuntimeError(f"a generator process failed: {failed[0]}")
        level.servers_cpu_s = _sum_cpu_seconds(server_pids) - servers_before
        level.workers_cpu_s = _sum_cpu_seconds(worker_pids) - workers_before
        busy, total = machine_cpu_ticks()
        level.machine_busy = (busy - machine_before[0]) / max(1, total - machine_before[1])
        database_after = database_cpu_seconds(database_url)
        # A backend that ended in the window takes its CPU with it: no number then.
        if database_before is not None and database_after is not None:
            spent = database_after - database_before
            level.database_cpu_s = spent if spent >= 0 else None
    except BaseException:
        for process in generators:
            process.terminate()  # ended early (an error, Ctrl-C, SIGTERM): no window to finish
        raise
    finally:
        for process in generators:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    merge(level, [result for result in results if not isinstance(result, str)])
    return level


def generate(
    part: Part, ready: Queue[int], start: Queue[float], done: Queue[PartResult | str]
) -> None:
    """One generator process: its clients on an event loop of its own (uvloop's, as
    ``revflow serve`` runs on: less of the generator's CPU per request). What stops it is
    handed to the parent as text, to raise there."""
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            done.put(runner.run(_generate(part, ready, start)))
    except BaseException as exc:
        ready.put(os.getpid())  # the parent may still be waiting for it to be ready
        done.put(f"{type(exc).__name__}: {exc}")


async def _generate(part: Part, ready: Queue[int], start: Queue[float]) -> PartResult:
    headers = {"Authorization": f"Bearer {part.setup.api_key}"}
    # Each client has an httpx.AsyncClient of its own, with its one connection, as N separate
    # users would: one AsyncClient per server shared by 64 clients cost the generator 3 times
    # the CPU per request at 128 clients that it cost at 8 (httpcore's pool walks its requests
    # and connections on every request), CPU the servers on the same two cores then lacked.
    # Idle connections are dropped well before uvicorn closes them (after 5 s idle): with
    # httpx's own 5 s, a request sent on a connection the server was closing at that moment
    # failed with ReadError, a race of the generator's, not an answer of the server's.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=2.0)
    tls = ssl.create_default_context()  # unused on http://; made once, not once per client
    urls = part.urls
    https = {
        i: httpx.AsyncClient(
            base_url=urls[i % len(urls)], headers=headers, timeout=30, limits=limits, verify=tls
        )
        for i in part.indices
    }
    level = Level(part.clients, part.seconds)
    lags: list[float] = []
    try:
        ready.put(os.getpid())
        start_at = await asyncio.to_thread(start.get)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        # A short warm-up opens the connections; then the measured window, from the same
        # wall-clock time in every generator process.
        warm_up = Level(part.clients, WARM_UP_S)
        stop_at = time.monotonic() + max(0.0, start_at + WARM_UP_S - time.time())
        await asyncio.gather(
            *(
                one_client(i, https[i], part.setup, warm_up, stop_at, random.Random(i))
                for i in part.indices
            )
        )
        await asyncio.sleep(max(0.0, start_at + WARM_UP_S - time.time()))
        cpu_before = _cpu_seconds()
        started = time.monotonic()
        stop_at = started + part.seconds
        lagging = asyncio.create_task(_loop_lags(stop_at, lags))
        await asyncio.gather(
            *(
                one_client(i, https[i], part.setup, level, stop_at, random.Random(1000 + i))
                for i in part.indices
            )
        )
        seconds = time.monotonic() - started
        client_cpu_s = _cpu_seconds() - cpu_before
        await lagging
    finally:
        for http in https.values():
            await http.aclose()
    return PartResult(
        dict(level.latencies),
        dict(level.statuses),
        level.errors,
        level.error_samples,
        level.server_errors,
        client_cpu_s,
        seconds,
        lags,
    )


async def _loop_lags(stop_at: float, lags: list[float]) -> None:
    """How late the generator's own loop wakes a task (ms): its queue, which every response
    it times waits in too, and which a generator that falls behind would show first."""
    while time.monotonic() < stop_at:
        asked = time.perf_counter()
        await asyncio.sleep(LAG_TICK_S)
        lags.append((time.perf_counter() - asked - LAG_TICK_S) * 1000)


@contextmanager
def workers(env: dict[str, str], workdir: Path, count: int) -> Iterator[list[int]]:
    processes = []
    for i in range(count):
        log = (workdir / f"worker-{i}.log").open("wb")
        processes.append(
            subprocess.Popen(
                revflow_command("worker"),
                env=env,
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        yield [process.pid for process in processes]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def verdicts(all_levels: list[dict[str, Any]]) -> dict[str, Any]:
    """Judged on the levels with the most servers (the deployment under test); errors on all."""
    most = max(lv["servers"] for lv in all_levels)
    levels = [lv for lv in all_levels if lv["servers"] == most]
    best = max(levels, key=lambda lv: lv["requests_per_s"])
    highest = max(levels, key=lambda lv: lv["clients"])
    at_32 = next((lv for lv in levels if lv["clients"] == UPSERT_P99_AT), None)
    upsert_p99 = None
    if at_32 is not None and "upsert_contact" in at_32["operations"]:
        upsert_p99 = at_32["operations"]["upsert_contact"]["p99_ms"]
    ratio = round(highest["requests_per_s"] / best["requests_per_s"], 3)
    checks = {
        "no_errors": all(lv["errors"] == 0 and lv["server_errors_5xx"] == 0 for lv in all_levels),
        "no_collapse": ratio >= NO_COLLAPSE_RATIO,
        "upsert_p99_at_32": None if upsert_p99 is None else upsert_p99 <= UPSERT_P99_GOAL_MS,
    }
    return {
        "load_best_requests_per_s": best["requests_per_s"],
        "load_best_clients": best["clients"],
        "load_highest_vs_best": ratio,
        "load_upsert_p99_ms_at_32": upsert_p99,
        "load_errors": sum(lv["errors"] for lv in all_levels),
        "load_5xx": sum(lv["server_errors_5xx"] for lv in all_levels),
        "checks": checks,
        "passed": all(v is not False for v in checks.values()),
    }


def run_fresh_level(args: argparse.Namespace, count: int, clients: int) -> dict[str, Any]:
    """One level on a database of its own, with servers and workers of its own: every level
    starts from the same state (a level run after another would find the versions, drafts and
    executions the earlier ones made, and the workers still running their executions)."""
    with (
        tempfile.TemporaryDirectory(prefix="revflow-load-") as tmp,
        fresh_database("postgresql", Path(tmp), args.pg_admin_dsn) as url,
    ):
        workdir = Path(tmp)
        env = revflow_env(
            url,
            {
                "REVFLOW_MAX_VERSIONS": "1000000",
                "REVFLOW_DB_POOL_SIZE": str(args.pool_size),
                "REVFLOW_LOG_LEVEL": "WARNING",
                "REVFLOW_WORKER_POLL_SECONDS": "0.2",
                **(
                    {"REVFLOW_API_CONCURRENT_REQUESTS": str(args.concurrent_requests)}
                    if args.concurrent_requests
                    else {}
                ),
                **(
                    {"REVFLOW_API_AUTHORING_REQUESTS": str(args.authoring_requests)}
                    if args.authoring_requests
                    else {}
                ),
            },
        )
        run_revflow(["db", "upgrade"], env, workdir)
        created = json.loads(run_revflow(["accounts", "create", "load"], env, workdir))
        with ExitStack() as stack:
            servers = [stack.enter_context(revflow_server(env, workdir)) for _ in range(count)]
            urls = [server.base_url for server in servers]
            worker_pids = stack.enter_context(workers(env, workdir, args.workers))
            setup = asyncio.run(prepare(urls, created["api_key"], clients))
            say(f"load: {clients} clients on {count} servers, {args.workers} workers")
            level = run_level(
                servers, worker_pids, setup, clients, args.seconds, url, args.generators
            )
            return level.to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--seconds", type=float, default=15.0, help="measured time per level")
    parser.add_argument(
        "--server-counts",
        type=int,
        nargs="+",
        default=[2],
        help="run every level with each number of revflow serve processes (e.g. 1 2)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--generators",
        type=int,
        default=GENERATORS,
        help="generator processes the clients are dealt to (default: one per core, at most 4)",
    )
    parser.add_argument("--pool-size", type=int, default=10, help="REVFLOW_DB_POOL_SIZE")
    parser.add_argument(
        "--concurrent-requests",
        type=int,
        default=None,
        help="REVFLOW_API_CONCURRENT_REQUESTS (default: the pool's size)",
    )
    parser.add_argument(
        "--authoring-requests",
        type=int,
        default=None,
        help="REVFLOW_API_AUTHORING_REQUESTS (default: the product's, one)",
    )
    parser.add_argument("--pg-admin-dsn", default=PG_ADMIN_DSN)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load_at_start = load_average()
    levels = []
    for count in args.server_counts:
        for clients in args.clients:
            levels.append(run_fresh_level(args, count, clients))
    document = {
        "benchmark": "bench_load",
        "config": {
            "clients": args.clients,
            "seconds": args.seconds,
            "server_counts": args.server_counts,
            "workers": args.workers,
            "pool_size": args.pool_size,
            "concurrent_requests": args.concurrent_requests or args.pool_size,
            "authoring_requests": args.authoring_requests,
            "mix_percent": MIX,
            "generator": f"httpx.AsyncClient per client, on uvloop, in {args.generators} processes",
        },
        "environment": {**environment(), "load_1min": [load_at_start, load_average()]},
        "goals": {
            "errors": 0,
            "highest_vs_best": NO_COLLAPSE_RATIO,
            "upsert_p99_ms_at_32": UPSERT_P99_GOAL_MS,
        },
        "levels": levels,
        **verdicts(levels),
    }
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print_table(document)
    if not document["passed"]:
        raise SystemExit(1)


def print_table(document: dict[str, Any]) -> None:
    env = document["environment"]
    print(f"bench_load: {document['config']}")
    print(f"environment: cpus={env['cpus']}, load (1 min) {env['load_1min']}")
    print()
    print(
        f"{'servers':>7} {'clients':>7} {'req/s':>8} {'errors':>7} {'5xx':>5} "
        f"{'client CPU':>10} {'DB CPU':>7} {'API CPU':>7} {'workers':>7} {'busy':>5}  "
        "CPU ms/request client/API/workers/DB; operation p99 ms"
    )
    for level in document["levels"]:
        p99s = ", ".join(f"{k} {v['p99_ms']:.1f}" for k, v in level["operations"].items())
        per_request = "/".join(str(v) for v in level["cpu_ms_per_request"].values())
        print(
            f"{level['servers']:>7} {level['clients']:>7} {level['requests_per_s']:>8.1f} "
            f"{level['errors']:>7} {level['server_errors_5xx']:>5} "
            f"{level['client_cpu_share']:>10.2f} {level['database_cpu_share']!s:>7} "
            f"{level['servers_cpu_share']:>7.2f} {level['workers_cpu_share']:>7.2f} "
            f"{level['machine_busy']:>5.2f}  {per_request}; {p99s}"
        )
    print()
    print(
        f"highest N vs best N: {document['load_highest_vs_best']} (goal >= {NO_COLLAPSE_RATIO}); "
        f"upsert p99 at {UPSERT_P99_AT} clients: {document['load_upsert_p99_ms_at_32']} ms "
        f"(goal <= {UPSERT_P99_GOAL_MS}); errors {document['load_errors']}, "
        f"5xx {document['load_5xx']} (goal 0)"
    )
    print(f"verdict: {'PASS' if document['passed'] else 'FAIL'}")


if __name__ == "__main__":
    exit_on_sigterm()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
