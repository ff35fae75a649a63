"""Benchmark migrations: executions moved per minute by the batch runner on PostgreSQL.

Run: ``python benchmarks/bench_migration.py [--executions 100000] [--batch-size 5000]
[--naive-executions 10000] [--explain] [--pg-admin-dsn DSN] [--json]``.

On a fresh PostgreSQL database (``CREATE DATABASE`` with a unique name on ``--pg-admin-dsn``,
migrated with ``revflow.migrate.upgrade``, dropped at the end, also on failure):

- set-up (not timed): one account; a workflow of ten steps, four of them waits (``welcome`` →
  ``wait_a`` 1d → ``tag_a`` → ``wait_b`` 2d → ``check`` → [``offer``] → ``wait_c`` 3d →
  ``nudge`` → ``wait_d`` 7d → ``done``), version 1 published through the API (in-process);
  ``--executions`` contacts and as many executions of version 1, written with ``INSERT …
  SELECT`` (no engine run): all ``waiting``, 10 % on ``wait_a`` and 30 % on each of ``wait_b``,
  ``wait_c``, ``wait_d``, each with the history the engine would have written to get there.
  Version 2 renames ``wait_a`` to ``pause_a`` (the migration's mapping moves the 10 % on it)
  and shortens ``wait_c`` to 2d (the migration's ``wait_policy: restart`` gives the 30 % on it
  a new wake time: now + 2d); the others keep their step and wake time. The second workflow
  the naive baseline migrates (``--naive-executions``, same shape) is set up in the same
  database. Then ``VACUUM ANALYZE``: the steady state of a database autovacuum looks after.
- the runner, timed: ``POST /workflows/{id}/versions/2/migrate`` (immediate, ``--batch-size``;
  the snapshot of the executions into the migration's items), then the runner itself —
  ``revflow.migrations.runner.run_next`` called in a loop in this process (not a worker
  process: no polling interval in the measurement) until it settles nothing more. The rate is
  executions / (start + batches); the rate of the batches alone is printed too.
- the check (not timed): every execution on version 2, on the right step, waiting, with the
  right wake time; exactly one ``migrated`` history entry each, naming this migration; exactly
  one ``migration_items`` row each, ``migrated``, holding where it was (step, status, wake time).
- the naive baseline, timed: the same migration of the second workflow's executions one per
  transaction through the ORM — ``session.get(Execution)`` (no row lock), set ``version``,
  ``current_step``,
  ``wake_at`` (and ``wait_started_at`` on a restart), ``session.add(HistoryEntry(…))``,
  ``commit`` — with no restore record. Its rate is measured on ``--naive-executions`` (10,000
  by default) and extrapolated to ``--executions``; the same check (minus restore records).

The start's and the batches' statements are timed by kind (SQLAlchemy cursor events, so the
time as this client sees it: the server's work, the round trip and the driver), and the CPU
time of this process and of the database's server processes (Linux ``/proc``, local server)
during the batches is printed, so the output says where the time goes. ``--explain`` adds the
EXPLAIN ANALYZE of every statement of the middle batch (``auto_explain`` sent to this client;
needs a superuser for ``LOAD``; that batch's time includes the instrumentation).

The floor, timed in the same run on the same database (a third workflow of ``--executions``
executions, set up the same way, run before the runner, then ``VACUUM ANALYZE`` so the runner
starts from the same steady state): the same move as set-based SQL batches of ``--batch-size``
on one asyncpg connection — one statement per batch locks the next executions of version 1 in
id order, moves them (mapping, restart), writes their ``migrated`` history entries and their
restore records (``migration_items``, under a migration row of its own) — checked like the
runner. ``migration_vs_floor`` is the runner's rate over the floor's.

The ORM peer: the ORM loop of the naive baseline with a commit every 1,000 executions, on a
fourth workflow of ``--naive-executions``; by default it runs first, on the freshly set-up
database (``--peer-order last`` runs it after the runner: alternate between runs).

Goals: >= 1,000,000 executions/min, start + batches, and >= 70 % of the floor. Exits 1 on a
miss or a failed check.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import structlog
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    PG_ADMIN_DSN,
    database_version,
    environment,
    fresh_database,
    libpq_dsn,
    load_average,
    process_cpu_seconds,
    say,
    stderr,
)
from revflow.app import create_app
from revflow.audit.service import Actor
from revflow.auth import service as auth_service
from revflow.bench import exit_on_sigterm
from revflow.config import Settings
from revflow.db import Database
from revflow.logging import configure as configure_logging
from revflow.migrate import upgrade
from revflow.migrations.runner import claim_runnable, run_batch, run_next
from revflow.models import Execution, HistoryEntry

GOAL_PER_MIN = 1_000_000
GOAL_VS_FLOOR = 0.7
ORM_COMMIT_EVERY = 1_000
RUN_TIMEOUT_S = 1_800.0
DAY = 86_400

# Where the executions wait: (step, duration in days, percentage of the executions).
WAITS = (("wait_a", 1, 10), ("wait_b", 2, 30), ("wait_c", 3, 30), ("wait_d", 7, 30))
# The history the engine writes up to (and including) the start of each wait. The contacts
# have no tier and no phone: ``check`` takes its ``else`` branch, ``nudge`` is skipped.
PATHS: dict[str, list[tuple[str, str]]] = {
    "wait_a": [("welcome", "sent"), ("wait_a", "waiting")],
}
PATHS["wait_b"] = [*PATHS["wait_a"], ("wait_a", "woke"), ("tag_a", "done"), ("wait_b", "waiting")]
PATHS["wait_c"] = [*PATHS["wait_b"], ("wait_b", "woke"), ("check", "branch"), ("wait_c", "waiting")]
PATHS["wait_d"] = [
    *PATHS["wait_c"],
    ("wait_c", "woke"),
    ("nudge", "skipped"),
    ("wait_d", "waiting"),
]
MAPPING = {"wait_a": "pause_a"}
NEW_DURATION_S = {"wait_c": 2 * DAY}  # wait_policy restart: now + the new duration


def definition(version: int) -> dict[str, Any]:
    first_wait = "wait_a" if version == 1 else "pause_a"
    subject = "Welcome" if version == 1 else "Welcome aboard"
    return {
        "trigger": {"type": "manual"},
        "start": "welcome",
        "steps": [
            {
                "id": "welcome",
                "type": "send_email",
                "subject": subject,
                "body": "Hello {{contact.email}}",
                "next": first_wait,
            },
            {"id": first_wait, "type": "wait", "duration": "1d", "next": "tag_a"},
            {"id": "tag_a", "type": "add_tag", "tag": "warm", "next": "wait_b"},
            {"id": "wait_b", "type": "wait", "duration": "2d", "next": "check"},
            {
                "id": "check",
                "type": "condition",
                "if": {"field": "fields.tier", "op": "eq", "value": "gold"},
                "then": "offer",
                "else": "wait_c",
            },
            {
                "id": "offer",
                "type": "send_email",
                "subject": "An offer" if version == 1 else "A better offer",
                "body": "For you",
                "next": "wait_c",
            },
            {
                "id": "wait_c",
                "type": "wait",
                "duration": "3d" if version == 1 else "2d",
                "next": "nudge",
            },
            {"id": "nudge", "type": "send_sms", "body": "Still there?", "next": "wait_d"},
            {"id": "wait_d", "type": "wait", "duration": "7d", "next": "done"},
            {"id": "done", "type": "end"},
        ],
    }


# --- set-up ------------------------------------------------------------------------------------


@dataclass
class Population:
    """One workflow with its waiting executions of version 1, and version 2 created."""

    workflow_id: uuid.UUID
    executions: int


@dataclass
class Api:
    client: httpx.AsyncClient
    headers: dict[str, str]

    async def call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        response = await self.client.request(method, path, headers=self.headers, **kwargs)
        if response.status_code != expect:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:2000]}")
        return response.json()


async def populate(
    db: Database, api: Api, account_id: uuid.UUID, count: int, name: str
) -> Population:
    created = await api.call(
        "POST",
        "/api/v1/workflows",
        201,
        json={"name": name, "definition": definition(1), "change_summary": "v1"},
    )
    workflow_id = uuid.UUID(created["id"])
    await api.call("POST", f"/api/v1/workflows/{workflow_id}/versions/1/publish", 200)
    now = dt.datetime.now(dt.UTC)
    shares = []
    low = 0
    for step, days, percent in WAITS:
        shares.append((step, days, low, low + percent))
        low += percent
    steps_case = " ".join(
        f"WHEN c.n % 100 >= {lo} AND c.n % 100 < {hi} THEN '{step}'" for step, _, lo, hi in shares
    )
    days_case = " ".join(f"WHEN '{step}' THEN {days}" for step, days, _, _ in shares)
    paths = ", ".join(
        f"('{wait}', {order}, '{step}', '{result}')"
        for wait, entries in PATHS.items()
        for order, (step, result) in enumerate(entries)
    )
    params = {
        "account": account_id,
        "workflow": workflow_id,
        "prefix": str(workflow_id),
        "now": now,
        "n": count,
    }
    async with db.session(write=True) as session:
        # Contacts, then one execution each: waiting on a wait step since up to an hour ago.
        await session.execute(
            text(
                "INSERT INTO contacts (id, account_id, external_id, email, phone, fields, tags, "
                "created_at, updated_at) SELECT gen_random_uuid(), CAST(:account AS uuid), "
                "CAST(:prefix AS text) || '-' || i, 'c' || i || '@example.com', NULL, "
                "'{}'::jsonb, '[\"warm\"]'::jsonb, CAST(:now AS timestamptz), "
                "CAST(:now AS timestamptz) FROM generate_series(1, :n) AS i"
            ),
            params,
        )
        await session.execute(
            text(
                "INSERT INTO executions (id, account_id, workflow_id, version, contact_id, "
                "status, current_step, wake_at, started_at, wait_started_at, fired_goals) "
                "SELECT gen_random_uuid(), CAST(:account AS uuid), CAST(:workflow AS uuid), 1, "
                "r.id, 'waiting', r.step, "
                "r.since + make_interval(days => CASE r.step " + days_case + " END), "
                "CAST(:now AS timestamptz) - interval '10 days', r.since, '[]'::jsonb FROM ("
                "SELECT c.id, "
                "CAST(:now AS timestamptz) - make_interval(secs => (c.n % 3600)) AS since, "
                "CASE " + steps_case + " END AS step FROM ("
                "SELECT id, row_number() OVER (ORDER BY id) AS n FROM contacts "
                "WHERE account_id = :account AND external_id LIKE CAST(:prefix AS text) || '-%'"
                ") AS c) AS r"
            ),
            params,
        )
        # The history the engine would have written up to each execution's wait.
        await session.execute(
            text(
                "INSERT INTO execution_history (account_id, execution_id, at, step, result, "
                "detail) SELECT e.account_id, e.id, e.started_at + make_interval(secs => p.ord), "
                "p.step, p.result, CASE WHEN p.step = e.current_step AND p.result = 'waiting' "
                "THEN jsonb_build_object('kind', 'duration', 'wake_at', e.wake_at) "
                "ELSE '{}'::jsonb END "
                f"FROM executions e JOIN (VALUES {paths}) AS p(wait, ord, step, result) "
                "ON p.wait = e.current_step WHERE e.workflow_id = :workflow "
                "ORDER BY e.id, p.ord"
            ),
            params,
        )
        await session.commit()
    await api.call(
        "POST",
        f"/api/v1/workflows/{workflow_id}/versions",
        201,
        json={"definition": definition(2), "change_summary": "v2", "base_version": 1},
    )
    return Population(workflow_id, count)


async def snapshot_positions(db: Database, population: Population) -> None:
    """Where every execution is before the move, for the check (a table of the benchmark)."""
    async with db.session(write=True) as session:
        await session.execute(
            text(
                "CREATE TABLE IF NOT EXISTS bench_before (id uuid PRIMARY KEY, "
                "workflow_id uuid, step text, status text, wake_at timestamptz)"
            )
        )
        await session.execute(
            text(
                "INSERT INTO bench_before SELECT id, workflow_id, current_step, status, wake_at "
                "FROM executions WHERE workflow_id = :w"
            ),
            {"w": population.workflow_id},
        )
        await session.commit()


# --- the runner --------------------------------------------------------------------------------

STATEMENT_KINDS = (
    ("claim the migration (SELECT … FOR UPDATE SKIP LOCKED)", r"^SELECT migrations\."),
    (
        "settle the batch, one statement (WITH moved … settled … history)",
        r"^WITH moved AS\s+\(UPDATE executions",
    ),
    (
        "pick the batch (items ⋈ executions, FOR UPDATE SKIP LOCKED)",
        r"^SELECT migration_items\.execution_id\s+FROM migration_items JOIN",
    ),
    (
        "pick the batch: its pending items (SELECT … ORDER BY … LIMIT)",
        r"^SELECT migration_items\.execution_id\s+FROM migration_items\s+WHERE[\s\S]*ORDER BY",
    ),
    (
        "pick the batch: lock their executions (FOR UPDATE SKIP LOCKED)",
        r"^SELECT executions\.id\s+FROM executions\s+WHERE[\s\S]*SKIP LOCKED",
    ),
    (
        "skip finished (UPDATE migration_items … FROM executions)",
        r"^UPDATE migration_items SET state=\S+, reason=CASE WHEN",
    ),
    (
        "skip unmovable (UPDATE migration_items … FROM executions)",
        r"^UPDATE migration_items SET state=\S+, reason=(CASE executions|\$)",
    ),
    (
        "record restore info (UPDATE migration_items … FROM executions)",
        r"^UPDATE migration_items SET state=\S+, from_step=",
    ),
    ("move executions (UPDATE executions … FROM items)", r"^UPDATE executions"),
    ("history (INSERT … SELECT)", r"^INSERT INTO execution_history"),
    ("any item pending? (SELECT … LIMIT 1)", r"^SELECT migration_items\.execution_id\s+FROM"),
    ("migration counters (UPDATE migrations)", r"^UPDATE migrations"),
)


START_KINDS = (
    ("snapshot (INSERT INTO migration_items … SELECT)", r"^INSERT INTO migration_items"),
    ("ANALYZE migration_items", r"^ANALYZE"),
    ("count the items", r"^SELECT count\(\*\) AS count_1\s+FROM migration_items"),
    ("live executions by step (the report)", r"^SELECT executions\.current_step, count"),
)


def statement_kind(sql: str, kinds: tuple[tuple[str, str], ...] = STATEMENT_KINDS) -> str:
    for label, pattern in kinds:
        if re.search(pattern, sql):
            return label
    return "other (audit entry of the finish, …)" if kinds is STATEMENT_KINDS else "other"


@dataclass
class StatementTimes:
    kinds: tuple[tuple[str, str], ...] = STATEMENT_KINDS
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    count: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def table(self, total_s: float, batches: int) -> list[dict[str, Any]]:
        rows = [
            {
                "statement": kind,
                "count": self.count[kind],
                "seconds": round(seconds, 3),
                "ms_per_batch": round(seconds * 1000 / max(batches, 1), 1),
                "share": round(seconds / total_s, 3),
            }
            for kind, seconds in self.seconds.items()
        ]
        return sorted(rows, key=lambda row: -float(row["seconds"]))

    @contextmanager
    def recording(self, db: Database) -> Iterator[None]:
        engine = db.engine.sync_engine

        def before(conn: Any, _cursor: Any, _sql: str, *_: Any) -> None:
            conn.info["bench_t0"] = time.perf_counter()

        def after(conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
            kind = statement_kind(sql, self.kinds)
            self.seconds[kind] += time.perf_counter() - conn.info.pop("bench_t0")
            self.count[kind] += 1

        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
        try:
            yield
        finally:
            event.remove(engine, "before_cursor_execute", before)
            event.remove(engine, "after_cursor_execute", after)


@dataclass
class RunnerResult:
    start_s: float
    batches_s: float
    batches: int
    settled: int
    statements: StatementTimes
    migration_id: str
    start_statements: StatementTimes
    cpu: Cpu
    explained_batch: int | None = None
    plans: list[str] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return self.start_s + self.batches_s


@dataclass
class Cpu:
    """CPU seconds of this process and of the database's server processes over a window."""

    client_s: float = 0.0
    server_s: float | None = None
    _client0: float = 0.0
    _server0: dict[int, float | None] = field(default_factory=dict)

    async def _backends(self, db: Database) -> dict[int, float | None]:
        async with db.session() as session:
            found = await session.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'client backend'"
                )
            )
            pids: list[int] = list(found.scalars())
            return {pid: process_cpu_seconds(pid) for pid in pids}

    async def start(self, db: Database) -> None:
        self._server0 = await self._backends(db)
        self._client0 = time.process_time()

    async def stop(self, db: Database) -> None:
        self.client_s = time.process_time() - self._client0
        after = await self._backends(db)
        deltas = [
            after[pid] - before  # type: ignore[operator]
            for pid, before in self._server0.items()
            if before is not None and after.get(pid) is not None
        ]
        self.server_s = sum(deltas) if deltas else None


