"""``revflow bench`` gathers every benchmark's numbers into the one object its readers use."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from revflow import bench
from tests.support.databases import require_postgresql


def row(database: str, metric: str, p50: float, p95: float, p99: float) -> dict[str, Any]:
    return {"database": database, "metric": metric, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99}


def collect(script: str, document: dict[str, Any], database: str = "postgresql") -> dict[str, Any]:
    stage = next(s for s in bench.STAGES if s.script == script)
    out: dict[str, Any] = {}
    stage.collect(database, document, out)
    return out


def test_api_numbers_are_taken_from_the_rows_of_their_database() -> None:
    out = collect(
        "bench_api.py",
        {
            "results": [
                row("sqlite", "create version (200 steps)", 1, 2, 3),
                row("postgresql", "create version (200 steps)", 10, 12, 14),
                row("postgresql", "list versions (limit=50)", 4, 5, 6),
                row("postgresql", "publish a draft", 7, 8, 9),
            ]
        },
    )
    assert (
        out["create_version_p50_ms"],
        out["create_version_p95_ms"],
        out["create_version_p99_ms"],
    ) == (10, 12, 14)
    assert out["list_versions_p95_ms"] == 5 and out["publish_p95_ms"] == 8
    assert out["get_version_p95_ms"] is None


def test_compare_keeps_the_deepdiff_baseline_beside_the_api() -> None:
    out = collect(
        "bench_compare_api.py",
        {
            "results": [
                row("postgresql", "GET compare (500 steps)", 7, 10, 12),
                row("in-process", "revflow.diff.compare (pure)", 1, 2, 3),
                row("in-process", "DeepDiff(before, after) baseline", 140, 170, 175),
            ]
        },
    )
    assert out["compare_p95_ms"] == 10 and out["compare_deepdiff_p95_ms"] == 170
    assert out["compare_pure_p95_ms"] == 2


def test_engine_migration_and_enrollment_values() -> None:
    engine = collect(
        "bench_engine.py",
        {
            "engine_steps_per_s": 9000.0,
            "engine_steps_per_s_1": 7000.0,
            "engine_floor_steps_per_s": 12000.0,
            "engine_vs_floor": 0.75,
            "engine_best_peer": "procrastinate, job per execution, 2 x conc. 10",
            "engine_best_peer_steps_per_s": 600.0,
            "engine_vs_best_peer": 15.0,
            "procrastinate_jobs_per_s": 250.0,
            "peers": [{"system": "procrastinate", "mode": "step", "steps_per_s": 250.0}],
            "peers_missing": {"dbos": "not installed"},
        },
    )
    assert engine["engine_steps_per_s"] == 9000.0 and engine["engine_vs_floor"] == 0.75
    assert engine["engine_vs_best_peer"] == 15.0 and engine["procrastinate_jobs_per_s"] == 250.0
    assert engine["engine_peers_missing"] == {"dbos": "not installed"}
    assert [peer["mode"] for peer in engine["engine_peers"]] == ["step"]
    migration = collect(
        "bench_migration.py",
        {
            "runner": {"executions_per_min": 2_000_000, "problems": []},
            "floor": {"executions_per_min": 2_500_000, "problems": []},
            "orm_batched": {"executions_per_min": 90_000, "problems": []},
            "naive": {"executions_per_min": 30_000},
        },
    )
    assert migration == {
        "migration_per_min": 2_000_000,
        "migration_floor_per_min": 2_500_000,
        "migration_vs_floor": 0.8,
        "migration_orm_batched_per_min": 90_000,
        "migration_naive_per_min": 30_000,
    }
    enroll = collect(
        "bench_enroll.py",
        {"results": [row("postgresql", "enroll 10,000 contacts (one call)", 900, 1000, 1100)]},
    )
    assert enroll["enroll_10k_ms"] == 900 and enroll["enroll_10k_p95_ms"] == 1000


def test_fair_claims_keep_the_oldest_first_baseline_beside_them() -> None:
    out = collect(
        "bench_fair.py",
        {
            "results": [
                {
                    "database": "sqlite",
                    "fair_small_tenant_p95_delay_ms": 90.0,
                    "fair_throughput_drop_pct": 1.0,
                },
                {
                    "database": "postgresql",
                    "fair_small_tenant_p95_delay_ms": 250.5,
                    "fair_baseline_small_tenant_p95_delay_ms": 2600.0,
                    "fair_big_tenant_steps_per_s": 14000.0,
                    "fair_baseline_big_tenant_steps_per_s": 14500.0,
                    "fair_throughput_drop_pct": 3.45,
                    "fair_cpu_increase_pct": 4.2,
                    "passed": True,
                },
            ]
        },
    )
    assert out == {
        "fair_small_tenant_p95_delay_ms": 250.5,
        "fair_baseline_small_tenant_p95_delay_ms": 2600.0,
        "fair_big_tenant_steps_per_s": 14000.0,
        "fair_baseline_big_tenant_steps_per_s": 14500.0,
        "fair_throughput_drop_pct": 3.45,
        "fair_cpu_increase_pct": 4.2,
    }
    sqlite = collect("bench_fair.py", {"results": [{"database": "sqlite"}]}, "sqlite")
    assert set(sqlite) == set(bench.FAIR_KEYS) and set(sqlite.values()) == {None}
    assert bench.GOALS["fair_small_tenant_p95_delay_ms"] == 1000
    assert bench.GOALS["fair_throughput_drop_pct"] == 10


def test_api_stages_stand_beside_their_floors_as_p95_ratios() -> None:
    api = collect(
        "bench_api.py",
        {
            "results": [
                row("postgresql", "create version (200 steps)", 10, 12, 14),
                row("postgresql", "list versions (limit=50)", 4, 6, 7),
                row("postgresql", "floor: create version", 3, 4, 5),
                row("postgresql", "floor: list versions", 2, 3, 4),
            ]
        },
    )
    assert api["create_version_floor_p95_ms"] == 4 and api["create_version_vs_floor"] == 3.0
    assert api["list_versions_vs_floor"] == 2.0
    drafts = collect(
        "bench_drafts.py",
        {
            "results": [
                row("postgresql", "save draft (200 steps)", 8, 9, 10),
                row("postgresql", "floor: save draft", 3, 6, 7),
            ]
        },
    )
    assert drafts["draft_save_vs_floor"] == 1.5
    compare = collect(
        "bench_compare_api.py",
        {
            "results": [
                row("postgresql", "GET compare (500 steps)", 7, 10, 12),
                row("postgresql", "floor: compare", 3, 4, 5),
                row("in-process", "DeepDiff keyed by id (peer)", 20, 25, 30),
                row("in-process", "DeepDiff(before, after) baseline", 140, 170, 175),
            ]
        },
    )
    assert compare["compare_vs_floor"] == 2.5
    assert compare["compare_deepdiff_keyed_p95_ms"] == 25
    assert compare["compare_deepdiff_p95_ms"] == 170


def test_a_stage_without_its_floor_has_no_ratio() -> None:
    sqlite = collect(
        "bench_api.py",
        {"results": [row("sqlite", "create version (200 steps)", 10, 12, 14)]},
        database="sqlite",
    )
    assert sqlite["create_version_p95_ms"] == 12
    assert sqlite["create_version_floor_p95_ms"] is None
    assert sqlite["create_version_vs_floor"] is None


def test_a_number_whose_check_failed_is_null() -> None:
    migration = collect(
        "bench_migration.py",
        {
            "runner": {"executions_per_min": 2_000_000, "problems": ["executions: 3"]},
            "floor": {"executions_per_min": 2_500_000, "problems": []},
        },
    )
    assert migration["migration_per_min"] is None and migration["migration_vs_floor"] is None
    assert migration["migration_floor_per_min"] == 2_500_000
    compare = collect(
        "bench_compare_api.py",
        {
            "results": [row("in-process", "DeepDiff keyed by id (peer)", 20, 25, 30)],
            "problems": ["DeepDiff keyed by id found other changed steps"],
        },
    )
    assert compare["compare_deepdiff_keyed_p95_ms"] is None
    enroll = collect(
        "bench_enroll.py",
        {
            "results": [row("postgresql", "enroll 10,000 contacts (one call)", 900, 1000, 1100)],
            "problems": ["call 3: 9999 executions in the database"],
        },
    )
    assert enroll["enroll_10k_ms"] is None


def test_each_stage_check_gathers_the_problems_of_every_part() -> None:
    document = {
        "problems": ["top"],
        "runner": {"problems": ["runner"]},
        "naive": {"problems": []},
        "config": {"executions": 10},
    }
    assert bench.stage_check(document, None) == {"passed": False, "problems": ["top", "runner"]}
    assert bench.stage_check({"results": []}, None) == {"passed": True, "problems": []}
    assert bench.stage_check({}, "failed (exit 1): boom") == {
        "passed": False,
        "problems": ["failed (exit 1): boom"],
    }


def test_every_ratio_is_a_stage_key_and_has_a_goal() -> None:
    shown = {key for stage in bench.STAGES for key in stage.shown}
    assert set(bench.RATIOS) <= shown
    assert set(bench.RATIOS) <= set(bench.GOALS)


def test_webhook_numbers_are_taken_with_the_engine_beside_them() -> None:
    out = collect(
        "bench_webhooks.py",
        {
            "webhook_deliveries_per_s": 1800.5,
            "engine_steps_per_s_without_receiver": 20000.0,
            "engine_steps_per_s_with_slow_receiver": 19000.0,
            "engine_drop_with_slow_receiver_pct": 5.0,
            "deliveries": {"checks": {"duplicate_ids": 0}},
        },
    )
    assert out == {
        "webhook_deliveries_per_s": 1800.5,
        "engine_steps_per_s_without_receiver": 20000.0,
        "engine_steps_per_s_with_slow_receiver": 19000.0,
        "engine_drop_with_slow_receiver_pct": 5.0,
    }
    assert bench.GOALS["webhook_deliveries_per_s"] == 1_000
    assert bench.GOALS["engine_drop_with_slow_receiver_pct"] == 10.0
    stage = next(s for s in bench.STAGES if s.script == "bench_webhooks.py")
    assert stage.postgresql_only
    quick, full = stage.args("postgresql", True), stage.args("postgresql", False)
    assert int(quick[quick.index("--deliveries") + 1]) < int(full[full.index("--deliveries") + 1])
    assert (bench.BENCHMARKS / stage.script).is_file()


def test_every_key_is_produced_even_when_a_stage_did_not_run() -> None:
    out: dict[str, Any] = {}
    for stage in bench.STAGES:
        stage.collect("sqlite", {}, out)
    for key in (
        "create_version_p95_ms",
        "list_versions_p95_ms",
        "compare_p95_ms",
        "publish_p95_ms",
        "draft_save_p95_ms",
        "migration_per_min",
        "engine_steps_per_s",
        "enroll_10k_ms",
        "compare_deepdiff_p95_ms",
        "migration_naive_per_min",
        "procrastinate_jobs_per_s",
        "fair_small_tenant_p95_delay_ms",
        "fair_big_tenant_steps_per_s",
        "fair_throughput_drop_pct",
        *bench.RATIOS,
        "webhook_deliveries_per_s",
        "engine_steps_per_s_with_slow_receiver",
        "engine_drop_with_slow_receiver_pct",
    ):
        assert key in out, key
    for stage in bench.STAGES:
        for key in stage.shown:
            assert key in out, f"{stage.name} shows {key} but does not set it"
    assert bench.table({"database": "sqlite", "quick": True, **out}).row_count > 10


def test_load_keeps_every_level_and_the_verdict_numbers() -> None:
    document = {
        "levels": [
            {"clients": 8, "requests_per_s": 300.0, "errors": 0, "server_errors_5xx": 0},
            {"clients": 128, "requests_per_s": 280.0, "errors": 1, "server_errors_5xx": 0},
        ],
        "load_best_requests_per_s": 300.0,
        "load_best_clients": 8,
        "load_highest_vs_best": 0.933,
        "load_upsert_p99_ms_at_32": None,
        "load_errors": 1,
        "load_5xx": 0,
    }
    out = collect("bench_load.py", document)
    assert out["load_highest_vs_best"] == 0.933 and out["load_errors"] == 1
    assert [level["clients"] for level in out["load_levels"]] == [8, 128]


def test_run_puts_the_ratios_and_each_stage_check_at_the_top(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``bench --json`` on PostgreSQL: each script's JSON gathered, one failing to print any."""
    documents: dict[str, dict[str, Any]] = {
        "bench_api.py": {
            "results": [
                row("postgresql", "create version (200 steps)", 10, 12, 14),
                row("postgresql", "floor: create version", 3, 4, 5),
            ]
        },
        "bench_migration.py": {
            "runner": {"executions_per_min": 900_000, "problems": []},
            "floor": {"executions_per_min": 1_000_000, "problems": []},
        },
    }

    def fake_run(command: list[str]) -> subprocess.CompletedProcess[str]:
        script = Path(command[1]).name
        if script not in documents:
            return subprocess.CompletedProcess(command, 1, "", "the script broke")
        return subprocess.CompletedProcess(command, 0, json.dumps(documents[script]), "")

    monkeypatch.setattr(bench, "run_stage", fake_run)
    out = bench.run("postgresql", quick=True, console=Console(file=io.StringIO()))
    assert out["create_version_vs_floor"] == 3.0 and out["migration_vs_floor"] == 0.9
    assert out["engine_vs_floor"] is None and out["engine_vs_best_peer"] is None
    assert list(out)[3 : 3 + len(bench.RATIOS)] == list(bench.RATIOS)
    assert out["checks"]["versioning API"] == {"passed": True, "problems": []}
    assert out["checks"]["engine"]["passed"] is False
    assert "the script broke" in out["checks"]["engine"]["problems"][0]


