"""Benchmark the engine: steps per second of ``revflow worker`` processes on PostgreSQL, beside
its floor and its peers measured in the same run.

Run: ``python benchmarks/bench_engine.py [--executions 10000] [--workers 1 2] [--batch-size N]
[--poll-seconds S] [--no-floor] [--baseline-concurrency 1 2 5 10 20] [--baseline-modes step
execution] [--baseline-executions N] [--no-baseline] [--profile DIR] [--json]``.

For each worker count of ``--workers``, on a fresh PostgreSQL database (``CREATE DATABASE`` with a
unique name on ``--pg-admin-dsn``, migrated with ``revflow.migrate.upgrade``, dropped at the end):

- set-up (not timed): one account, a workflow whose published version 1 is the fixed five-step
  workload ``update_field`` → ``add_tag`` → ``condition`` → ``send_email`` (outbox channel) →
  ``end`` with a ``manual`` trigger; ``--executions`` contacts (bulk ``INSERT``), enrolled with
  ``revflow.executions.enrollment.enroll`` in chunks of 10,000, all due; the workflow is then
  paused (the kill switch: workers claim nothing of it) and the database analysed;
- the workers: N ``revflow worker`` subprocesses (default durability, the default
  ``REVFLOW_WORKER_BATCH_SIZE`` unless ``--batch-size``); their start-up (process launch until
  each logs ``worker_started``) is measured separately and is not part of the timed window;
- the timed window: from the commit that resumes the workflow until a poll (every 0.05 s) of the
  live executions finds none left; steps = the history rows written, counted afterwards and
  checked (every execution completed with five history rows, a message and the tag; a rate
  whose check failed is reported as null).

The floor (``engine_floor.py`` says exactly what it does): the same set-up on a fresh database,
then two processes of raw SQL with no interpreter — claim 200 due executions ``FOR UPDATE SKIP
LOCKED``, one statement writing the same contact, outbox and history rows and completing them,
commit — timed and checked the same way. ``engine_vs_floor`` is revflow's two workers over it.

The peers (``procrastinate_baseline.py`` says exactly what they do): the same executions on a
separate fresh database with procrastinate's schema, on the same PostgreSQL server, run by
``--baseline-workers`` (2) procrastinate worker processes, for each concurrency of the sweep
``--baseline-concurrency`` and each way of writing the task ``--baseline-modes``: one job per
step (each doing its step's statements, a history row and the execution's new position in one
transaction, then deferring the next step's job) or one job per execution (the five steps'
statements in one transaction). The jobs are deferred (one batch defer) and the database
analysed before the workers start; the timed window runs from the moment the first worker is
ready to the poll that finds no unfinished execution; steps = history rows. With many
executions, ``--baseline-executions`` runs the peers on fewer (rates are per second).
procrastinate and psycopg are optional (``pip install 'revflow[peers]'``): without them the
peers are reported missing and revflow's own numbers stand.

Goals: >= 5,000 steps/s with two workers, >= 60 % of the floor, >= 10x the strongest peer
configuration. Exits 1 on a miss or a failed check. ``--profile DIR`` adds two runs of one
worker that are not in the table: a ``revflow worker`` under ``py-spy record`` (idle samples
included: the share spent waiting for PostgreSQL), and an in-process worker with timers on its
phases and on every SQL statement.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import insert, select, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import engine_floor
from benchmarks.common import (
    PG_ADMIN_DSN,
    database_version,
    environment,
    fresh_database,
    load_average,
    machine_cpu_ticks,
    process_cpu_seconds,
    revflow_command,
    revflow_env,
    say,
    stderr,
)
from revflow.audit.service import Actor
from revflow.auth import service as auth_service
from revflow.auth.service import Principal
from revflow.bench import exit_on_sigterm
from revflow.config import Settings
from revflow.db import Database
from revflow.definition import Definition
from revflow.executions.enrollment import enroll
from revflow.migrate import upgrade
from revflow.models import ApiKey, Contact, Workflow
from revflow.workflows import service as workflows
from revflow.workflows.schemas import WorkflowCreate

GOAL_STEPS_PER_S = 5_000.0  # with two workers
GOAL_RATIO = 3.0  # two workers' steps/s over the per-step baseline's jobs/s (the old goal)
GOAL_VS_FLOOR = 0.6  # two workers' steps/s over the floor's, two processes each
GOAL_VS_BEST_PEER = 10.0  # two workers' steps/s over the strongest peer configuration's
STEPS_PER_EXECUTION = 5
ENROLL_CHUNK = 10_000
POLL_S = 0.05
START_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 1_800.0

WORKLOAD: dict[str, Any] = {
    "trigger": {"type": "manual"},
    "start": "set_stage",
    "steps": [
        {
            "id": "set_stage",
            "type": "update_field",
            "field": "fields.stage",
            "value": "engaged",
            "next": "tag_engaged",
        },
        {"id": "tag_engaged", "type": "add_tag", "tag": "engaged", "next": "is_engaged"},
        {
            "id": "is_engaged",
            "type": "condition",
            "if": {"field": "tags", "op": "contains", "value": "engaged"},
            "then": "welcome",
            "else": "done",
        },
        {
            "id": "welcome",
            "type": "send_email",
            "subject": "Welcome {{contact.fields.first_name}}",
            "body": "Hello {{contact.fields.first_name}}, thanks for joining.",
            "next": "done",
        },
        {"id": "done", "type": "end"},
    ],
}


# --- measurements ------------------------------------------------------------------------------


@dataclass
class Run:
    """One timed run: what was measured and what it wrote."""

    system: str  # revflow, floor, procrastinate
    workers: int
    concurrency: int
    units: int  # steps: history rows written
    wall_s: float
    startup_s: list[float]
    worker_cpu_s: float
    db_cpu_s: float | None  # the database backends serving the workers
    machine_cpu_busy: float  # fraction of all CPUs busy during the window
    checks: dict[str, int] = field(default_factory=dict)
    mode: str = ""  # procrastinate: one job per "step" or per "execution"
    problems: list[str] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.units / self.wall_s

    @property
    def rate(self) -> float | None:
        """Steps per second, or ``None`` when the run's own check failed."""
        return None if self.problems else round(self.per_s, 1)

    @property
    def label(self) -> str:
        if self.system == "dbos":
            return f"dbos, workflow per execution, {self.workers} x conc. {self.concurrency}"
        if self.system == "procrastinate":
            return f"procrastinate, job per {self.mode}, {self.workers} x conc. {self.concurrency}"
        plural = "s" if self.workers > 1 else ""
        return f"{self.system}, {self.workers} worker{plural}"


