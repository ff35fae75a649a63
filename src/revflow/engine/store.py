"""The engine's SQL: claiming due executions, loading their state, writing their effects.

Kept in one place so that the worker, the API's event and contact paths, and migrations share
one way of reading and writing execution state.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Executable,
    Row,
    Select,
    Subquery,
    Table,
    Uuid,
    bindparam,
    false,
    func,
    insert,
    or_,
    select,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from revflow.db import ReadOnlyViolation, UTCDateTime, any_of_parameter, of_accounts
from revflow.definition import Definition
from revflow.engine import pg_effects
from revflow.engine.interpreter import ContactState, Effects, ExecutionState
from revflow.models import (
    Account,
    Contact,
    Execution,
    HistoryEntry,
    Message,
    Version,
    Workflow,
    is_live,
)

EXECUTIONS = cast(Table, Execution.__table__)
CONTACTS = cast(Table, Contact.__table__)
# Core tables for bulk inserts: cheaper than the ORM's bulk path for hundreds of rows a batch.
HISTORY = cast(Table, HistoryEntry.__table__)
MESSAGES = cast(Table, Message.__table__)

EXECUTION_STATE_COLUMNS = (
    Execution.id,
    Execution.account_id,
    Execution.workflow_id,
    Execution.version,
    Execution.contact_id,
    Execution.status,
    Execution.current_step,
    Execution.wake_at,
    Execution.outcome,
    Execution.finished_at,
    Execution.wait_started_at,
    Execution.fired_goals,
    Execution.error,
)


def execution_state(row: Any) -> ExecutionState:
    """An execution's state from a row of ``EXECUTION_STATE_COLUMNS``."""
    return ExecutionState(
        id=row.id,
        workflow_id=row.workflow_id,
        version=row.version,
        contact_id=row.contact_id,
        status=row.status,
        current_step=row.current_step,
        wake_at=row.wake_at,
        outcome=row.outcome,
        finished_at=row.finished_at,
        wait_started_at=row.wait_started_at,
        fired_goals=list(row.fired_goals or []),
        error=row.error,
    )


@dataclass
class Claimed:
    """One claim: the executions locked (with their accounts), and the account the next claim
    starts after (round robin)."""

    executions: list[tuple[uuid.UUID, ExecutionState]]
    next_after: uuid.UUID | None


def _arrays(session: AsyncSession) -> bool:
    """Whether lists of ids go as one array parameter (PostgreSQL)."""
    return session.get_bind().dialect.name == "postgresql"


async def _rows(
    session: AsyncSession, query: Executable, parameters: dict[str, Any] | None = None
) -> Sequence[Row[Any]]:
    """The rows of a hot read, run on the session's connection: plain rows, without the
    ORM's execution path and result processing."""
    connection = await session.connection()
    return (await connection.execute(query, parameters)).all()


def _due(
    now: dt.datetime | ColumnElement[Any], execution: Any = Execution
) -> list[ColumnElement[bool]]:
    """Live, ``wake_at`` reached, no unexpired lease, its workflow not paused.

    The statuses are written into the statement (not bound): the claims read partial indexes
    of the live executions, which a planner uses only for a condition it can prove from the
    statement itself (SQLite never does with bound values; PostgreSQL not in a generic plan).
    """
    # The paused workflows are one small set, read once per statement (a hashed subplan of
    # ix_workflows_paused): as an anti-join, PostgreSQL took a database of one workflow for
    # one where every execution is paused, and sorted the whole backlog to take a batch.
    paused = tuple_(execution.account_id, execution.workflow_id).in_(
        select(Workflow.account_id, Workflow.id).where(Workflow.status == "paused")
    )
    return [
        is_live(execution.status),
        execution.wake_at <= now,
        or_(execution.lease_expires_at.is_(None), execution.lease_expires_at < now),
        ~paused,
    ]


