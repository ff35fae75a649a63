"""Measured at size (PostgreSQL): the API's reads on a big database beside the same reads on an
empty one, and pruning's rate beside the engine's steps/s while it runs.

Run: ``python benchmarks/bench_size.py [--quick] [--accounts 1000] [--executions 1000000]
[--history 10000000] [--samples 200] [--engine-executions 50000] [--json]``.

Two fresh databases (created on ``--pg-admin-dsn``, migrated, dropped at the end) with the same
shapes per account, written with set-based SQL (``INSERT … SELECT … FROM generate_series``):

- **the floor**: one account — the measured account alone;
- **at size**: ``--accounts`` accounts (the measured one among them), ``--executions``
  executions and ``--history`` history rows in all.

Per account: 4 workflows, each a copy of one workflow made through revflow's service (version
1 retired, version 2 published; 2 drops version 1's ``offer`` step, a breaking change), half as
many contacts as executions, and executions in every status — 60 % completed 200 to 400 days ago,
5 % failed and 5 % cancelled as long ago, 10 % completed this month, 15 % waiting and 5 %
active (retrying later), the live ones on both versions — with 8 to 12 history entries each
(as many as ``--history`` asks on average) and one outbox message for every other execution.

On each database a ``revflow serve`` answers, one request at a time, the measured account's:
list a workflow's executions (first page), get an execution with its history, a version's
stats, compare versions 1 and 2 with their live impact. The ratio at size / floor of each p95
is the number (goal ≤ 1.5).

Then, on the big database, ``--rounds`` rounds (3; 2 with ``--quick``) of ``bench_engine``'s
workload (``prepare_revflow``: ``--engine-executions`` enrolled executions of five steps each,
on an account of their own) run by two ``revflow worker`` processes: once alone (retention 0 in
their environment: they prune nothing), once pruning as a deployment does — the default
retention of 180 days, so every execution finished 200 days ago or more loses its history, and
one of the workers claims the pruning run as it starts, one batch a round beside the engine's,
at most ``prune_busy_share`` of its time while executions are due. The workers start
``PRUNE_HEAD_START_S`` before the engine's window, with nothing due, so pruning is under way
at full speed when the window begins; even rounds run alone first, odd ones pruning first.
Reported: the history rows deleted while nothing was due and during the engine's window (from
PostgreSQL's ``n_tup_del`` of ``execution_history``) as rows/s, the engine's median steps/s
alone and while pruning, and the median of each round's drop (goal <= 10 %).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_engine import (
    STEPS_PER_EXECUTION,
    launch,
    libpq_dsn,
    prepare_revflow,
    resume,
    running,
    wait_done,
    wait_started,
)
from benchmarks.common import (
    PG_ADMIN_DSN,
    Stats,
    database_version,
    environment,
    fresh_database,
    load_average,
    revflow_command,
    revflow_env,
    revflow_server,
    say,
    timed_request,
)
from revflow.audit.service import Actor
from revflow.auth import service as auth_service
from revflow.auth.service import Principal
from revflow.bench import exit_on_sigterm
from revflow.config import Settings
from revflow.db import Database
from revflow.migrate import upgrade
from revflow.models import ApiKey
from revflow.retention.service import PRUNE_JOB
from revflow.workflows import service as workflows
from revflow.workflows.schemas import VersionCreate, WorkflowCreate

GOAL_RATIO = 1.5
GOAL_ENGINE_DROP_PCT = 10.0
WORKFLOWS_PER_ACCOUNT = 4
WORKERS = 2
WARM_UP = 5
FULL = {
    "accounts": 1000,
    "executions": 1_000_000,
    "history": 10_000_000,
    "samples": 200,
    "rounds": 3,
}
QUICK = {"accounts": 100, "executions": 100_000, "history": 1_000_000, "samples": 100, "rounds": 2}
FULL_ENGINE, QUICK_ENGINE = 50_000, 15_000

V1: dict[str, Any] = {
    "trigger": {"type": "tag_added", "tag": "lead"},
    "steps": [
        {
            "id": "welcome",
            "type": "send_email",
            "subject": "Hi {{contact.fields.first_name}}",
            "body": "Welcome aboard.",
            "next": "pause",
        },
        {"id": "pause", "type": "wait", "duration": "2d", "next": "offer"},
        {
            "id": "offer",
            "type": "send_email",
            "subject": "An offer for {{contact.fields.first_name}}",
            "body": "Ten percent off this week.",
            "next": "done",
        },
        {"id": "done", "type": "end"},
    ],
}
V2: dict[str, Any] = {
    "trigger": V1["trigger"],
    "steps": [
        V1["steps"][0],
        {"id": "pause", "type": "wait", "duration": "1d", "next": "done"},
        {"id": "done", "type": "end"},
    ],
}

OPERATIONS: dict[str, str] = {
    "list_executions": "list a workflow's executions",
    "get_execution": "get an execution with its history",
    "stats": "a version's stats",
    "compare": "compare v1 and v2 with live impact",
}

# One statement a step; the measured account and its first workflow come from the service.
LOAD: list[tuple[str, str]] = [
    (
        "accounts",
        """INSERT INTO accounts (id, name, created_at)
        SELECT gen_random_uuid(), 'tenant ' || n, now() - make_interval(days => n % 700)
        FROM generate_series(2, :accounts) n""",
    ),
    (
        "workflows",
        """INSERT INTO workflows (id, account_id, name, description, status, current_version,
            version_count, revision, created_at, updated_at)
        SELECT gen_random_uuid(), a.id, 'Onboarding ' || k, '', 'active', 2, 2, 3,
            now() - interval '500 days', now() - interval '30 days'
        FROM accounts a, generate_series(1, :workflows) k
        WHERE NOT (a.id = :account AND k = 1)""",
    ),
    (
        "versions",
        """INSERT INTO versions (id, account_id, workflow_id, number, status, definition,
            content_hash, change_summary, created_by, created_at, published_at, archived_at,
            parent, semver, tags, warnings, step_count, trigger_type, trigger_key)
        SELECT gen_random_uuid(), w.account_id, w.id, v.number, v.status, v.definition,
            v.content_hash, v.change_summary, v.created_by, v.created_at, v.published_at,
            v.archived_at, v.parent, v.semver, v.tags, v.warnings, v.step_count,
            v.trigger_type, v.trigger_key
        FROM workflows w, versions v
        WHERE v.workflow_id = :workflow AND w.id <> :workflow""",
    ),
    (
        "contacts",
        """INSERT INTO contacts (id, account_id, external_id, email, fields, tags, created_at,
            updated_at)
        SELECT gen_random_uuid(), a.id, 'c' || n, 'contact' || n || '@example.com',
            jsonb_build_object('first_name', 'Contact' || n, 'plan', 'pro'), '["lead"]',
            now() - make_interval(days => n % 600), now() - make_interval(days => n % 30)
        FROM accounts a, generate_series(1, :contacts) n""",
    ),
    (
        "executions",
        """INSERT INTO executions (id, account_id, workflow_id, version, contact_id, status,
            current_step, wake_at, outcome, started_at, finished_at, fired_goals, error)
        SELECT gen_random_uuid(), w.account_id, w.id, s.version, c.id, s.status, s.step,
            s.wake_at, s.outcome, s.started_at, s.finished_at, '[]',
            CASE WHEN s.status = 'failed' THEN 'offer: mailbox unavailable' END
        FROM workflows w
        CROSS JOIN generate_series(1, :per_workflow) i
        CROSS JOIN LATERAL (SELECT
            CASE WHEN i % 20 < 12 OR i % 20 IN (12, 13) THEN 'completed'
                 WHEN i % 20 = 14 THEN 'failed' WHEN i % 20 = 15 THEN 'cancelled'
                 WHEN i % 20 < 19 THEN 'waiting' ELSE 'active' END AS status,
            CASE WHEN i % 20 < 12 OR i % 20 IN (14, 15) THEN 1
                 WHEN i % 20 IN (12, 13) THEN 2 ELSE 1 + i % 2 END AS version,
            CASE WHEN i % 20 < 16 THEN NULL WHEN i % 20 < 19 THEN 'pause'
                 WHEN i % 2 = 1 THEN 'offer' ELSE 'welcome' END AS step,
            CASE WHEN i % 20 >= 16 THEN now() + interval '1 day' + make_interval(hours => i % 48)
                 END AS wake_at,
            CASE WHEN i % 20 IN (14, 15) THEN (ARRAY['failed', 'cancelled'])[i % 20 - 13]
                 WHEN i % 20 < 14 THEN 'completed' END AS outcome,
            CASE WHEN i % 20 IN (12, 13) OR i % 20 >= 16
                 THEN now() - make_interval(days => i % 28, mins => i % 1440)
                 ELSE now() - make_interval(days => 201 + i % 200, mins => i % 1440)
                 END AS started_at
            ) s0
        CROSS JOIN LATERAL (SELECT s0.*, CASE WHEN s0.status IN ('completed', 'failed',
            'cancelled') THEN s0.started_at + interval '2 days' END AS finished_at) s
        JOIN contacts c ON c.account_id = w.account_id AND c.external_id IS NOT NULL
            AND c.external_id = 'c' || (1 + (i - 1) % :contacts)""",
    ),
    (
        "history",
        """INSERT INTO execution_history (account_id, execution_id, at, step, result, detail)
        SELECT e.account_id, e.id, e.started_at + make_interval(mins => k),
            (ARRAY['welcome', 'pause', 'pause', 'offer', 'done'])[1 + k % 5],
            (ARRAY['sent', 'wait_started', 'wait_ended', 'sent', 'completed'])[1 + k % 5],
            jsonb_build_object('message', 'an entry of a realistic size', 'attempt', 1)
        FROM executions e
        CROSS JOIN LATERAL generate_series(1, :history_base + get_byte(uuid_send(e.id), 0) % 5) k
        """,
    ),
    (
        "messages",
        """INSERT INTO messages (id, account_id, channel, kind, "to", subject, body, contact_id,
            execution_id, step, created_at)
        SELECT gen_random_uuid(), e.account_id, 'outbox', 'email', 'contact@example.com',
            'Hi there', 'Welcome aboard.', e.contact_id, e.id, 'welcome', e.started_at
        FROM executions e WHERE get_byte(uuid_send(e.id), 1) % 2 = 0""",
    ),
]


@dataclass(frozen=True)
class Shape:
    """How much one database holds."""

    accounts: int
    executions: int
    history: int

    @property
    def per_workflow(self) -> int:
        return max(1, self.executions // self.accounts // WORKFLOWS_PER_ACCOUNT)

    @property
    def contacts(self) -> int:
        return max(1, self.executions // self.accounts // 2)


@dataclass(frozen=True)
class Tenant:
    """The measured account: its key and what the timed requests read."""

    account_id: uuid.UUID
    key: str
    workflow_id: uuid.UUID


async def make_tenant(url: str) -> Tenant:
    """The measured account and its first workflow, through revflow's own service."""
    settings = Settings(database_url=url)
    db = Database(url, pool_size=1)
    now = dt.datetime.now(dt.UTC)
    try:
        async with db.session(write=True) as session:
            account, key = await auth_service.create_account(
                session, "measured", Actor(user="operator"), now
            )
            key_id = await session.scalar(select(ApiKey.id).where(ApiKey.account_id == account.id))
            assert key_id is not None
            principal = Principal(account_id=account.id, key_id=key_id, user="bench", role="admin")
            workflow, first = await workflows.create_workflow(
                session,
                principal,
                WorkflowCreate(name="Onboarding 1", definition=V1, change_summary="first"),
                settings,
                now,
            )
            assert first is not None
            await workflows.publish(session, principal, workflow, first, now=now)
            second, _ = await workflows.create_version(
                session,
                principal,
                workflow,
                VersionCreate(definition=V2, change_summary="no offer", base_version=1),
                settings,
                now,
            )
            await workflows.publish(session, principal, workflow, second, now=now)
            await session.commit()
            return Tenant(account.id, key, workflow.id)
    finally:
        await db.dispose()