async def _backend_pids(dsn: str) -> list[int]:
    """The PostgreSQL backends connected to this database (the poller's own excluded)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [int(row["pid"]) for row in rows]
    finally:
        await conn.close()


class CpuMeter:
    """CPU seconds of the workers and of their database backends, and the busy share of the
    whole machine, over a window. Backends are read from /proc, so only for a local server;
    backends that closed inside the window are not counted."""

    def __init__(self, pids: Sequence[int], dsn: str, local_db: bool) -> None:
        self.pids = list(pids)
        self.dsn = dsn
        self.local_db = local_db
        self._workers0 = self._sum(self.pids)
        self._backends0 = self._backends()
        self._machine0 = machine_cpu_ticks()

    @staticmethod
    def _sum(pids: Sequence[int]) -> float:
        return sum(v for v in map(process_cpu_seconds, pids) if v is not None)

    def _backends(self) -> dict[int, float]:
        if not self.local_db:
            return {}
        pids = asyncio.run(_backend_pids(self.dsn))
        return {pid: cpu for pid in pids if (cpu := process_cpu_seconds(pid)) is not None}

    def stop(self) -> tuple[float, float | None, float]:
        """(worker CPU s, database backends CPU s or None, fraction of the machine busy)."""
        workers = self._sum(self.pids) - self._workers0
        backends = self._backends()
        busy, total = machine_cpu_ticks()
        busy0, total0 = self._machine0
        db = (
            sum(cpu - self._backends0.get(pid, 0.0) for pid, cpu in backends.items())
            if self.local_db
            else None
        )
        return workers, db, (busy - busy0) / max(total - total0, 1)


@dataclass
class Proc:
    process: subprocess.Popen[bytes]
    log_path: Path
    launched: float

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def launch(command: list[str], env: dict[str, str], cwd: Path, name: str) -> Proc:
    log_path = cwd / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    return Proc(process, log_path, time.perf_counter())


def wait_started(procs: Sequence[Proc], marker: str) -> list[float]:
    """Seconds from launch until each process logged ``marker`` (seen within 20 ms)."""
    started: dict[int, float] = {}
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(started) < len(procs):
        for i, proc in enumerate(procs):
            if i in started:
                continue
            if proc.process.poll() is not None:
                raise RuntimeError(f"a worker exited early:\n{proc.log()[-4000:]}")
            if marker in proc.log():
                started[i] = time.perf_counter() - proc.launched
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers not started after {START_TIMEOUT_S:g} s")
        time.sleep(0.02)
    return [started[i] for i in range(len(procs))]


def stop(procs: Sequence[Proc]) -> None:
    for proc in procs:
        if proc.process.poll() is None:
            proc.process.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.process.kill()
            proc.process.wait()


@contextmanager
def running(procs: list[Proc]) -> Iterator[list[Proc]]:
    try:
        yield procs
    finally:
        stop(procs)


async def wait_done(
    dsn: str,
    total: int,
    remaining: Callable[[asyncpg.Connection], Awaitable[int]],
    procs: Sequence[Proc],
    label: str,
    poll_s: float = POLL_S,
) -> float:
    """Poll every ``poll_s`` until ``remaining`` is 0; the ``perf_counter`` at that poll."""
    conn = await asyncpg.connect(dsn)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    interactive = stderr.is_terminal
    try:
        with Progress(
            *columns, TimeElapsedColumn(), console=stderr, transient=True, disable=not interactive
        ) as progress:
            task = progress.add_task(label, total=total)
            deadline = time.monotonic() + RUN_TIMEOUT_S
            last_said = time.monotonic()
            while True:
                left = await remaining(conn)
                now = time.perf_counter()
                progress.update(task, completed=total - left)
                if left == 0:
                    return now
                for proc in procs:
                    if proc.process.poll() is not None:
                        raise RuntimeError(f"a worker died:\n{proc.log()[-4000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{left} executions left after {RUN_TIMEOUT_S:g} s")
                if not interactive and time.monotonic() - last_said >= 5:
                    say(f"    {total - left}/{total} finished")
                    last_said = time.monotonic()
                await asyncio.sleep(poll_s)
    finally:
        await conn.close()


def local_db(args: argparse.Namespace) -> bool:
    """Whether the PostgreSQL server runs on this machine (its backends' CPU is measurable)."""
    return make_url(args.pg_admin_dsn).host in (None, "", "127.0.0.1", "localhost", "::1")


def libpq_dsn(sqlalchemy_url: str) -> str:
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(False)


# --- revflow -----------------------------------------------------------------------------------


def setup_database(url: str) -> Database:
    """The set-up's database: on PostgreSQL without cached prepared statements — ``enroll``'s
    ``ON CONFLICT … WHERE status IN ($1, $2)`` fails from the 6th execution of one prepared
    statement on a connection, when PostgreSQL switches to a generic plan and can no longer
    infer the partial unique index."""
    if url.startswith("postgresql"):
        url = (
            make_url(url)
            .update_query_dict({"prepared_statement_cache_size": "0"})
            .render_as_string(hide_password=False)
        )
    return Database(url)


async def new_account(db: Database, name: str) -> Principal:
    """An account named ``name`` and the admin principal of its first key."""
    async with db.session(write=True) as session:
        account, _clear = await auth_service.create_account(
            session, name, Actor(user="operator"), dt.datetime.now(dt.UTC)
        )
        key_id = await session.scalar(select(ApiKey.id).where(ApiKey.account_id == account.id))
        await session.commit()
    assert key_id is not None
    return Principal(account_id=account.id, key_id=key_id, user="bench", role="admin")


async def enrolled_workflow(
    db: Database, settings: Settings, name: str, definition: dict[str, Any], count: int
) -> tuple[Principal, uuid.UUID, list[uuid.UUID]]:
    """An account named ``name``, its published workflow of ``definition`` and ``count`` new
    contacts enrolled in it: (the account's principal, the workflow, the executions)."""
    principal = await new_account(db, name)
    async with db.session(write=True) as session:
        workflow, version = await workflows.create_workflow(
            session,
            principal,
            WorkflowCreate(name=name, definition=definition, change_summary="benchmark"),
            settings,
            dt.datetime.now(dt.UTC),
        )
        assert version is not None
        await workflows.publish(session, principal, workflow, version, now=dt.datetime.now(dt.UTC))
        await session.commit()
        workflow_id = workflow.id
    now = dt.datetime.now(dt.UTC)
    contact_ids = [uuid.uuid4() for _ in range(count)]
    async with db.session(write=True) as session:
        for start in range(0, count, 5_000):
            await session.execute(
                insert(Contact),
                [
                    {
                        "id": contact_ids[i],
                        "account_id": principal.account_id,
                        "external_id": f"{name}-{i}",
                        "email": f"{name}{i}@example.com",
                        "phone": None,
                        "fields": {"first_name": f"Contact{i}"},
                        "tags": [],
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(start, min(start + 5_000, count))
                ],
            )
        await session.commit()
    parsed = Definition.model_validate(definition)
    executions: list[uuid.UUID] = []
    for start in range(0, count, ENROLL_CHUNK):
        async with db.session(write=True) as session:
            workflow = await session.get_one(Workflow, (principal.account_id, workflow_id))
            result = await enroll(
                session,
                workflow,
                parsed,
                contact_ids[start : start + ENROLL_CHUNK],
                dt.datetime.now(dt.UTC),
            )
            await session.commit()
        if result.skipped:
            raise RuntimeError(f"enrollment skipped {len(result.skipped)} contacts")
        executions += result.executions
    if len(executions) != count:
        raise RuntimeError(f"enrolled {len(executions)} of {count}")
    return principal, workflow_id, executions


async def prepare_revflow(
    url: str, executions: int, workload: dict[str, Any] = WORKLOAD
) -> tuple[Principal, uuid.UUID]:
    """Account, published workflow (``workload``, the five steps unless another definition is
    given), contacts, enrollments; the workflow is left paused."""
    db = setup_database(url)
    try:
        principal, workflow_id, _ = await enrolled_workflow(
            db, Settings(database_url=url), "bench", workload, executions
        )
        await set_workflow_status(db, principal, workflow_id, "paused")
        async with db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))
        return principal, workflow_id
    finally:
        await db.dispose()


