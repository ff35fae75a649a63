"""Benchmark ``GET …/versions/compare`` through a real ``revflow serve``, against the pure diff.

Run: ``python benchmarks/bench_compare_api.py [--database sqlite|postgresql|both] [--steps 500]
[--runs 200] [--baseline-runs 30] [--json]``.

For each database: a fresh database and ``revflow serve`` (see ``common.py``), a workflow with
two versions created through the API — a ``--steps``-step definition and an edit of it where
about 10 % of the steps changed (content edits, a few type changes, a few steps removed and as
many added, their neighbours rewired) — then ``--runs`` sequential requests of
``GET /workflows/{id}/versions/compare?from=1&to=2`` on one keep-alive client.
Version 1 is published and 1,000 contacts are enrolled in it first, so the compare counts the
live executions its breaking changes reach. On PostgreSQL each request is followed by its
floor's (``floor_app.py`` on the same database, the same client): two ``SELECT``s of the two
stored definitions. In the same run, on the two definitions as the server stored them: the pure
``revflow.diff.compare``, a plain ``deepdiff.DeepDiff(before, after)`` as the baseline, and the
peer — ``DeepDiff`` of the steps keyed by id (``{s["id"]: s}``), as a competent user calls it,
checked to find the same changed steps as revflow's diff (a difference is a problem).

Goals: API p95 <= 25 ms on each database; the pure compare faster than DeepDiff (p50 and p95).
Exits 1 on a miss. A few unmeasured requests warm the server up first.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepdiff import DeepDiff

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_enroll import insert_contacts
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
    sample,
    sample_paired,
    timed_request,
)
from revflow.bench import exit_on_sigterm
from revflow.definition.samples import make_definition
from revflow.diff import Comparison, compare

API_GOAL_P95_MS = 25.0
WARMUP_REQUESTS = 5
LIVE_EXECUTIONS = 1_000  # enrolled into version 1: the compare counts whom its breaks reach
# Steps with one `next` and no other wiring: removing one means pointing its callers onward.
LINEAR_TYPES = frozenset(
    {"send_email", "send_sms", "add_tag", "remove_tag", "update_field", "http_request"}
)
WIRING_KEYS = ("next", "then", "else", "timeout_next")


def edit_content(step: dict[str, Any]) -> dict[str, Any]:
    """The step with one of its settings changed (same type, same wiring)."""
    edited = dict(step)
    kind = step["type"]
    if kind == "send_email":
        edited["subject"] = step["subject"] + " (updated)"
    elif kind == "send_sms":
        edited["body"] = step["body"] + " (updated)"
    elif kind in ("add_tag", "remove_tag"):
        edited["tag"] = "changed"
    elif kind == "update_field":
        edited["value"] = "edited"
    elif kind == "http_request":
        edited["max_attempts"] = 7 if step.get("max_attempts") != 7 else 3
    elif kind == "wait" and "duration" in step:
        edited["duration"] = "5d" if step["duration"] != "5d" else "6h"
    elif kind == "wait" and "until" in step:
        edited["until"] = "2031-06-01T09:00:00Z"
    elif kind == "wait":
        edited["timeout"] = "9d"
    elif kind == "condition":
        edited["if"] = {"field": "fields.score", "op": "gte", "value": 42}
    return edited


def edit_definition(before: dict[str, Any], seed: int) -> dict[str, Any]:
    """A valid edit of ``before`` with about 10 % of its steps changed.

    Of every 100 steps: 1 removed (its callers rewired to its successor) and 1 added (inserted
    after a step that now leads to it), 7 edited in content, 1 changing type (``add_tag`` ↔
    ``remove_tag``, a breaking change). The step count stays the same, so a ``max_steps``-step
    definition stays valid.
    """
    rng = random.Random(seed)
    steps: list[dict[str, Any]] = [dict(step) for step in before["steps"]]
    count = len(steps)
    per_hundred = max(1, count // 100)
    inner = list(range(1, count - 1))  # neither the start nor the end
    linear = [i for i in inner if steps[i]["type"] in LINEAR_TYPES]
    removed = set(rng.sample(linear, per_hundred))
    anchors = rng.sample([i for i in linear if i not in removed], per_hundred)
    tags = [i for i in inner if steps[i]["type"] in ("add_tag", "remove_tag")]
    retyped = rng.sample([i for i in tags if i not in removed], per_hundred)
    untouched = [i for i in inner if i not in removed and i not in retyped]
    edited = rng.sample(untouched, 7 * per_hundred)

    for i in edited:
        steps[i] = edit_content(steps[i])
    for i in retyped:
        steps[i]["type"] = "remove_tag" if steps[i]["type"] == "add_tag" else "add_tag"

    # Whoever led to a removed step now leads to the first kept step after it.
    onward: dict[str, str] = {}
    for i in sorted(removed, reverse=True):
        successor = steps[i]["next"]
        onward[steps[i]["id"]] = onward.get(successor, successor)
    for step in steps:
        for key in WIRING_KEYS:
            if step.get(key) in onward:
                step[key] = onward[step[key]]
    goals = [dict(goal) for goal in before["goals"]]
    for goal in goals:
        if goal.get("then") in onward:
            goal["then"] = onward[goal["then"]]

    after: list[dict[str, Any]] = []
    for i, step in enumerate(steps):
        if i in removed:
            continue
        after.append(step)
        if i in anchors:
            new_id = f"new_message_{i}"
            after.append(
                {"id": new_id, "type": "send_sms", "body": "Something new", "next": step["next"]}
            )
            step["next"] = new_id
    return {**before, "steps": after, "goals": goals}


def describe(comparison: Comparison) -> str:
    s = comparison.summary
    return (
        f"{s.steps_modified} modified, {s.steps_removed} removed, {s.steps_added} added; "
        f"{len(comparison.changes)} changes, {len(comparison.breaking)} breaking, "
        f"bump {comparison.suggested_bump}"
    )


def changed_steps(comparison: Comparison) -> set[str]:
    """The ids of the steps revflow's diff reports added, removed or modified."""
    return {c.id for c in comparison.changes if c.entity == "step" and c.id is not None}