def test_the_engine_stands_without_its_peers_and_a_failed_check_is_null() -> None:
    """Without procrastinate and DBOS (not installed) the engine's own numbers stand."""
    from benchmarks import bench_engine

    def run(system: str, steps_per_s: float, problems: list[str]) -> Any:
        return bench_engine.Run(
            system, 2, 1, int(steps_per_s), 1.0, [0.1], 0.5, None, 1.0, problems=problems
        )

    missing = {"procrastinate": "not installed", "dbos": "not installed"}
    numbers = bench_engine.summary([run("revflow", 6000, []), run("floor", 10000, [])], missing)
    assert numbers["engine_steps_per_s"] == 6000 and numbers["engine_vs_floor"] == 0.6
    assert numbers["engine_vs_best_peer"] is None and numbers["peers_missing"] == missing
    assert numbers["goals"]["engine_vs_floor_passed"] is True
    failed = bench_engine.summary([run("revflow", 6000, ["history: 9, expected 10"])], {})
    assert failed["engine_steps_per_s"] is None and failed["passed"] is False
    assert failed["problems"] == ["revflow, 2 workers: history: 9, expected 10"]


def test_size_takes_the_ratios_to_the_empty_database_and_pruning_beside_the_engine() -> None:
    document = {
        "shape": {"accounts": 1000, "executions": 1_000_000, "history": 10_000_000},
        "size_list_executions_vs_empty": 1.1,
        "size_get_execution_vs_empty": 0.9,
        "size_stats_vs_empty": 1.4,
        "size_compare_vs_empty": 1.0,
        "size_stats_p95_ms": 14.0,
        "prune_rows_per_s_idle": 60000,
        "prune_rows_per_s_busy": 3000,
        "engine_steps_per_s_alone": 3000.0,
        "engine_steps_per_s_while_pruning": 2850.0,
        "engine_drop_while_pruning_pct": 5.0,
    }
    out = collect("bench_size.py", document)
    assert out == {
        "size_list_executions_vs_empty": 1.1,
        "size_get_execution_vs_empty": 0.9,
        "size_stats_vs_empty": 1.4,
        "size_compare_vs_empty": 1.0,
        "prune_rows_per_s_idle": 60000,
        "prune_rows_per_s_busy": 3000,
        "engine_steps_per_s_alone": 3000.0,
        "engine_steps_per_s_while_pruning": 2850.0,
        "engine_drop_while_pruning_pct": 5.0,
        "size_history_rows": 10_000_000,
    }
    stage = next(s for s in bench.STAGES if s.script == "bench_size.py")
    assert stage is bench.STAGES[-1] and stage.postgresql_only
    assert stage.args("postgresql", True) == ["--quick"] and stage.args("postgresql", False) == []
    assert bench.GOALS["size_stats_vs_empty"] == 1.5
    assert bench.GOALS["engine_drop_while_pruning_pct"] == 10


