"""Benchmark the engine: steps per second of ``revflow worker`` processes on PostgreSQL.

Run: ``python benchmarks/bench_engine.py [--executions 10000] [--workers 1 2] [--batch-size N]
[--poll-seconds S] [--baseline-concurrency N] [--no-baseline] [--profile DIR] [--json]``.

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
- the timed window: from the commit that resumes the workflow until a poll (every 0.2 s) of the
  live executions finds none left; steps = the history rows written, counted afterwards. The
  result is exact to one poll interval.

The baseline (``procrastinate_baseline.py`` says exactly what it does): the same executions x 5
steps as one procrastinate job per step, each job doing its step's internal writes (the step's
own statement, a history row, the execution's new position) in one transaction on its own
connection and deferring the next step's job; ``--baseline-workers`` (2) procrastinate worker
processes with ``--baseline-concurrency`` each, on a separate fresh database with procrastinate's
schema, on the same PostgreSQL server. The first-step jobs are deferred (one batch defer) and
the database analysed before the workers start; its timed window runs from the moment the first
worker is ready (procrastinate logs the worker's start right before its first fetch) to the
poll that finds no unfinished execution; jobs = succeeded jobs.

Goals: >= 5,000 steps/s with two workers, and >= 3x the baseline's jobs/s. Exits 1 on a miss.
``--profile DIR`` adds two runs of one worker that are not in the table: a ``revflow worker``
under ``py-spy record`` (idle samples included: the share spent waiting for PostgreSQL), and
an in-process worker with timers on its phases and on every SQL statement.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
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

from benchmarks import procrastinate_baseline as baseline
from benchmarks.common import (
    PG_ADMIN_DSN,
    database_version,
    environment,
    fresh_database,
    load_average,
    revflow_command,
    revflow_env,
    say,
    stderr,
)
from revflow.audit.service import Actor
from revflow.auth import service as auth_service
from revflow.auth.service import Principal
from revflow.config import Settings
from revflow.db import Database
from revflow.definition import Definition
from revflow.executions.enrollment import enroll
from revflow.migrate import upgrade
from revflow.models import ApiKey, Contact, Workflow
from revflow.workflows import service as workflows
from revflow.workflows.schemas import WorkflowCreate

GOAL_STEPS_PER_S = 5_000.0  # with two workers
GOAL_RATIO = 3.0  # two workers' steps/s over the baseline's jobs/s
STEPS_PER_EXECUTION = 5
ENROLL_CHUNK = 10_000
POLL_S = 0.2
START_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 1_800.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

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

    system: str
    workers: int
    concurrency: int
    units: int  # history rows (revflow) or succeeded jobs (procrastinate)
    wall_s: float
    startup_s: list[float]
    worker_cpu_s: float
    db_cpu_s: float | None  # the database backends serving the workers
    machine_cpu_busy: float  # fraction of all CPUs busy during the window
    checks: dict[str, int] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return self.units / self.wall_s


def _proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a local process so far (None when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


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
        self._machine0 = self._machine()

    @staticmethod
    def _sum(pids: Sequence[int]) -> float:
        return sum(v for v in map(_proc_cpu_s, pids) if v is not None)

    def _backends(self) -> dict[int, float]:
        if not self.local_db:
            return {}
        pids = asyncio.run(_backend_pids(self.dsn))
        return {pid: cpu for pid in pids if (cpu := _proc_cpu_s(pid)) is not None}

    @staticmethod
    def _machine() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    def stop(self) -> tuple[float, float | None, float]:
        """(worker CPU s, database backends CPU s or None, fraction of the machine busy)."""
        workers = self._sum(self.pids) - self._workers0
        backends = self._backends()
        busy, total = self._machine()
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


async def _principal(db: Database) -> Principal:
    async with db.session(write=True) as session:
        account, _clear = await auth_service.create_account(
            session, "bench", Actor(user="operator"), dt.datetime.now(dt.UTC)
        )
        key_id = await session.scalar(select(ApiKey.id).where(ApiKey.account_id == account.id))
        await session.commit()
    assert key_id is not None
    return Principal(account_id=account.id, key_id=key_id, user="bench", role="admin")


async def prepare_revflow(url: str, executions: int) -> tuple[Principal, uuid.UUID]:
    """Account, published workflow, contacts, enrollments; the workflow is left paused."""
    settings = Settings(database_url=url)
    # No cached prepared statements for the set-up: ``enroll``'s ``ON CONFLICT … WHERE status IN
    # ($1, $2)`` fails from the 6th execution of one prepared statement on a connection, when
    # PostgreSQL switches to a generic plan and can no longer infer the partial unique index.
    db = Database(
        make_url(url)
        .update_query_dict({"prepared_statement_cache_size": "0"})
        .render_as_string(hide_password=False)
    )
    try:
        principal = await _principal(db)
        async with db.session(write=True) as session:
            workflow, version = await workflows.create_workflow(
                session,
                principal,
                WorkflowCreate(
                    name="engine benchmark", definition=WORKLOAD, change_summary="benchmark"
                ),
                settings,
                dt.datetime.now(dt.UTC),
            )
            assert version is not None
            await workflows.publish(
                session, principal, workflow, version, now=dt.datetime.now(dt.UTC)
            )
            await session.commit()
            workflow_id = workflow.id
        now = dt.datetime.now(dt.UTC)
        contact_ids = [uuid.uuid4() for _ in range(executions)]
        async with db.session(write=True) as session:
            for start in range(0, executions, 5_000):
                await session.execute(
                    insert(Contact),
                    [
                        {
                            "id": contact_ids[i],
                            "account_id": principal.account_id,
                            "external_id": f"bench-{i}",
                            "email": f"contact{i}@example.com",
                            "phone": None,
                            "fields": {"first_name": f"Contact{i}"},
                            "tags": [],
                            "created_at": now,
                            "updated_at": now,
                        }
                        for i in range(start, min(start + 5_000, executions))
                    ],
                )
            await session.commit()
        definition = Definition.model_validate(WORKLOAD)
        enrolled = 0
        for start in range(0, executions, ENROLL_CHUNK):
            async with db.session(write=True) as session:
                workflow = await session.get_one(Workflow, workflow_id)
                result = await enroll(
                    session,
                    workflow,
                    definition,
                    contact_ids[start : start + ENROLL_CHUNK],
                    dt.datetime.now(dt.UTC),
                )
                await session.commit()
            enrolled += len(result.executions)
            if result.skipped:
                raise RuntimeError(f"enrollment skipped {len(result.skipped)} contacts")
        if enrolled != executions:
            raise RuntimeError(f"enrolled {enrolled} of {executions}")
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
        workflow = await session.get_one(Workflow, workflow_id, with_for_update=True)
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


# Entered beside a run, with its database URL and account; it may yield what to wait for once
# the workers are ready, before the timed window starts (see :func:`run_revflow`).
Around = Callable[[str, Principal], AbstractContextManager[Callable[[], None] | None]]


def run_revflow(
    args: argparse.Namespace,
    workers: int,
    profile_dir: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    around: Around | None = None,
    poll_s: float = POLL_S,
    label: str | None = None,
) -> Run:
    """One timed run of ``workers`` worker processes on a fresh database.

    ``env`` adds settings for the workers; ``around(url, principal)`` is entered once the
    executions are set up, before the workers start, and left after they stopped (another
    benchmark puts other work beside the engine's there); what it yields, if anything, is called
    once the workers are ready and before the window starts; ``poll_s`` is how often the end is
    looked for.
    """
    label = label or f"revflow, {workers} worker{'s' if workers > 1 else ''}"
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
        procs = [
            launch(revflow_command("worker"), worker_env, workdir, f"worker-{i}")
            for i in range(workers)
        ]
        with around(url, principal) if around else nullcontext() as settle, running(procs):
            startup = wait_started(procs, "worker_started")
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
    expected = args.executions * STEPS_PER_EXECUTION
    if checks["history"] != expected or checks.get("executions_completed") != args.executions:
        raise RuntimeError(f"{label}: unexpected outcome {checks}")
    run = Run(
        "revflow", workers, 1, checks["history"], t1 - t0, startup, cpu_s, db_cpu_s, busy, checks
    )
    say(f"[bold]{label}[/bold]: {run.units} steps in {run.wall_s:.2f} s = {run.per_s:,.0f}/s")
    return run


# --- the procrastinate baseline ----------------------------------------------------------------


async def _remaining_baseline(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval("SELECT count(*) FROM bench_executions WHERE status <> 'completed'")
    )


def run_baseline(args: argparse.Namespace) -> Run:
    workers, concurrency = args.baseline_workers, args.baseline_concurrency
    label = f"procrastinate, {workers} workers x concurrency {concurrency}"
    with (
        tempfile.TemporaryDirectory(prefix="revflow-bench-baseline-") as tmp,
        fresh_database("postgresql", Path(tmp), args.pg_admin_dsn) as url,
    ):
        workdir = Path(tmp)
        dsn = libpq_dsn(url)
        say(
            f"[bold]{label}[/bold]: apply_schema, set up {args.executions} executions, "
            "defer their first steps"
        )
        asyncio.run(baseline.prepare(dsn, args.executions))
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
            t1 = asyncio.run(wait_done(dsn, args.executions, _remaining_baseline, procs, label))
            cpu_s, db_cpu_s, busy = meter.stop()
            # The last jobs' own "finish" may still be in flight; let them land before counting.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                checks = asyncio.run(baseline.outcome(dsn))
                if checks.get("jobs_succeeded", 0) + checks.get("jobs_failed", 0) >= (
                    args.executions * baseline.STEPS
                ):
                    break
                time.sleep(0.1)
    expected = args.executions * baseline.STEPS
    if checks.get("jobs_succeeded") != expected or checks["history"] != expected:
        raise RuntimeError(f"{label}: unexpected outcome {checks}")
    run = Run(
        "procrastinate",
        workers,
        concurrency,
        checks["jobs_succeeded"],
        t1 - t0,
        startup,
        cpu_s,
        db_cpu_s,
        busy,
        checks,
    )
    say(f"[bold]{label}[/bold]: {run.units} jobs in {run.wall_s:.2f} s = {run.per_s:,.0f}/s")
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


def report(
    args: argparse.Namespace,
    runs: list[Run],
    facts: dict[str, Any],
    profile: dict[str, Any] | None,
) -> bool:
    by_workers = {r.workers: r for r in runs if r.system == "revflow"}
    base = next((r for r in runs if r.system == "procrastinate"), None)
    one, two = by_workers.get(1), by_workers.get(2)
    ratio = two.per_s / base.per_s if two and base else None
    goal_rate = None if two is None else two.per_s >= GOAL_STEPS_PER_S
    goal_ratio = None if ratio is None else ratio >= GOAL_RATIO
    passed = goal_rate is not False and goal_ratio is not False
    if args.json:
        document = {
            "engine_steps_per_s_1": None if one is None else round(one.per_s, 1),
            "engine_steps_per_s": None if two is None else round(two.per_s, 1),
            "procrastinate_jobs_per_s": None if base is None else round(base.per_s, 1),
            "ratio_vs_baseline": None if ratio is None else round(ratio, 3),
            "goals": {
                "engine_steps_per_s": GOAL_STEPS_PER_S,
                "ratio_vs_baseline": GOAL_RATIO,
                "engine_steps_per_s_passed": goal_rate,
                "ratio_passed": goal_ratio,
            },
            "passed": passed,
            "config": config(args),
            "environment": environment(),
            "facts": facts,
            "runs": [{**asdict(r), "per_s": round(r.per_s, 1)} for r in runs],
            "profile": profile,
        }
        print(json.dumps(document, indent=2))
        return passed
    print("bench_engine: " + ", ".join(f"{k}={v}" for k, v in config(args).items()))
    print("environment: " + ", ".join(f"{k}={v}" for k, v in environment().items()))
    for key, value in facts.items():
        print(f"{key}: {value}")
    print()
    header = (
        f"{'system':<36} {'units':>6} {'wall s':>7} {'per s':>7} {'start-up s':>10} "
        f"{'wrk CPU s':>9} {'DB CPU s':>8} {'busy':>5} {'goal':>9}  verdict"
    )
    rule = "-" * len(header)
    print(header)
    print(rule)
    for r in runs:
        if r.system == "revflow":
            name = f"revflow, {r.workers} worker{'s' if r.workers > 1 else ''} (steps)"
            goal = f">= {GOAL_STEPS_PER_S:,.0f}" if r.workers == 2 else "-"
            ok = (r.per_s >= GOAL_STEPS_PER_S) if r.workers == 2 else None
        else:
            name = f"procrastinate, {r.workers} x conc. {r.concurrency} (jobs)"
            goal, ok = "-", None
        startup = "/".join(f"{s:.1f}" for s in r.startup_s)
        print(
            f"{name:<36} {r.units:>6} {r.wall_s:>7.2f} {r.per_s:>7,.0f} {startup:>10} "
            f"{r.worker_cpu_s:>9.1f} {_cpu(r.db_cpu_s):>8} {100 * r.machine_cpu_busy:>4.0f}% "
            f"{goal:>9}  {verdict(ok)}"
        )
    if ratio is not None:
        print(
            f"{'revflow 2 workers / baseline':<36} {'':>6} {'':>7} {ratio:>6.2f}x {'':>10} "
            f"{'':>9} {'':>8} {'':>5} {f'>= {GOAL_RATIO:g}x':>9}  {verdict(goal_ratio)}"
        )
    print(rule)
    print(
        "units: history rows written (revflow) or succeeded jobs (procrastinate). wall s: from "
        "the commit resuming the workflow (revflow) or the first worker ready (procrastinate, "
        "jobs deferred beforehand) to the 0.2 s poll that finds no unfinished execution. "
        "start-up: launch to ready, per worker, not in wall s. wrk / DB CPU s: user+system CPU "
        "in the window of "
        "the worker processes / of the PostgreSQL backends connected to the run's database. "
        "busy: share of all CPUs of the machine busy in the window (anything running on it)."
    )
    print()
    print(f"verdict: {verdict(passed)}")
    if profile is not None:
        print_profile(profile)
    return passed


def config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "executions": args.executions,
        "steps_per_execution": STEPS_PER_EXECUTION,
        "workers": " ".join(str(w) for w in args.workers),
        "REVFLOW_WORKER_BATCH_SIZE": args.batch_size or Settings().worker_batch_size,
        "REVFLOW_WORKER_POLL_SECONDS": args.poll_seconds,
        "baseline": "none"
        if args.no_baseline
        else f"{args.baseline_workers} procrastinate workers x concurrency "
        f"{args.baseline_concurrency}",
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
    parser.add_argument("--baseline-workers", type=int, default=2)
    parser.add_argument("--baseline-concurrency", type=int, default=10)
    parser.add_argument("--no-baseline", action="store_true")
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
    runs = [run_revflow(args, workers) for workers in args.workers]
    if not args.no_baseline:
        runs.append(run_baseline(args))
    facts["load average (1 min)"] = f"{load_at_start} at start, {load_average()} at end"
    profile = None
    if args.profile is not None:
        profiled = run_revflow(args, 1, profile_dir=args.profile)
        profile = {
            "py_spy": summarize_py_spy(args.profile / "worker.folded"),
            "py_spy_run": {**asdict(profiled), "per_s": round(profiled.per_s, 1)},
            "timed": statement_profile(args),
        }
    if not report(args, runs, facts, profile):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
