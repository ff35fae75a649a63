"""The procrastinate peer of ``bench_engine.py``: the five-step workload as procrastinate jobs.

Two ways, each as procrastinate's documentation has tasks written (a task does its work on its
own connection and defers what comes next), chosen when the jobs are deferred
(``prepare(dsn, executions, mode)``): ``step``, one job per step (``bench_step``), each
deferring the next step's job; ``execution``, one job per execution running its five steps in
one transaction (``bench_execution``, the same statements). A worker runs either.

What it does, exactly (``bench_engine.py`` drives it; this module is also the worker program):

- A database of its own with procrastinate's schema (``App.schema_manager.apply_schema_async``)
  and the workload's tables of ``peer_workload.py``: ``bench_contacts`` (``fields`` and ``tags``
  as JSONB), ``bench_executions`` (``status``, ``current_step``, ``finished_at``),
  ``bench_history`` and ``bench_messages``; one contact and one execution per workload item.
- ``bench_step(execution_id, step)``: a job runs step ``step`` of its execution in ONE
  transaction on a connection of the worker process's own psycopg pool (autocommit connections,
  ``BEGIN`` … ``COMMIT`` around the statements); ``bench_execution(execution_id)`` runs the five
  in one transaction:

  1. ``update_field``: ``UPDATE bench_contacts SET fields = fields || {"stage": "engaged"}``
  2. ``add_tag``: ``UPDATE bench_contacts SET tags = tags || ["engaged"]`` (when not yet there)
  3. ``condition``: ``SELECT tags ? 'engaged' FROM bench_contacts``
  4. ``send_email``: ``INSERT INTO bench_messages … SELECT … FROM bench_contacts`` (the outbox)
  5. ``end``: nothing more

  and for every step ``INSERT INTO bench_history`` (one row) and ``UPDATE bench_executions``
  (the new position; the last step marks it ``completed``). After the commit, steps 1-4 defer
  the job of the next step (``defer_async``, procrastinate's own connection pool); procrastinate
  itself fetches (``FOR UPDATE SKIP LOCKED``) and finishes every job in the jobs table, with
  LISTEN/NOTIFY on.
- Set-up: the first job of every execution is deferred (one ``batch_defer_async``) before the
  workers start, and the database analysed.
- Worker processes: ``python benchmarks/procrastinate_baseline.py worker --dsn DSN
  --concurrency N`` (``App.run_worker_async``, LISTEN/NOTIFY on; job logs off, as a production
  worker at WARNING level). It prints ``READY`` on stderr when procrastinate logs that the
  worker starts, right before its first fetch.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from procrastinate import App, PsycopgConnector
from psycopg_pool import AsyncConnectionPool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import peer_workload
from benchmarks.peer_workload import run_step

TASK_NAME = "bench_step"
EXECUTION_TASK_NAME = "bench_execution"
MODES = ("step", "execution")
STEPS = peer_workload.STEPS
READY_MARKER = "READY"


def make_app(dsn: str, *, max_size: int = 10) -> App:
    """A procrastinate app on ``dsn`` with the one task registered (not opened)."""
    return App(
        connector=PsycopgConnector(conninfo=dsn, min_size=1, max_size=max_size),
    )


def register(app: App, work_pool: AsyncConnectionPool | None) -> tuple[Any, Any]:
    """Register both tasks on ``app``; ``work_pool`` is the jobs' own connection pool."""

    @app.task(name=TASK_NAME)
    async def bench_step(execution_id: int, step: int) -> None:
        assert work_pool is not None, "the worker opens the jobs' pool"
        async with work_pool.connection() as conn, conn.transaction():
            await run_step(conn, execution_id, step)
        if step < STEPS:
            await bench_step.defer_async(execution_id=execution_id, step=step + 1)

    @app.task(name=EXECUTION_TASK_NAME)
    async def bench_execution(execution_id: int) -> None:
        assert work_pool is not None, "the worker opens the jobs' pool"
        async with work_pool.connection() as conn, conn.transaction():
            for step in range(1, STEPS + 1):
                await run_step(conn, execution_id, step)

    return bench_step, bench_execution


# --- set-up and measurement helpers (called by bench_engine.py) -------------------------------


async def prepare(dsn: str, executions: int, mode: str = "step") -> None:
    """Apply procrastinate's schema, create the contacts and executions, defer every first
    job (one batch defer: the first step's, or the whole execution's), then ``VACUUM
    ANALYZE``: the planner knows the jobs table as it is when the workers start."""
    app = make_app(dsn, max_size=2)
    step_task, execution_task = register(app, None)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await peer_workload.create_workload(conn, executions)
            if mode == "step":
                await step_task.batch_defer_async(
                    *({"execution_id": i, "step": 1} for i in range(1, executions + 1))
                )
            else:
                await execution_task.batch_defer_async(
                    *({"execution_id": i} for i in range(1, executions + 1))
                )
            await conn.execute("VACUUM ANALYZE")


async def outcome(dsn: str) -> dict[str, int]:
    """What the run wrote: jobs by status, and the workload's rows (:func:`outcome`)."""
    counts = await peer_workload.outcome(dsn)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1"
        )
        for status, count in await cursor.fetchall():
            counts[f"jobs_{status}"] = int(count)
    return counts


# --- the worker program ------------------------------------------------------------------------


class _ReadyHandler(logging.Handler):
    """Prints the ready marker when procrastinate's worker starts, then quiets its logs."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "action", None) == "start_worker":
            print(READY_MARKER, file=sys.stderr, flush=True)
            logging.getLogger("procrastinate").setLevel(logging.WARNING)


async def run_worker(dsn: str, concurrency: int, polling_interval: float) -> None:
    work_pool = AsyncConnectionPool(
        dsn, min_size=concurrency, max_size=concurrency, kwargs={"autocommit": True}, open=False
    )
    await work_pool.open(wait=True)
    app = make_app(dsn, max_size=concurrency + 2)
    register(app, work_pool)
    try:
        async with app.open_async():
            await app.run_worker_async(
                concurrency=concurrency,
                fetch_job_polling_interval=polling_interval,
                install_signal_handlers=True,
            )
    finally:
        await work_pool.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="run one procrastinate worker process")
    worker.add_argument("--dsn", required=True, help="libpq connection string")
    worker.add_argument("--concurrency", type=int, default=10)
    worker.add_argument(
        "--polling-interval",
        type=float,
        default=1.0,
        help="procrastinate's fetch_job_polling_interval (LISTEN/NOTIFY wakes it sooner)",
    )
    args = parser.parse_args(argv)
    logger = logging.getLogger("procrastinate")
    logger.setLevel(logging.INFO)
    logger.addHandler(_ReadyHandler())
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    asyncio.run(run_worker(args.dsn, args.concurrency, args.polling_interval))


if __name__ == "__main__":
    main()
