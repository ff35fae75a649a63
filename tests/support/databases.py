"""Migrated test databases on SQLite and PostgreSQL, made and dropped by the session."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from revflow.migrate import upgrade

PG_ADMIN_DSN = os.environ.get("REVFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
_PG = make_url(PG_ADMIN_DSN)
PG_HOST = _PG.host or "127.0.0.1"
PG_PORT = _PG.port or 5432
# The login the tests connect as: it owns their databases and is not a superuser, like a
# deployment's login, so row-level security holds the tests exactly as it holds revflow.
# CREATEROLE: the first migration on a server creates revflow_tenant, and some tests create
# logins of their own.
TEST_LOGIN = "revflow_test"
BACKENDS = ["sqlite", "postgresql"]


def pg_available() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=2):
            return True
    except OSError:
        return False


def require_postgresql() -> None:
    """Skip the calling test when PostgreSQL is not reachable, or fail it when ``CI`` is set:
    in CI a missing PostgreSQL is a broken machine, never a reason to test less."""
    if pg_available():
        return
    where = f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT}"
    if os.environ.get("CI"):
        pytest.fail(f"{where} and CI is set")
    pytest.skip(where)


def admin_psql(sql: str) -> None:
    """Run ``sql`` as the server's administrator (``REVFLOW_TEST_PG``)."""
    subprocess.run(
        ["psql", PG_ADMIN_DSN, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
        check=True,
        capture_output=True,
    )


def _ensure_test_login() -> None:
    admin_psql(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{TEST_LOGIN}') THEN
                CREATE ROLE {TEST_LOGIN} LOGIN CREATEROLE NOSUPERUSER NOBYPASSRLS;
            ELSIF EXISTS (SELECT FROM pg_roles WHERE rolname = '{TEST_LOGIN}'
                          AND (rolsuper OR rolbypassrls OR NOT rolcreaterole)) THEN
                RAISE EXCEPTION 'the role {TEST_LOGIN} must be LOGIN CREATEROLE and neither '
                    'SUPERUSER nor BYPASSRLS';
            END IF;
        EXCEPTION WHEN duplicate_object THEN
            NULL;  -- another test session made it meanwhile
        END
        $$
        """
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
            if not self.created:
                _ensure_test_login()
            admin_psql(f'CREATE DATABASE "{name}" OWNER {TEST_LOGIN}')
            self.created.append(name)
            url = f"postgresql+asyncpg://{TEST_LOGIN}@{PG_HOST}:{PG_PORT}/{name}"
        upgrade(url)
        return url

    def drop_all(self) -> None:
        for name in self.created:
            admin_psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