async def claim_due(
    session: AsyncSession,
    now: dt.datetime,
    limit: int,
    *,
    share: int,
    after: uuid.UUID | None = None,
) -> Claimed:
    """Lock up to ``limit`` due executions (skipping rows others hold), fairly across accounts.

    First each account's share: up to ``share`` of its oldest due executions, accounts taken in
    turn starting after ``after`` until the batch is full; then, when room is left and some
    account had more than its share, the rest oldest first. So one account's backlog fills the
    batch when it is alone, and another account's due executions wait for no more than one
    round of the accounts ahead of it — not for the backlog to drain.
    """
    share = min(share, limit)
    if session.get_bind().dialect.name == "postgresql":
        statement = claim_statement(limit, share, after=after is not None)
        rows = await _rows(session, statement, {"now": now, "after": after})
        claimed = [(row.account_id, execution_state(row)) for row in rows]
        shares = [row.account_id for row in rows if not row.filling]
        return Claimed(claimed, shares[-1] if shares else after)
    shares, rest = await _claim_sqlite(session, now, limit, share, after)
    claimed = [(row.account_id, execution_state(row)) for row in (*shares, *rest)]
    return Claimed(claimed, shares[-1].account_id if shares else after)


def _accounts_in_turn(after: bool) -> Subquery:
    """Every account, with ``after`` those after the ``:after`` parameter first (by id), then
    the others (round robin)."""
    wrapped = [Account.id <= bindparam("after", type_=Uuid())] if after else []
    return select(Account.id).order_by(*wrapped, Account.id).subquery("turn")


def shares_statement(now: ColumnElement[Any], limit: int, share: int, after: bool) -> Select[Any]:
    """The claim of each account's share on PostgreSQL (``now`` the moment's parameter, with
    ``after`` the accounts after the ``:after`` parameter first).

    A lateral subquery per account reads its oldest due executions from an index on
    ``wake_at`` and locks them (FOR UPDATE SKIP LOCKED), so that the conditions are rechecked
    on the locked rows and other workers' rows are skipped; the outer LIMIT stops the
    accounts' loop once the batch is full, so nothing more is locked."""
    turn = _accounts_in_turn(after)
    shares = (
        select(*EXECUTION_STATE_COLUMNS)
        .where(Execution.account_id == turn.c.id, *_due(now))
        .order_by(Execution.wake_at)
        .limit(share)
        .with_for_update(skip_locked=True, of=Execution)
        .lateral("share")
    )
    return select(shares).select_from(turn.join(shares, true())).limit(limit)


@functools.cache
def claim_statement(limit: int, share: int, *, after: bool) -> CompoundSelect[Any]:
    """The whole claim on PostgreSQL, in one statement: the shares (``shares_statement``),
    then, when room is left and some account had more than its share, the rest oldest first
    (skipping what the shares took); each row says whether it is filling. Its parameters are
    ``:now`` and, with ``after``, ``:after``; built once per shape, as building it costs more
    than running it.

    The shares are a CTE, locked once and read by the rest: the rest's conditions on them are
    evaluated before its scan, which does not run (nor lock anything) once the batch is full
    or when no account had more than its share."""
    now = bindparam("now", type_=UTCDateTime())
    shares = shares_statement(now, limit, share, after).cte("shares")
    taken = select(func.count()).select_from(shares).scalar_subquery()
    over_share = (
        select(shares.c.account_id)
        .group_by(shares.c.account_id)
        .having(func.count() >= share)
        .exists()
    )
    rest = (
        select(*EXECUTION_STATE_COLUMNS)
        .where(*_due(now), Execution.id.not_in(select(shares.c.id)), over_share)
        .order_by(Execution.wake_at)
        .limit(limit - taken)
        .with_for_update(skip_locked=True, of=Execution)
        .cte("rest")
    )
    return union_all(
        select(shares, false().label("filling")),
        select(rest, true().label("filling")),
    )


async def _claim_sqlite(
    session: AsyncSession, now: dt.datetime, limit: int, share: int, after: uuid.UUID | None
) -> tuple[list[Any], list[Any]]:
    """(the shares in turn, the rest oldest first) on SQLite, in one query.

    SQLite has no LATERAL and needs no row locks (its one worker holds the write lock): for
    each account a correlated subquery reads the ids of its oldest due executions, up to a
    batch, from ix_executions_due_by_account; the shares and the filling are picked from those.
    """
    candidate = aliased(Execution, name="candidate")
    oldest_of_account = (
        select(candidate.id)
        .where(candidate.account_id == Account.id, *_due(now, candidate))
        .order_by(candidate.wake_at)
        .limit(limit)
    )
    wrapped = [] if after is None else [Account.id <= after]
    query = (
        select(*EXECUTION_STATE_COLUMNS)
        .select_from(Account)
        .join(
            Execution,
            (Execution.account_id == Account.id) & Execution.id.in_(oldest_of_account),
        )
        .order_by(*wrapped, Account.id, Execution.wake_at)
    )
    shares: list[Any] = []
    rest: list[Any] = []
    taken: Counter[uuid.UUID] = Counter()
    for row in (await session.execute(query)).all():
        if len(shares) < limit and taken[row.account_id] < share:
            taken[row.account_id] += 1
            shares.append(row)
        else:
            rest.append(row)
    rest.sort(key=lambda row: row.wake_at)
    return shares, rest[: limit - len(shares)]