def keyed(definition: dict[str, Any]) -> dict[str, Any]:
    """The steps by id: how DeepDiff is called to compare definitions (a list of steps compared
    by position reports every step after an insertion as changed)."""
    return {step["id"]: step for step in definition["steps"]}


def deepdiff_changed_steps(answer: Any) -> set[str]:
    """The step ids a DeepDiff of :func:`keyed` steps reports changed (``root['id']…`` paths)."""
    found: set[str] = set()
    for paths in answer.values():
        for path in paths:
            text = str(path)
            if text.startswith("root['"):
                found.add(text[len("root['") :].split("'", 1)[0])
    return found


@dataclass
class ApiRun:
    samples: list[float]
    cpu: float | None
    floor: tuple[list[float], float | None] | None
    stored: tuple[dict[str, Any], dict[str, Any]]
    live: int
    affected: int


def measure_api(
    service: Service, before: dict[str, Any], after: dict[str, Any], runs: int
) -> ApiRun:
    """Create the two versions, publish the first and enroll contacts in it, time the compare
    (each request followed by its floor's on PostgreSQL)."""
    client = service.client
    response, _ = timed_request(
        client, "POST", "/api/v1/workflows", expect=201, content=encode({"name": "compare"})
    )
    workflow_id = response.json()["id"]
    versions = f"/api/v1/workflows/{workflow_id}/versions"
    for number, definition in ((1, before), (2, after)):
        body = {
            "definition": definition,
            "change_summary": f"Version {number}",
            "base_version": number - 1 or None,
        }
        timed_request(client, "POST", versions, expect=201, content=encode(body))
    stored = [
        timed_request(client, "GET", f"{versions}/{n}", expect=200)[0].json()["definition"]
        for n in (1, 2)
    ]
    expected = compare(stored[0], stored[1]).to_dict()["summary"]
    timed_request(client, "POST", f"{versions}/1/publish", expect=200)
    contacts = asyncio.run(insert_contacts(service.database_url, LIVE_EXECUTIONS))
    enrolled, _ = timed_request(
        client,
        "POST",
        f"/api/v1/workflows/{workflow_id}/enrollments",
        expect=201,
        content=encode({"contact_ids": contacts}),
    )
    if enrolled.json()["enrolled"] != LIVE_EXECUTIONS:
        raise RuntimeError(f"enrolled {enrolled.json()['enrolled']} of {LIVE_EXECUTIONS}")
    live = timed_request(client, "GET", f"{versions}/1", expect=200)[0].json()["live_executions"]
    if not live:
        raise RuntimeError("version 1 has no live executions to compare against")
    params = {"from": 1, "to": 2}
    path = f"{versions}/compare"

    for _ in range(WARMUP_REQUESTS):
        answer = timed_request(client, "GET", path, expect=200, params=params)[0].json()
    affected = sum(b.get("executions_affected", 0) for b in answer["breaking"])
    floor = service.floor
    floor_params = {"account": service.account_id, "workflow": workflow_id, **params}

    def compare_once(_i: int) -> float:
        response, ms = timed_request(client, "GET", path, expect=200, params=params)
        if response.json()["summary"] != expected:
            raise RuntimeError(f"the API's summary {response.json()['summary']} != {expected}")
        return ms

    def compare_floor(_i: int) -> float:
        # The same two stored definitions, by two SELECTs.
        assert floor is not None
        return timed_request(floor.client, "GET", "/compare", expect=200, params=floor_params)[1]

    (samples, cpu), floored = sample_paired(
        service, floor, f"{service.database}: GET compare", runs, compare_once, compare_floor
    )
    return ApiRun(samples, cpu, floored, (stored[0], stored[1]), live, affected)


