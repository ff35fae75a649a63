"""Migrated test databases on SQLite and PostgreSQL, made and dropped by the session."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import uuid
from contextlib import closing
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
    """Creates migrated databases on one backend and drops them at the end of the session.

    Alembic migrates one template database per backend, once; every database after it is a
    copy of the template (``CREATE DATABASE … TEMPLATE`` on PostgreSQL, SQLite's backup of
    the file), which costs a fraction of running every migration again. Tests of the
    migrations themselves run ``upgrade`` on databases of their own."""

    def __init__(self, backend: str, tmp: Path) -> None:
        self.backend = backend
        self.tmp = tmp
        self.created: list[str] = []
        self._template: str | None = None

    def create(self) -> str:
        name = f"revflow_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        template = self._migrated_template()
        if self.backend == "sqlite":
            with (
                closing(sqlite3.connect(template)) as source,
                closing(sqlite3.connect(self._file(name))) as copy,
            ):
                source.backup(copy)
        else:
            admin_psql(f'CREATE DATABASE "{name}" OWNER {TEST_LOGIN} TEMPLATE "{template}"')
            self.created.append(name)
        return self._url(name)

    def _migrated_template(self) -> str:
        """The template's file (SQLite) or database name (PostgreSQL), migrated on first use.
        Nothing connects to it afterwards: PostgreSQL copies only a database nobody uses."""
        if self._template is not None:
            return self._template
        name = f"revflow_template_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        if self.backend == "postgresql":
            _ensure_test_login()
            admin_psql(f'CREATE DATABASE "{name}" OWNER {TEST_LOGIN}')
            self.created.append(name)
        upgrade(self._url(name))
        if self.backend == "sqlite":
            with closing(sqlite3.connect(self._file(name))) as connection:
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # nothing left in a WAL
            self._template = str(self._file(name))
        else:
            self._template = name
        return self._template

    def _file(self, name: str) -> Path:
        return self.tmp / (name + ".db")

    def _url(self, name: str) -> str:
        if self.backend == "sqlite":
            return f"sqlite+aiosqlite:///{self._file(name)}"
        return f"postgresql+asyncpg://{TEST_LOGIN}@{PG_HOST}:{PG_PORT}/{name}"

    def drop_all(self) -> None:
        for name in self.created:
            admin_psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