async def claim_oldest(
    session: AsyncSession,
    now: dt.datetime,
    limit: int,
    *,
    exclude: Sequence[uuid.UUID] = (),
) -> list[tuple[uuid.UUID, ExecutionState]]:
    """Lock up to ``limit`` due executions of any account, oldest first (skipping rows others
    hold and ``exclude``, rows this transaction already holds)."""
    query = select(*EXECUTION_STATE_COLUMNS).where(*_due(now))
    if exclude:
        query = query.where(Execution.id.not_in(exclude))
    query = (
        query.order_by(Execution.wake_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Execution)
    )
    rows = (await session.execute(query)).all()
    return [(row.account_id, execution_state(row)) for row in rows]


async def lock_executions(
    session: AsyncSession,
    keys: Iterable[tuple[uuid.UUID, uuid.UUID]],
    *,
    lease_owner: str | None = None,
) -> list[tuple[uuid.UUID, ExecutionState]]:
    """Lock the given live executions, by (account, id), waiting for other holders; optionally
    fenced by lease."""
    keys = list(keys)
    if not keys:
        return []
    query = select(*EXECUTION_STATE_COLUMNS).where(
        of_accounts(Execution, keys),
        is_live(Execution.status),
    )
    if lease_owner is not None:
        query = query.where(Execution.lease_owner == lease_owner)
    rows = (await session.execute(query.order_by(Execution.id).with_for_update(of=Execution))).all()
    return [(row.account_id, execution_state(row)) for row in rows]


async def extend_leases(
    session: AsyncSession,
    keys: Iterable[tuple[uuid.UUID, uuid.UUID]],
    *,
    lease_owner: str,
    until: dt.datetime,
) -> int:
    """Move to ``until`` the leases ``lease_owner`` still holds on these live executions, by
    (account, id); a lease another worker has taken over is left as it is, and so is an
    execution another transaction holds (the worker recording its call, or another claiming
    it): waiting for it could deadlock with the recording, which locks in id order. The number
    moved."""
    keys = list(keys)
    if not keys:
        return 0
    free = (
        select(Execution.id)
        .where(
            of_accounts(Execution, keys),
            Execution.lease_owner == lease_owner,
            is_live(Execution.status),
        )
        .with_for_update(skip_locked=True)
    )
    result = await session.execute(
        update(Execution)
        .where(of_accounts(Execution, keys), Execution.id.in_(free))
        .values(lease_expires_at=until)
        .execution_options(synchronize_session=False)
    )
    return cast(int, getattr(result, "rowcount", 0))


async def live_executions_of_contacts(
    session: AsyncSession,
    account_id: uuid.UUID,
    contact_ids: Iterable[uuid.UUID],
    *,
    exclude: Iterable[uuid.UUID] = (),
    skip_locked: bool = False,
) -> list[ExecutionState]:
    """Lock the live executions of these contacts (all workflows), in id order."""
    ids = list(contact_ids)
    if not ids:
        return []
    query = _live_of_contacts_statement(_arrays(session), skip_locked)
    excluded = list(exclude)
    if excluded:
        query = query.where(Execution.id.not_in(excluded))
    rows = await _rows(session, query, {"account": account_id, "contacts": ids})
    return [execution_state(row) for row in rows]


@functools.cache
def _live_of_contacts_statement(arrays: bool, skip_locked: bool) -> Select[*tuple[Any, ...]]:
    """The live executions of the ``:contacts`` of ``:account``, locked; built once."""
    query: Select[*tuple[Any, ...]] = (
        select(*EXECUTION_STATE_COLUMNS)
        .where(
            Execution.account_id == bindparam("account"),
            any_of_parameter(Execution.contact_id, "contacts", arrays=arrays),
            is_live(Execution.status),
        )
        .order_by(Execution.id)
        .with_for_update(of=Execution, skip_locked=skip_locked)
    )
    return query