def progress(label: str, total: int) -> Progress:
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=stderr, transient=True, disable=not stderr.is_terminal)


EXPLAIN_SETTINGS = (
    "LOAD 'auto_explain'",
    "SET LOCAL auto_explain.log_min_duration = 0",
    "SET LOCAL auto_explain.log_analyze = on",
    "SET LOCAL auto_explain.log_buffers = on",
    "SET LOCAL auto_explain.log_triggers = on",
    "SET LOCAL auto_explain.log_level = notice",
)


async def explained_batch(db: Database) -> tuple[int, list[str]]:
    """What ``run_next`` does (claim, one batch, commit), with every statement's plan — as
    EXPLAIN ANALYZE gives it (``auto_explain``, sent to this client as notices)."""
    plans: list[str] = []
    async with db.session(write=True) as session:
        connection = await session.connection()
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None

        def listener(_connection: Any, message: Any) -> None:
            plans.append(str(message.message))

        raw.add_log_listener(listener)
        try:
            for statement in EXPLAIN_SETTINGS:
                await session.execute(text(statement))
            now = dt.datetime.now(dt.UTC)
            migration = await claim_runnable(session, now)
            if migration is None:
                return 0, plans
            settled = await run_batch(session, migration, now)
            await session.commit()
        finally:
            raw.remove_log_listener(listener)
    return settled or 1, plans