def test_scaling_keeps_every_row_beside_its_baseline() -> None:
    rows = [
        {"workers": w, "api_processes": a, "steps_per_s": 1000.0 * w, "extra": 1}
        for a in (1, 2)
        for w in (1, 2, 4)
    ]
    out = collect(
        "bench_scaling.py",
        {
            "scaling_baseline_steps_per_s": 1000.0,
            "scaling_best_steps_per_s": 4000.0,
            "scaling_best_vs_baseline": 4.0,
            "scaling_best_workers": 4,
            "scaling_database_cpu_cores_max": 0.9,
            "rows": rows,
        },
    )
    assert out["scaling_best_vs_baseline"] == 4.0 and out["scaling_best_workers"] == 4
    assert [(r["workers"], r["api_processes"]) for r in out["scaling_rows"]] == [
        (1, 1),
        (2, 1),
        (4, 1),
        (1, 2),
        (2, 2),
        (4, 2),
    ]
    assert "extra" not in out["scaling_rows"][0]
    stage = next(s for s in bench.STAGES if s.script == "bench_scaling.py")
    assert stage.postgresql_only and (bench.BENCHMARKS / stage.script).is_file()
    quick = stage.args("postgresql", True)
    assert float(quick[quick.index("--seconds") + 1]) < 10  # the script's default window


