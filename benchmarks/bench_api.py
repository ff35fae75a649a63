"""Benchmark the versioning API through a real ``revflow serve``: create, list, get, publish.

Run: ``python benchmarks/bench_api.py [--database sqlite|postgresql|both] [--versions 1000]
[--steps 200] [--samples 200] [--json]``.

For each database: a fresh database, migrated, with one account; ``revflow serve`` on a free
loopback port (started with ``REVFLOW_MAX_VERSIONS`` = ``--versions``, so the workflow ends up
exactly full); one keep-alive ``httpx`` client sending one request at a time. It measures

- create: every one of the ``--versions`` creations of a workflow's versions (a ``--steps``-step
  definition with one step edited each time, ``base_version`` = the latest), also split into the
  first and the last 100 (the last ones on an almost full workflow); one more creation must
  then answer 409 ``version_limit`` (checked, not timed);
- list: ``GET …/versions?limit=50``, paging through all versions with ``next_cursor``;
- get: ``GET …/versions/{n}`` of random versions (each with its definition);
- publish: ``POST …/versions/{n}/publish`` of the ``--samples`` newest drafts, oldest first
  (every created version is a draft, so publishing needs no versions beyond the limit).

On PostgreSQL each create and each list request is followed by its floor's (``floor_app.py``
on the same database, the same client): one ``INSERT`` of the same bytes and a commit; one
indexed ``SELECT`` of the same 50 rows of ``versions``. Their p95 ratio is the number to read.

The goals are p95 bounds on PostgreSQL (create <= 15 ms, list <= 10 ms); the original
requirement (create <= 300 ms, list <= 200 ms) applies to both databases. Exits 1 on a miss.
A warm-up on another workflow of the account runs first and is not measured.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    PG_ADMIN_DSN,
    Report,
    Result,
    Service,
    Stats,
    backends,
    database_version,
    encode,
    floor_ratio,
    running_service,
    sample_paired,
    sample_server,
    say,
    timed_request,
)
from revflow.bench import exit_on_sigterm
from revflow.definition.samples import make_definition

# p95 bounds in milliseconds: the goals (PostgreSQL) and the original requirement (both).
GOAL_P95_MS = {"create": 15.0, "list": 10.0}
REQUIRED_P95_MS = {"create": 300.0, "list": 200.0}
LIST_LIMIT = 50
WINDOW = 100  # size of the "first" and "last" slices of the creations
WARMUP_VERSIONS = 5


class DefinitionEditor:
    """Successive definitions of one workflow, as an editor would save them.

    Each revision edits the text of one message step (rotating through them), so every version
    differs from its parent by one small content change, as most real edits do.
    """

    def __init__(self, n_steps: int, seed: int) -> None:
        self.definition = make_definition(n_steps, seed)
        self.editable = [
            i
            for i, step in enumerate(self.definition["steps"])
            if isinstance(step.get("body"), str)
        ]
        if not self.editable:
            raise ValueError(f"a {n_steps}-step sample has no message step to edit")

    def revision(self, number: int) -> dict[str, Any]:
        steps = list(self.definition["steps"])
        index = self.editable[number % len(self.editable)]
        original = steps[index]["body"].split(" (revision ")[0]
        steps[index] = {**steps[index], "body": f"{original} (revision {number})"}
        self.definition = {**self.definition, "steps": steps}
        return self.definition


def version_body(definition: dict[str, Any], number: int) -> bytes:
    """The body creating version ``number`` from the latest one (``number - 1``)."""
    return encode(
        {
            "definition": definition,
            "change_summary": f"Edit {number}",
            "base_version": number - 1 if number > 1 else None,
        }
    )


def create_workflow(service: Service, name: str) -> str:
    response, _ = timed_request(
        service.client, "POST", "/api/v1/workflows", expect=201, content=encode({"name": name})
    )
    workflow_id: str = response.json()["id"]
    return workflow_id


def warm_up(service: Service, steps: int) -> None:
    """Exercise every measured route once on a workflow of its own (imports, caches, pools)."""
    workflow_id = create_workflow(service, "warm-up")
    editor = DefinitionEditor(steps, seed=1)
    base = f"/api/v1/workflows/{workflow_id}/versions"
    for number in range(1, WARMUP_VERSIONS + 1):
        body = version_body(editor.revision(number), number)
        timed_request(service.client, "POST", base, expect=201, content=body)
    timed_request(service.client, "GET", base, expect=200, params={"limit": LIST_LIMIT})
    timed_request(service.client, "GET", f"{base}/1", expect=200)
    timed_request(service.client, "POST", f"{base}/1/publish", expect=200)


# The milliseconds of every request of one operation, and the server's CPU ms per request.
Phase = tuple[list[float], float | None]


@dataclass
class Measured:
    create: Phase
    listing: Phase
    get: Phase
    publish: Phase
    create_floor: Phase | None = None
    list_floor: Phase | None = None


def measure(service: Service, args: argparse.Namespace) -> Measured:
    warm_up(service, args.steps)
    workflow_id = create_workflow(service, "benchmark")
    versions = f"/api/v1/workflows/{workflow_id}/versions"
    client = service.client
    editor = DefinitionEditor(args.steps, seed=args.seed)
    floor = service.floor
    sent = [b""]

    def create_one(i: int) -> float:
        number = i + 1
        body = version_body(editor.revision(number), number)
        sent[0] = body
        response, ms = timed_request(client, "POST", versions, expect=201, content=body)
        if response.json()["number"] != number:
            raise RuntimeError(f"created {response.json()['number']}, expected {number}")
        return ms

    def create_floor(_i: int) -> float:
        # The same bytes, stored by one INSERT and a commit.
        assert floor is not None
        return timed_request(floor.client, "POST", "/versions", expect=201, content=sent[0])[1]

    server = service.server
    create, create_floored = sample_paired(
        service, floor, f"{service.database}: create", args.versions, create_one, create_floor
    )

    over = args.versions + 1
    response, _ = timed_request(
        client, "POST", versions, expect=409, content=version_body(editor.revision(over), over)
    )
    if response.json().get("code") != "version_limit":
        raise RuntimeError(f"version {over} answered {response.text}, expected version_limit")

    cursor: str | None = None

    def list_one(_i: int) -> float:
        nonlocal cursor
        params: dict[str, str | int] = {"limit": LIST_LIMIT}
        if cursor is not None:
            params["cursor"] = cursor
        response, ms = timed_request(client, "GET", versions, expect=200, params=params)
        page = response.json()
        if len(page["items"]) != min(LIST_LIMIT, args.versions) and page["next_cursor"]:
            raise RuntimeError(f"a page of {len(page['items'])} versions with a next page")
        cursor = page["next_cursor"]
        return ms

    floor_before = [args.versions + 1]
    floor_params = {"account": service.account_id, "workflow": workflow_id}

    def list_floor(_i: int) -> float:
        # The same page of revflow's versions table, by one indexed SELECT.
        assert floor is not None
        params = {**floor_params, "before": floor_before[0]}
        response, ms = timed_request(floor.client, "GET", "/versions", expect=200, params=params)
        items = response.json()["items"]
        last = items[-1]["number"] if items else 1
        floor_before[0] = last if last > 1 else args.versions + 1
        return ms

    listed, listed_floor = sample_paired(
        service, floor, f"{service.database}: list", args.samples, list_one, list_floor
    )

    rng = random.Random(args.seed)

    def get_one(_i: int) -> float:
        number = rng.randint(1, args.versions)
        response, ms = timed_request(client, "GET", f"{versions}/{number}", expect=200)
        if len(response.json()["definition"]["steps"]) != args.steps:
            raise RuntimeError(f"version {number} came back without its {args.steps} steps")
        return ms

    got = sample_server(server, f"{service.database}: get", args.samples, get_one)

    drafts = list(range(args.versions - args.publishes + 1, args.versions + 1))

    def publish_one(i: int) -> float:
        response, ms = timed_request(client, "POST", f"{versions}/{drafts[i]}/publish", expect=200)
        if response.json()["status"] != "published":
            raise RuntimeError(f"version {drafts[i]} is {response.json()['status']}")
        return ms

    published = sample_server(server, f"{service.database}: publish", len(drafts), publish_one)
    return Measured(create, listed, got, published, create_floored, listed_floor)


def results(database: str, measured: Measured, args: argparse.Namespace) -> list[Result]:
    def bounds(metric: str) -> dict[str, Any]:
        goal = GOAL_P95_MS.get(metric) if database == "postgresql" else None
        return {"goal_p95_ms": goal, "required_p95_ms": REQUIRED_P95_MS.get(metric)}

    create, create_cpu = measured.create
    window = min(WINDOW, len(create))
    last = f"versions {len(create) - window + 1}-{len(create)}"
    floors = []
    for name, measured_phase, floor_phase, work in (
        ("create version", measured.create, measured.create_floor, "one INSERT + commit"),
        ("list versions", measured.listing, measured.list_floor, "one indexed SELECT of 50"),
    ):
        if floor_phase is None:
            continue
        ratio = floor_ratio(Stats.of(measured_phase[0]), Stats.of(floor_phase[0]))
        floors.append(
            Result(
                database,
                f"floor: {name}",
                Stats.of(floor_phase[0]),
                server_cpu_ms=floor_phase[1],
                note=f"{work}; revflow p95 = {ratio}x this",
            )
        )
    return [
        Result(
            database,
            f"create version ({args.steps} steps)",
            Stats.of(create),
            **bounds("create"),
            server_cpu_ms=create_cpu,
        ),
        Result(database, f"create, first {window}", Stats.of(create[:window])),
        Result(
            database,
            f"create, last {window} (nearly full)",
            Stats.of(create[-window:]),
            **bounds("create"),
            note=last,
        ),
        Result(
            database,
            f"list versions (limit={LIST_LIMIT})",
            Stats.of(measured.listing[0]),
            **bounds("list"),
            server_cpu_ms=measured.listing[1],
        ),
        Result(
            database,
            "get version (with definition)",
            Stats.of(measured.get[0]),
            server_cpu_ms=measured.get[1],
        ),
        Result(
            database,
            "publish a draft",
            Stats.of(measured.publish[0]),
            server_cpu_ms=measured.publish[1],
        ),
        *floors,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--versions", type=int, default=1000, help="versions to create (>= 2)")
    parser.add_argument("--steps", type=int, default=200, help="steps of each definition")
    parser.add_argument("--samples", type=int, default=200, help="requests of list, get, publish")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pg-admin-dsn", default=PG_ADMIN_DSN, help="where to CREATE DATABASE")
    parser.add_argument("--json", action="store_true", help="print a JSON document")
    parser.add_argument(
        "--no-floor", action="store_true", help="PostgreSQL: do not measure the floor server"
    )
    args = parser.parse_args()
    if args.versions < 2 or args.samples < 2:
        parser.error("--versions and --samples must be at least 2")
    args.publishes = min(args.samples, args.versions)

    report = Report(
        "bench_api",
        {
            "versions": args.versions,
            "steps": args.steps,
            "samples": args.samples,
            "publishes": args.publishes,
            "list_limit": LIST_LIMIT,
            "REVFLOW_MAX_VERSIONS": args.versions,
            "client": "one httpx.Client, sequential requests, keep-alive",
        },
    )
    for database in backends(args.database):
        report.facts[database] = database_version(database, args.pg_admin_dsn)
        with running_service(
            database,
            server_env={"REVFLOW_MAX_VERSIONS": str(args.versions)},
            pg_admin_dsn=args.pg_admin_dsn,
            floor=not args.no_floor,
        ) as service:
            measured = measure(service, args)
        report.results.extend(results(database, measured, args))
        say(f"[bold]{database}[/bold]: done")
    report.print(args.json)
    if not report.passed:
        raise SystemExit(1)


if __name__ == "__main__":
    exit_on_sigterm()
    main()
