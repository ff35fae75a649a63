"""Pieces shared by the API benchmarks: a fresh database, a real server, timing and reporting.

A benchmark runs against the real thing: a database created for the run (a temporary SQLite
file, or a uniquely named PostgreSQL database that is dropped at the end), migrated and given an
account with the ``revflow`` command line, and a ``revflow serve`` subprocess on a free loopback
port, driven by one keep-alive ``httpx.Client`` sending one request at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import make_url

BACKENDS: tuple[str, ...] = ("sqlite", "postgresql")
PG_ADMIN_DSN = os.environ.get("REVFLOW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SERVER_START_TIMEOUT_S = 60.0

# Progress and phase messages go to stderr, so that stdout holds only the table (or the JSON).
stderr = Console(stderr=True)


def backends(choice: str) -> list[str]:
    """The backends named by a ``--database`` option: ``sqlite``, ``postgresql`` or ``both``."""
    return list(BACKENDS) if choice == "both" else [choice]


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number of at least 1 (a count of requests, of round trips)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def say(message: str) -> None:
    stderr.print(message, highlight=False)


# --- numbers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """Latency percentiles of one measured operation, in milliseconds."""

    n: int
    p50: float
    p95: float
    p99: float
    mean: float
    max: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Stats:
        """Percentiles by linear interpolation between the closest ranks (``inclusive``)."""
        if len(samples_ms) < 2:
            raise ValueError("percentiles need at least two samples")
        cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
        return cls(
            n=len(samples_ms),
            p50=cuts[49],
            p95=cuts[94],
            p99=cuts[98],
            mean=statistics.fmean(samples_ms),
            max=max(samples_ms),
        )


@dataclass(frozen=True)
class Result:
    """One row of a benchmark's table: an operation's latencies and the bounds its p95 must meet.

    ``goal_p95_ms`` is the target being worked towards; ``required_p95_ms`` is the original
    requirement. A bound of ``None`` does not apply; with no bound at all the row is information.
    """

    database: str
    metric: str
    stats: Stats
    goal_p95_ms: float | None = None
    required_p95_ms: float | None = None
    server_cpu_ms: float | None = None
    """CPU time of the server process per request (mean): what the server itself spent."""
    note: str = ""

    @property
    def passed(self) -> bool | None:
        bounds = [b for b in (self.goal_p95_ms, self.required_p95_ms) if b is not None]
        if not bounds:
            return None
        return all(self.stats.p95 <= bound for bound in bounds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "metric": self.metric,
            **{k if k == "n" else f"{k}_ms": round(v, 3) for k, v in asdict(self.stats).items()},
            "goal_p95_ms": None if self.goal_p95_ms is None else round(self.goal_p95_ms, 3),
            "required_p95_ms": self.required_p95_ms,
            "server_cpu_ms": None if self.server_cpu_ms is None else round(self.server_cpu_ms, 3),
            "passed": self.passed,
            "note": self.note,
        }


def _bound(value: float | None) -> str:
    return "-" if value is None else f"<= {round(value, 1):g}"


def format_table(results: Sequence[Result]) -> str:
    """A plain-text table (readable in a terminal, a CI log or an issue comment)."""
    header = (
        f"{'database':<10} {'metric':<34} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'srv CPU':>8} {'goal p95':>9} {'req. p95':>9}  verdict"
    )
    rule = "-" * len(header)
    lines = [header, rule]
    for r in results:
        verdict = {True: "PASS", False: "FAIL", None: "info"}[r.passed]
        s = r.stats
        cpu = "-" if r.server_cpu_ms is None else f"{r.server_cpu_ms:.2f}"
        lines.append(
            f"{r.database:<10} {r.metric:<34} {s.n:>5} {s.p50:>8.2f} {s.p95:>8.2f} {s.p99:>8.2f} "
            f"{s.max:>8.2f} {cpu:>8} {_bound(r.goal_p95_ms):>9} {_bound(r.required_p95_ms):>9}  "
            f"{verdict}" + (f"  {r.note}" if r.note else "")
        )
    lines += [
        rule,
        "srv CPU: the server process's CPU ms per request (mean; unlike latency, it does not "
        "grow when other work competes for the CPUs)",
        "goal p95: the target; req. p95: the original requirement; a row passes when its p95 "
        "meets both (info: no bound)",
    ]
    return "\n".join(lines)


def load_average() -> float:
    """The 1-minute load average: other work on the machine shows in the latencies."""
    return round(os.getloadavg()[0], 2)


def environment() -> dict[str, Any]:
    """What the numbers depend on besides the code, printed with them."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
    }