def test_scaling_runs_every_configuration_at_a_tiny_size(tmp_path: Path) -> None:
    """The stage end to end on PostgreSQL: a row per configuration, each with sane numbers.

    The backlog must outlast the warm-up and the window (else the row's check fails): on a
    machine where two workers drain ~25,000 steps/s, the 0.75 s of them take ~3,750 of the
    10,000 executions (five steps each). Each configuration's set-up enrolls the backlog anew,
    ~0.25 s per 1,000 executions on a slow machine: the backlog is the window's size, no more."""
    require_postgresql()
    tiny = ["--workers", "1", "2", "--api-processes", "1", "2", "--executions", "10000"]
    done = subprocess.run(
        [
            sys.executable,
            str(bench.BENCHMARKS / "bench_scaling.py"),
            *tiny,
            *("--seconds", "0.5", "--warmup", "0.25", "--api-rate", "20", "--json"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert result["passed"] and result["problems"] == []
    rows = result["rows"]
    assert [(r["workers"], r["api_processes"]) for r in rows] == [(1, 1), (2, 1), (1, 2), (2, 2)]
    cpus = os.cpu_count() or 1
    for r in rows:
        assert r["steps"] > 0 and r["steps_per_s"] > 0, r
        assert r["api_requests"] > 0 and r["api_errors"] == 0, r
        assert 0 < r["api_p50_ms"] <= r["api_p95_ms"], r
        assert 0 < r["worker_cpu_cores"] <= cpus + 0.5, r
        assert 0 < r["database_cpu_cores"] <= cpus + 0.5, r
        assert 0 <= r["api_cpu_cores"] <= cpus + 0.5, r
        assert r["backlog_left"] > 0, r
        assert r["steps_per_s_vs_baseline"] == round(r["steps_per_s"] / rows[0]["steps_per_s"], 2)
    assert rows[0]["steps_per_s_vs_baseline"] == 1.0
    assert rows[0]["api_requests_per_s_vs_baseline"] == 1.0
    assert result["scaling_baseline_steps_per_s"] == rows[0]["steps_per_s"]
    assert result["scaling_best_steps_per_s"] == max(r["steps_per_s"] for r in rows)


def test_recovery_takes_each_fault_and_a_failed_check_nulls_the_times() -> None:
    document = {
        "recovery_steady_steps_per_s": 9000.0,
        "recovery_terminate_s": 1.5,
        "recovery_lock_s": 0.5,
        "recovery_pool_s": 2.0,
        "recovery_restart_s": None,
        "faults": [{"fault": "terminate", "recovery_s": 1.5}],
        "database": "PostgreSQL 15.19, autovacuum off",
        "problems": [],
    }
    out = collect("bench_recovery.py", document)
    assert out["recovery_terminate_s"] == 1.5 and out["recovery_restart_s"] is None
    assert out["recovery_faults"] == [{"fault": "terminate", "recovery_s": 1.5}]
    assert out["recovery_database"] == "PostgreSQL 15.19, autovacuum off"
    failed = collect("bench_recovery.py", {**document, "problems": ["worker 0 exited"]})
    assert failed["recovery_terminate_s"] is None
    assert all(bench.GOALS[f"recovery_{f}_s"] == 30 for f in ("terminate", "lock", "pool"))


def test_the_recovery_stage_measures_every_fault_but_the_restart(tmp_path: Path) -> None:
    """A tiny run of the stage's script end to end: its output's shape, not its times."""
    require_postgresql()
    tiny = ["--executions", "300", "--warmup", "1", "--steady-seconds", "2", "--window", "1"]
    faults = ["--lock-seconds", "1", "--pool-seconds", "1", "--recovery-timeout", "5"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REVFLOW_", "CI"))}
    done = subprocess.run(
        [sys.executable, str(bench.BENCHMARKS / "bench_recovery.py"), *tiny, *faults, "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    result = json.loads(done.stdout)  # printed even when a fault is not back in time
    assert result["problems"] == [], result["problems"]
    assert [f["fault"] for f in result["faults"]] == ["terminate", "lock", "pool", "restart"]
    assert "skipped" in result["faults"][-1] and result["recovery_restart_s"] is None
    for fault in result["faults"][:3]:
        assert {"steady_steps_per_s", "fault_s", "lowest_steps_per_s", "recovery_s", "met"} <= set(
            fault
        ), fault
        assert fault["steady_steps_per_s"] > 0
    assert result["recovery_steady_steps_per_s"] > 0 and result["timeline"]
    assert result["api_statuses"].get("200", 0) > 0
    assert re.fullmatch(r"PostgreSQL .+, autovacuum (on|off)", result["database"])
    out = collect("bench_recovery.py", result)
    assert set(bench.RECOVERY_KEYS) <= set(out)


def test_load_deals_every_client_to_one_generator_and_merges_what_they_measured() -> None:
    from collections import Counter

    from benchmarks.bench_load import Level, PartResult, merge, parts_of

    parts = parts_of(32, 2)
    assert parts == [list(range(0, 32, 2)), list(range(1, 32, 2))]
    assert sorted(i for part in parts_of(7, 3) for i in part) == list(range(7))
    assert parts_of(1, 4) == [[0]]  # never a process without a client

    def measured(upserts: list[float], seconds: float, lags: list[float]) -> PartResult:
        return PartResult(
            latencies={"upsert_contact": upserts},
            statuses={"upsert_contact": Counter({200: len(upserts)})},
            errors=Counter({"send_event: 503": 1}),
            error_samples=["POST /api/v1/events: busy"],
            server_errors=1,
            client_cpu_s=0.5,
            seconds=seconds,
            lags_ms=lags,
        )

    level = Level(32, 15.0, servers=2)
    merge(level, [measured([1.0, 2.0], 15.02, [0.1, 4.0]), measured([3.0], 15.05, [0.2])])
    assert sorted(level.latencies["upsert_contact"]) == [1.0, 2.0, 3.0]
    assert level.statuses["upsert_contact"][200] == 3
    assert level.errors["send_event: 503"] == 2 and level.server_errors == 2
    assert level.client_cpu_s == 1.0 and level.seconds == 15.05
    assert level.requests == 5
    assert level.to_dict()["generator_lag_ms"]["max"] == 4.0


def test_a_failing_generator_process_hands_its_error_to_the_parent() -> None:
    import queue
    import time

    from benchmarks.bench_load import Part, Setup, generate

    ready: queue.Queue[int] = queue.Queue()
    start: queue.Queue[float] = queue.Queue()
    done: queue.Queue[Any] = queue.Queue()
    start.put(time.time())
    # Client 0 owns no workflow here: its first request cannot even be made.
    part = Part(["http://127.0.0.1:9"], Setup("key", [], []), 1, [0], 0.5)
    generate(part, ready, start, done)  # type: ignore[arg-type]
    assert done.get_nowait().startswith("IndexError")
    assert not ready.empty()  # a parent waiting for it to be ready is not left waiting


def test_a_stage_runs_to_its_end_with_its_output_and_exit_status() -> None:
    program = "import sys; print('{}'); sys.stderr.write('why'); sys.exit(3)"
    done = bench.run_stage([sys.executable, "-c", program])
    assert (done.returncode, done.stdout, done.stderr) == (3, "{}\n", "why")
