"""Migrated test databases on SQLite and PostgreSQL, made and dropped by the session."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from revflow.migrate import upgrade

PG_ADMIN_DSN = os.environ.get("REVFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
_PG = make_url(PG_ADMIN_DSN)
PG_HOST = _PG.host or "127.0.0.1"
PG_PORT = _PG.port or 5432
BACKENDS = ["sqlite", "postgresql"]


def pg_available() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=2):
            return True
    except OSError:
        return False


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", PG_ADMIN_DSN, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
        check=True,
        capture_output=True,
    )


class DatabaseFactory:
    """Creates migrated databases on one backend and drops them at the end of the session."""

    def __init__(self, backend: str, tmp: Path) -> None:
        self.backend = backend
        self.tmp = tmp
        self.created: list[str] = []

    def create(self) -> str:
        name = f"revflow_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        if self.backend == "sqlite":
            url = f"sqlite+aiosqlite:///{self.tmp / (name + '.db')}"
        else:
            _psql(f'CREATE DATABASE "{name}"')
            self.created.append(name)
            url = f"postgresql+asyncpg://{_PG.username or 'postgres'}@{PG_HOST}:{PG_PORT}/{name}"
        upgrade(url)
        return url

    def drop_all(self) -> None:
        for name in self.created:
            _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
