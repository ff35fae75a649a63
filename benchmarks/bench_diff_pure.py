"""Benchmark revflow.diff.compare against a plain DeepDiff of the two whole documents.

Run: ``python benchmarks/bench_diff_pure.py [--steps 500] [--runs 50] [--seed 7]``.
Builds two definitions of ``--steps`` steps where about 10 % of the steps changed (content
edits, rewires, type and wait-kind changes, removals, additions, renames), then prints p50/p95
in milliseconds of ``compare`` and of ``DeepDiff(before, after)`` measured in the same run.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from deepdiff import DeepDiff
from rich.progress import track

from revflow.diff import compare

LOREM = (
    "Thanks for joining us, {{contact.fields.first_name}}. Here is what happens next: "
    "we will send you a short series of emails with tips and offers. "
)


def make_step(rnd: random.Random, step_id: str, next_id: str | None, alt_id: str | None) -> Any:
    """One realistic step; wired to ``next_id`` (and ``alt_id`` for branches)."""
    kind = rnd.choice(
        ["send_email"] * 4 + ["send_sms", "wait", "wait", "condition", "add_tag", "update_field"]
    )
    step: dict[str, Any] = {"id": step_id, "type": kind}
    if kind == "send_email":
        step["subject"] = f"Step {step_id}: hello {{{{contact.fields.first_name}}}}"
        step["body"] = LOREM * rnd.randint(1, 4)
    elif kind == "send_sms":
        step["body"] = f"Reminder {step_id}: reply STOP to opt out"
    elif kind == "wait":
        if rnd.random() < 0.7:
            step["duration"] = rnd.choice(["15m", "2h", "2d", "P3D"])
        else:
            step["event"] = rnd.choice(["opened", "clicked", "purchase"])
            step["timeout"] = "7d"
            if alt_id is not None:
                step["timeout_next"] = alt_id
    elif kind == "condition":
        step["if"] = {"field": "tags", "op": "contains", "value": rnd.choice(["vip", "lead"])}
        step["then"] = next_id or step_id
        if alt_id is not None:
            step["else"] = alt_id
        return step
    elif kind == "add_tag":
        step["tag"] = rnd.choice(["nurture", "engaged", "cold"])
    else:
        step["field"] = "fields.score"
        step["value"] = rnd.randint(0, 100)
    if next_id is not None:
        step["next"] = next_id
    return step


def make_definition(rnd: random.Random, count: int) -> dict[str, Any]:
    """A chain of ``count`` steps with some branches, a trigger and two goals."""
    ids = [f"step_{i:04d}" for i in range(count)]
    steps = []
    for i, step_id in enumerate(ids):
        next_id = ids[i + 1] if i + 1 < count else None
        alt_id = ids[min(i + 2, count - 1)] if i + 2 < count else None
        steps.append(make_step(rnd, step_id, next_id, alt_id))
    return {
        "trigger": {"type": "tag_added", "tag": "lead", "reenroll": "after_finish"},
        "start": ids[0],
        "steps": steps,
        "goals": [
            {"id": "purchased", "event": "purchase", "then": ids[-1]},
            {"id": "unsubscribed", "event": "unsubscribe"},
        ],
    }


def edit_definition(rnd: random.Random, before: dict[str, Any]) -> dict[str, Any]:
    """A copy with ~10 % of steps changed: 7 % modified, 1 % each removed / added / renamed."""
    after = copy.deepcopy(before)
    steps: list[dict[str, Any]] = after["steps"]
    count = len(steps)
    chosen = rnd.sample(range(1, count - 1), k=max(4, count // 10))
    n_small = max(1, count // 100)
    removed = set(chosen[:n_small])
    renamed = set(chosen[n_small : 2 * n_small])
    modified = chosen[2 * n_small :]
    for index in modified:
        step = steps[index]
        roll = rnd.random()
        if roll < 0.6 and "body" in step:
            step["body"] = str(step["body"]) + " (updated)"
        elif roll < 0.8 and "next" in step:
            step["next"] = steps[min(index + 3, count - 1)]["id"]
        elif roll < 0.9:
            steps[index] = {"id": step["id"], "type": "add_tag", "tag": "changed"}
            if "next" in step:
                steps[index]["next"] = step["next"]
        else:
            step["label_note"] = "reviewed"
    for index in renamed:
        steps[index]["id"] = steps[index]["id"] + "_v2"
    after["steps"] = [s for i, s in enumerate(steps) if i not in removed]
    for i in range(n_small):
        after["steps"].append({"id": f"new_step_{i}", "type": "send_sms", "body": "New!"})
    return after


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[94]


def measure(label: str, func: Callable[[], object], runs: int) -> list[float]:
    func()  # warm-up: imports, caches
    samples = []
    for _ in track(range(runs), description=label, transient=True, disable=not sys.stdout.isatty()):
        started = time.perf_counter()
        func()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rnd = random.Random(args.seed)
    before = make_definition(rnd, args.steps)
    after = edit_definition(rnd, before)
    result = compare(before, after)
    s = result.summary
    print(
        f"{args.steps} steps: {s.steps_modified} modified, {s.steps_removed} removed, "
        f"{s.steps_added} added ({sum(v is not None for v in result.suggested_mapping.values())} "
        f"renames recognised), {len(result.breaking)} breaking, bump {result.suggested_bump}"
    )

    ours = measure("compare()", lambda: compare(before, after), args.runs)
    baseline = measure("DeepDiff(before, after)", lambda: DeepDiff(before, after), args.runs)
    # What a DeepDiff-per-modified-step design would pay for the field level alone.
    pairs = [(c.before, c.after) for c in result.changes if c.kind == "modified"]
    per_entity = measure(
        "DeepDiff per modified entity", lambda: [DeepDiff(b, a) for b, a in pairs], args.runs
    )

    print(f"{'':34} {'p50 ms':>9} {'p95 ms':>9}   (runs={args.runs})")
    rows = [
        ("revflow.diff.compare", ours),
        ("DeepDiff(before, after) baseline", baseline),
        ("(info) DeepDiff per modified entity", per_entity),
    ]
    for label, samples in rows:
        p50, p95 = percentiles(samples)
        print(f"{label:34} {p50:9.3f} {p95:9.3f}")
    ours_p50, ours_p95 = percentiles(ours)
    base_p50, base_p95 = percentiles(baseline)
    faster = ours_p50 < base_p50 and ours_p95 < base_p95
    verdict = "PASS" if faster else "FAIL"
    print(
        f"verdict: {verdict} - compare is {base_p50 / ours_p50:.1f}x faster at p50 and "
        f"{base_p95 / ours_p95:.1f}x at p95 than a whole-document DeepDiff"
    )
    if not faster:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
