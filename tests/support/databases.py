"""Migrated test databases on SQLite and PostgreSQL, made and dropped by the session."""

from __future__ import annotations

import os
import queue
import socket
import sqlite3
import subprocess
import threading
import uuid
from contextlib import closing
from pathlib import Path

import psycopg
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


def _admin(*statements: str) -> None:
    """Run each statement in turn, outside any transaction (``CREATE DATABASE``, ``DROP
    DATABASE``), on one connection of the server's administrator: ~10 ms where a ``psql``
    started for it costs ~60 ms."""
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)


def _drop(name: str) -> str:
    return f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'


class _Dropper:
    """Drops the databases handed to it in a thread of its own while the tests go on (a
    ``DROP DATABASE`` waits ~0.1-0.3 s on the server, mostly for its files). A drop that fails
    (PostgreSQL restarted by a fault test, say) is left to ``drop_all``."""

    def __init__(self) -> None:
        self._names: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.failed: list[str] = []

    def put(self, name: str) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="drop-databases", daemon=True)
            self._thread.start()
        self._names.put(name)

    def _run(self) -> None:
        while (name := self._names.get()) is not None:
            try:
                _admin(_drop(name))
            except psycopg.Error:
                self.failed.append(name)

    def join(self) -> None:
        """Wait for every drop handed over so far."""
        if self._thread is not None:
            self._names.put(None)
            self._thread.join()
            self._thread = None


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
    migrations themselves run ``upgrade`` on databases of their own.

    A database ``release``d (a test's own, once the test is over) is dropped meanwhile, in a
    thread; ``drop_all`` drops the others at the end of the session, on one connection."""

    def __init__(self, backend: str, tmp: Path) -> None:
        self.backend = backend
        self.tmp = tmp
        self.created: list[str] = []
        self._template: str | None = None
        self._dropper = _Dropper()

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
            _admin(f'CREATE DATABASE "{name}" OWNER {TEST_LOGIN} TEMPLATE "{template}"')
            self.created.append(name)
        return self._url(name)

    def release(self, url: str) -> None:
        """``url`` (made by ``create``) is used no more: on PostgreSQL it is dropped now, in the
        background, with whatever still connects to it."""
        name = make_url(url).database
        if self.backend == "postgresql" and name in self.created:
            self.created.remove(name)
            self._dropper.put(name)

    def _migrated_template(self) -> str:
        """The template's file (SQLite) or database name (PostgreSQL), migrated on first use.
        Nothing connects to it afterwards: PostgreSQL copies only a database nobody uses."""
        if self._template is not None:
            return self._template
        name = f"revflow_template_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        if self.backend == "postgresql":
            _ensure_test_login()
            _admin(f'CREATE DATABASE "{name}" OWNER {TEST_LOGIN}')
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
        self._dropper.join()
        left = [*self._dropper.failed, *self.created]
        if left:
            _admin(*(_drop(name) for name in left))
        self._dropper.failed.clear()
        self.created.clear()