def measure_call(label: str, call: Callable[[], object], runs: int) -> list[float]:
    call()  # warm-up: imports, caches

    def once(_i: int) -> float:
        started = time.perf_counter()
        call()
        return (time.perf_counter() - started) * 1000

    return sample(label, runs, once)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--steps", type=int, default=500, help="steps of each version")
    parser.add_argument("--runs", type=int, default=200, help="API requests, pure compare runs")
    parser.add_argument("--baseline-runs", type=int, default=30, help="DeepDiff runs")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pg-admin-dsn", default=PG_ADMIN_DSN, help="where to CREATE DATABASE")
    parser.add_argument("--json", action="store_true", help="print a JSON document")
    parser.add_argument(
        "--no-floor", action="store_true", help="PostgreSQL: do not measure the floor server"
    )
    args = parser.parse_args()
    if not 100 <= args.steps <= 500 or args.runs < 2 or args.baseline_runs < 2:
        # 500: the server's default max_steps; below 100 steps "10 % changed" loses its meaning.
        parser.error("--steps must be 100 to 500, --runs and --baseline-runs at least 2")

    before = make_definition(args.steps, args.seed)
    after = edit_definition(before, args.seed)
    report = Report(
        "bench_compare_api",
        {
            "steps": args.steps,
            "runs": args.runs,
            "baseline_runs": args.baseline_runs,
            "client": "one httpx.Client, sequential requests, keep-alive",
        },
        facts={"diff": describe(compare(before, after))},
    )
    stored = (before, after)
    for database in backends(args.database):
        report.facts[database] = database_version(database, args.pg_admin_dsn)
        with running_service(
            database, pg_admin_dsn=args.pg_admin_dsn, floor=not args.no_floor
        ) as service:
            run = measure_api(service, before, after, args.runs)
        stored = run.stored
        measured = Stats.of(run.samples)
        report.facts[f"{database} live executions of version 1"] = run.live
        report.facts[f"{database} live executions its breaking changes reach"] = run.affected
        report.results.append(
            Result(
                database,
                f"GET compare ({args.steps} steps)",
                measured,
                goal_p95_ms=API_GOAL_P95_MS,
                server_cpu_ms=run.cpu,
            )
        )
        if run.floor is not None:
            floor = Stats.of(run.floor[0])
            report.results.append(
                Result(
                    database,
                    "floor: compare",
                    floor,
                    server_cpu_ms=run.floor[1],
                    note=f"two SELECTs; revflow p95 = {floor_ratio(measured, floor)}x this",
                )
            )

    old, new = stored
    pure = Stats.of(measure_call("revflow.diff.compare", lambda: compare(old, new), args.runs))
    baseline = Stats.of(
        measure_call("DeepDiff(before, after)", lambda: DeepDiff(old, new), args.baseline_runs)
    )
    old_steps, new_steps = keyed(old), keyed(new)
    peer = Stats.of(
        measure_call(
            "DeepDiff of steps keyed by id",
            lambda: DeepDiff(old_steps, new_steps),
            args.baseline_runs,
        )
    )
    revflow_found = changed_steps(compare(old, new))
    peer_found = deepdiff_changed_steps(DeepDiff(old_steps, new_steps))
    if peer_found != revflow_found:
        report.problems.append(
            f"DeepDiff keyed by id found other changed steps than revflow's diff: "
            f"only DeepDiff {sorted(peer_found - revflow_found)[:5]}, "
            f"only revflow {sorted(revflow_found - peer_found)[:5]}"
        )
    report.facts["changed steps (revflow's diff, DeepDiff keyed by id)"] = [
        len(revflow_found),
        len(peer_found),
    ]
    faster = pure.p50 < baseline.p50 and pure.p95 < baseline.p95
    report.results += [
        Result(
            "in-process",
            "revflow.diff.compare (pure)",
            pure,
            goal_p95_ms=baseline.p95,
            note="" if faster else "FAIL: not faster than DeepDiff at p50",
        ),
        Result("in-process", "DeepDiff(before, after) baseline", baseline),
        Result(
            "in-process",
            "DeepDiff keyed by id (peer)",
            peer,
            note=f"revflow's pure diff is {peer.p95 / pure.p95:.1f}x faster at p95",
        ),
    ]
    report.facts["pure vs DeepDiff"] = (
        f"{baseline.p50 / pure.p50:.0f}x faster at p50, {baseline.p95 / pure.p95:.0f}x at p95"
    )
    report.print(args.json)
    if not report.passed or not faster:
        raise SystemExit(1)


if __name__ == "__main__":
    exit_on_sigterm()
    main()
