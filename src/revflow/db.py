"""Engine, sessions and the declarative base shared by every table.

SQLite runs in WAL mode with a busy timeout; write transactions start with ``BEGIN IMMEDIATE`` so
two writers queue on the database lock instead of failing on a read-to-write upgrade.
PostgreSQL uses row locks (``SELECT … FOR UPDATE``) taken by the services.

On PostgreSQL a session that ``enter_account`` was called on runs every transaction as the
tenant role with the account set: row-level security then shows it that account's rows only
(SPEC §1's second wall; the policies are made by ``revflow/alembic/rls.py``).
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg
import pydantic_core
from sqlalchemy import (
    JSON,
    ColumnElement,
    DateTime,
    MetaData,
    Text,
    and_,
    any_,
    bindparam,
    event,
    false,
    or_,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    ORMExecuteState,
    Session,
    SessionTransaction,
    UOWTransaction,
)
from sqlalchemy.types import TypeDecorator

# The role the API's transactions run as, and the setting that names their account; the
# row-level security policies compare every tenant row's account_id with the setting.
TENANT_ROLE = "revflow_tenant"
ACCOUNT_SETTING = "app.account_id"

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on both databases (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def of_accounts(
    model: Any, keys: Iterable[tuple[uuid.UUID, uuid.UUID]], *, arrays: bool = False
) -> ColumnElement[bool]:
    """The rows of ``keys``, each (account, id): per account, ``account_id = … AND id IN
    (…)``, so that every lookup reads the ``(account_id, id)`` primary key once per row (and a
    sharded database routes each to its account's node). With ``arrays`` (PostgreSQL only)
    each account's ids are one array parameter, ``id = ANY(…)``: one parameter to bind instead
    of one per row."""
    by_account: dict[uuid.UUID, set[uuid.UUID]] = {}
    for account, row_id in keys:
        by_account.setdefault(account, set()).add(row_id)
    return or_(
        false(),
        *(
            and_(model.account_id == account, any_of(model.id, sorted(ids), arrays=arrays))
            for account, ids in sorted(by_account.items())
        ),
    )


def any_of_parameter(column: Any, name: str, *, arrays: bool) -> ColumnElement[bool]:
    """``column IN :name`` (an expanding parameter), or with ``arrays`` (PostgreSQL only)
    ``column = ANY(:name)``: the condition of a statement built once and run with a list."""
    if not arrays:
        return cast(ColumnElement[bool], column.in_(bindparam(name, expanding=True)))
    array = bindparam(name, type_=ARRAY(column.type))
    return cast(ColumnElement[bool], column == any_(array))


def any_of(column: Any, values: Sequence[Any], *, arrays: bool) -> ColumnElement[bool]:
    """``column IN (…)``, or with ``arrays`` (PostgreSQL only) ``column = ANY(:array)``."""
    if not arrays:
        return cast(ColumnElement[bool], column.in_(values))
    array = bindparam(None, list(values), type_=ARRAY(column.type))
    return cast(ColumnElement[bool], column == any_(array))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def is_sqlite_url(url: str) -> bool:
    return url.startswith("sqlite")


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own is deferred-only).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())


# Where a pooled connection's entry keeps the moment it went back to the pool.
_RETURNED_AT = "revflow_returned_at"


def _ping_idle_connections(engine: AsyncEngine, idle_s: float) -> None:
    """Ping a pooled connection before use only when it sat in the pool for more than
    ``idle_s``: a connection used moments ago is handed out as it is (no round trips spent on
    it), one that was idle is checked and, if the server closed it meanwhile, replaced
    together with every connection pooled before it (as SQLAlchemy's own pre-ping does)."""
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned_at = record.info.pop(_RETURNED_AT, None)
        if returned_at is None or time.monotonic() - returned_at <= idle_s:
            return  # a new connection, or one in use a moment ago
        try:
            sync_engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool replaces this connection and every one pooled before now.
            raise InvalidatePoolError(f"idle connection failed its ping: {error}") from error


def json_text_parameter(name: str, dialect: str) -> ColumnElement[Any]:
    """A parameter ``name`` for a JSON column that takes the value's JSON text as it is (one
    the caller has written anyway, not encoded again): PostgreSQL parses the text into JSONB;
    SQLite keeps JSON as text."""
    parameter = bindparam(name, type_=Text)
    return parameter.cast(JSONB) if dialect == "postgresql" else parameter


def _jsonb_text(value: Any) -> str:
    """The text of a value bound to a JSONB parameter: pydantic-core's encoder, three times
    as fast as ``json.dumps`` on a definition. Every JSON column is JSONB on PostgreSQL, which
    keeps the parsed value, not this text; NaN and infinities are written as such, for
    PostgreSQL to refuse as ``json.dumps``'s would be. What pydantic-core refuses (nesting
    deeper than it goes, a value that is not JSON) is left to ``json.dumps``."""
    try:
        return pydantic_core.to_json(value, inf_nan_mode="constants").decode()
    except pydantic_core.PydanticSerializationError:
        return json.dumps(value)


def json_value(text: str | bytes) -> Any:
    """The value of a JSON text (a JSONB column's, a cached one): pydantic-core's parser (a
    list's fifty rows hold a hundred small arrays; ``json.loads`` pays a few microseconds of
    setup on each), or the standard one for what the faster parser refuses (nesting deeper
    than it goes)."""
    try:
        return pydantic_core.from_json(text)
    except ValueError:
        return json.loads(text)


class ReadOnlyViolation(RuntimeError):
    """A read-only session was asked to write: a programming error, never a user's."""


class GuardedSession(Session):
    """A session that refuses every write while ``info["read_only"]`` is set (the session of
    a read route: see ``deps.ReadSession``)."""


def mark_read_only(session: AsyncSession) -> None:
    session.info["read_only"] = True


@event.listens_for(GuardedSession, "do_orm_execute")
def _refuse_write_statements(state: ORMExecuteState) -> None:
    if state.session.info.get("read_only") and (
        state.is_insert or state.is_update or state.is_delete
    ):
        raise ReadOnlyViolation("a read-only session cannot run INSERT, UPDATE or DELETE")


@event.listens_for(GuardedSession, "before_flush")
def _refuse_flushes(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    if session.info.get("read_only") and (
        session.new or session.deleted or any(session.is_modified(o) for o in session.dirty)
    ):
        raise ReadOnlyViolation("a read-only session cannot add, change or delete rows")


async def enter_account(session: AsyncSession, account_id: uuid.UUID) -> None:
    """Hold ``session`` to ``account_id`` for the rest of its life: on PostgreSQL its current
    transaction (if one is open) and every later one run ``SET LOCAL ROLE revflow_tenant`` and
    set ``app.account_id``, so row-level security shows and accepts that account's rows only.
    Called once the request's account is known; a session never leaves its account."""
    if session.in_nested_transaction():
        # A savepoint's rollback would undo the role: enter at the outermost level only.
        raise RuntimeError("enter_account inside a savepoint")
    session.info["account_id"] = account_id
    if session.in_transaction():
        connection = await session.connection()
        await connection.run_sync(_run_as_tenant, account_id)


def _run_as_tenant(connection: Connection, account_id: uuid.UUID) -> None:
    if connection.dialect.name != "postgresql":
        return
    driver = connection.connection.driver_connection
    if isinstance(driver, TenantConnection) and not driver.is_in_transaction():
        # asyncpg sends BEGIN with the transaction's first statement: the settings go with it.
        driver.after_begin(_tenant_settings(account_id))
        return
    # SET LOCAL ROLE and the account in one round trip; both are local to the transaction,
    # so a pooled connection goes back as its login role.
    connection.execute(
        text("SELECT set_config('role', :role, true), set_config(:name, :value, true)"),
        {"role": TENANT_ROLE, "name": ACCOUNT_SETTING, "value": str(account_id)},
    )


def _tenant_settings(account_id: uuid.UUID) -> str:
    # Literals, as a simple query has no parameters: a constant role and setting, and a
    # UUID's own text (hex digits and dashes).
    return (
        f"SELECT set_config('role', '{TENANT_ROLE}', true), "
        f"set_config('{ACCOUNT_SETTING}', '{uuid.UUID(str(account_id))}', true)"
    )


class TenantConnection(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection that can send statements with its next ``BEGIN``, in the same
    simple-query round trip: how a tenant's transaction starts with its role and account set
    for one round trip instead of two. What is pending is dropped when the connection goes
    back to the pool, and a ``BEGIN`` that fails with it closes the connection (asyncpg
    would otherwise keep a transaction it thinks is starting)."""

    __slots__ = ("_after_begin",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._after_begin: str | None = None

    def after_begin(self, statements: str | None) -> None:
        """Send ``statements`` with the next ``BEGIN`` (None: nothing)."""
        self._after_begin = statements

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> str:
        statements = self._after_begin
        if statements is None or args or not query.startswith("BEGIN"):
            result: str = await super().execute(query, *args, **kwargs)
            return result
        self._after_begin = None
        try:
            result = await super().execute(f"{query.rstrip(';')}; {statements}", **kwargs)
        except BaseException:
            self.terminate()
            raise
        return result


def _drop_pending_settings(engine: AsyncEngine) -> None:
    """A transaction that ends before its first statement (so before its ``BEGIN``) leaves
    no settings behind for the connection's next transaction, whoever runs it."""

    def drop(driver: Any) -> None:
        if isinstance(driver, TenantConnection):
            driver.after_begin(None)

    @event.listens_for(engine.sync_engine, "commit")
    @event.listens_for(engine.sync_engine, "rollback")
    def _on_end(connection: Connection) -> None:
        if not connection.invalidated:
            drop(connection.connection.driver_connection)

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(dbapi_connection: Any, _record: Any) -> None:
        drop(getattr(dbapi_connection, "driver_connection", None))


@event.listens_for(GuardedSession, "after_begin")
def _begin_as_tenant(
    session: Session, transaction: SessionTransaction, connection: Connection
) -> None:
    """Every transaction after a commit (or rollback) of an entered session runs as the tenant
    too. Only the outermost transaction takes the role: a savepoint inherits it, and rolling
    the savepoint back leaves it in place."""
    account_id = session.info.get("account_id")
    if account_id is not None and not transaction.nested:
        _run_as_tenant(connection, account_id)


class Database:
    """One engine and its session factory."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        busy_timeout_ms: int = 30_000,
        pool_timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        lock_timeout_ms: int = 0,
        ping_idle_s: float = 1.0,
    ) -> None:
        """``pool_timeout_s``, ``connect_timeout_s`` and ``lock_timeout_ms`` (0: none) bound how
        long a PostgreSQL session waits for a pooled connection, a new connection and a row lock:
        past them the caller gets an error (the API answers 503) instead of hanging. A pooled
        connection idle for more than ``ping_idle_s`` is pinged before use, so one the server
        closed while it waited (a restart, a terminated backend, an idle timeout) is replaced
        instead of failing the request that draws it; one used more recently is not (a ping is
        three round trips on asyncpg), and a statement that finds it closed fails with a
        connection error (the API's 503) after which the pool replaces every connection older
        than the failure.
        """
        self.url = url
        self.is_sqlite = is_sqlite_url(url)
        kwargs: dict[str, Any] = {}
        if not self.is_sqlite:
            server_settings = {"lock_timeout": str(lock_timeout_ms)} if lock_timeout_ms else {}
            kwargs.update(
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_timeout=pool_timeout_s,
                connect_args={
                    "timeout": connect_timeout_s,
                    "server_settings": server_settings,
                    "connection_class": TenantConnection,
                },
                json_serializer=_jsonb_text,
                json_deserializer=json_value,
            )
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine, busy_timeout_ms)
        else:
            _ping_idle_connections(self.engine, ping_idle_s)
            _drop_pending_settings(self.engine)
        self.sessionmaker = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=GuardedSession
        )

    @asynccontextmanager
    async def session(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        """A session whose transaction the caller commits; rolled back if it does not."""
        async with self.sessionmaker() as session:
            if write and self.is_sqlite:
                await session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


# Whether PostgreSQL vacuums on its own: the server's switch with the statistics it needs,
# and every table of revflow's schema whose own ``autovacuum_enabled`` is off (its text parsed
# by PostgreSQL's boolean input, which reads every spelling the option takes).
_AUTOVACUUM_OFF = text(
    """
    SELECT current_setting('autovacuum')::boolean AND current_setting('track_counts')::boolean,
           ARRAY(
               SELECT c.relname::text
               FROM pg_class AS c, unnest(c.reloptions) AS option
               WHERE c.relnamespace = (
                       SELECT oid FROM pg_namespace WHERE nspname = current_schema()
                   )
                 AND c.relkind IN ('r', 'p')
                 AND option LIKE 'autovacuum\\_enabled=%'
                 AND NOT split_part(option, '=', 2)::boolean
               ORDER BY c.relname
           )
    """
)


async def autovacuum_off(db: Database) -> list[str]:
    """Where PostgreSQL will not vacuum revflow's tables on its own: ``"server"`` when its
    ``autovacuum`` (or the ``track_counts`` that autovacuum needs) is off, then each table
    whose ``autovacuum_enabled`` storage parameter is off. Empty when everything is vacuumed,
    and on SQLite, which keeps no dead row versions to vacuum."""
    if db.is_sqlite:
        return []
    async with db.session() as session:
        row = (await session.execute(_AUTOVACUUM_OFF)).one()
    server_on: bool = row[0]
    tables: list[str] = row[1]
    return ([] if server_on else ["server"]) + tables


async def login_outside_tenant_role(db: Database) -> str | None:
    """On PostgreSQL, the connecting login when it may not ``SET ROLE revflow_tenant``."""
    if db.is_sqlite:
        return None
    async with db.session() as session:
        row = (
            await session.execute(
                text("SELECT current_user AS login, pg_has_role(current_user, :role, 'MEMBER')"),
                {"role": TENANT_ROLE},
            )
        ).one()
    return None if row[1] else str(row.login)
