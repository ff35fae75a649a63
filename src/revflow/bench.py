"""``revflow bench``: every performance claim behind one command.

Each measurement is one of the scripts in the repository's ``benchmarks/`` folder, run as its
own process with ``--json`` (so one cannot warm or slow down the next) against a fresh database
it creates and drops; this module runs them in turn, shows progress, and gathers their numbers
into one object with the original requirements and the baselines beside them.

On a shared machine absolute milliseconds move from run to run, so each stage also measures
its floor (the least any implementation pays for the same work, in the same run on the same
database) and, where one exists, its strongest peer; the ratios (``RATIOS``) lead the object,
and each stage's own correctness check goes into ``checks`` (a number whose check failed is
``None``).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

# p95 goals (this machine) and the original requirements, in milliseconds; the ratio goals
# (``*_vs_floor``: at most for latencies, at least for rates; ``engine_vs_best_peer``: at least).
GOALS = {
    "create_version_vs_floor": 2.0,
    "draft_save_vs_floor": 2.0,
    "list_versions_vs_floor": 1.5,
    "compare_vs_floor": 2.0,
    "engine_vs_floor": 0.6,
    "engine_vs_best_peer": 10.0,
    "migration_vs_floor": 0.7,
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
    "fair_small_tenant_p95_delay_ms": 1_000.0,
    "fair_throughput_drop_pct": 10.0,
    "webhook_deliveries_per_s": 1_000,
    # At most: the engine's steps/s beside a receiver answering in 2 s, against it alone.
    "engine_drop_with_slow_receiver_pct": 10.0,
    "size_list_executions_vs_empty": 1.5,
    "size_get_execution_vs_empty": 1.5,
    "size_stats_vs_empty": 1.5,
    "size_compare_vs_empty": 1.5,
    "engine_drop_while_pruning_pct": 10.0,
    # At most: seconds until the engine's steps/s is back to 90 % of its steady rate.
    "recovery_terminate_s": 30.0,
    "recovery_lock_s": 30.0,
    "recovery_pool_s": 30.0,
    "recovery_restart_s": 30.0,
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


def _vs_floor(out: dict[str, Any], key: str, row: dict[str, Any] | None) -> None:
    """The floor's latencies beside ``key``'s, and ``key_vs_floor``: p95 over the floor's p95."""
    _latency(out, f"{key}_floor", row)
    measured, floor = out.get(f"{key}_p95_ms"), out[f"{key}_floor_p95_ms"]
    out[f"{key}_vs_floor"] = round(measured / floor, 3) if measured and floor else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if numerator and denominator else None


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
    _vs_floor(out, "create_version", _row(doc, database, "floor: create version"))
    _vs_floor(out, "list_versions", _row(doc, database, "floor: list versions"))


def _collect_compare(database: str, doc: dict[str, Any], out: dict[str, Any]) -> None:
    _latency(out, "compare", _row(doc, database, "GET compare"))
    _latency(out, "compare_pure", _row(doc, database, "revflow.diff.compare"))
    _latency(out, "compare_deepdiff", _row(doc, database, "DeepDiff(before"))
    _vs_floor(out, "compare", _row(doc, database, "floor: compare"))
    # The peer: DeepDiff keyed by id, null when it did not find revflow's changed steps.
    peer = None if doc.get("problems") else _row(doc, database, "DeepDiff keyed by id")
    _latency(out, "compare_deepdiff_keyed", peer)


def _collect_drafts(database: str, doc: dict[str, Any], out: dict[str, Any]) -> None:
    _latency(out, "draft_save", _row(doc, database, "save draft"))
    _vs_floor(out, "draft_save", _row(doc, database, "floor: save draft"))


def _collect_enroll(database: str, doc: dict[str, Any], out: dict[str, Any]) -> None:
    row = None if doc.get("problems") else _row(doc, database, "enroll")
    out["enroll_10k_ms"] = None if row is None else row["p50_ms"]
    _latency(out, "enroll_10k", row)


ENGINE_KEYS = (
    "engine_steps_per_s",
    "engine_steps_per_s_1",
    "engine_floor_steps_per_s",
    "engine_vs_floor",
    "engine_best_peer",
    "engine_best_peer_steps_per_s",
    "engine_vs_best_peer",
    "procrastinate_jobs_per_s",
)


def _collect_engine(database: str, doc: dict[str, Any], out: dict[str, Any]) -> None:
    _copy(doc, ENGINE_KEYS, out)
    out["engine_peers"] = doc.get("peers", [])
    out["engine_peers_missing"] = doc.get("peers_missing", {})


def _copy(document: dict[str, Any], keys: tuple[str, ...], out: dict[str, Any]) -> None:
    """``out[key] = document.get(key)`` for every key (``None`` for one the stage did not set)."""
    for key in keys:
        out[key] = document.get(key)


