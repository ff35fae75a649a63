"""What this machine charges for Python and for a message to PostgreSQL: how to tell machines apart.

    python benchmarks/round_trip.py [--round-trips 3000] [--json]

The API's ratios to their floors move from one machine of the same kind to the next, because
revflow's requests make more round trips to PostgreSQL than the floor's single statement and
run more Python. This prints what each costs here, so that a run can be read beside the
machine it ran on:

- ``python_us``: ``sum(range(1000))`` in a loop, in microseconds (the interpreter's speed);
- ``round_trip_us`` and ``round_trip_cpu_us``: a prepared ``SELECT $1::int`` with asyncpg in a
  loop on one connection over TCP (``--dsn``, PostgreSQL on loopback as the benchmarks use it):
  the wall time of one round trip and this process's CPU time for it (``time.process_time``);
- ``unix_round_trip_us`` and ``unix_round_trip_cpu_us``: the same over PostgreSQL's Unix socket
  (``--socket-dir``), or null when it cannot be reached;
- ``read_cpu_us``: this process's CPU for the transaction every read request of the API makes
  (``BEGIN`` with a tenant's settings, one statement, ``ROLLBACK``: three round trips), on a
  fresh migrated database made on the server of ``--dsn``, through each layer: ``asyncpg``
  alone; ``sqlalchemy``, a plain ``AsyncEngine``'s ``connect()`` (its ``BEGIN``, the
  statement, its ``ROLLBACK``: the same three round trips); ``revflow``,
  ``Database.session()`` entered into an account, as a request has it. The statement is
  ``SELECT 1``: what is measured is the layer, not the query.

Each loop is warmed up with 200 round trips (transactions). The lowest of three runs is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import PG_ADMIN_DSN, fresh_database, libpq_dsn, positive_int
from revflow.db import Database, _tenant_settings, enter_account
from revflow.migrate import upgrade

WARM_UP = 200
RUNS = 3


def python_us() -> float:
    """The lowest of three runs of 10,000 ``sum(range(1000))``, in µs per call."""
    best = float("inf")
    for _ in range(RUNS):
        started = time.perf_counter()
        for _ in range(10_000):
            sum(range(1000))
        best = min(best, (time.perf_counter() - started) / 10_000 * 1e6)
    return best


async def lowest_us(call: Callable[[], Awaitable[object]], count: int) -> tuple[float, float]:
    """The lowest wall and CPU time, over three runs, of ``count`` awaited calls of ``call``
    (after ``WARM_UP`` more), in µs each."""
    for _ in range(WARM_UP):
        await call()
    wall, cpu = float("inf"), float("inf")
    for _ in range(RUNS):
        started, started_cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            await call()
        wall = min(wall, (time.perf_counter() - started) / count * 1e6)
        cpu = min(cpu, (time.process_time() - started_cpu) / count * 1e6)
    return wall, cpu


async def round_trip_us(connection: asyncpg.Connection, count: int) -> tuple[float, float]:
    """The lowest wall and CPU time of ``count`` prepared round trips on ``connection``, in µs
    each, rounded to 0.1; the connection is closed afterwards."""
    try:
        statement = await connection.prepare("SELECT $1::int")
        wall, cpu = await lowest_us(lambda: statement.fetchval(1), count)
    finally:
        await connection.close()
    return round(wall, 1), round(cpu, 1)


async def measure(dsn: str, socket_dir: str, count: int) -> dict[str, float | None]:
    wall, cpu = await round_trip_us(await asyncpg.connect(dsn), count)
    unix: tuple[float | None, float | None] = (None, None)
    try:
        connection = await asyncpg.connect(dsn, host=socket_dir)
    except (OSError, asyncpg.PostgresError):
        pass
    else:
        unix = await round_trip_us(connection, count)
    return {
        "round_trip_us": wall,
        "round_trip_cpu_us": cpu,
        "unix_round_trip_us": unix[0],
        "unix_round_trip_cpu_us": unix[1],
    }


async def read_cpu_us(url: str, count: int) -> dict[str, float]:
    """A read request's transaction through each layer, on the migrated database of ``url``."""
    account = uuid.uuid4()  # the settings' value only: SELECT 1 reads no row
    driver = await asyncpg.connect(libpq_dsn(url))
    engine = create_async_engine(url, pool_size=1)
    db = Database(url, pool_size=1)

    async def with_asyncpg() -> None:
        await driver.execute("BEGIN; " + _tenant_settings(account))
        await driver.fetchval("SELECT 1")
        await driver.execute("ROLLBACK")

    async def with_sqlalchemy() -> None:
        async with engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")

    async def with_revflow() -> None:
        async with db.session() as session:
            await enter_account(session, account)
            await (await session.connection()).exec_driver_sql("SELECT 1")

    layers = {"asyncpg": with_asyncpg, "sqlalchemy": with_sqlalchemy, "revflow": with_revflow}
    try:
        return {
            name: round((await lowest_us(transaction, count))[1], 1)
            for name, transaction in layers.items()
        }
    finally:
        await driver.close()
        await engine.dispose()
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dsn", default=PG_ADMIN_DSN, help="PostgreSQL over TCP")
    parser.add_argument("--socket-dir", default="/var/run/postgresql", help="its Unix socket")
    parser.add_argument("--round-trips", type=positive_int, default=3000, help="timed per run")
    parser.add_argument("--json", action="store_true", help="print a JSON document")
    args = parser.parse_args()
    document: dict[str, Any] = {"python_us": round(python_us(), 1)}
    document |= asyncio.run(measure(args.dsn, args.socket_dir, args.round_trips))
    with (
        tempfile.TemporaryDirectory() as workdir,
        fresh_database("postgresql", Path(workdir), args.dsn) as url,
    ):
        upgrade(url)
        layers = asyncio.run(read_cpu_us(url, args.round_trips))
    if args.json:
        print(json.dumps(document | {"read_cpu_us": layers}))
        return
    print(f"python: sum(range(1000)) takes {document['python_us']} µs")
    print(
        f"postgresql over tcp: a round trip takes {document['round_trip_us']} µs, "
        f"{document['round_trip_cpu_us']} µs of this process's CPU"
    )
    if document["unix_round_trip_us"] is None:
        print(f"postgresql over its unix socket: not reachable in {args.socket_dir}")
    else:
        print(
            f"postgresql over its unix socket: a round trip takes "
            f"{document['unix_round_trip_us']} µs, {document['unix_round_trip_cpu_us']} µs "
            "of this process's CPU"
        )
    print("a read's transaction (BEGIN with a tenant's settings, SELECT 1, ROLLBACK), CPU:")
    for layer, us in layers.items():
        print(f"  {layer}: {us} µs")


if __name__ == "__main__":
    main()