def plan_summary(plan: str, width: int = 150) -> list[str]:
    """An auto_explain message without its query text, lines cut at ``width``."""
    lines = plan.splitlines()
    top = next((i for i, line in enumerate(lines) if i and "(cost=" in line), len(lines))
    kept = lines[:1] + lines[top:]
    return [line if len(line) <= width else line[: width - 1] + "…" for line in kept]


async def run_runner(
    db: Database,
    api: Api,
    population: Population,
    batch_size: int,
    explain: bool = False,
) -> RunnerResult:
    workflow = population.workflow_id
    start_times = StatementTimes(START_KINDS)
    started = time.perf_counter()
    with start_times.recording(db):
        migration = await api.call(
            "POST",
            f"/api/v1/workflows/{workflow}/versions/2/migrate",
            202,
            json={
                "from_version": 1,
                "strategy": "immediate",
                "mapping": MAPPING,
                "wait_policy": "restart",
                "batch_size": batch_size,
                "allow_unreleased": True,  # version 2 stays a draft: nothing enrolls into it
            },
        )
    start_s = time.perf_counter() - started
    if migration["total"] != population.executions:
        raise RuntimeError(f"the migration covers {migration['total']} executions")
    times = StatementTimes()
    settled = batches = 0
    explain_at = -(-population.executions // batch_size) // 2 if explain else None
    plans: list[str] = []
    deadline = time.monotonic() + RUN_TIMEOUT_S
    cpu = Cpu()
    await cpu.start(db)
    with progress("runner", population.executions) as bar, times.recording(db):
        task = bar.add_task("runner", total=population.executions)
        started = time.perf_counter()
        while True:
            if batches == explain_at:
                moved, plans = await explained_batch(db)
            else:
                moved = await run_next(db, dt.datetime.now(dt.UTC))
            if moved == 0:
                break
            batches += 1
            settled += moved
            bar.update(task, completed=min(settled, population.executions))
            if time.monotonic() > deadline:
                raise RuntimeError(f"the runner did not finish in {RUN_TIMEOUT_S:g} s")
        batches_s = time.perf_counter() - started
    await cpu.stop(db)
    return RunnerResult(
        start_s,
        batches_s,
        batches,
        settled,
        times,
        migration["id"],
        start_times,
        cpu,
        explain_at,
        plans,
    )


# --- the naive baseline ------------------------------------------------------------------------


async def run_naive(db: Database, population: Population, commit_every: int = 1) -> float:
    """The ORM way: ``commit_every`` executions per transaction (1: one per transaction);
    answers the seconds it took."""
    async with db.session() as session:
        rows = await session.execute(
            text("SELECT account_id, id FROM executions WHERE workflow_id = :w ORDER BY id"),
            {"w": population.workflow_id},
        )
        ids = [(row.account_id, row.id) for row in rows]
    migration_id = str(uuid.uuid4())  # the naive way has no migration row; a label only
    started = time.perf_counter()
    with progress("ORM", len(ids)) as bar:
        task = bar.add_task("ORM", total=len(ids))
        for first in range(0, len(ids), commit_every):
            async with db.session(write=True) as session:
                for key in ids[first : first + commit_every]:
                    execution = await session.get(Execution, key)
                    assert execution is not None and execution.current_step is not None
                    now = dt.datetime.now(dt.UTC)
                    before = execution.current_step
                    target = MAPPING.get(before, before)
                    execution.version = 2
                    execution.current_step = target
                    if before in NEW_DURATION_S:
                        execution.wake_at = now + dt.timedelta(seconds=NEW_DURATION_S[before])
                        execution.wait_started_at = now
                    session.add(
                        HistoryEntry(
                            account_id=execution.account_id,
                            execution_id=execution.id,
                            at=now,
                            step=target,
                            result="migrated",
                            detail={
                                "migration_id": migration_id,
                                "from": 1,
                                "to": 2,
                                "from_step": before,
                                "step": target,
                            },
                        )
                    )
                    # A restart's wake time is the move's time + the new duration, the same
                    # ``now`` as its history entry (the check compares the two).
                await session.commit()
            bar.advance(task, min(commit_every, len(ids) - first))
    return time.perf_counter() - started


# --- the floor ---------------------------------------------------------------------------------

FLOOR_MIGRATION = """
INSERT INTO migrations (id, account_id, workflow_id, from_version, to_version, strategy, status,
    mapping, plan, batch_size, interval_seconds, wait_policy, halt_failure_rate, total, migrated,
    skipped, failed, batches, report, errors, skips, created_by, created_at)
VALUES ($1, $2, $3, 1, 2, 'immediate', 'completed', $4::jsonb, '{}', $5, 0, 'restart', 0.2, 0,
    0, 0, 0, 0, '{}', '[]', '[]', 'floor', now())
"""

# One statement per batch: lock the next executions of version 1 in id order, move them, and
# write their history entries and restore records. $1 account, $2 workflow, $3 migration,
# $4 the last id of the previous batch, $5 the batch size.
FLOOR_BATCH = (
    """
WITH batch AS (
  SELECT e.id, e.account_id, e.current_step, e.status, e.wake_at FROM executions e
  WHERE e.account_id = $1 AND e.workflow_id = $2 AND e.version = 1
    AND e.status IN ('active', 'waiting') AND e.id > $4
  ORDER BY e.id LIMIT $5 FOR UPDATE
), moved AS (
  UPDATE executions e
  SET version = 2, current_step = CASE b.current_step """
    + " ".join(f"WHEN '{old}' THEN '{new}'" for old, new in MAPPING.items())
    + """ ELSE b.current_step END,
      wake_at = CASE b.current_step """
    + " ".join(
        f"WHEN '{step}' THEN now() + make_interval(secs => {secs})"
        for step, secs in NEW_DURATION_S.items()
    )
    + """ ELSE e.wake_at END,
      wait_started_at = CASE WHEN b.current_step IN ("""
    + ", ".join(f"'{step}'" for step in NEW_DURATION_S)
    + """) THEN now() ELSE e.wait_started_at END
  FROM batch b WHERE e.id = b.id
  RETURNING e.id, e.account_id, b.current_step AS from_step, b.status AS from_status,
            b.wake_at AS from_wake_at, e.current_step AS to_step
), history AS (
  INSERT INTO execution_history (account_id, execution_id, at, step, result, detail)
  SELECT account_id, id, now(), to_step, 'migrated',
         jsonb_build_object('migration_id', $3::uuid::text, 'from', 1, 'to', 2,
                            'from_step', from_step, 'step', to_step)
  FROM moved ORDER BY id
), items AS (
  INSERT INTO migration_items (migration_id, execution_id, account_id, state, from_step,
                               from_status, from_wake_at, to_step, moved_at)
  SELECT $3::uuid, id, account_id, 'migrated', from_step, from_status, from_wake_at, to_step,
         now()
  FROM moved
)
SELECT count(*) AS moved, (SELECT id FROM batch ORDER BY id DESC LIMIT 1) AS last FROM batch
"""
)


async def run_floor(
    url: str, account_id: uuid.UUID, population: Population, batch_size: int
) -> tuple[str, float, int]:
    """The same move as set-based SQL batches of ``batch_size``, one transaction each, on one
    asyncpg connection; answers the migration's id, the seconds and the batches."""
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        migration_id = uuid.uuid4()
        await conn.execute(
            FLOOR_MIGRATION,
            migration_id,
            account_id,
            population.workflow_id,
            json.dumps(MAPPING),
            batch_size,
        )
        last = uuid.UUID(int=0)
        batches = 0
        started = time.perf_counter()
        while True:
            async with conn.transaction():
                row = await conn.fetchrow(
                    FLOOR_BATCH, account_id, population.workflow_id, migration_id, last, batch_size
                )
            assert row is not None
            if not row["moved"]:
                break
            batches += 1
            last = row["last"]
        return str(migration_id), time.perf_counter() - started, batches
    finally:
        await conn.close()


# --- the check ---------------------------------------------------------------------------------


async def check(db: Database, population: Population, migration_id: str | None) -> list[str]:
    """Every problem found (empty when each execution moved exactly once, correctly); the
    restore records are checked when ``migration_id`` names the runner's migration."""
    params: dict[str, Any] = {"w": population.workflow_id, "n": population.executions}
    expected_step = (
        "CASE b.step "
        + " ".join(f"WHEN '{old}' THEN '{new}'" for old, new in MAPPING.items())
        + " ELSE b.step END"
    )
    restarted = " OR ".join(
        f"(b.step = '{step}' AND e.wake_at = h.at + make_interval(secs => {seconds}))"
        for step, seconds in NEW_DURATION_S.items()
    )
    kept = " AND ".join(f"b.step <> '{step}'" for step in NEW_DURATION_S)
    moved = (
        "FROM executions e JOIN bench_before b ON b.id = e.id JOIN execution_history h "
        "ON h.execution_id = e.id AND h.result = 'migrated' WHERE e.workflow_id = :w"
    )
    detail = (
        f"h.step = {expected_step} AND h.detail->>'from_step' = b.step "
        "AND h.detail->>'step' = h.step AND (h.detail->>'from')::int = 1 "
        "AND (h.detail->>'to')::int = 2"
    )
    queries = {
        "executions": "SELECT count(*) - :n FROM executions WHERE workflow_id = :w",
        "executions not on version 2 at the right step, waiting": (
            "SELECT count(*) FROM executions e JOIN bench_before b ON b.id = e.id "
            "WHERE e.workflow_id = :w AND NOT (e.version = 2 AND e.status = 'waiting' "
            f"AND e.current_step = {expected_step})"
        ),
        # (Set-based: the history's index leads with account_id, so a correlated count per
        # execution would read the whole history once per execution.)
        "executions without exactly one migrated history entry": (
            "SELECT count(*) FROM executions e LEFT JOIN (SELECT h.execution_id, count(*) AS n "
            "FROM execution_history h WHERE h.result = 'migrated' AND h.execution_id IN "
            "(SELECT id FROM executions WHERE workflow_id = :w) GROUP BY h.execution_id) m "
            "ON m.execution_id = e.id WHERE e.workflow_id = :w AND coalesce(m.n, 0) <> 1"
        ),
        "migrated entries with a wrong step or detail": (
            f"SELECT count(*) {moved} AND NOT ({detail})"
        ),
        "wrong wake times (kept, or the move + the new duration)": (
            f"SELECT count(*) {moved} AND NOT (({kept} AND e.wake_at = b.wake_at) OR {restarted})"
        ),
    }
    if migration_id is not None:
        params["m"] = uuid.UUID(migration_id)
        params["ms"] = migration_id
        queries["migrated entries naming another migration"] = (
            f"SELECT count(*) {moved} AND h.detail->>'migration_id' <> CAST(:ms AS text)"
        )
        queries["executions without exactly one restore record (item, migrated)"] = (
            "SELECT count(*) FROM executions e LEFT JOIN (SELECT i.execution_id, count(*) AS n "
            "FROM migration_items i WHERE i.migration_id = :m AND i.state = 'migrated' "
            "GROUP BY i.execution_id) m ON m.execution_id = e.id "
            "WHERE e.workflow_id = :w AND coalesce(m.n, 0) <> 1"
        )
        queries["restore records not holding where the execution was"] = (
            "SELECT count(*) FROM migration_items i JOIN bench_before b "
            "ON b.id = i.execution_id WHERE i.migration_id = :m AND NOT (i.from_step = b.step "
            "AND i.from_status = b.status AND i.from_wake_at = b.wake_at "
            f"AND i.to_step = {expected_step})"
        )
        queries["items of the migration beyond its executions"] = (
            "SELECT count(*) - :n FROM migration_items WHERE migration_id = :m"
        )
    problems = []
    async with db.session() as session:
        for label, sql in queries.items():
            found = await session.scalar(text(sql), params)
            if found:
                problems.append(f"{label}: {found}")
    return problems


# --- main --------------------------------------------------------------------------------------


async def vacuum_analyze(db: Database) -> None:
    async with db.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE"))


async def run_batched(db: Database, population: Population) -> float:
    say(f"ORM peer: {population.executions:,} executions, a commit every {ORM_COMMIT_EVERY:,}")
    return await run_naive(db, population, ORM_COMMIT_EVERY)


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(database_url=url, log_json=False)
    db = Database(url, pool_size=2)
    try:
        async with db.session(write=True) as session:
            account, key = await auth_service.create_account(
                session, "bench", Actor(user="operator"), dt.datetime.now(dt.UTC)
            )
            await session.commit()
        app = create_app(settings, db)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://revflow.bench", timeout=600
        ) as client:
            api = Api(client, {"Authorization": f"Bearer {key}"})
            say(f"set-up: {args.executions:,} waiting executions (+ {args.naive_executions:,})")
            setup_started = time.perf_counter()
            main = await populate(db, api, account.id, args.executions, "migration benchmark")
            floor = await populate(db, api, account.id, args.executions, "floor copy")
            batched = await populate(db, api, account.id, args.naive_executions, "ORM batched")
            naive = await populate(db, api, account.id, args.naive_executions, "naive copy")
            for population in (main, floor, batched, naive):
                await snapshot_positions(db, population)
            await vacuum_analyze(db)
            setup_s = time.perf_counter() - setup_started
            if args.peer_order == "first":
                batched_s = await run_batched(db, batched)
            say(f"floor: set-based SQL batches of {args.batch_size:,}")
            floor_id, floor_s, floor_batches = await run_floor(
                url, account.id, floor, args.batch_size
            )
            await vacuum_analyze(db)  # the runner starts from the same steady state
            say(f"runner: batches of {args.batch_size:,}, run_next in a loop in-process")
            runner = await run_runner(db, api, main, args.batch_size, args.explain)
            if args.peer_order == "last":
                batched_s = await run_batched(db, batched)
        say("checking the results")
        runner_problems = await check(db, main, runner.migration_id)
        floor_problems = await check(db, floor, floor_id)
        batched_problems = await check(db, batched, None)
        say(f"naive baseline: {args.naive_executions:,} executions, one transaction each")
        naive_s = await run_naive(db, naive)
        naive_problems = await check(db, naive, None)
    finally:
        await db.dispose()
    runner_rate = args.executions / runner.total_s * 60
    floor_rate = args.executions / floor_s * 60
    batched_rate = args.naive_executions / batched_s * 60
    naive_rate = args.naive_executions / naive_s * 60
    return {
        "setup_s": round(setup_s, 1),
        "runner": {
            "mode": "run_next in a loop, in-process (one connection, no worker polling)",
            "executions": args.executions,
            "batch_size": args.batch_size,
            "batches": runner.batches,
            "settled": runner.settled,
            "start_s": round(runner.start_s, 3),
            "batches_s": round(runner.batches_s, 3),
            "total_s": round(runner.total_s, 3),
            "executions_per_min": round(runner_rate),
            "executions_per_min_batches_only": round(args.executions / runner.batches_s * 60),
            "start_statements": runner.start_statements.table(runner.start_s, 1),
            "statements": runner.statements.table(runner.batches_s, runner.batches),
            "statements_s": round(sum(runner.statements.seconds.values()), 3),
            "batches_client_cpu_s": round(runner.cpu.client_s, 3),
            "batches_server_cpu_s": None
            if runner.cpu.server_s is None
            else round(runner.cpu.server_s, 3),
            "explained_batch": runner.explained_batch,
            "plans": [plan_summary(plan) for plan in runner.plans],
            "problems": runner_problems,
        },
        "floor": {
            "mode": "set-based SQL batches on one asyncpg connection: one statement per batch "
            "locks the next executions, moves them, writes history and restore records",
            "executions": args.executions,
            "batch_size": args.batch_size,
            "batches": floor_batches,
            "seconds": round(floor_s, 3),
            "executions_per_min": round(floor_rate),
            "problems": floor_problems,
        },
        "migration_vs_floor": round(runner_rate / floor_rate, 3),
        "orm_batched": {
            "mode": f"the ORM, a commit every {ORM_COMMIT_EVERY:,} executions, run "
            f"{args.peer_order} on a freshly set-up database, measured on "
            f"{args.naive_executions:,} executions",
            "executions": args.naive_executions,
            "seconds": round(batched_s, 3),
            "executions_per_min": round(batched_rate),
            "problems": batched_problems,
        },
        "naive": {
            "mode": "one execution per transaction through the ORM, measured on "
            f"{args.naive_executions:,} executions and extrapolated",
            "executions": args.naive_executions,
            "seconds": round(naive_s, 3),
            "executions_per_min": round(naive_rate),
            "extrapolated_s_for_runner_population": round(args.executions / naive_rate * 60, 1),
            "problems": naive_problems,
        },
        "speedup": round(runner_rate / naive_rate, 1),
        "goal_per_min": GOAL_PER_MIN,
        "passed": runner_rate >= GOAL_PER_MIN
        and runner_rate / floor_rate >= GOAL_VS_FLOOR
        and not any((runner_problems, floor_problems, batched_problems, naive_problems)),
    }