async def load_contacts(
    session: AsyncSession,
    keys: Iterable[tuple[uuid.UUID, uuid.UUID]],
    *,
    lock: bool = True,
    skip_locked: bool = False,
) -> dict[uuid.UUID, ContactState]:
    """The contacts of ``keys``, each (account, contact id), locked unless ``lock`` is false;
    with ``skip_locked``, those another transaction holds are left out instead of waited for."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    arrays = _arrays(session)
    accounts = {account for account, _ in wanted}
    if len(accounts) == 1:
        # A batch's contacts are mostly of one account: that statement is built once.
        query = _contacts_statement(arrays, lock=lock, skip_locked=skip_locked)
        parameters = {"account": accounts.pop(), "ids": [contact for _, contact in wanted]}
    else:
        query = _contacts_statement(arrays, lock=lock, skip_locked=skip_locked, of_one=False)
        query = query.where(of_accounts(Contact, wanted, arrays=arrays))
        parameters = {}
    rows = await _rows(session, query, parameters)
    return {row.id: contact_state(row) for row in rows}


def contact_state(contact: Any) -> ContactState:
    """What the engine's goals, conditions and templates read of a contact: a stored
    ``Contact`` or a row of its columns."""
    return ContactState(
        id=contact.id,
        email=contact.email,
        phone=contact.phone,
        external_id=contact.external_id,
        fields=dict(contact.fields or {}),
        tags=list(contact.tags or []),
    )


@functools.cache
def _contacts_statement(
    arrays: bool, *, lock: bool, skip_locked: bool, of_one: bool = True
) -> Select[Any]:
    """The contacts' state columns, in id order, locked if ``lock``; with ``of_one`` those of
    the ``:ids`` of ``:account`` (else the caller adds which); built once."""
    query = select(
        Contact.id,
        Contact.email,
        Contact.phone,
        Contact.external_id,
        Contact.fields,
        Contact.tags,
    ).order_by(Contact.id)
    if of_one:
        query = query.where(
            Contact.account_id == bindparam("account"),
            any_of_parameter(Contact.id, "ids", arrays=arrays),
        )
    if lock:
        query = query.with_for_update(skip_locked=skip_locked)
    return query


_DEFINITIONS: dict[tuple[uuid.UUID, int], Definition] = {}


async def definitions(
    session: AsyncSession, accounts: Iterable[uuid.UUID], keys: Iterable[tuple[uuid.UUID, int]]
) -> dict[tuple[uuid.UUID, int], Definition]:
    """Parsed definitions by (workflow, version) of workflows of ``accounts``; versions never
    change, so they are cached."""
    wanted = set(keys)
    missing = [key for key in wanted if key not in _DEFINITIONS]
    if missing:
        workflow_ids = {w for w, _ in missing}
        rows = await session.execute(
            select(Version.workflow_id, Version.number, Version.definition).where(
                Version.account_id.in_(set(accounts)),
                Version.workflow_id.in_(workflow_ids),
                Version.number.in_({n for _, n in missing}),
            )
        )
        for row in rows.all():
            if len(_DEFINITIONS) > 4096:
                _DEFINITIONS.clear()
            _DEFINITIONS[(row.workflow_id, row.number)] = Definition.model_validate(row.definition)
    return {key: _DEFINITIONS[key] for key in wanted if key in _DEFINITIONS}


async def write_effects(
    session: AsyncSession,
    accounts: dict[uuid.UUID, uuid.UUID],
    executions: Sequence[ExecutionState],
    contacts: Iterable[ContactState],
    effects: Effects,
    now: dt.datetime,
    *,
    leases: dict[uuid.UUID, tuple[str, dt.datetime]] | None = None,
) -> None:
    """Write one batch's effects (the caller commits them in the same transaction).

    ``accounts`` maps execution id → account id; ``leases`` sets the lease of executions that
    wait for an external call; every other written execution has its lease cleared.

    On PostgreSQL the whole batch is one statement (``revflow.engine.pg_effects``); on SQLite
    each kind of row is one statement run for every row.
    """
    leases = leases or {}
    # Contacts change only through their executions' steps, which are in this batch.
    account_of = {ex.contact_id: accounts[ex.id] for ex in executions}
    dirty = [c for c in contacts if c.dirty]
    if session.get_bind().dialect.name == "postgresql":
        if not (effects.history or effects.messages or executions or dirty):
            return
        if session.info.get("read_only"):
            raise ReadOnlyViolation("a read-only session cannot write an engine batch")
        arrays = pg_effects.parameters(
            accounts, executions, dirty, account_of, effects, now, leases
        )
        connection = await session.connection()
        await connection.exec_driver_sql(pg_effects.STATEMENT, arrays)
        return
    writes = _row_writes(accounts, executions, dirty, account_of, effects, now, leases)
    for statement, parameters in writes:
        await session.execute(statement, parameters)


# A statement and its parameters: one set (run once) or a list of sets (run for each).
_Write = tuple[Any, dict[str, Any] | list[dict[str, Any]] | None]


def _row_writes(
    accounts: dict[uuid.UUID, uuid.UUID],
    executions: Sequence[ExecutionState],
    dirty: Sequence[ContactState],
    account_of: dict[uuid.UUID, uuid.UUID],
    effects: Effects,
    now: dt.datetime,
    leases: dict[uuid.UUID, tuple[str, dt.datetime]],
) -> list[_Write]:
    writes: list[_Write] = []
    if effects.history:
        writes.append(
            (
                insert(HISTORY),
                [
                    {**entry, "account_id": accounts[entry["execution_id"]]}
                    for entry in effects.history
                ],
            )
        )
    if effects.messages:
        writes.append(
            (
                insert(MESSAGES),
                [
                    {
                        "id": uuid.uuid4(),
                        "account_id": accounts[m["execution_id"]],
                        "created_at": now,
                        **m,
                    }
                    for m in effects.messages
                ],
            )
        )
    if executions:
        statement = (
            update(EXECUTIONS)
            .where(
                EXECUTIONS.c.account_id == bindparam("_account"),
                EXECUTIONS.c.id == bindparam("_id"),
            )
            .values(
                status=bindparam("status"),
                current_step=bindparam("current_step"),
                wake_at=bindparam("wake_at"),
                outcome=bindparam("outcome"),
                finished_at=bindparam("finished_at"),
                wait_started_at=bindparam("wait_started_at"),
                fired_goals=bindparam("fired_goals"),
                error=bindparam("error"),
                lease_owner=bindparam("lease_owner"),
                lease_expires_at=bindparam("lease_expires_at"),
            )
        )
        writes.append(
            (
                statement,
                [
                    {
                        "_account": accounts[ex.id],
                        "_id": ex.id,
                        "status": ex.status,
                        "current_step": ex.current_step,
                        "wake_at": ex.wake_at,
                        "outcome": ex.outcome,
                        "finished_at": ex.finished_at,
                        "wait_started_at": ex.wait_started_at,
                        "fired_goals": ex.fired_goals,
                        "error": ex.error,
                        "lease_owner": leases.get(ex.id, (None, None))[0],
                        "lease_expires_at": leases.get(ex.id, (None, None))[1],
                    }
                    for ex in executions
                ],
            )
        )
    if dirty:
        statement = (
            update(CONTACTS)
            .where(
                CONTACTS.c.account_id == bindparam("_account"),
                CONTACTS.c.id == bindparam("_id"),
            )
            .values(
                email=bindparam("email"),
                phone=bindparam("phone"),
                fields=bindparam("fields"),
                tags=bindparam("tags"),
                updated_at=bindparam("updated_at"),
            )
        )
        writes.append(
            (
                statement,
                [
                    {
                        "_account": account_of[c.id],
                        "_id": c.id,
                        "email": c.email,
                        "phone": c.phone,
                        "fields": c.fields,
                        "tags": c.tags,
                        "updated_at": now,
                    }
                    for c in dirty
                ],
            )
        )
    return writes


async def next_due(session: AsyncSession) -> dt.datetime | None:
    """When the next live execution falls due (for a worker deciding how long to sleep)."""
    return await session.scalar(
        select(Execution.wake_at)
        .where(is_live(Execution.status), Execution.wake_at.is_not(None))
        .order_by(Execution.wake_at)
        .limit(1)
    )


async def live_by_step(
    session: AsyncSession,
    account_id: uuid.UUID,
    workflow_id: uuid.UUID,
    version: int,
    ids: Sequence[uuid.UUID] | None = None,
) -> dict[str, int]:
    """Live executions of one version (or of ``ids`` among them), counted by current step."""
    query = select(Execution.current_step, func.count()).where(
        Execution.account_id == account_id,
        Execution.workflow_id == workflow_id,
        Execution.version == version,
        is_live(Execution.status),
    )
    if ids is not None:
        query = query.where(Execution.id.in_(ids))
    rows = await session.execute(query.group_by(Execution.current_step))
    return {str(step or ""): int(count) for step, count in rows.all()}
