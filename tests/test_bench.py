"""``revflow bench`` gathers every benchmark's numbers into the one object issue-7 clients read."""

from __future__ import annotations

from typing import Any

from revflow import bench


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
            "procrastinate_jobs_per_s": 250.0,
        },
    )
    assert engine == {
        "engine_steps_per_s": 9000.0,
        "engine_steps_per_s_1": 7000.0,
        "procrastinate_jobs_per_s": 250.0,
    }
    migration = collect(
        "bench_migration.py",
        {"runner": {"executions_per_min": 2_000_000}, "naive": {"executions_per_min": 30_000}},
    )
    assert migration == {"migration_per_min": 2_000_000, "migration_naive_per_min": 30_000}
    enroll = collect(
        "bench_enroll.py",
        {"results": [row("postgresql", "enroll 10,000 contacts (one call)", 900, 1000, 1100)]},
    )
    assert enroll["enroll_10k_ms"] == 900 and enroll["enroll_10k_p95_ms"] == 1000


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


def test_every_issue_key_is_produced_even_when_a_stage_did_not_run() -> None:
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
