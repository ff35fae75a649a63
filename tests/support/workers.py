"""Real ``revflow worker`` processes for tests that kill and restart them (PostgreSQL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import pytest

from tests.support.processes import revflow_command

STOP_TIMEOUT_S = 15.0


class WorkerProcess:
    """One ``python -m revflow worker`` subprocess, its JSON log in a file per start."""

    def __init__(
        self,
        database_url: str,
        logs: Path,
        name: str = "worker",
        *,
        poll_seconds: float = 0.1,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.extra_env = dict(env or {})
        self.logs = logs
        self.name = name
        self.poll_seconds = poll_seconds
        self.runs = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = logs / f"{name}-0.log"
        self._log: IO[bytes] | None = None
        self.exit_codes: list[int] = []

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self.runs += 1
        self.log_path = self.logs / f"{self.name}-{self.runs}.log"
        self._log = self.log_path.open("wb")
        env = {
            # Settings come from this test alone, not from the environment it runs in.
            **{k: v for k, v in os.environ.items() if not k.startswith("REVFLOW_")},
            "REVFLOW_DATABASE_URL": self.database_url,
            "REVFLOW_LOG_JSON": "true",
            "REVFLOW_LOG_LEVEL": "INFO",
            "REVFLOW_WORKER_POLL_SECONDS": str(self.poll_seconds),
            "REVFLOW_DB_POOL_SIZE": "3",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        self.process = subprocess.Popen(
            [*revflow_command(), "worker"],
            env=env,
            cwd=self.logs,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def events(self, path: Path | None = None) -> list[dict[str, Any]]:
        found = []
        for line in (path or self.log_path).read_text(errors="replace").splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                found.append(item)
        return found

    def all_events(self) -> list[dict[str, Any]]:
        return [
            e for path in sorted(self.logs.glob(f"{self.name}-*.log")) for e in self.events(path)
        ]

    @property
    def ready(self) -> bool:
        return self.running and any(e.get("event") == "worker_started" for e in self.events())

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def check_alive(self) -> None:
        if not self.running:
            pytest.fail(f"{self.name} exited on its own:\n{self.log_tail()}")

    def _closed(self) -> None:
        assert self.process is not None
        self.exit_codes.append(self.process.returncode)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_S)
        assert self.process.returncode == -signal.SIGKILL
        self._closed()

    def stop(self) -> int:
        """SIGTERM (a clean stop), SIGKILL if it does not stop in time; answers the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        if self._log is not None:
            self._closed()
        return self.process.returncode
