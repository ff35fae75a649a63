"""The procrastinate peer of ``bench_engine.py``: the five-step workload as procrastinate jobs.

Two ways, each as procrastinate's documentation has tasks written (a task does its work on its
own connection and defers what comes next), chosen when the jobs are deferred
(``prepare(dsn, executions, mode)``): ``step``, one job per step (``bench_step``), each
deferring the next step's job; ``execution``, one job per execution running its five steps in
one transaction (``bench_execution``, the same statements). A worker runs either.

What it does, exactly (``bench_engine.py`` drives it; this module is also the worker program):

- A database of its own with procrastinate's schema (``App.schema_manager.apply_schema_async``)
  and four small tables mirroring what a revflow step touches: ``bench_contacts`` (``fields`` and
  ``tags`` as JSONB), ``bench_executions`` (``status``, ``current_step``, ``finished_at``),
  ``bench_history`` and ``bench_messages``; one contact and one execution per workload item.
- One task, ``bench_step(execution_id, step)``. A job runs step ``step`` of its execution in ONE
  transaction on a connection of the worker process's own psycopg pool (autocommit connections,
  ``BEGIN`` … ``COMMIT`` around the statements):

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
- Set-up: the first step of every execution is deferred (one ``batch_defer_async``) before the
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
from typing import Any

import psycopg
from procrastinate import App, PsycopgConnector
from psycopg_pool import AsyncConnectionPool

TASK_NAME = "bench_step"
EXECUTION_TASK_NAME = "bench_execution"
MODES = ("step", "execution")
STEPS = 5
READY_MARKER = "READY"

TABLES_SQL = """
CREATE TABLE bench_contacts (
    id integer PRIMARY KEY,
    email text NOT NULL,
    fields jsonb NOT NULL DEFAULT '{}',
    tags jsonb NOT NULL DEFAULT '[]',
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE bench_executions (
    id integer PRIMARY KEY,
    contact_id integer NOT NULL REFERENCES bench_contacts (id),
    status text NOT NULL,
    current_step text,
    finished_at timestamptz
);
CREATE INDEX bench_executions_live ON bench_executions (id) WHERE status <> 'completed';
CREATE TABLE bench_history (
    id bigserial PRIMARY KEY,
    execution_id integer NOT NULL REFERENCES bench_executions (id),
    at timestamptz NOT NULL,
    step text NOT NULL,
    result text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX bench_history_execution ON bench_history (execution_id, id);
CREATE TABLE bench_messages (
    id bigserial PRIMARY KEY,
    execution_id integer NOT NULL,
    contact_id integer NOT NULL,
    "to" text NOT NULL,
    subject text,
    body text,
    created_at timestamptz NOT NULL
);
"""

# The step ids of the workload, in order (the same names as revflow's definition).
STEP_IDS = ("set_stage", "tag_engaged", "is_engaged", "welcome", "done")

# (step-specific statements, history result, history detail) of each step, 1-based.
STEP_SQL: dict[int, tuple[str | None, str, str]] = {
    1: (
        'UPDATE bench_contacts SET fields = fields || \'{"stage": "engaged"}\', '
        "updated_at = now() WHERE id = %(contact)s",
        "done",
        '{"field": "fields.stage", "changed": true}',
    ),
    2: (
        "UPDATE bench_contacts SET tags = tags || '[\"engaged\"]', updated_at = now() "
        "WHERE id = %(contact)s AND NOT tags ? 'engaged'",
        "done",
        '{"tag": "engaged", "changed": true}',
    ),
    3: ("SELECT tags ? 'engaged' FROM bench_contacts WHERE id = %(contact)s", "branch", "{}"),
    4: (
        'INSERT INTO bench_messages (execution_id, contact_id, "to", subject, body, created_at) '
        "SELECT %(execution)s, id, email, 'Welcome ' || (fields ->> 'first_name'), "
        "'Hello ' || (fields ->> 'first_name') || ', thanks for joining.', now() "
        "FROM bench_contacts WHERE id = %(contact)s",
        "sent",
        '{"channel": "outbox"}',
    ),
    5: (None, "completed", "{}"),
}


def make_app(dsn: str, *, max_size: int = 10) -> App:
    """A procrastinate app on ``dsn`` with the one task registered (not opened)."""
    return App(
        connector=PsycopgConnector(conninfo=dsn, min_size=1, max_size=max_size),
    )


async def run_step(conn: psycopg.AsyncConnection[Any], execution_id: int, step: int) -> None:
    """Step ``step`` of one execution on ``conn``, inside the caller's transaction."""
    statement, result, detail = STEP_SQL[step]
    params = {"execution": execution_id, "contact": execution_id}
    if statement is not None:
        cursor = await conn.execute(statement, params)
        if step == 3:
            row = await cursor.fetchone()
            branch = "then" if row and row[0] else "else"
            detail = f'{{"result": "{branch}"}}'
    await conn.execute(
        "INSERT INTO bench_history (execution_id, at, step, result, detail) "
        "VALUES (%(execution)s, now(), %(step)s, %(result)s, %(detail)s)",
        {**params, "step": STEP_IDS[step - 1], "result": result, "detail": detail},
    )
    if step < STEPS:
        await conn.execute(
            "UPDATE bench_executions SET status = 'active', current_step = %(next)s "
            "WHERE id = %(execution)s",
            {**params, "next": STEP_IDS[step]},
        )
    else:
        await conn.execute(
            "UPDATE bench_executions SET status = 'completed', current_step = %(step)s, "
            "finished_at = now() WHERE id = %(execution)s",
            {**params, "step": STEP_IDS[step - 1]},
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
            await conn.execute(TABLES_SQL)
            await conn.execute(
                "INSERT INTO bench_contacts (id, email, fields) "
                "SELECT i, 'contact' || i || '@example.com', "
                "jsonb_build_object('first_name', 'Contact' || i) "
                "FROM generate_series(1, %s) AS i",
                (executions,),
            )
            await conn.execute(
                "INSERT INTO bench_executions (id, contact_id, status, current_step) "
                "SELECT i, i, 'active', %s FROM generate_series(1, %s) AS i",
                (STEP_IDS[0], executions),
            )
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
    """What the run wrote: jobs by status, history rows, messages, completed executions."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        counts: dict[str, int] = {}
        cursor = await conn.execute(
            "SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1"
        )
        for status, count in await cursor.fetchall():
            counts[f"jobs_{status}"] = int(count)
        for key, sql in (
            ("history", "SELECT count(*) FROM bench_history"),
            ("messages", "SELECT count(*) FROM bench_messages"),
            ("completed", "SELECT count(*) FROM bench_executions WHERE status = 'completed'"),
            ("tagged", "SELECT count(*) FROM bench_contacts WHERE tags ? 'engaged'"),
        ):
            cursor = await conn.execute(sql)
            row = await cursor.fetchone()
            assert row is not None
            counts[key] = int(row[0])
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