async def load(url: str, tenant: Tenant, shape: Shape) -> dict[str, Any]:
    """Fill the database to ``shape`` with set-based SQL; the rows and seconds of each step."""
    params = {
        "accounts": shape.accounts,
        "workflows": WORKFLOWS_PER_ACCOUNT,
        "account": tenant.account_id,
        "workflow": tenant.workflow_id,
        "contacts": shape.contacts,
        "per_workflow": shape.per_workflow,
        "history_base": max(1, round(shape.history / shape.executions) - 2),
    }
    conn = await asyncpg.connect(libpq_dsn(url))
    steps: dict[str, Any] = {}
    try:
        for name, statement in LOAD:
            say(f"  load {name}")
            sql, values = _positional(statement, params)
            began = time.perf_counter()
            status = await conn.execute(sql, *values)
            steps[name] = {
                "rows": int(status.rsplit(" ", 1)[1]),
                "seconds": round(time.perf_counter() - began, 1),
            }
        say("  VACUUM ANALYZE")
        began = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        steps["vacuum_analyze"] = {"seconds": round(time.perf_counter() - began, 1)}
        counts = {
            table: int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
            for table in ("accounts", "workflows", "versions", "contacts", "executions")
        }
        counts["execution_history"] = int(
            await conn.fetchval("SELECT count(*) FROM execution_history")
        )
        counts["messages"] = int(await conn.fetchval("SELECT count(*) FROM messages"))
        counts["database_mb"] = round(
            await conn.fetchval("SELECT pg_database_size(current_database())") / 2**20
        )
    finally:
        await conn.close()
    return {"rows": counts, "steps": steps}