async def set_workflow_status(
    db: Database, principal: Principal, workflow_id: uuid.UUID, status: str
) -> None:
    async with db.session(write=True) as session:
        workflow = await session.get_one(
            Workflow, (principal.account_id, workflow_id), with_for_update=True
        )
        await workflows.set_status(session, principal, workflow, status, dt.datetime.now(dt.UTC))
        await session.commit()


async def resume(url: str, principal: Principal, workflow_id: uuid.UUID) -> float:
    """Resume the workflow; the ``perf_counter`` right after the commit."""
    db = Database(url, pool_size=1)
    try:
        await set_workflow_status(db, principal, workflow_id, "active")
        return time.perf_counter()
    finally:
        await db.dispose()


async def live_executions(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval("SELECT count(*) FROM executions WHERE status IN ('active', 'waiting')")
    )


async def revflow_outcome(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        checks = {"history": int(await conn.fetchval("SELECT count(*) FROM execution_history"))}
        for status, count in await conn.fetch(
            "SELECT status, count(*) FROM executions GROUP BY status"
        ):
            checks[f"executions_{status}"] = int(count)
        for result, count in await conn.fetch(
            "SELECT result, count(*) FROM execution_history GROUP BY result"
        ):
            checks[f"history_{result}"] = int(count)
        checks["messages"] = int(await conn.fetchval("SELECT count(*) FROM messages"))
        checks["contacts_tagged"] = int(
            await conn.fetchval("SELECT count(*) FROM contacts WHERE tags ? 'engaged'")
        )
        return checks
    finally:
        await conn.close()


def problems_of(checks: dict[str, int], expected: dict[str, int]) -> list[str]:
    """Each count of ``checks`` that is not what ``expected`` says (empty: all as expected)."""
    return [
        f"{key}: {checks.get(key, 0)}, expected {value}"
        for key, value in expected.items()
        if checks.get(key, 0) != value
    ]


def revflow_problems(checks: dict[str, int], executions: int) -> list[str]:
    """What is wrong with the rows a run of the workload wrote (empty: all as expected)."""
    expected = {
        "history": executions * STEPS_PER_EXECUTION,
        "executions_completed": executions,
        "messages": executions,
        "contacts_tagged": executions,
    }
    return problems_of(checks, expected)


# Entered beside a run, with its database URL and account; it may yield what to wait for once
# the workers are ready, before the timed window starts (see :func:`run_revflow`).
Around = Callable[[str, Principal], AbstractContextManager[Callable[[], None] | None]]


def run_revflow(
    args: argparse.Namespace,
    workers: int,
    profile_dir: Path | None = None,
    *,
    floor: bool = False,
    env: Mapping[str, str] | None = None,
    around: Around | None = None,
    poll_s: float = POLL_S,
    label: str | None = None,
) -> Run:
    """One timed run of ``workers`` revflow workers (or, with ``floor``, as many
    ``engine_floor.py`` processes) on a fresh database set up by :func:`prepare_revflow`, timed
    from the resume.

    ``env`` adds settings for the workers; ``around(url, principal)`` is entered once the
    executions are set up, before the workers start, and left after they stopped (another
    benchmark puts other work beside the engine's there); what it yields, if anything, is called
    once the workers are ready and before the window starts; ``poll_s`` is how often the end is
    looked for.
    """
    system = "floor" if floor else "revflow"
    label = label or f"{system}, {workers} worker{'s' if workers > 1 else ''}"
    with (
        tempfile.TemporaryDirectory(prefix="revflow-bench-engine-") as tmp,
        fresh_database("postgresql", Path(tmp), args.pg_admin_dsn) as url,
    ):
        workdir = Path(tmp)
        say(f"[bold]{label}[/bold]: migrate, set up {args.executions} enrolled contacts")
        upgrade(url)
        principal, workflow_id = asyncio.run(prepare_revflow(url, args.executions))
        extra = {"REVFLOW_WORKER_POLL_SECONDS": str(args.poll_seconds)}
        if args.batch_size is not None:
            extra["REVFLOW_WORKER_BATCH_SIZE"] = str(args.batch_size)
        worker_env = revflow_env(url, {**extra, **(env or {})})
        command, marker = revflow_command("worker"), "worker_started"
        if floor:
            batch = args.batch_size or Settings().worker_batch_size
            command = [
                sys.executable,
                str(Path(engine_floor.__file__).resolve()),
                "worker",
                "--dsn",
                libpq_dsn(url),
                "--batch-size",
                str(batch),
                "--poll-seconds",
                str(args.poll_seconds),
            ]
            marker = engine_floor.READY_MARKER
        procs = [launch(command, worker_env, workdir, f"{system}-{i}") for i in range(workers)]
        with around(url, principal) if around else nullcontext() as settle, running(procs):
            startup = wait_started(procs, marker)
            if settle is not None:
                settle()
            spy = start_profiler(procs[0], profile_dir) if profile_dir else None
            meter = CpuMeter([p.process.pid for p in procs], libpq_dsn(url), local_db(args))
            t0 = asyncio.run(resume(url, principal, workflow_id))
            t1 = asyncio.run(
                wait_done(libpq_dsn(url), args.executions, live_executions, procs, label, poll_s)
            )
            cpu_s, db_cpu_s, busy = meter.stop()
        if spy is not None:
            spy.wait(timeout=60)
        checks = asyncio.run(revflow_outcome(libpq_dsn(url)))
    run = Run(
        system, workers, 1, checks["history"], t1 - t0, startup, cpu_s, db_cpu_s, busy, checks
    )
    run.problems = revflow_problems(checks, args.executions)
    say(f"[bold]{label}[/bold]: {run.units} steps in {run.wall_s:.2f} s = {run.per_s:,.0f}/s")
    return run


# --- the procrastinate baseline ----------------------------------------------------------------


async def _remaining_baseline(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval("SELECT count(*) FROM bench_executions WHERE status <> 'completed'")
    )


def peer_missing(module: str) -> str | None:
    """Why the peer of ``benchmarks.<module>`` cannot run here (``None`` when it can)."""
    try:
        importlib.import_module(f"benchmarks.{module}")
    except ImportError as error:
        return f"not installed ({error}): pip install 'revflow[peers]'"
    return None


def run_dbos(args: argparse.Namespace, concurrency: int) -> Run:
    """The DBOS peer: ``--baseline-workers`` processes with ``worker_concurrency``
    ``concurrency``, one workflow per execution enqueued beforehand."""
    from benchmarks import dbos_peer, peer_workload

    workers, executions = args.baseline_workers, args.baseline_executions or args.executions
    label = f"dbos, {workers} workers x worker_concurrency {concurrency}"
    script = str(Path(dbos_peer.__file__).resolve())
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVFLOW_")}
    with (
        tempfile.TemporaryDirectory(prefix="revflow-bench-dbos-") as tmp,
        fresh_database("postgresql", Path(tmp), args.pg_admin_dsn) as url,
    ):
        workdir = Path(tmp)
        dsn = libpq_dsn(url)
        say(f"[bold]{label}[/bold]: set up {executions} executions, enqueue their workflows")
        common = ["--dsn", dsn, "--concurrency", str(concurrency)]
        subprocess.run(
            [sys.executable, script, "prepare", *common, "--executions", str(executions)],
            env=env,
            check=True,
            capture_output=True,
        )
        procs = [
            launch([sys.executable, script, "worker", *common], env, workdir, f"dbos-{i}")
            for i in range(workers)
        ]
        with running(procs):
            startup = wait_started(procs, dbos_peer.READY_MARKER)
            t0 = min(p.launched + s for p, s in zip(procs, startup, strict=True))
            meter = CpuMeter([p.process.pid for p in procs], dsn, local_db(args))
            t1 = asyncio.run(wait_done(dsn, executions, _remaining_baseline, procs, label))
            cpu_s, db_cpu_s, busy = meter.stop()
        checks = asyncio.run(peer_workload.outcome(dsn))
    run = Run(
        "dbos",
        workers,
        concurrency,
        checks["history"],
        t1 - t0,
        startup,
        cpu_s,
        db_cpu_s,
        busy,
        checks,
        mode="execution",
        problems=problems_of(
            checks,
            {
                "history": executions * STEPS_PER_EXECUTION,
                "completed": executions,
                "messages": executions,
            },
        ),
    )
    say(f"[bold]{label}[/bold]: {run.units} steps in {run.wall_s:.2f} s = {run.per_s:,.0f}/s")
    return run


def run_baseline(args: argparse.Namespace, mode: str, concurrency: int) -> Run:
    """The procrastinate peer: ``--baseline-workers`` processes of ``concurrency`` each, the
    jobs deferred one per ``mode`` (step or execution) beforehand."""
    from benchmarks import procrastinate_baseline as baseline

    workers, executions = args.baseline_workers, args.baseline_executions or args.executions
    label = f"procrastinate, job per {mode}, {workers} workers x concurrency {concurrency}"
    jobs_expected = executions * (baseline.STEPS if mode == "step" else 1)
    with (
        tempfile.TemporaryDirectory(prefix="revflow-bench-baseline-") as tmp,
        fresh_database("postgresql", Path(tmp), args.pg_admin_dsn) as url,
    ):
        workdir = Path(tmp)
        dsn = libpq_dsn(url)
        say(f"[bold]{label}[/bold]: apply_schema, set up {executions} executions, defer jobs")
        asyncio.run(baseline.prepare(dsn, executions, mode))
        command = [
            sys.executable,
            str(Path(baseline.__file__).resolve()),
            "worker",
            "--dsn",
            dsn,
            "--concurrency",
            str(concurrency),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("REVFLOW_")}
        procs = [launch(command, env, workdir, f"procrastinate-{i}") for i in range(workers)]
        with running(procs):
            startup = wait_started(procs, baseline.READY_MARKER)
            # The work starts when the first worker is ready (its first fetch follows at once).
            t0 = min(p.launched + s for p, s in zip(procs, startup, strict=True))
            meter = CpuMeter([p.process.pid for p in procs], dsn, local_db(args))
            t1 = asyncio.run(wait_done(dsn, executions, _remaining_baseline, procs, label))
            cpu_s, db_cpu_s, busy = meter.stop()
            # The last jobs' own "finish" may still be in flight; let them land before counting.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                checks = asyncio.run(baseline.outcome(dsn))
                finished = checks.get("jobs_succeeded", 0) + checks.get("jobs_failed", 0)
                if finished >= jobs_expected:
                    break
                time.sleep(0.1)
    steps_expected = executions * baseline.STEPS
    problems = problems_of(
        checks,
        {
            "jobs_succeeded": jobs_expected,
            "history": steps_expected,
            "completed": executions,
            "messages": executions,
        },
    )
    run = Run(
        "procrastinate",
        workers,
        concurrency,
        checks["history"],
        t1 - t0,
        startup,
        cpu_s,
        db_cpu_s,
        busy,
        checks,
        mode=mode,
        problems=problems,
    )
    say(f"[bold]{label}[/bold]: {run.units} steps in {run.wall_s:.2f} s = {run.per_s:,.0f}/s")
    return run


# --- profiling ---------------------------------------------------------------------------------


def start_profiler(proc: Proc, out_dir: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` on the worker (idle samples included) until the worker exits."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "py-spy.log").open("wb") as log:
        spy = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(proc.process.pid),
                "--rate",
                "250",
                "--idle",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(out_dir / "worker.folded"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    time.sleep(1.0)  # let py-spy attach before the work starts
    return spy


def summarize_py_spy(folded: Path, top: int = 20) -> dict[str, Any]:
    """Self and inclusive shares of the top functions of a ``py-spy --format raw`` file.

    SQLAlchemy's async layer runs statements in greenlets, whose samples py-spy reports as
    stacks of their own: inclusive shares are per stack, not from ``main``.
    """
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    samples = idle = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        count = int(count_text)
        samples += count
        if "select (selectors.py" in frames[-1]:
            idle += count
        self_counts[frames[-1]] += count
        for frame in dict.fromkeys(frames):
            total_counts[frame] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(frame, round(100 * n / samples, 2)) for frame, n in counter.most_common(top)]

    return {
        "samples": samples,
        "idle_in_epoll_pct": round(100 * idle / max(samples, 1), 2),
        "self": share(self_counts),
        "inclusive": share(total_counts),
    }


def _statement_key(sql: str) -> str:
    return " ".join(sql.split())[:72]


async def _timed_worker_run(
    url: str, args: argparse.Namespace, principal: Principal, workflow_id: uuid.UUID
) -> dict[str, Any]:
    """Run one in-process worker to the end with timers on its phases and statements."""
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import AsyncSession

    from revflow import worker as worker_module
    from revflow.engine import store
    from revflow.engine.runner import EngineRunner
    from revflow.logging import configure
    from revflow.worker import Worker

    configure("WARNING")  # structlog prints to stdout: keep the worker's info lines out of it

    phases: dict[str, list[float]] = {}
    statements: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(*a: Any, **k: Any) -> Any:
            started = time.perf_counter()
            try:
                return await fn(*a, **k)
            finally:
                phases.setdefault(name, []).append(time.perf_counter() - started)

        return wrapper

    patches: list[tuple[Any, str, Any]] = []
    for owner, name in (
        (store, "claim_due"),
        (store, "definitions"),
        (store, "load_contacts"),
        (store, "write_effects"),
        (worker_module, "run_migration_batch"),
        (worker_module, "react_to_steps"),
        (Worker, "run_scheduled"),
        (EngineRunner, "run_once"),
        (AsyncSession, "commit"),
    ):
        if hasattr(owner, name):
            patches.append((owner, name, getattr(owner, name)))
            label = {"run_once": "run_once (the whole batch)", "commit": "COMMIT"}.get(name, name)
            setattr(owner, name, timed(label, getattr(owner, name)))
    settings_env = {"database_url": url, "worker_poll_seconds": args.poll_seconds}
    if args.batch_size is not None:
        settings_env["worker_batch_size"] = args.batch_size
    db = Database(url)

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def _before(conn: Any, _cursor: Any, _sql: str, *_: Any) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    @event.listens_for(db.engine.sync_engine, "after_cursor_execute")
    def _after(conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        elapsed = time.perf_counter() - conn.info.pop("bench_t0")
        statements.setdefault(_statement_key(sql), []).append(elapsed)

    try:
        worker = Worker(db, Settings(**settings_env))
        poller = await asyncpg.connect(libpq_dsn(url))
        await set_workflow_status(db, principal, workflow_id, "active")
        started = time.perf_counter()
        task = asyncio.create_task(worker.run())
        while True:
            if not await live_executions(poller):
                break
            await asyncio.sleep(0.05)
        wall = time.perf_counter() - started
        worker.stop()
        await task
        await poller.close()
    finally:
        for owner, name, original in patches:
            setattr(owner, name, original)
        await db.dispose()

    def table(timings: dict[str, list[float]]) -> list[dict[str, Any]]:
        rows = [
            {
                "name": name,
                "calls": len(values),
                "total_s": round(sum(values), 3),
                "ms_per_call": round(1000 * sum(values) / len(values), 2),
                "pct_of_wall": round(100 * sum(values) / wall, 1),
            }
            for name, values in timings.items()
        ]
        return sorted(rows, key=lambda row: -row["total_s"])

    return {
        "wall_s": round(wall, 3),
        "steps_per_s": round(args.executions * STEPS_PER_EXECUTION / wall, 1),
        "phases": table(phases),
        "statements": table(statements)[:15],
    }


def statement_profile(args: argparse.Namespace) -> dict[str, Any]:
    """One in-process worker on a fresh database, its phases and statements timed."""
    with (
        tempfile.TemporaryDirectory(prefix="revflow-bench-engine-") as tmp,
        fresh_database("postgresql", Path(tmp), args.pg_admin_dsn) as url,
    ):
        say("[bold]statement profile[/bold]: one in-process worker with timers")
        upgrade(url)
        principal, workflow_id = asyncio.run(prepare_revflow(url, args.executions))
        return asyncio.run(_timed_worker_run(url, args, principal, workflow_id))


def print_profile(profile: dict[str, Any]) -> None:
    spy, run = profile["py_spy"], profile["py_spy_run"]
    print()
    print(
        f"py-spy on one worker: {spy['samples']} samples at 250 Hz incl. idle; that run did "
        f"{run['per_s']:,.0f} steps/s under the profiler (worker CPU {run['worker_cpu_s']:.1f} s "
        f"of {run['wall_s']:.1f} s)"
    )
    print(f"  event loop idle in epoll (waiting for PostgreSQL): {spy['idle_in_epoll_pct']:.1f} %")
    print("  top functions by self time (% of samples):")
    for frame, pct in spy["self"]:
        print(f"    {pct:6.2f}  {frame}")
    print("  top functions by inclusive time (% of samples):")
    for frame, pct in spy["inclusive"]:
        print(f"    {pct:6.2f}  {frame}")
    timed = profile["timed"]
    print()
    print(f"timed in-process worker: {timed['steps_per_s']:,.0f} steps/s, wall {timed['wall_s']} s")
    for title, rows in (
        ("phases (nested: run_once contains the store calls)", timed["phases"]),
        ("statements (round trip: send, PostgreSQL, receive)", timed["statements"]),
    ):
        print(f"  {title}:")
        print(f"    {'total s':>8} {'calls':>6} {'ms/call':>8} {'% wall':>7}  name")
        for row in rows:
            print(
                f"    {row['total_s']:>8.2f} {row['calls']:>6} {row['ms_per_call']:>8.2f} "
                f"{row['pct_of_wall']:>6.1f}%  {row['name']}"
            )


# --- report ------------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "info"}[ok]


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def summary(runs: list[Run], missing: dict[str, str]) -> dict[str, Any]:
    """The numbers ``revflow bench`` reads: rates (``None`` when their check failed), the
    floor, the strongest peer configuration and the ratios, with the goals' verdicts."""
    revflow = {r.workers: r for r in runs if r.system == "revflow"}
    floor = next((r for r in runs if r.system == "floor"), None)
    peers = [r for r in runs if r.system in ("procrastinate", "dbos")]
    per_step = [r for r in peers if r.mode == "step"]
    one, two = revflow.get(1), revflow.get(2)
    engine = None if two is None else two.rate
    floor_rate = None if floor is None else floor.rate
    best = max((r for r in peers if r.rate is not None), key=lambda r: r.per_s, default=None)
    best_rate = None if best is None else best.rate
    legacy = max((r for r in per_step if r.rate is not None), key=lambda r: r.per_s, default=None)
    vs_floor = _ratio(engine, floor_rate)
    vs_peer = _ratio(engine, best_rate)
    verdicts = {
        "engine_steps_per_s_passed": None if engine is None else engine >= GOAL_STEPS_PER_S,
        "engine_vs_floor_passed": None if vs_floor is None else vs_floor >= GOAL_VS_FLOOR,
        "engine_vs_best_peer_passed": None if vs_peer is None else vs_peer >= GOAL_VS_BEST_PEER,
    }
    problems = [f"{r.label}: {problem}" for r in runs for problem in r.problems]
    return {
        "engine_steps_per_s_1": None if one is None else one.rate,
        "engine_steps_per_s": engine,
        "engine_floor_steps_per_s": floor_rate,
        "engine_vs_floor": vs_floor,
        "engine_best_peer": None if best is None else best.label,
        "engine_best_peer_steps_per_s": best_rate,
        "engine_vs_best_peer": vs_peer,
        "procrastinate_jobs_per_s": None if legacy is None else legacy.rate,
        "ratio_vs_baseline": _ratio(engine, None if legacy is None else legacy.rate),
        "peers": [
            {
                "system": r.system,
                "mode": r.mode,
                "workers": r.workers,
                "concurrency": r.concurrency,
                "steps_per_s": r.rate,
                "problems": r.problems,
            }
            for r in peers
        ],
        "peers_missing": missing,
        "goals": {
            "engine_steps_per_s": GOAL_STEPS_PER_S,
            "engine_vs_floor": GOAL_VS_FLOOR,
            "engine_vs_best_peer": GOAL_VS_BEST_PEER,
            **verdicts,
        },
        "problems": problems,
        "passed": not problems and all(v is not False for v in verdicts.values()),
    }


def report(
    args: argparse.Namespace,
    runs: list[Run],
    facts: dict[str, Any],
    profile: dict[str, Any] | None,
    missing: dict[str, str],
) -> bool:
    numbers = summary(runs, missing)
    if args.json:
        document = {
            **numbers,
            "config": config(args),
            "environment": environment(),
            "facts": facts,
            "runs": [
                {**asdict(r), "label": r.label, "per_s": round(r.per_s, 1), "rate": r.rate}
                for r in runs
            ],
            "profile": profile,
        }
        print(json.dumps(document, indent=2))
        return bool(numbers["passed"])
    print("bench_engine: " + ", ".join(f"{k}={v}" for k, v in config(args).items()))
    print("environment: " + ", ".join(f"{k}={v}" for k, v in environment().items()))
    for key, value in facts.items():
        print(f"{key}: {value}")
    print()
    header = (
        f"{'system':<50} {'steps':>6} {'wall s':>7} {'steps/s':>8} {'start-up s':>10} "
        f"{'wrk CPU s':>9} {'DB CPU s':>8} {'busy':>5}  check"
    )
    rule = "-" * len(header)
    print(header)
    print(rule)
    for r in runs:
        startup = "/".join(f"{s:.1f}" for s in r.startup_s)
        print(
            f"{r.label:<50} {r.units:>6} {r.wall_s:>7.2f} {r.per_s:>8,.0f} {startup:>10} "
            f"{r.worker_cpu_s:>9.1f} {_cpu(r.db_cpu_s):>8} {100 * r.machine_cpu_busy:>4.0f}%  "
            + ("OK" if not r.problems else "; ".join(r.problems))
        )
    print(rule)
    goals = numbers["goals"]
    for name, value, goal, passed in (
        ("revflow, 2 workers, steps/s", numbers["engine_steps_per_s"], GOAL_STEPS_PER_S, "rate"),
        ("revflow / floor", numbers["engine_vs_floor"], GOAL_VS_FLOOR, "vs_floor"),
        (
            f"revflow / best peer ({numbers['engine_best_peer']})",
            numbers["engine_vs_best_peer"],
            GOAL_VS_BEST_PEER,
            "vs_best_peer",
        ),
    ):
        key = "engine_steps_per_s_passed" if passed == "rate" else f"engine_{passed}_passed"
        print(f"{name:<76} {_fmt(value):>10}  goal >= {goal:g}  {verdict(goals[key])}")
    for peer, why in missing.items():
        print(f"peer {peer}: missing — {why}")
    print(
        "steps: history rows written. wall s: from the commit resuming the workflow (revflow, "
        "floor) or the first worker ready (procrastinate, jobs deferred beforehand) to the 0.05 s "
        "poll that finds no unfinished execution. start-up: launch to ready, per worker, not in "
        "wall s. wrk / DB CPU s: user+system CPU in the window of the worker processes / of the "
        "PostgreSQL backends connected to the run's database. busy: share of all CPUs of the "
        "machine busy in the window (anything running on it). A rate whose check failed counts "
        "as missing (null)."
    )
    print()
    print(f"verdict: {verdict(bool(numbers['passed']))}")
    if profile is not None:
        print_profile(profile)
    return bool(numbers["passed"])


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "executions": args.executions,
        "steps_per_execution": STEPS_PER_EXECUTION,
        "workers": " ".join(str(w) for w in args.workers),
        "REVFLOW_WORKER_BATCH_SIZE": args.batch_size or Settings().worker_batch_size,
        "REVFLOW_WORKER_POLL_SECONDS": args.poll_seconds,
        "floor": "none" if args.no_floor else "engine_floor.py, 2 processes",
        "peers": "none"
        if args.no_baseline
        else f"procrastinate, {args.baseline_workers} workers, job per "
        f"{' / '.join(args.baseline_modes)}, concurrency "
        f"{' / '.join(str(c) for c in args.baseline_concurrency)}, "
        f"{args.baseline_executions or args.executions} executions; dbos, workflow per "
        f"execution, worker_concurrency {' / '.join(str(c) for c in args.dbos_concurrency)}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="REVFLOW_WORKER_BATCH_SIZE (default: its default)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=0.1,
        help="REVFLOW_WORKER_POLL_SECONDS: how long an idle worker sleeps before looking again",
    )
    parser.add_argument("--no-floor", action="store_true", help="do not run the floor")
    parser.add_argument("--baseline-workers", type=int, default=2)
    parser.add_argument(
        "--baseline-concurrency",
        type=int,
        nargs="+",
        default=[1, 2, 5, 10, 20],
        help="the procrastinate sweep: concurrency of each worker process",
    )
    parser.add_argument(
        "--baseline-modes",
        nargs="+",
        choices=["step", "execution"],
        default=["step", "execution"],
        help="procrastinate: one job per step, one job per execution",
    )
    parser.add_argument(
        "--dbos-concurrency",
        type=int,
        nargs="+",
        default=[5, 20],
        help="the DBOS sweep: worker_concurrency of each worker process",
    )
    parser.add_argument(
        "--baseline-executions",
        type=int,
        default=None,
        help="executions of each peer run (default: --executions); rates are per second",
    )
    parser.add_argument("--no-baseline", action="store_true", help="do not run the peers")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="also profile one worker (py-spy, and an in-process run with timers); py-spy's "
        "files go to this folder",
    )
    parser.add_argument("--pg-admin-dsn", default=PG_ADMIN_DSN, help="where to CREATE DATABASE")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.executions < 1 or any(w < 1 for w in args.workers):
        parser.error("--executions and --workers must be positive")

    load_at_start = load_average()
    facts: dict[str, Any] = {"database": database_version("postgresql", args.pg_admin_dsn)}
    missing: dict[str, str] = {}
    runs = [run_revflow(args, workers) for workers in args.workers]
    if not args.no_floor:
        runs.append(run_revflow(args, 2, floor=True))
    if not args.no_baseline:
        why = peer_missing("procrastinate_baseline")
        if why is not None:
            missing["procrastinate"] = why
        else:
            runs += [
                run_baseline(args, mode, concurrency)
                for mode in args.baseline_modes
                for concurrency in args.baseline_concurrency
            ]
        why = peer_missing("dbos_peer")
        if why is not None:
            missing["dbos"] = why
        else:
            runs += [run_dbos(args, concurrency) for concurrency in args.dbos_concurrency]
    facts["load average (1 min)"] = f"{load_at_start} at start, {load_average()} at end"
    profile = None
    if args.profile is not None:
        profiled = run_revflow(args, 1, profile_dir=args.profile)
        profile = {
            "py_spy": summarize_py_spy(args.profile / "worker.folded"),
            "py_spy_run": {**asdict(profiled), "per_s": round(profiled.per_s, 1)},
            "timed": statement_profile(args),
        }
    if not report(args, runs, facts, profile, missing):
        raise SystemExit(1)


if __name__ == "__main__":
    exit_on_sigterm()
    main()
