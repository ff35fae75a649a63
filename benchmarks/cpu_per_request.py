"""CPU time per request of three reads, in process: what every request pays, and what a route adds.

    python benchmarks/cpu_per_request.py [--database postgresql|sqlite] [--requests 3000]
    PYTHONPATH=<another checkout>/src python benchmarks/cpu_per_request.py   # another revision

The application's ASGI callable is called directly: no server, no HTTP client, no socket but
the database's, so the process's CPU time (``time.process_time``) is the application's and
its driver's alone. The request log is written as ``revflow serve`` writes it (JSON lines,
here to ``/dev/null``) and the collector settled as it settles it. One account, with the key
cache warm, reads:

- ``missing``: a workflow that does not exist (authentication, the lookup, a 404 problem);
  what every request pays, route or not;
- ``workflow``: a workflow (the lookup and its versions counted by status);
- ``list``: the newest 50 of 60 versions (one statement).

Each is warmed up with 200 requests, then timed over ``--requests``, every answer's status
checked. The yardstick is the floor server's CPU per request in ``bench_api.py`` (its
``server_cpu_ms``: uvicorn, the HTTP parsing and one statement, about 0.4-0.5 ms on a
two-core machine). Milliseconds of CPU move less than latencies on a shared machine, but
still by 5-10 % between runs: compare two revisions in turns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from benchmarks import callgrind
from benchmarks.common import fresh_database, positive_int
from revflow.logging import configure
from revflow.migrate import upgrade

WARM_UP = 200
VERSIONS = 60
MISSING = "00000000-0000-4000-8000-000000000000"


async def _call(app: Any, path: str, query: str, headers: dict[str, str]) -> int:
    """One GET through ``app``; answers its status."""
    delivered = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # a GET has nothing more; the client never leaves
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    await app(scope, receive, send)
    return status


async def _measure(url: str, requests: int) -> dict[str, float]:
    saved = sys.stderr
    with open(os.devnull, "w") as sink:
        sys.stderr = sink
        configure("INFO", json=True)  # the request log as revflow serve writes it
        try:
            return await _measure_reads(url, requests)
        finally:
            sys.stderr = saved


async def _measure_reads(url: str, requests: int) -> dict[str, float]:
    async with (
        callgrind.app_of_one_account(url, max_versions=VERSIONS) as (app, headers),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        workflow, versions = await callgrind.workflow_of_small_versions(client, headers, VERSIONS)
        reads = {
            "missing": (f"/api/v1/workflows/{MISSING}", "", 404),
            "workflow": (f"/api/v1/workflows/{workflow}", "", 200),
            "list": (versions, "limit=50", 200),
        }
        timed: dict[str, float] = {}
        for name, (path, query, expected) in reads.items():
            for index in range(WARM_UP + requests):
                if index == WARM_UP:
                    started = time.process_time()
                status = await _call(app, path, query, headers)
                if status != expected:
                    raise RuntimeError(f"{name} answered {status}, not {expected}")
            timed[name] = (time.process_time() - started) / requests * 1000
        return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--requests", type=positive_int, default=3000, help="timed per read")
    parser.add_argument("--json", action="store_true", help="print a JSON document")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as workdir,
        fresh_database(args.database, Path(workdir)) as url,
    ):
        upgrade(url)
        timed = asyncio.run(_measure(url, args.requests))
    if args.json:
        print(json.dumps({"database": args.database, "requests": args.requests, "cpu_ms": timed}))
        return
    for name, ms in timed.items():
        extra = f" (+{ms - timed['missing']:.3f} over missing)" if name != "missing" else ""
        print(f"{args.database}: {name}: {ms:.3f} ms of CPU per request{extra}")


if __name__ == "__main__":
    main()