@dataclass
class Report:
    """The output of one benchmark run: a table (default) or a JSON document (``--json``)."""

    benchmark: str
    config: dict[str, Any]
    results: list[Result] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    load_at_start: float = field(default_factory=load_average)
    problems: list[str] = field(default_factory=list)
    """What the run's own correctness checks found wrong (empty: every check held)."""

    @property
    def passed(self) -> bool:
        return all(r.passed is not False for r in self.results)

    def print(self, as_json: bool) -> None:
        env = {**environment(), "load_1min": [self.load_at_start, load_average()]}
        if as_json:
            document = {
                "benchmark": self.benchmark,
                "config": self.config,
                "environment": env,
                "facts": self.facts,
                "results": [r.to_dict() for r in self.results],
                "passed": self.passed,
                "problems": self.problems,
            }
            print(json.dumps(document, indent=2))
            return
        print(f"{self.benchmark}: " + ", ".join(f"{k}={v}" for k, v in self.config.items()))
        load = env.pop("load_1min")
        print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
        print(f"load average (1 min): {load[0]} at start, {load[1]} at end")
        for key, value in self.facts.items():
            print(f"{key}: {value}")
        print()
        print(format_table(self.results))
        print()
        print(f"checks: {'OK' if not self.problems else '; '.join(self.problems)}")
        print(f"verdict: {'PASS' if self.passed else 'FAIL'}")


# --- timing ------------------------------------------------------------------------------------


def sample(label: str, count: int, measure_one: Callable[[int], float]) -> list[float]:
    """Call ``measure_one(i)`` for ``i`` in ``range(count)``, showing progress; its results.

    ``measure_one`` does its own untimed preparation and returns the milliseconds of the part
    being measured (see :func:`timed_request`).
    """
    samples: list[float] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    interactive = stderr.is_terminal
    if not interactive:
        say(f"  {label} ({count})")
    with Progress(*columns, console=stderr, transient=True, disable=not interactive) as progress:
        task = progress.add_task(label, total=count)
        for i in range(count):
            samples.append(measure_one(i))
            progress.advance(task)
    return samples


def sample_server(
    server: Server, label: str, count: int, measure_one: Callable[[int], float]
) -> tuple[list[float], float | None]:
    """:func:`sample` one request at a time; also the server's mean CPU ms per request."""
    cpu_before = server.cpu_seconds()
    samples = sample(label, count, measure_one)
    cpu_after = server.cpu_seconds()
    if cpu_before is None or cpu_after is None:
        return samples, None
    return samples, (cpu_after - cpu_before) * 1000 / count


def timed_request(
    client: httpx.Client,
    method: str,
    path: str,
    *,
    expect: int,
    content: bytes | None = None,
    params: Mapping[str, str | int] | None = None,
) -> tuple[httpx.Response, float]:
    """Send one request and read its whole answer; the answer and the milliseconds it took.

    Bodies are encoded by the caller beforehand, so that the time is the server's and the
    network's, not the client's JSON encoder. An unexpected status stops the benchmark.
    """
    headers = {"Content-Type": "application/json"} if content is not None else None
    started = time.perf_counter()
    response = client.request(method, path, content=content, params=params, headers=headers)
    response.read()
    elapsed_ms = (time.perf_counter() - started) * 1000
    if response.status_code != expect:
        raise RuntimeError(
            f"{method} {path} answered {response.status_code}, expected {expect}: "
            f"{response.text[:2000]}"
        )
    return response, elapsed_ms


