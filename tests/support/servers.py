"""Real ``revflow serve`` processes for tests that must cross process boundaries.

``RevflowServers(database_url, count)`` starts ``count`` API processes on free ports against
one database, waits until each answers ``GET /readyz``, and stops them on exit (SIGTERM, then
SIGKILL for one that does not stop in time). It is both a context manager and an async context
manager::

    async with RevflowServers(fresh_database_url, 2) as servers:
        first, second = servers.urls

A process that dies before it is ready (e.g. its port was taken in between) is restarted on a
new port a few times; otherwise the error carries the tail of its log.

``racing_clients(backend, database_url)`` builds on it for race tests: HTTP clients that reach one
database through different processes, so that no lock inside one process can serialise them —
two ``revflow serve`` processes on PostgreSQL; on SQLite (an embedded, single-machine database)
one ``revflow serve`` process and the in-process ASGI application. ``race()`` fires calls at
once, released together by a barrier.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

import httpx

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from tests.support.processes import free_port, revflow_command
from tests.support.tenants import Tenant, make_tenant

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
START_ATTEMPTS = 3
POLL_INTERVAL_S = 0.05
REQUEST_TIMEOUT_S = 120.0

T = TypeVar("T")


class ServerStartError(RuntimeError):
    """A server process did not become ready."""


@dataclass
class ServerProcess:
    """One ``revflow serve`` subprocess."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        self.log_file.flush()
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, then SIGKILL if it is still running after ``timeout`` seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        self.log_file.close()


class RevflowServers:
    """``count`` ``revflow serve`` processes sharing ``database_url``."""

    def __init__(
        self,
        database_url: str,
        count: int = 2,
        *,
        env: Mapping[str, str] | None = None,
        ready_timeout: float = READY_TIMEOUT_S,
        serve_args: Sequence[str] = (),
    ) -> None:
        self.database_url = database_url
        self.count = count
        self.extra_env = dict(env or {})
        self.serve_args = list(serve_args)  # e.g. ["--with-worker"]
        self.ready_timeout = ready_timeout
        self.servers: list[ServerProcess] = []
        self._logs = Path(tempfile.mkdtemp(prefix="revflow-servers-"))

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "REVFLOW_DATABASE_URL": self.database_url,
                "REVFLOW_LOG_JSON": "false",
                "REVFLOW_LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def _spawn(self, index: int) -> ServerProcess:
        port = free_port()
        log_path = self._logs / f"server-{index}-{port}.log"
        log_file = log_path.open("wb")
        process = subprocess.Popen(
            [
                *revflow_command(),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *self.serve_args,
            ],
            env=self._environment(),
            cwd=self._logs,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        return ServerProcess(port, process, log_path, log_file)

    @staticmethod
    def _is_ready(client: httpx.Client, server: ServerProcess) -> bool:
        try:
            return client.get(f"{server.url}/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def _start_one(self, index: int) -> ServerProcess:
        failures: list[str] = []
        for _attempt in range(START_ATTEMPTS):
            server = self._spawn(index)
            deadline = time.monotonic() + self.ready_timeout
            with httpx.Client(timeout=2.0) as client:
                while time.monotonic() < deadline:
                    if server.process.poll() is not None:
                        break
                    if self._is_ready(client, server):
                        return server
                    time.sleep(POLL_INTERVAL_S)
            failures.append(
                f"server on port {server.port} (exit code {server.process.poll()}):\n"
                + server.log_tail()
            )
            server.stop()
        raise ServerStartError("revflow serve did not become ready:\n" + "\n".join(failures))

    def start(self) -> RevflowServers:
        pending: list[ServerProcess] = []
        try:
            # Spawn them all first so that they boot in parallel, then wait for each.
            pending.extend(self._spawn(i) for i in range(self.count))
            for index, server in enumerate(pending):
                self.servers.append(self._wait_or_restart(index, server))
        except BaseException:
            for server in pending:
                server.stop()
            self.stop()
            raise
        return self

    def _wait_or_restart(self, index: int, server: ServerProcess) -> ServerProcess:
        deadline = time.monotonic() + self.ready_timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline and server.process.poll() is None:
                if self._is_ready(client, server):
                    return server
                time.sleep(POLL_INTERVAL_S)
        server.stop()
        return self._start_one(index)

    def stop(self, *, keep_logs: bool = False) -> None:
        """Stop every process (all are sent SIGTERM first, so they shut down in parallel)."""
        servers, self.servers = self.servers, []
        for server in servers:
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
        for server in servers:
            server.stop()
        if keep_logs:
            # Shown by pytest with the failure, next to the test's own output.
            sys.stderr.write(f"revflow serve logs kept in {self._logs}\n")
        else:
            shutil.rmtree(self._logs, ignore_errors=True)

    def __enter__(self) -> RevflowServers:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(keep_logs=exc is not None)

    async def __aenter__(self) -> RevflowServers:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop, keep_logs=exc is not None)


@dataclass
class Racers:
    """Clients of one database through different processes, and a tenant to act as."""

    clients: list[httpx.AsyncClient]
    tenant: Tenant
    db: Database

    def client(self, index: int) -> httpx.AsyncClient:
        """The client for call ``index``: calls alternate between the processes."""
        return self.clients[index % len(self.clients)]

    async def call(self, index: int, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.tenant.headers, **(kwargs.pop("headers", None) or {})}
        return await self.client(index).request(method, url, headers=headers, **kwargs)


async def _warm_up(client: httpx.AsyncClient, connections: int) -> None:
    """Open ``connections`` keep-alive connections, so that a race does not start with connects."""
    responses = await asyncio.gather(*(client.get("/healthz") for _ in range(connections)))
    assert all(r.status_code == 200 for r in responses)


def racing_server_count(backend: str) -> int:
    """How many ``revflow serve`` processes ``racing_clients`` needs on ``backend``."""
    return 2 if backend == "postgresql" else 1


@asynccontextmanager
async def racing_clients(
    backend: str,
    database_url: str,
    *,
    servers: RevflowServers | None = None,
    connections: int = 12,
) -> AsyncIterator[Racers]:
    """Clients of ``database_url`` in two processes, and a new tenant of that database.

    ``servers`` (already running against ``database_url``, ``racing_server_count(backend)`` of
    them) lets several tests share processes; without it they are started and stopped here.
    """
    async with AsyncExitStack() as stack:
        db = Database(database_url, pool_size=connections)
        stack.push_async_callback(db.dispose)
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        if servers is None:
            servers = await stack.enter_async_context(
                RevflowServers(database_url, racing_server_count(backend))
            )
        assert servers.database_url == database_url
        assert len(servers.urls) == racing_server_count(backend)
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits)
            )
            for url in servers.urls
        ]
        for client in clients:
            await _warm_up(client, connections)
        if backend != "postgresql":
            settings = Settings(database_url=database_url, log_json=False)
            clients.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        transport=httpx.ASGITransport(app=create_app(settings, db)),
                        base_url="http://revflow.test",
                        timeout=REQUEST_TIMEOUT_S,
                    )
                )
            )
        tenant = await make_tenant(db, clients[0], "racer")
        yield Racers(clients, tenant, db)


async def race(calls: list[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run ``calls`` concurrently, all released at the same moment by a barrier."""
    barrier = asyncio.Barrier(len(calls))

    async def run(call: Callable[[], Awaitable[T]]) -> T:
        await barrier.wait()
        return await call()

    return list(await asyncio.gather(*(run(call) for call in calls)))