def _checked_rate(part: dict[str, Any], key: str) -> Any:
    """``part[key]``, or ``None`` when the part's own check found problems."""
    return None if part.get("problems") else part.get(key)


def _collect_migration(database: str, doc: dict[str, Any], out: dict[str, Any]) -> None:
    out["migration_per_min"] = _checked_rate(doc.get("runner", {}), "executions_per_min")
    out["migration_naive_per_min"] = _checked_rate(doc.get("naive", {}), "executions_per_min")
    out["migration_orm_batched_per_min"] = _checked_rate(
        doc.get("orm_batched", {}), "executions_per_min"
    )
    out["migration_floor_per_min"] = _checked_rate(doc.get("floor", {}), "executions_per_min")
    out["migration_vs_floor"] = _ratio(out["migration_per_min"], out["migration_floor_per_min"])


def stage_check(document: dict[str, Any], failure: str | None) -> dict[str, Any]:
    """A stage's own correctness verdict: ``passed`` and the ``problems`` its checks found
    (every part's), or the failure of a stage that printed no result."""
    if failure is not None:
        return {"passed": False, "problems": [failure]}
    problems = list(document.get("problems") or [])
    for part in document.values():
        if isinstance(part, dict):
            problems += [str(p) for p in part.get("problems") or []]
    return {"passed": not problems, "problems": problems}


# The ratios ``bench --json`` prints at its top level; each stage's collector sets its own.
RATIOS = (
    "create_version_vs_floor",
    "draft_save_vs_floor",
    "list_versions_vs_floor",
    "compare_vs_floor",
    "engine_vs_floor",
    "engine_vs_best_peer",
    "migration_vs_floor",
)


LOAD_KEYS = (
    "load_best_requests_per_s",
    "load_best_clients",
    "load_highest_vs_best",
    "load_upsert_p99_ms_at_32",
    "load_errors",
    "load_5xx",
)


def _collect_load(database: str, doc: dict[str, Any], out: dict[str, Any]) -> None:
    _copy(doc, LOAD_KEYS, out)
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


FAIR_KEYS = (
    "fair_small_tenant_p95_delay_ms",
    "fair_baseline_small_tenant_p95_delay_ms",
    "fair_big_tenant_steps_per_s",
    "fair_baseline_big_tenant_steps_per_s",
    "fair_throughput_drop_pct",
    "fair_cpu_increase_pct",
)


def _collect_fair(database: str, doc: dict[str, Any], out: dict[str, Any]) -> None:
    rows: list[dict[str, Any]] = doc.get("results", [])
    row = next((r for r in rows if r.get("database") == database), {})
    _copy(row, FAIR_KEYS, out)


WEBHOOK_KEYS = (
    "webhook_deliveries_per_s",
    "engine_steps_per_s_without_receiver",
    "engine_steps_per_s_with_slow_receiver",
    "engine_drop_with_slow_receiver_pct",
)


def _collect_webhooks(database: str, doc: dict[str, Any], out: dict[str, Any]) -> None:
    _copy(doc, WEBHOOK_KEYS, out)


SCALING_KEYS = (
    "scaling_baseline_steps_per_s",
    "scaling_best_steps_per_s",
    "scaling_best_vs_baseline",
    "scaling_best_workers",
    "scaling_database_cpu_cores_max",
)
SCALING_ROW_KEYS = (
    "workers",
    "api_processes",
    "steps_per_s",
    "steps_per_s_vs_baseline",
    "api_requests_per_s",
    "api_requests_per_s_vs_baseline",
    "api_p95_ms",
    "database_cpu_cores",
    "worker_cpu_cores",
    "api_cpu_cores",
    "machine_busy_cores",
)


def _collect_scaling(database: str, doc: dict[str, Any], out: dict[str, Any]) -> None:
    _copy(doc, SCALING_KEYS, out)
    out["scaling_rows"] = [{k: row.get(k) for k in SCALING_ROW_KEYS} for row in doc.get("rows", [])]


SIZE_KEYS = (
    "size_list_executions_vs_empty",
    "size_get_execution_vs_empty",
    "size_stats_vs_empty",
    "size_compare_vs_empty",
    "prune_rows_per_s_idle",
    "prune_rows_per_s_busy",
    "engine_steps_per_s_alone",
    "engine_steps_per_s_while_pruning",
    "engine_drop_while_pruning_pct",
)


def _collect_size(database: str, doc: dict[str, Any], out: dict[str, Any]) -> None:
    _copy(doc, SIZE_KEYS, out)
    out["size_history_rows"] = doc.get("shape", {}).get("history")


RECOVERY_KEYS = (
    "recovery_steady_steps_per_s",
    "recovery_terminate_s",
    "recovery_lock_s",
    "recovery_pool_s",
    "recovery_restart_s",
)


