"""``revflow bench``: every performance claim behind one command.

Each measurement is one of the scripts in the repository's ``benchmarks/`` folder, run as its
own process with ``--json`` (so one cannot warm or slow down the next) against a fresh database
it creates and drops; this module runs them in turn, shows progress, and gathers their numbers
into one object with the original requirements and the baselines beside them.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

# p95 goals (this machine) and the original requirements, in milliseconds.
GOALS = {
    "create_version_p95_ms": 15.0,
    "list_versions_p95_ms": 10.0,
    "compare_p95_ms": 25.0,
    "draft_save_p95_ms": 8.0,
    "migration_per_min": 1_000_000,
    "engine_steps_per_s": 5_000,
    "load_highest_vs_best": 0.9,
    "load_upsert_p99_ms_at_32": 50.0,
    "load_errors": 0,
    "load_5xx": 0,
    "webhook_deliveries_per_s": 1_000,
    # At most: the engine's steps/s beside a receiver answering in 2 s, against it alone.
    "engine_drop_with_slow_receiver_pct": 10.0,
}
REQUIREMENTS = {
    "create_version_p95_ms": 300.0,
    "list_versions_p95_ms": 200.0,
    "compare_p95_ms": 500.0,
    "draft_save_p95_ms": 100.0,
    "migration_per_min": 1_000,
}


def _latency(out: dict[str, Any], key: str, row: dict[str, Any] | None) -> None:
    for p in ("p50", "p95", "p99"):
        out[f"{key}_{p}_ms"] = None if row is None else row[f"{p}_ms"]


def _row(document: dict[str, Any], database: str, prefix: str) -> dict[str, Any] | None:
    for row in document.get("results", []):
        if row["metric"].startswith(prefix) and row["database"] in (database, "in-process"):
            return dict(row)
    return None


Collector = Callable[[str, dict[str, Any], dict[str, Any]], None]


def _collect_api(database: str, doc: dict[str, Any], out: dict[str, Any]) -> None:
    _latency(out, "create_version", _row(doc, database, "create version"))
    _latency(out, "list_versions", _row(doc, database, "list versions"))
    _latency(out, "get_version", _row(doc, database, "get version"))
    _latency(out, "publish", _row(doc, database, "publish"))


def _collect_compare(database: str, doc: dict[str, Any], out: dict[str, Any]) -> None:
    _latency(out, "compare", _row(doc, database, "GET compare"))
    _latency(out, "compare_pure", _row(doc, database, "revflow.diff.compare"))
    _latency(out, "compare_deepdiff", _row(doc, database, "DeepDiff"))


def _collect_drafts(database: str, doc: dict[str, Any], out: dict[str, Any]) -> None:
    _latency(out, "draft_save", _row(doc, database, "save draft"))


def _collect_enroll(database: str, doc: dict[str, Any], out: dict[str, Any]) -> None:
    row = _row(doc, database, "enroll")
    out["enroll_10k_ms"] = None if row is None else row["p50_ms"]
    _latency(out, "enroll_10k", row)


def _collect_engine(database: str, doc: dict[str, Any], out: dict[str, Any]) -> None:
    out["engine_steps_per_s"] = doc.get("engine_steps_per_s")
    out["engine_steps_per_s_1"] = doc.get("engine_steps_per_s_1")
    out["procrastinate_jobs_per_s"] = doc.get("procrastinate_jobs_per_s")


def _collect_migration(database: str, doc: dict[str, Any], out: dict[str, Any]) -> None:
    out["migration_per_min"] = doc.get("runner", {}).get("executions_per_min")
    out["migration_naive_per_min"] = doc.get("naive", {}).get("executions_per_min")


LOAD_KEYS = (
    "load_best_requests_per_s",
    "load_best_clients",
    "load_highest_vs_best",
    "load_upsert_p99_ms_at_32",
    "load_errors",
    "load_5xx",
)


def _collect_load(database: str, doc: dict[str, Any], out: dict[str, Any]) -> None:
    for key in LOAD_KEYS:
        out[key] = doc.get(key)
    out["load_levels"] = [
        {
            k: level.get(k)
            for k in (
                "servers",
                "clients",
                "requests_per_s",
                "errors",
                "server_errors_5xx",
                "database_cpu_share",
            )
        }
        for level in doc.get("levels", [])
    ]


WEBHOOK_KEYS = (
    "webhook_deliveries_per_s",
    "engine_steps_per_s_without_receiver",
    "engine_steps_per_s_with_slow_receiver",
    "engine_drop_with_slow_receiver_pct",
)


def _collect_webhooks(database: str, doc: dict[str, Any], out: dict[str, Any]) -> None:
    for key in WEBHOOK_KEYS:
        out[key] = doc.get(key)


@dataclass(frozen=True)
class Stage:
    """One benchmark script: how to call it and which keys of the result it fills.

    ``collect`` copies the script's JSON into the gathered object and must set every key in
    ``shown`` (``None`` when the stage did not run), so the table and its readers always find
    them; latency keys ending in ``_p95_ms`` are shown with their p50 and p99.
    """

    name: str
    script: str
    args: Callable[[str, bool], list[str]]
    collect: Collector
    shown: tuple[str, ...]
    postgresql_only: bool = False


STAGES = [
    Stage(
        "versioning API",
        "bench_api.py",
        lambda db, quick: [
            "--database",
            db,
            "--versions",
            "1000",
            "--samples",
            "100" if quick else "200",
        ],
        _collect_api,
        (
            "create_version_p95_ms",
            "list_versions_p95_ms",
            "get_version_p95_ms",
            "publish_p95_ms",
        ),
    ),
    Stage(
        "compare",
        "bench_compare_api.py",
        lambda db, quick: [
            "--database",
            db,
            "--runs",
            "100" if quick else "200",
            "--baseline-runs",
            "10" if quick else "30",
        ],
        _collect_compare,
        ("compare_p95_ms", "compare_pure_p95_ms", "compare_deepdiff_p95_ms"),
    ),
    Stage(
        "draft saves",
        "bench_drafts.py",
        lambda db, quick: [
            "--database",
            db,
            "--saves",
            "200" if quick else "500",
            "--recovers",
            "20",
        ],
        _collect_drafts,
        ("draft_save_p95_ms",),
    ),
    Stage(
        "enroll 10,000",
        "bench_enroll.py",
        lambda db, quick: ["--database", db, "--calls", "3" if quick else "5"],
        _collect_enroll,
        ("enroll_10k_ms", "enroll_10k_p95_ms"),
    ),
    Stage(
        "engine",
        "bench_engine.py",
        lambda db, quick: [
            "--executions",
            "2000" if quick else "10000",
            "--workers",
            *(["2"] if quick else ["1", "2"]),
        ],
        _collect_engine,
        ("engine_steps_per_s", "engine_steps_per_s_1", "procrastinate_jobs_per_s"),
        postgresql_only=True,
    ),
    Stage(
        "migration",
        "bench_migration.py",
        lambda db, quick: [
            "--executions",
            "20000" if quick else "100000",
            "--naive-executions",
            "2000" if quick else "10000",
        ],
        _collect_migration,
        ("migration_per_min", "migration_naive_per_min"),
        postgresql_only=True,
    ),
    Stage(
        "load (8, 32, 128 clients)",
        "bench_load.py",
        lambda db, quick: [
            "--clients",
            "8",
            "32",
            "128",
            "--seconds",
            "5" if quick else "15",
            *([] if quick else ["--server-counts", "1", "2"]),
        ],
        _collect_load,
        LOAD_KEYS,
        postgresql_only=True,
    ),
    Stage(
        "webhooks",
        "bench_webhooks.py",
        lambda db, quick: [
            "--deliveries",
            "5000" if quick else "20000",
            "--executions",
            "5000" if quick else "20000",
            "--pairs",
            "2" if quick else "3",
        ],
        _collect_webhooks,
        WEBHOOK_KEYS,
        postgresql_only=True,
    ),
]


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_1min": os.getloadavg()[0],
    }


def run(database: str, *, quick: bool, console: Console) -> dict[str, Any]:
    """Run every stage on ``database``; answers the gathered object."""
    if not BENCHMARKS.is_dir():
        raise RuntimeError(
            f"{BENCHMARKS} not found: revflow bench runs from a clone of the repository"
        )
    out: dict[str, Any] = {"database": database, "quick": quick, "machine": machine()}
    notes: dict[str, str] = {}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("benchmarks", total=len(STAGES))
        for stage in STAGES:
            progress.update(task, description=stage.name)
            if stage.postgresql_only and database != "postgresql":
                notes[stage.name] = (
                    "PostgreSQL only: several worker processes and FOR UPDATE SKIP LOCKED "
                    "batches are the PostgreSQL deployment"
                )
                stage.collect(database, {}, out)
                progress.advance(task)
                continue
            command = [
                sys.executable,
                str(BENCHMARKS / stage.script),
                "--json",
                *stage.args(database, quick),
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            try:
                document = json.loads(done.stdout)
            except ValueError:
                document = {}
                notes[stage.name] = f"failed (exit {done.returncode}): {done.stderr[-500:]}"
            stage.collect(database, document, out)
            progress.advance(task)
    out["goals"] = GOALS
    out["original_requirements"] = REQUIREMENTS
    out["notes"] = notes
    return out


def table(result: dict[str, Any]) -> Table:
    view = Table(
        title=f"revflow bench — {result['database']}" + (" (quick)" if result["quick"] else "")
    )
    for column in ("metric", "p50", "p95 / value", "p99", "goal", "original requirement"):
        view.add_column(column)
    for key in (key for stage in STAGES for key in stage.shown):
        base = key.removesuffix("_p95_ms")
        value = result.get(key)
        view.add_row(
            base,
            _fmt(result.get(f"{base}_p50_ms")) if key.endswith("_p95_ms") else "",
            _fmt(value),
            _fmt(result.get(f"{base}_p99_ms")) if key.endswith("_p95_ms") else "",
            _fmt(GOALS.get(key)),
            _fmt(REQUIREMENTS.get(key)),
        )
    return view


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)
