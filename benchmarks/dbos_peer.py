"""The DBOS peer of ``bench_engine.py``: the five-step workload as durable DBOS workflows.

DBOS (``dbos``, durable Python workflows on PostgreSQL) used the way its documentation shows
for background work: one workflow per execution (``bench_execution``), its side-effecting
steps as ``@DBOS.step``s (each step's statements of ``peer_workload.py`` in one transaction on
a connection of the process's psycopg pool; DBOS checkpoints every step's result in its system
tables), enqueued on a queue and dequeued by worker processes with a ``worker_concurrency``.

What it does, exactly (``bench_engine.py`` drives it; this module is also the worker program):

- ``prepare``: on a fresh database, the workload's tables and rows (``peer_workload.py``), then
  a DBOS process that listens to no queue launches (creating DBOS's system tables in the same
  database), registers the queue and enqueues one workflow per execution, and exits;
- ``worker --dsn DSN --concurrency N``: launches DBOS (its system database = DSN, an executor id
  of its own), registers the queue with ``worker_concurrency`` N and a 0.1 s polling interval,
  prints ``READY`` on stderr and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import psycopg
from dbos import DBOS, DBOSConfig
from psycopg_pool import ConnectionPool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import peer_workload

QUEUE = "bench"
WORKFLOW = "bench_execution"
READY_MARKER = "READY"
POLLING_INTERVAL_S = 0.1

_pool: ConnectionPool[Any] | None = None


@DBOS.step()
def run_step(execution_id: int, number: int) -> bool | None:
    """One step of one execution, its statements in one transaction."""
    assert _pool is not None, "the worker opens the pool"
    with _pool.connection() as conn, conn.transaction():
        return peer_workload.run_step_sync(conn, execution_id, number)


@DBOS.workflow(name=WORKFLOW)
def bench_execution(execution_id: int) -> None:
    for number in range(1, peer_workload.STEPS + 1):
        run_step(execution_id, number)


def _launch(dsn: str, name: str, *, listen: bool) -> None:
    config: DBOSConfig = {
        "name": "revflow-bench-peer",
        "system_database_url": dsn,
        "executor_id": name,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    if not listen:
        DBOS.listen_queues([])
    DBOS.launch()


def prepare(dsn: str, executions: int, concurrency: int) -> None:
    """The workload's rows, DBOS's tables, the queue and one enqueued workflow per execution."""
    import asyncio

    async def rows() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await peer_workload.create_workload(conn, executions)

    asyncio.run(rows())
    _launch(dsn, f"prepare-{os.getpid()}", listen=False)
    try:
        queue = DBOS.register_queue(
            QUEUE, worker_concurrency=concurrency, polling_interval_sec=POLLING_INTERVAL_S
        )
        for execution_id in range(1, executions + 1):
            queue.enqueue(bench_execution, execution_id)
    finally:
        DBOS.destroy()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def run_worker(dsn: str, concurrency: int) -> None:
    global _pool
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    _pool = ConnectionPool(
        dsn, min_size=1, max_size=concurrency, kwargs={"autocommit": True}, open=True
    )
    _launch(dsn, f"worker-{os.getpid()}", listen=True)
    try:
        DBOS.register_queue(
            QUEUE, worker_concurrency=concurrency, polling_interval_sec=POLLING_INTERVAL_S
        )
        print(READY_MARKER, file=sys.stderr, flush=True)
        stop.wait()
    finally:
        DBOS.destroy()
        _pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("prepare", "worker"):
        command = sub.add_parser(name)
        command.add_argument("--dsn", required=True, help="libpq connection string")
        command.add_argument("--concurrency", type=int, default=10)
        command.add_argument("--executions", type=int, default=1000)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.dsn, args.executions, args.concurrency)
    else:
        run_worker(args.dsn, args.concurrency)


if __name__ == "__main__":
    main()