def _positional(statement: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
    """``:name`` parameters as asyncpg's ``$n``, longest names first."""
    values: list[Any] = []
    for name in sorted(params, key=len, reverse=True):
        if f":{name}" in statement:
            values.append(params[name])
            statement = statement.replace(f":{name}", f"${len(values)}")
    return statement, values


async def targets(url: str, tenant: Tenant) -> tuple[list[str], list[str]]:
    """The measured account's workflows and 200 of its executions (random, seeded)."""
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        flows = [
            str(r["id"])
            for r in await conn.fetch(
                "SELECT id FROM workflows WHERE account_id = $1 ORDER BY name", tenant.account_id
            )
        ]
        executions = [
            str(r["id"])
            for r in await conn.fetch(
                "SELECT id FROM executions WHERE account_id = $1 ORDER BY id", tenant.account_id
            )
        ]
    finally:
        await conn.close()
    return flows, random.Random(7).sample(executions, min(200, len(executions)))


Paths = dict[str, Callable[[int], tuple[str, dict[str, str | int] | None]]]


def paths_of(url: str, tenant: Tenant) -> Paths:
    """The request of each operation for its ``i``-th sample (the targets taken in turn)."""
    flows, executions = asyncio.run(targets(url, tenant))
    return {
        "list_executions": lambda i: (
            f"/api/v1/workflows/{flows[i % len(flows)]}/executions",
            None,
        ),
        "get_execution": lambda i: (f"/api/v1/executions/{executions[i % len(executions)]}", None),
        "stats": lambda i: (f"/api/v1/workflows/{flows[i % len(flows)]}/versions/1/stats", None),
        "compare": lambda i: (
            f"/api/v1/workflows/{flows[i % len(flows)]}/versions/compare",
            {"from": 1, "to": 2},
        ),
    }


def measure(
    databases: list[tuple[str, Tenant]], samples: int, workdir: Path
) -> list[dict[str, Stats]]:
    """p50/p95/p99 of each operation on each database, one request at a time, each against
    its own ``revflow serve``. The databases take turns request by request (the first one
    first on even samples, the other on odd ones), so that both see the same load."""
    paths = [paths_of(url, tenant) for url, tenant in databases]
    times: list[dict[str, list[float]]] = [{name: [] for name in OPERATIONS} for _ in databases]
    with ExitStack() as stack:
        clients = []
        for url, tenant in databases:
            server = stack.enter_context(revflow_server(revflow_env(url), workdir))
            clients.append(
                stack.enter_context(
                    httpx.Client(
                        base_url=server.base_url,
                        headers={"Authorization": f"Bearer {tenant.key}"},
                        timeout=60,
                    )
                )
            )
        for name in OPERATIONS:
            say(f"  {OPERATIONS[name]} ({samples} on each database, in turn)")
            for i in range(-WARM_UP, samples):
                order = list(range(len(databases)))
                if i % 2:
                    order.reverse()
                for d in order:
                    path, params = paths[d][name](i % samples)
                    _, ms = timed_request(clients[d], "GET", path, params=params, expect=200)
                    if i >= 0:
                        times[d][name].append(ms)
    return [{name: Stats.of(t[name]) for name in OPERATIONS} for t in times]


def prepared(
    url: str, tenant_of: Callable[[str], Tenant], shape: Shape
) -> tuple[Tenant, dict[str, Any]]:
    upgrade(url)
    tenant = tenant_of(url)
    began = time.perf_counter()
    loaded = asyncio.run(load(url, tenant, shape))
    loaded["seconds"] = round(time.perf_counter() - began, 1)
    return tenant, loaded


def _make(url: str) -> Tenant:
    return asyncio.run(make_tenant(url))


# --- the engine, alone and while pruning -------------------------------------------------------


PRUNE_HEAD_START_S = 3.0


async def _deleted_history(conn: asyncpg.Connection) -> int:
    """History rows deleted in this database so far (PostgreSQL's statistics, flushed by each
    backend within a second)."""
    return int(
        await conn.fetchval(
            "SELECT n_tup_del FROM pg_stat_user_tables WHERE relname = 'execution_history'"
        )
    )


async def _window(
    url: str, principal: Principal, workflow_id: uuid.UUID, executions: int, procs: Any, prune: bool
) -> tuple[float, dict[str, float]]:
    dsn = libpq_dsn(url)
    conn = await asyncpg.connect(dsn)
    try:
        pruned: dict[str, float] = {}
        if prune:
            began, deleted0 = time.perf_counter(), await _deleted_history(conn)
            await asyncio.sleep(PRUNE_HEAD_START_S)
            ahead = await _deleted_history(conn) - deleted0
            pruned["idle_rows"], pruned["idle_s"] = ahead, time.perf_counter() - began
            deleted0 += ahead

        async def remaining(c: asyncpg.Connection) -> int:
            return int(
                await c.fetchval(
                    "SELECT count(*) FROM executions WHERE account_id = $1 AND workflow_id = $2 "
                    "AND status IN ('active', 'waiting')",
                    principal.account_id,
                    workflow_id,
                )
            )

        t0 = await resume(url, principal, workflow_id)
        t1 = await wait_done(dsn, executions, remaining, procs, "engine")
        if prune:
            pruned["busy_rows"] = await _deleted_history(conn) - deleted0
            pruned["busy_s"] = t1 - t0
        return t1 - t0, pruned
    finally:
        await conn.close()


async def _allow_pruning(url: str) -> None:
    """Let the next worker that starts claim a pruning run (the last one's was moments ago)."""
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        await conn.execute("DELETE FROM scheduled_jobs WHERE name = $1", PRUNE_JOB)
    finally:
        await conn.close()


def engine_run(
    url: str, workdir: Path, prepared_run: tuple[Principal, uuid.UUID], executions: int, prune: bool
) -> dict[str, Any]:
    principal, workflow_id = prepared_run
    retention = {} if prune else {"history": "0", "message": "0"}
    env = revflow_env(
        url,
        {
            "REVFLOW_WORKER_POLL_SECONDS": "0.1",
            **{f"REVFLOW_{kind.upper()}_RETENTION_DAYS": days for kind, days in retention.items()},
        },
    )
    label = "while pruning" if prune else "alone"
    say(f"  engine {label}: {WORKERS} workers, {executions} executions")
    tag = "pruning" if prune else "alone"
    if prune:
        asyncio.run(_allow_pruning(url))
    procs = [
        launch(revflow_command("worker"), env, workdir, f"worker-{tag}-{i}") for i in range(WORKERS)
    ]
    with running(procs):
        wait_started(procs, "worker_started")
        wall, pruned = asyncio.run(_window(url, principal, workflow_id, executions, procs, prune))
    steps = executions * STEPS_PER_EXECUTION
    answer: dict[str, Any] = {"wall_s": round(wall, 2), "steps_per_s": round(steps / wall, 1)}
    for phase in ("idle", "busy") if prune else ():
        rows, seconds = pruned[f"{phase}_rows"], pruned[f"{phase}_s"]
        answer[f"pruned_rows_{phase}"] = int(rows)
        answer[f"prune_rows_per_s_{phase}"] = round(rows / seconds) if seconds else None
    say(f"  engine {label}: {answer}")
    return answer


def engine_round(url: str, workdir: Path, executions: int, index: int) -> dict[str, Any]:
    """The engine alone and while pruning on two fresh accounts of the workload; even rounds
    run alone first, odd ones while pruning first, so that neither always goes first."""
    alone_run = asyncio.run(prepare_revflow(url, executions))
    pruning_run = asyncio.run(prepare_revflow(url, executions))
    if index % 2:
        during = engine_run(url, workdir, pruning_run, executions, prune=True)
        alone = engine_run(url, workdir, alone_run, executions, prune=False)
    else:
        alone = engine_run(url, workdir, alone_run, executions, prune=False)
        during = engine_run(url, workdir, pruning_run, executions, prune=True)
    drop = 100 * (alone["steps_per_s"] - during["steps_per_s"]) / alone["steps_per_s"]
    return {"alone": alone, "while_pruning": during, "drop_pct": round(drop, 1)}


# --- the run -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    big = Shape(args.accounts, args.executions, args.history)
    floor = Shape(1, big.executions // big.accounts, big.history // big.accounts)
    result: dict[str, Any] = {"shape": vars(big), "floor_shape": vars(floor)}
    with tempfile.TemporaryDirectory(prefix="revflow-bench-size-") as tmp:
        workdir = Path(tmp)
        with (
            fresh_database("postgresql", workdir, args.pg_admin_dsn) as empty_url,
            fresh_database("postgresql", workdir, args.pg_admin_dsn) as url,
        ):
            say("[bold]floor[/bold]: one account, the same shapes")
            empty_tenant, result["floor_load"] = prepared(empty_url, _make, floor)
            say(
                f"[bold]at size[/bold]: {big.accounts} accounts, {big.executions} executions, "
                f"{big.history} history rows"
            )
            tenant, result["load"] = prepared(url, _make, big)
            empty, sized = measure(
                [(empty_url, empty_tenant), (url, tenant)], args.samples, workdir
            )
            say("[bold]engine[/bold]: two accounts of bench_engine's workload")
            rounds = [
                engine_round(url, workdir, args.engine_executions, r) for r in range(args.rounds)
            ]
    for name in OPERATIONS:
        result[f"size_{name}_p95_ms"] = round(sized[name].p95, 2)
        result[f"empty_{name}_p95_ms"] = round(empty[name].p95, 2)
        result[f"size_{name}_vs_empty"] = round(sized[name].p95 / empty[name].p95, 2)
        result[f"latency_{name}"] = {
            "at_size": {k: round(v, 2) for k, v in vars(sized[name]).items()},
            "empty": {k: round(v, 2) for k, v in vars(empty[name]).items()},
        }
    for phase in ("idle", "busy"):
        result[f"prune_rows_per_s_{phase}"] = statistics.median(
            r["while_pruning"][f"prune_rows_per_s_{phase}"] or 0 for r in rounds
        )
        result[f"pruned_rows_{phase}"] = sum(
            r["while_pruning"][f"pruned_rows_{phase}"] for r in rounds
        )
    result["engine_steps_per_s_alone"] = statistics.median(
        r["alone"]["steps_per_s"] for r in rounds
    )
    result["engine_steps_per_s_while_pruning"] = statistics.median(
        r["while_pruning"]["steps_per_s"] for r in rounds
    )
    result["engine_drop_while_pruning_pct"] = round(
        statistics.median(r["drop_pct"] for r in rounds), 1
    )
    result["engine_rounds"] = rounds
    return result


def verdicts(result: dict[str, Any]) -> dict[str, bool]:
    checks = {
        f"size_{name}_vs_empty": result[f"size_{name}_vs_empty"] <= GOAL_RATIO
        for name in OPERATIONS
    }
    checks["engine_drop_while_pruning_pct"] = (
        result["engine_drop_while_pruning_pct"] <= GOAL_ENGINE_DROP_PCT
    )
    return checks


def print_table(result: dict[str, Any], args: argparse.Namespace, facts: dict[str, Any]) -> None:
    shape = result["shape"]
    print(
        f"bench_size: {shape['accounts']} accounts, {shape['executions']} executions, "
        f"{shape['history']} history rows; floor: 1 account of the same shapes; "
        f"{args.samples} requests an operation; engine {args.engine_executions} executions"
    )
    print("environment: " + ", ".join(f"{k}={v}" for k, v in environment().items()))
    for key, value in facts.items():
        print(f"{key}: {value}")
    print(f"loaded: {result['load']['rows']} in {result['load']['seconds']} s")
    print()
    checks = verdicts(result)
    print(f"{'operation':<38} {'empty p95':>10} {'size p95':>10} {'ratio':>7} {'goal':>7}  verdict")
    for name, label in OPERATIONS.items():
        ok = checks[f"size_{name}_vs_empty"]
        print(
            f"{label:<38} {result[f'empty_{name}_p95_ms']:>10.2f} "
            f"{result[f'size_{name}_p95_ms']:>10.2f} {result[f'size_{name}_vs_empty']:>6.2f}x "
            f"{'<= 1.5x':>7}  {'PASS' if ok else 'FAIL'}"
        )
    print()
    print(
        f"pruning: {result['prune_rows_per_s_idle']} rows/s with nothing due, "
        f"{result['prune_rows_per_s_busy']} rows/s beside the engine; "
        f"engine {result['engine_steps_per_s_alone']:,.0f} steps/s alone, "
        f"{result['engine_steps_per_s_while_pruning']:,.0f} while pruning: drop "
        f"{result['engine_drop_while_pruning_pct']} % (goal <= {GOAL_ENGINE_DROP_PCT:g} %)  "
        f"{'PASS' if checks['engine_drop_while_pruning_pct'] else 'FAIL'}"
    )
    for i, r in enumerate(result["engine_rounds"]):
        print(
            f"  round {i + 1}: {r['alone']['steps_per_s']:,.0f} steps/s alone, "
            f"{r['while_pruning']['steps_per_s']:,.0f} while pruning "
            f"(pruning {r['while_pruning']['prune_rows_per_s_idle']} rows/s before it, "
            f"{r['while_pruning']['prune_rows_per_s_busy']} beside it): drop {r['drop_pct']} %"
        )
    print()
    print(f"verdict: {'PASS' if all(checks.values()) else 'FAIL'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    parser.add_argument("--accounts", type=int)
    parser.add_argument("--executions", type=int)
    parser.add_argument("--history", type=int)
    parser.add_argument("--samples", type=int)
    parser.add_argument("--engine-executions", type=int)
    parser.add_argument(
        "--rounds",
        type=int,
        help="engine rounds, each alone and while pruning; the drop is the median of theirs",
    )
    parser.add_argument("--pg-admin-dsn", default=PG_ADMIN_DSN, help="where to CREATE DATABASE")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.engine_executions is None:
        args.engine_executions = QUICK_ENGINE if args.quick else FULL_ENGINE
    if args.executions < args.accounts * WORKFLOWS_PER_ACCOUNT:
        parser.error("--executions must give every workflow of every account one execution")

    load_at_start = load_average()
    facts: dict[str, Any] = {"database": database_version("postgresql", args.pg_admin_dsn)}
    result = run(args)
    facts["load average (1 min)"] = f"{load_at_start} at start, {load_average()} at end"
    passed = all(verdicts(result).values())
    if args.json:
        document = {
            **result,
            "goals": {"ratio_vs_empty": GOAL_RATIO, "engine_drop_pct": GOAL_ENGINE_DROP_PCT},
            "passed": passed,
            "config": {k: v for k, v in vars(args).items() if k not in ("json", "pg_admin_dsn")},
            "environment": {**environment(), "load_1min": [load_at_start, load_average()]},
            "facts": facts,
        }
        print(json.dumps(document, indent=2))
    else:
        print_table(result, args, facts)
    if not passed:
        raise SystemExit(1)


if __name__ == "__main__":
    exit_on_sigterm()
    main()