def print_text(config: dict[str, Any], env: dict[str, Any], result: dict[str, Any]) -> None:
    runner, naive = result["runner"], result["naive"]
    print("bench_migration: " + ", ".join(f"{k}={v}" for k, v in config.items()))
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    print(f"set-up (not timed): {result['setup_s']} s")
    print()
    print(f"runner ({runner['mode']}):")
    print(
        f"  start (snapshot of {runner['executions']:,} items): {runner['start_s']:.3f} s; "
        f"{runner['batches']} batches of {runner['batch_size']:,}: {runner['batches_s']:.3f} s"
    )
    print(
        f"  {runner['executions_per_min']:,} executions/min "
        f"(batches alone: {runner['executions_per_min_batches_only']:,}/min)"
    )
    print(f"  check: {'OK' if not runner['problems'] else runner['problems']}")
    print("  where the start's time goes (statement time as seen by the client):")
    for row in runner["start_statements"]:
        print(
            f"    {row['seconds']:8.3f} s {row['share']:6.1%} "
            f"{row['count']:5d}x  {row['statement']}"
        )
    print("  where the batches' time goes (statement time as seen by the client):")
    for row in runner["statements"]:
        print(
            f"    {row['seconds']:8.3f} s {row['share']:6.1%} "
            f"{row['ms_per_batch']:8.1f} ms/batch {row['count']:5d}x  {row['statement']}"
        )
    rest = runner["batches_s"] - runner["statements_s"]
    print(f"    {rest:8.3f} s {rest / runner['batches_s']:6.1%}  commits, Python, the driver")
    server = runner["batches_server_cpu_s"]
    print(
        f"  CPU during the batches: this process {runner['batches_client_cpu_s']:.3f} s, "
        "the database's server processes "
        + ("(not measurable)" if server is None else f"{server:.3f} s")
        + f", of {runner['batches_s']:.3f} s"
    )
    if runner["plans"]:
        print()
        print(
            f"  EXPLAIN ANALYZE of batch {runner['explained_batch'] + 1} (auto_explain; that "
            "batch's time above includes the instrumentation):"
        )
        for plan in runner["plans"]:
            for line in plan:
                print(f"    {line}")
    floor, batched = result["floor"], result["orm_batched"]
    print()
    print(f"floor ({floor['mode']}):")
    print(
        f"  {floor['executions']:,} in {floor['seconds']:.3f} s ({floor['batches']} batches): "
        f"{floor['executions_per_min']:,} executions/min; the runner is "
        f"{result['migration_vs_floor']:.2f}x of it (goal >= {GOAL_VS_FLOOR:g})"
    )
    print(f"  check: {'OK' if not floor['problems'] else floor['problems']}")
    print()
    print(f"ORM peer ({batched['mode']}):")
    print(
        f"  {batched['executions']:,} in {batched['seconds']:.3f} s: "
        f"{batched['executions_per_min']:,} executions/min"
    )
    print(f"  check: {'OK' if not batched['problems'] else batched['problems']}")
    print()
    print(f"naive baseline ({naive['mode']}):")
    print(
        f"  {naive['executions']:,} in {naive['seconds']:.3f} s: "
        f"{naive['executions_per_min']:,} executions/min; "
        f"{runner['executions']:,} would take ~{naive['extrapolated_s_for_runner_population']} s"
    )
    print(f"  check: {'OK' if not naive['problems'] else naive['problems']}")
    print()
    print(f"speed-up over the naive way: {result['speedup']}x")
    batches_only = runner["executions_per_min_batches_only"] >= result["goal_per_min"]
    print(
        f"goal: >= {result['goal_per_min']:,} executions/min (start + batches) -> "
        f"{'PASS' if result['passed'] else 'FAIL'} "
        f"(batches alone: {'PASS' if batches_only else 'FAIL'})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--naive-executions", type=int, default=10_000)
    parser.add_argument("--pg-admin-dsn", default=PG_ADMIN_DSN)
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print EXPLAIN ANALYZE of every statement of the middle batch (needs a superuser "
        "for LOAD 'auto_explain')",
    )
    parser.add_argument(
        "--peer-order",
        choices=["first", "last"],
        default="first",
        help="run the ORM peer (a commit every 1,000) before the floor and the runner, on the "
        "freshly set-up database, or after them (alternate between runs)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    if args.executions < 10 or args.naive_executions < 10:
        parser.error("--executions and --naive-executions must be at least 10")
    config = {
        "executions": args.executions,
        "batch_size": args.batch_size,
        "naive_executions": args.naive_executions,
        "explain": args.explain,
        "database": database_version("postgresql", args.pg_admin_dsn),
    }
    env = {**environment(), "load_1min_at_start": load_average()}
    # The in-process app logs: warnings only, and on stderr (stdout holds the result).
    configure_logging("WARNING", json=False)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    with fresh_database("postgresql", Path("."), args.pg_admin_dsn) as url:
        say(f"database {make_url(url).database}: revflow.migrate.upgrade")
        upgrade(url)
        result = asyncio.run(measure(url, args))
    env["load_1min_at_end"] = load_average()
    if args.json:
        print(json.dumps({"config": config, "environment": env, **result}, indent=2))
    else:
        print_text(config, env, result)
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    exit_on_sigterm()
    main()
