"""Count the instructions one version create costs, in process, with valgrind's callgrind.

    python benchmarks/count_create.py [--database postgresql|sqlite] [--creates 40] [--steps 200]
    PYTHONPATH=<another checkout>/src python benchmarks/count_create.py   # another revision

Timings on a shared two-core machine move by 30-60 % from run to run; instruction counts do
not: callgrind counts the same total for the same code and inputs whatever else the machine is
doing, so two revisions compare in one run each. The application runs in this process (httpx's
ASGI transport: no server, no socket) on a fresh database with one account. It makes a workflow
of ``--steps`` steps and 20 versions of it to warm up (one message edited each time, as in
``bench_api.py``), then ``--creates`` more with callgrind's instrumentation switched on
(``callgrind_control``), and prints the instructions per create. Client and server share the
process: the count includes the client's part of each request, and none of the database's.
Needs Debian's ``valgrind`` (its ``callgrind_control`` included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from benchmarks import callgrind
from benchmarks.common import fresh_database
from revflow.definition.samples import make_definition
from revflow.migrate import upgrade

WARM_UP = 20


def _bodies(steps: int, count: int) -> list[bytes]:
    definition = make_definition(steps, 1)
    editable = [i for i, s in enumerate(definition["steps"]) if isinstance(s.get("body"), str)]
    bodies = []
    for number in range(2, count + 2):
        definition["steps"][editable[number % len(editable)]]["body"] += " (edited)"
        body = {"definition": definition, "change_summary": "edit", "base_version": number - 1}
        bodies.append(json.dumps(body).encode())
    return bodies


async def _create_versions(url: str, steps: int, creates: int) -> None:
    first = {"name": "counted", "definition": make_definition(steps, 1), "change_summary": "1"}
    bodies = _bodies(steps, WARM_UP + creates)
    settings = {"max_versions": WARM_UP + creates + 10}
    async with callgrind.client_of_one_account(url, **settings) as (client, headers):
        made = await client.post("/api/v1/workflows", headers=headers, json=first)
        made.raise_for_status()
        path = f"/api/v1/workflows/{made.json()['id']}/versions"
        for index, body in enumerate(bodies):
            if index == WARM_UP:
                callgrind.instrument(True)
            response = await client.post(path, headers=headers, content=body)
            if response.status_code != 201:
                raise RuntimeError(f"create answered {response.status_code}: {response.text}")
        callgrind.instrument(False)


def _count(args: argparse.Namespace) -> None:
    per_create = callgrind.count(__file__) / args.creates
    print(
        f"{args.database}: {per_create / 1e6:.2f} M instructions per create "
        f"({args.creates} creates of a {args.steps}-step definition, after {WARM_UP})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--creates", type=int, default=40)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    if not callgrind.counting():
        _count(args)
        return
    with (
        tempfile.TemporaryDirectory() as workdir,
        fresh_database(args.database, Path(workdir)) as url,
    ):
        upgrade(url)
        asyncio.run(_create_versions(url, args.steps, args.creates))


if __name__ == "__main__":
    main()