def _collect_recovery(database: str, doc: dict[str, Any], out: dict[str, Any]) -> None:
    checked = {} if doc.get("problems") else doc
    _copy(checked, RECOVERY_KEYS, out)
    out["recovery_faults"] = doc.get("faults", [])
    # Whether the server vacuums decides whether the rate holds over the stage's minutes.
    out["recovery_database"] = doc.get("database")


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
            "create_version_floor_p95_ms",
            "create_version_vs_floor",
            "list_versions_p95_ms",
            "list_versions_floor_p95_ms",
            "list_versions_vs_floor",
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
        (
            "compare_p95_ms",
            "compare_floor_p95_ms",
            "compare_vs_floor",
            "compare_pure_p95_ms",
            "compare_deepdiff_keyed_p95_ms",
            "compare_deepdiff_p95_ms",
        ),
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
        ("draft_save_p95_ms", "draft_save_floor_p95_ms", "draft_save_vs_floor"),
    ),
    Stage(
        "enroll 10,000",
        "bench_enroll.py",
        lambda db, quick: ["--database", db, "--calls", "10"],
        _collect_enroll,
        ("enroll_10k_ms", "enroll_10k_p95_ms"),
    ),
    Stage(
        "engine",
        "bench_engine.py",
        lambda db, quick: [
            "--executions",
            # Enough that the floor's window is many worker polls long.
            "5000" if quick else "10000",
            "--workers",
            *(["2"] if quick else ["1", "2"]),
            "--baseline-executions",
            "500" if quick else "2000",
        ],
        _collect_engine,
        ENGINE_KEYS,
        postgresql_only=True,
    ),
    Stage(
        "fair claims",
        "bench_fair.py",
        lambda db, quick: [
            "--database",
            db,
            "--big",
            "3000" if quick else "10000",
            "--small",
            "25" if quick else "50",
            "--rounds",
            "1" if quick else "5",
        ],
        _collect_fair,
        FAIR_KEYS,
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
        (
            "migration_per_min",
            "migration_floor_per_min",
            "migration_vs_floor",
            "migration_orm_batched_per_min",
            "migration_naive_per_min",
        ),
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
    Stage(
        "more workers (1, 2, 4 workers; 1, 2 API processes)",
        "bench_scaling.py",
        lambda db, quick: ["--executions", "80000", "--seconds", "5"] if quick else [],
        _collect_scaling,
        SCALING_KEYS,
        postgresql_only=True,
    ),
    Stage(
        # PostgreSQL restarts only with REVFLOW_TEST_RESTART_POSTGRESQL=1 (or
        # REVFLOW_TEST_PG_CONTROL) in revflow bench's environment: otherwise it is skipped.
        "recovery after faults",
        "bench_recovery.py",
        lambda db, quick: [
            "--executions",
            "10000" if quick else "20000",
            "--steady-seconds",
            "10" if quick else "20",
        ],
        _collect_recovery,
        RECOVERY_KEYS,
        postgresql_only=True,
    ),
    Stage(
        "at size",
        "bench_size.py",
        lambda db, quick: ["--quick"] if quick else [],
        _collect_size,
        SIZE_KEYS,
        postgresql_only=True,
    ),
]


# How long a stage ended early (Ctrl-C, SIGTERM) has to stop its servers and workers and drop
# its database before it is killed.
STAGE_TEARDOWN_S = 60.0


def exit_on_sigterm() -> None:
    """Make SIGTERM end this process as Ctrl-C does, by an exception (``SystemExit(143)``),
    so that every ``with`` block tears down what it started: servers, workers, generator
    processes, the stage being run, the database. A second SIGTERM during that teardown is
    ignored; SIGKILL still ends the process at once. Call it from the main thread."""

    def terminated(signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)


def run_stage(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run one stage's script to its end. If this process is ended meanwhile (Ctrl-C or
    SIGTERM, see :func:`exit_on_sigterm`), the stage is asked to stop (SIGTERM) and given
    ``STAGE_TEARDOWN_S`` to tear down what it started before it is killed: a stage killed at
    once would leave its servers running and its database behind. The stage runs in a session
    of its own, so that a terminal's Ctrl-C reaches it only this way, once."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate()
    except BaseException:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=STAGE_TEARDOWN_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


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
    out.update(dict.fromkeys(RATIOS))
    notes: dict[str, str] = {}
    checks: dict[str, dict[str, Any]] = {}
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
                checks[stage.name] = {"passed": None, "problems": []}
                stage.collect(database, {}, out)
                progress.advance(task)
                continue
            command = [
                sys.executable,
                str(BENCHMARKS / stage.script),
                "--json",
                *stage.args(database, quick),
            ]
            done = run_stage(command)
            failure = None
            try:
                document = json.loads(done.stdout)
            except ValueError:
                document = {}
                failure = f"failed (exit {done.returncode}): {done.stderr[-500:]}"
                notes[stage.name] = failure
            checks[stage.name] = stage_check(document, failure)
            stage.collect(database, document, out)
            progress.advance(task)
    out["checks"] = checks
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