def encode(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


# --- the database ------------------------------------------------------------------------------


async def _pg_admin(dsn: str, statement: str) -> Any:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval(statement)
    finally:
        await connection.close()


def pg_admin(statement: str, dsn: str = PG_ADMIN_DSN) -> Any:
    """Run one statement (``CREATE DATABASE`` cannot run in a transaction) on the admin DSN."""
    return asyncio.run(_pg_admin(dsn, statement))


@contextmanager
def fresh_database(backend: str, workdir: Path, pg_admin_dsn: str = PG_ADMIN_DSN) -> Iterator[str]:
    """An empty database of its own for one run; yields its SQLAlchemy URL, drops it at the end.

    SQLite: a file in ``workdir`` (the caller removes the folder). PostgreSQL: a database with a
    unique name on the server of ``pg_admin_dsn``, dropped (``WITH (FORCE)``) even on failure.
    """
    name = f"revflow_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / (name + '.db')}"
        return
    if backend != "postgresql":
        raise ValueError(f"unknown database backend {backend!r}")
    pg_admin(f'CREATE DATABASE "{name}"', pg_admin_dsn)
    try:
        url = make_url(pg_admin_dsn).set(drivername="postgresql+asyncpg", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', pg_admin_dsn)


def database_cpu_seconds(database_url: str) -> float | None:
    """CPU seconds (user + system) used so far by the PostgreSQL backends connected to the
    database of ``database_url`` on this machine (Linux ``/proc``; None when unreadable).

    Backends that ended in between are not counted, so take it across a window in which the
    connections stay open (pooled). The server's own processes (WAL writer, checkpointer) are
    shared by all databases and left out.
    """
    name = make_url(database_url).database
    total = 0.0
    found = False
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().split()
            if len(words) < 4 or not words[0].startswith("postgres:") or words[3] != name:
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, UnicodeDecodeError):
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
        found = True
    return total if found else None


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a local process has used so far (Linux ``/proc``; None when
    it is gone or unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all this machine's CPUs so far (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def postgresql_control() -> list[str] | None:
    """How to stop and start this machine's PostgreSQL (``stop`` or ``start`` is appended):
    ``REVFLOW_TEST_PG_CONTROL`` when set (e.g. ``pg_ctl -D DIR -w -l LOG`` for a private
    server), else the cluster through ``pg_ctlcluster`` or ``systemctl`` as root; ``None`` when
    none of these is available."""
    if os.environ.get("REVFLOW_TEST_PG_CONTROL"):
        return shlex.split(os.environ["REVFLOW_TEST_PG_CONTROL"])
    if os.geteuid() != 0:
        return None
    if shutil.which("pg_lsclusters") and shutil.which("pg_ctlcluster"):
        listed = subprocess.run(
            ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False
        ).stdout.split()
        if len(listed) >= 2:
            return ["pg_ctlcluster", listed[0], listed[1]]
    if shutil.which("systemctl"):
        return ["systemctl"]  # + stop/start: the unit follows
    return None


def control_postgresql(command: list[str], action: str) -> None:
    """``stop`` or ``start`` PostgreSQL with a command of :func:`postgresql_control`."""
    argv = [*command, action, "postgresql"] if command == ["systemctl"] else [*command, action]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stdout}{done.stderr}")


def database_version(backend: str, pg_admin_dsn: str = PG_ADMIN_DSN) -> str:
    """The database's name and version; for PostgreSQL also whether autovacuum runs, which
    decides how an engine run's rate holds over minutes (README, "Vacuum")."""
    if backend == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    # Both settings in one statement: one connection to the server, not one per setting.
    statement = (
        "SELECT format('PostgreSQL %s, autovacuum %s', "
        "current_setting('server_version'), current_setting('autovacuum'))"
    )
    return str(pg_admin(statement, pg_admin_dsn))


# --- the revflow command line and server ------------------------------------------------------


def revflow_env(database_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``revflow`` subprocess: ours, with its database and settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVFLOW_")}
    env["REVFLOW_DATABASE_URL"] = database_url
    env.update(extra or {})
    return env


def revflow_command(*args: str) -> list[str]:
    """``revflow ARGS`` run by this interpreter (the virtualenv's, whatever its PATH)."""
    return [sys.executable, "-m", "revflow", *args]


def run_revflow(args: Sequence[str], env: Mapping[str, str], cwd: Path) -> str:
    """Run a ``revflow`` command to completion; its stdout (stderr is shown if it fails)."""
    completed = subprocess.run(
        revflow_command(*args), env=dict(env), cwd=cwd, capture_output=True, text=True
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"revflow {' '.join(args)} exited {completed.returncode}:\n{completed.stderr[-4000:]}"
        )
    return completed.stdout


def free_port() -> int:
    """A loopback port that is free now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    """A running ``revflow serve`` subprocess."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the server has used so far (Linux ``/proc``; else ``None``)."""
        return process_cpu_seconds(self.pid)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@contextmanager
def revflow_server(env: Mapping[str, str], cwd: Path) -> Iterator[Server]:
    """Start ``revflow serve`` on a free loopback port and wait until ``/readyz`` answers 200.

    The server is stopped (SIGTERM, then SIGKILL after 10 s) when the block ends.
    """
    port = free_port()
    log_path = cwd / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            revflow_command("serve", "--host", "127.0.0.1", "--port", str(port)),
            env=dict(env),
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_ready(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    with httpx.Client(base_url=server.base_url, timeout=2) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"revflow serve exited early:\n{server.log_tail()}")
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError(
        f"revflow serve not ready after {SERVER_START_TIMEOUT_S:g} s:\n{server.log_tail()}"
    )


@dataclass
class Service:
    """A migrated database with one account, the server on it, and a client holding a key."""

    database: str
    database_url: str
    server: Server
    client: httpx.Client
    account_id: str = ""
    floor: Floor | None = None
    """The floor server on the same database (PostgreSQL, when asked for)."""


@contextmanager
def running_service(
    backend: str,
    *,
    server_env: Mapping[str, str] | None = None,
    pg_admin_dsn: str = PG_ADMIN_DSN,
    floor: bool = False,
) -> Iterator[Service]:
    """Fresh database → ``revflow db upgrade`` → ``revflow accounts create`` → ``revflow serve``.

    ``server_env`` adds ``REVFLOW_*`` settings for the server; ``floor`` also starts the floor
    server (``floor_app.py``) on the same database when it is PostgreSQL. Everything is torn
    down at the end: the clients, the servers, the database and the temporary folder.
    """
    with (
        tempfile.TemporaryDirectory(prefix="revflow-bench-") as tmp,
        fresh_database(backend, Path(tmp), pg_admin_dsn) as url,
    ):
        workdir = Path(tmp)
        env = revflow_env(url, server_env)
        say(f"[bold]{backend}[/bold]: revflow db upgrade")
        run_revflow(["db", "upgrade"], env, workdir)
        created = json.loads(run_revflow(["accounts", "create", "bench"], env, workdir))
        with revflow_server(env, workdir) as server:
            say(f"[bold]{backend}[/bold]: revflow serve on {server.base_url} (pid {server.pid})")
            headers = {"Authorization": f"Bearer {created['api_key']}"}
            with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
                ready = client.get("/readyz").json()
                if ready.get("database") != backend:
                    raise RuntimeError(f"the server runs on {ready}, expected {backend}")
                service = Service(backend, url, server, client, created["account"]["id"])
                if not (floor and backend == "postgresql"):
                    yield service
                    return
                with floor_server(url, workdir) as floor_service:
                    say(f"[bold]{backend}[/bold]: floor on {floor_service.server.base_url}")
                    service.floor = floor_service
                    yield service


# --- the floor ---------------------------------------------------------------------------------

FLOOR_APP = Path(__file__).resolve().parent / "floor_app.py"


def libpq_dsn(sqlalchemy_url: str) -> str:
    """The libpq form of a SQLAlchemy PostgreSQL URL (for asyncpg and psycopg)."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(False)


@dataclass
class Floor:
    """The floor server (``floor_app.py``) on the measured database, and a client of it built
    like the measured server's: one keep-alive ``httpx.Client``, one request at a time."""

    server: Server
    client: httpx.Client


@contextmanager
def floor_server(database_url: str, cwd: Path) -> Iterator[Floor]:
    """Start ``floor_app.py`` on the PostgreSQL database of ``database_url``; stop it after."""
    port = free_port()
    log_path = cwd / f"floor-{port}.log"
    command = [
        sys.executable,
        str(FLOOR_APP),
        "--dsn",
        libpq_dsn(database_url),
        "--port",
        str(port),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_ready(server)
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            yield Floor(server, client)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def sample_paired(
    service: Service,
    floor: Floor | None,
    label: str,
    count: int,
    measure_one: Callable[[int], float],
    floor_one: Callable[[int], float],
) -> tuple[tuple[list[float], float | None], tuple[list[float], float | None] | None]:
    """:func:`sample_server` of ``measure_one``, each request followed by its floor's.

    Interleaving puts both under the same load at the same moments, so their ratio holds
    while the machine's load moves. Answers the measured and the floor's (samples, CPU ms);
    the floor's is ``None`` without a floor.
    """
    if floor is None:
        return sample_server(service.server, label, count, measure_one), None
    floor_samples: list[float] = []

    def both(i: int) -> float:
        ms = measure_one(i)
        floor_samples.append(floor_one(i))
        return ms

    cpu0, floor_cpu0 = service.server.cpu_seconds(), floor.server.cpu_seconds()
    samples = sample(label, count, both)
    cpu1, floor_cpu1 = service.server.cpu_seconds(), floor.server.cpu_seconds()
    return (samples, _per_request(cpu0, cpu1, count)), (
        floor_samples,
        _per_request(floor_cpu0, floor_cpu1, count),
    )


def _per_request(before: float | None, after: float | None, count: int) -> float | None:
    return None if before is None or after is None else (after - before) * 1000 / count


def floor_ratio(measured: Stats, floor: Stats | None) -> float | None:
    """The measured p95 over its floor's p95 (``None`` without a floor)."""
    return None if floor is None or floor.p95 <= 0 else round(measured.p95 / floor.p95, 3)
