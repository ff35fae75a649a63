"""A benchmark ended by SIGTERM (a CI job cancelled, ``timeout``, ``kill``) tears down what it
started, as it does on Ctrl-C: its servers, its workers and its database. On each database
(the ``backend`` fixture)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import asyncpg

from revflow import bench
from tests.support.databases import PG_ADMIN_DSN

_T = TypeVar("_T")


def _parents() -> dict[int, int]:
    """Every process's parent, from ``/proc``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # ended meanwhile
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    return parents


def _descendants(pid: int) -> set[int]:
    parents = _parents()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _servers(pid: int) -> list[int]:
    """The ``revflow serve`` processes among ``pid``'s descendants."""
    return [p for p in _descendants(pid) if " serve " in _command_line(p)]


def _wait_for(found: Callable[[], _T], seconds: float, what: str) -> _T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"no {what} after {seconds:g} s")


def _bench_databases(pid: int) -> list[str]:
    """The databases made by the benchmark process ``pid`` (``common.fresh_database``)."""

    async def names() -> list[str]:
        connection = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            rows = await connection.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE $1", f"revflow_bench_{pid}_%"
            )
        finally:
            await connection.close()
        return [row["datname"] for row in rows]

    return asyncio.run(names())


def _environment() -> dict[str, str]:
    return {**os.environ, "REVFLOW_BENCH_PG": PG_ADMIN_DSN}


def _terminate(process: subprocess.Popen[bytes], started: set[int]) -> None:
    """SIGTERM ``process`` alone, as ``kill`` does, and check it ends as told, with every
    process it had started ended too."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=bench.STAGE_TEARDOWN_S + 30) == 128 + signal.SIGTERM
    _wait_for(lambda: not any(_running(p) for p in started), 15, "end of every process started")


def test_a_benchmark_ended_by_sigterm_stops_its_server_and_drops_its_database(
    backend: str, tmp_path: Path
) -> None:
    script = subprocess.Popen(
        [
            sys.executable,
            str(bench.BENCHMARKS / "bench_api.py"),
            *("--database", backend, "--pg-admin-dsn", PG_ADMIN_DSN, "--json"),
        ],
        cwd=tmp_path,
        env=_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        server = _wait_for(lambda: _servers(script.pid), 90, "revflow serve")[0]
        workdir = Path(os.readlink(f"/proc/{server}/cwd"))  # the run's temporary folder
        if backend == "postgresql":
            assert len(_bench_databases(script.pid)) == 1
        _terminate(script, _descendants(script.pid))
    finally:
        if script.poll() is None:
            script.kill()
    assert not workdir.exists()  # the SQLite database's folder, the servers' logs
    if backend == "postgresql":
        assert _bench_databases(script.pid) == []


def test_revflow_bench_ended_by_sigterm_lets_the_running_stage_tear_down(
    backend: str, tmp_path: Path
) -> None:
    runner = subprocess.Popen(
        [sys.executable, "-m", "revflow", "bench", "--quick", "--database", backend, "--json"],
        cwd=tmp_path,
        env=_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: _servers(runner.pid), 90, "revflow serve of the first stage")
        started = _descendants(runner.pid)
        parents = _parents()
        stage = next(p for p in started if parents.get(p) == runner.pid)
        assert "benchmarks/" in _command_line(stage)
        _terminate(runner, started)
    finally:
        if runner.poll() is None:
            runner.kill()
    if backend == "postgresql":
        assert _bench_databases(stage) == []
