"""``revflow run`` prints the console's URL beside the key, and the console answers there."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.support.processes import free_port, revflow_command


def test_revflow_run_prints_the_console_url_and_key(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVFLOW_")}
    env.update(
        REVFLOW_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'revflow.db'}",
        REVFLOW_LOG_JSON="false",
        COLUMNS="200",
    )
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*revflow_command(), "run", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while "admin key" not in log.read_text() and time.monotonic() < deadline:
                assert process.poll() is None, log.read_text()
                time.sleep(0.1)
            printed = log.read_text()
            assert f"web console: http://127.0.0.1:{port}/ui" in printed, printed
            key = printed.split("admin key:", 1)[1].split()[0]
            assert key.startswith("rf_")
            while time.monotonic() < deadline:
                try:
                    page = httpx.get(f"http://127.0.0.1:{port}/ui/sign-in", timeout=2)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            assert page.status_code == 200 and "API key" in page.text
            # The embedded mode keeps its session secret beside the database.
            assert (tmp_path / "revflow.db.secret-key").exists()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
