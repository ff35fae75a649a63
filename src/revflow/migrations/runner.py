"""The migration runner: moves executions in batches, each batch one transaction of set-based
statements (SPEC §6).

A batch locks up to ``batch_size`` of the migration's pending executions with ``FOR UPDATE
SKIP LOCKED`` — executions a worker is running right now are left for a later batch, never
moved half-way through a step — then, with a few statements whatever the batch size: marks
the finished and unmovable ones skipped, records where each movable one was (the restore
record), moves them, writes their ``migrated`` history entries, and updates the counts.
Items only ever go from ``pending`` to a final state, so a batch that is retried after a
crash, or run by two workers, moves nothing twice. Batches pick in key order after the last
execution the previous one picked (``Migration.picked_through``), and the migration's counts
say when none is left; the items need no index of their pending ones, so a batch rewrites
each item in place (see ``MigrationItem``).

On PostgreSQL a forward migration's batch, once picked, is settled in one statement (a
data-modifying ``WITH``: ``_settle_statement``); reverts, SQLite, and a batch whose statement
fails (found one by one) take the separate statements.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    Table,
    Uuid,
    and_,
    any_,
    bindparam,
    case,
    column,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement as ColumnElementType

from revflow.audit import service as audit
from revflow.audit.service import SYSTEM
from revflow.db import Database
from revflow.migrations import events as webhook_events
from revflow.migrations.planning import StepPlan
from revflow.migrations.schemas import migration_out
from revflow.models import (
    Execution,
    HistoryEntry,
    Migration,
    MigrationItem,
    Version,
    is_live,
)

EXECUTIONS = cast(Table, Execution.__table__)
ITEMS = cast(Table, MigrationItem.__table__)
HISTORY = cast(Table, HistoryEntry.__table__)
MIGRATIONS = cast(Table, Migration.__table__)
ITEM_ORIGINAL = ITEMS.alias("original")
PENDING = literal("pending", literal_execute=True)


def _json_object(dialect: str, **values: Any) -> ColumnElementType[Any]:
    args: list[Any] = []
    for key, value in values.items():
        args += [literal(key), value]
    builder = func.jsonb_build_object if dialect == "postgresql" else func.json_object
    return cast(ColumnElementType[Any], builder(*args))


class _Batch:
    """The ids of a batch, as every statement of the batch names them: with the migration's
    account, so that every table is read by its ``(account_id, …)`` key and no statement
    joins rows of two accounts.

    On PostgreSQL the ids are one array parameter, unnested into a relation that each table
    of a statement is joined to by equality on its primary key (the item on
    ``(migration_id, execution_id)``, the execution on ``id``), so that the planner always
    has a key-lookup path from the batch to every table. With only the items restricted
    (``execution_id IN (…)``), stale statistics (a migration's items are new rows, just
    inserted by its snapshot) made PostgreSQL scan the version's live executions once per
    item: a batch of 500 took seconds, a migration of 20,000 executions minutes. The items are
    bounded by the batch's first and last id too: with the statistics taking the migration's
    items for a handful, PostgreSQL hashes them, and reads only the batch's key range (which
    the pick, in key order, keeps to the batch) instead of every item of the migration.
    """

    def __init__(self, dialect: str, account_id: uuid.UUID, ids: list[uuid.UUID]) -> None:
        self.account_id = account_id
        self.ids = ids
        self.rows = (
            func.unnest(bindparam(None, ids, type_=ARRAY(Uuid())))
            .table_valued(column("id", Uuid()))
            .render_derived()
            .alias("batch")
            if dialect == "postgresql"
            else None
        )

    def has(self, item_id: Any, *others: Any) -> ColumnElementType[bool]:
        """``item_id`` (and each column of ``others``) is one of the batch's ids, in a row of
        the migration's account."""
        columns = (item_id, *others)
        same_account = [c.table.c.account_id == self.account_id for c in columns]
        if self.rows is None:
            return and_(item_id.in_(self.ids), *same_account)
        return and_(
            *(c == self.rows.c.id for c in columns),
            item_id.between(min(self.ids), max(self.ids)),
            *same_account,
        )


def _plus_seconds(dialect: str, column: Any, seconds: float) -> ColumnElementType[Any]:
    if dialect == "postgresql":
        return cast(ColumnElementType[Any], column + func.make_interval(0, 0, 0, 0, 0, 0, seconds))
    return cast(
        ColumnElementType[Any],
        func.strftime("%Y-%m-%d %H:%M:%f", column, f"+{seconds} seconds"),
    )


async def _pick_batch(
    session: AsyncSession, migration: Migration, now: dt.datetime
) -> tuple[list[uuid.UUID], uuid.UUID | None]:
    """Lock the next batch: of the next ``batch_size`` pending items after
    ``picked_through`` in key order, the executions no worker holds. Answers their ids and the
    last item looked at (where the next batch starts). Once no item is left after it, the pick
    starts again from the first item, for those a worker held when the pick passed them.

    The items are read first, then their executions locked by key: as one join (whose rows
    the statistics of new items estimate badly), the last pick of a migration took 0.15 to
    0.3 s in the benchmark instead of 0.02 s. A held execution makes its batch smaller.
    """
    after, lapped = migration.picked_through, migration.picked_through is None
    while True:
        window = await _pending_after(session, migration, after)
        if not window:
            if lapped:
                return [], None
            after, lapped = None, True
            continue
        ids = await _lock_free(session, migration, window, now)
        if ids:
            return ids, window[-1]
        after = window[-1]


async def _pending_after(
    session: AsyncSession, migration: Migration, after: uuid.UUID | None
) -> list[uuid.UUID]:
    query = (
        select(ITEMS.c.execution_id)
        .where(
            ITEMS.c.account_id == migration.account_id,
            ITEMS.c.migration_id == migration.id,
            ITEMS.c.state == "pending",
        )
        .order_by(ITEMS.c.execution_id)
        .limit(migration.batch_size)
    )
    if after is not None:
        query = query.where(ITEMS.c.execution_id > after)
    return list((await session.execute(query)).scalars())


async def _lock_free(
    session: AsyncSession, migration: Migration, ids: list[uuid.UUID], now: dt.datetime
) -> list[uuid.UUID]:
    """Lock those of the executions ``ids`` that no worker holds (``SKIP LOCKED``, in key
    order); answers their ids."""
    if session.get_bind().dialect.name == "postgresql":
        among = EXECUTIONS.c.id == any_(bindparam(None, ids, type_=ARRAY(Uuid())))
    else:
        among = EXECUTIONS.c.id.in_(ids)
    query = (
        select(EXECUTIONS.c.id)
        .where(
            EXECUTIONS.c.account_id == migration.account_id,
            among,
            or_(EXECUTIONS.c.lease_expires_at.is_(None), EXECUTIONS.c.lease_expires_at < now),
        )
        .order_by(EXECUTIONS.c.id)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(query)).scalars())


async def _count(session: AsyncSession, statement: Any) -> int:
    """Run an UPDATE and answer how many rows it changed."""
    result = cast(CursorResult[Any], await session.execute(statement))
    return int(result.rowcount or 0)


async def _skip_finished(session: AsyncSession, migration: Migration, ids: list[uuid.UUID]) -> int:
    # For a revert, an execution on another version "advanced since the move" (handled there).
    batch = _Batch(session.get_bind().dialect.name, migration.account_id, ids)
    gone = not_(is_live(EXECUTIONS.c.status))
    if migration.reverts is None:
        gone = or_(gone, EXECUTIONS.c.version != migration.from_version)
    return await _count(
        session,
        update(ITEMS)
        .where(
            ITEMS.c.migration_id == migration.id,
            batch.has(ITEMS.c.execution_id, EXECUTIONS.c.id),
            ITEMS.c.state == "pending",
            EXECUTIONS.c.id == ITEMS.c.execution_id,
            gone,
        )
        .values(
            state="skipped",
            reason=case((is_live(EXECUTIONS.c.status), "version_changed"), else_="finished"),
            from_step=EXECUTIONS.c.current_step,
        ),
    )


async def _move_by_plan(
    session: AsyncSession, migration: Migration, ids: list[uuid.UUID], now: dt.datetime
) -> tuple[int, int]:
    dialect = session.get_bind().dialect.name
    plans = {step: StepPlan.from_dict(p) for step, p in migration.plan.items()}
    movable = {step: p for step, p in plans.items() if p.target is not None}
    batch = _Batch(dialect, migration.account_id, ids)
    pending_here = and_(
        ITEMS.c.migration_id == migration.id,
        batch.has(ITEMS.c.execution_id, EXECUTIONS.c.id),
        ITEMS.c.state == "pending",
        EXECUTIONS.c.id == ITEMS.c.execution_id,
        is_live(EXECUTIONS.c.status),
        EXECUTIONS.c.version == migration.from_version,
    )
    reasons = {step: p.reason for step, p in plans.items() if p.target is None}
    skipped = await _count(
        session,
        update(ITEMS)
        .where(pending_here, EXECUTIONS.c.current_step.not_in(list(movable)))
        .values(
            state="skipped",
            reason=case(reasons, value=EXECUTIONS.c.current_step, else_="step_unknown")
            if reasons
            else "step_unknown",
            from_step=EXECUTIONS.c.current_step,
        ),
    )
    if not movable:
        return 0, skipped
    moved = await _count(
        session,
        update(ITEMS)
        .where(pending_here, EXECUTIONS.c.current_step.in_(list(movable)))
        .values(
            state="migrated",
            from_step=EXECUTIONS.c.current_step,
            from_status=EXECUTIONS.c.status,
            from_wake_at=EXECUTIONS.c.wake_at,
            to_step=case(
                {step: p.target for step, p in movable.items()},
                value=EXECUTIONS.c.current_step,
            ),
            moved_at=now,
        ),
    )
    if moved == 0:
        return 0, skipped
    values: dict[str, Any] = {
        "version": migration.to_version,
        "current_step": ITEMS.c.to_step,
        **_new_positions(dialect, movable, ITEMS.c.from_step, now),
    }
    await session.execute(
        update(EXECUTIONS)
        .where(
            ITEMS.c.migration_id == migration.id,
            ITEMS.c.execution_id == EXECUTIONS.c.id,
            batch.has(ITEMS.c.execution_id, EXECUTIONS.c.id),
            ITEMS.c.state == "migrated",
            ITEMS.c.moved_at == now,
        )
        .values(**values)
    )
    await _write_history(session, dialect, migration, ids, now)
    return moved, skipped


async def _move_back(
    session: AsyncSession, migration: Migration, ids: list[uuid.UUID], now: dt.datetime
) -> tuple[int, int]:
    """A revert: executions still where the reverted migration put them go back."""
    dialect = session.get_bind().dialect.name
    original = ITEM_ORIGINAL
    batch = _Batch(dialect, migration.account_id, ids)
    base = and_(
        ITEMS.c.migration_id == migration.id,
        batch.has(ITEMS.c.execution_id, EXECUTIONS.c.id, original.c.execution_id),
        ITEMS.c.state == "pending",
        EXECUTIONS.c.id == ITEMS.c.execution_id,
        original.c.migration_id == migration.reverts,
        original.c.execution_id == ITEMS.c.execution_id,
        is_live(EXECUTIONS.c.status),
    )
    still_there = and_(
        EXECUTIONS.c.version == migration.from_version,
        EXECUTIONS.c.current_step == original.c.to_step,
    )
    advanced = await _count(
        session,
        update(ITEMS)
        .where(base, not_(still_there))
        .values(state="skipped", reason="advanced_since_move", from_step=EXECUTIONS.c.current_step),
    )
    moved = await _count(
        session,
        update(ITEMS)
        .where(base, still_there)
        .values(
            state="migrated",
            from_step=EXECUTIONS.c.current_step,
            from_status=EXECUTIONS.c.status,
            from_wake_at=EXECUTIONS.c.wake_at,
            to_step=original.c.from_step,
            moved_at=now,
        ),
    )
    if moved:
        await session.execute(
            update(EXECUTIONS)
            .where(
                ITEMS.c.migration_id == migration.id,
                ITEMS.c.execution_id == EXECUTIONS.c.id,
                batch.has(ITEMS.c.execution_id, EXECUTIONS.c.id, original.c.execution_id),
                ITEMS.c.state == "migrated",
                ITEMS.c.moved_at == now,
                original.c.migration_id == migration.reverts,
                original.c.execution_id == EXECUTIONS.c.id,
            )
            .values(
                version=migration.to_version,
                current_step=original.c.from_step,
                status=original.c.from_status,
                wake_at=original.c.from_wake_at,
            )
        )
        await _write_history(session, dialect, migration, ids, now)
    return moved, advanced


async def _write_history(
    session: AsyncSession,
    dialect: str,
    migration: Migration,
    ids: list[uuid.UUID],
    now: dt.datetime,
) -> None:
    detail = _json_object(
        dialect,
        **{
            "migration_id": literal(str(migration.id)),
            "from": literal(migration.from_version),
            "to": literal(migration.to_version),
            "from_step": ITEMS.c.from_step,
            "step": ITEMS.c.to_step,
        },
    )
    await session.execute(
        insert(HISTORY).from_select(
            ["account_id", "execution_id", "at", "step", "result", "detail"],
            select(
                ITEMS.c.account_id,
                ITEMS.c.execution_id,
                literal(now, HISTORY.c.at.type),
                ITEMS.c.to_step,
                literal("migrated"),
                detail,
            ).where(
                ITEMS.c.migration_id == migration.id,
                _Batch(dialect, migration.account_id, ids).has(ITEMS.c.execution_id),
                ITEMS.c.state == "migrated",
                ITEMS.c.moved_at == now,
            ),
        )
    )


@dataclass
class _Settled:
    """What one batch statement did: moved, skipped, and the ids it skipped."""

    moved: int
    skipped: int
    skipped_ids: list[uuid.UUID]


def _settle_statement(migration: Migration, ids: list[uuid.UUID], now: dt.datetime) -> Any:
    """A forward migration's batch (``ids``, picked and locked) settled in one PostgreSQL
    statement, a data-modifying ``WITH``.

    ``settled`` gives every pending item of the batch its final state in one ``UPDATE`` —
    skipped as finished, as on another version, or on a step the plan cannot move (with the
    plan's reason), else migrated with its restore record (where the execution was); ``moved``
    moves the executions the same condition picks (every part of the statement sees the rows
    as they were before it, and the batch's executions are locked, so the two agree);
    ``history`` writes the moved ones' entries. The answer is one row: how many were moved,
    how many skipped, and the skipped ids.

    Each table is joined to the batch's ids (one array, unnested) by equality on its key with
    the migration's account, as in every batch statement (see ``_Batch``): joined to one
    another through a CTE instead, the planner may scan the CTE once per row.
    """
    account = migration.account_id
    plans = {step: StepPlan.from_dict(p) for step, p in migration.plan.items()}
    movable = {step: p for step, p in plans.items() if p.target is not None}
    reasons = {step: p.reason for step, p in plans.items() if p.target is None}
    targets = {step: p.target for step, p in movable.items()}
    batch = _Batch("postgresql", account, ids)
    pending_here = and_(
        ITEMS.c.migration_id == migration.id,
        batch.has(ITEMS.c.execution_id, EXECUTIONS.c.id),
        EXECUTIONS.c.id == ITEMS.c.execution_id,
        ITEMS.c.state == PENDING,
    )
    step = EXECUTIONS.c.current_step
    here = and_(is_live(EXECUTIONS.c.status), EXECUTIONS.c.version == migration.from_version)
    moves = and_(here, step.in_(list(movable)))
    unmovable: Any = case(reasons, value=step, else_="step_unknown") if reasons else "step_unknown"
    to_step: Any = case(targets, value=step) if targets else None
    settled = (
        update(ITEMS)
        .where(pending_here)
        .values(
            state=case((moves, "migrated"), else_="skipped"),
            reason=case(
                (not_(is_live(EXECUTIONS.c.status)), "finished"),
                (not_(here), "version_changed"),
                (moves, None),
                else_=unmovable,
            ),
            from_step=step,
            from_status=case((moves, EXECUTIONS.c.status)),
            from_wake_at=case((moves, EXECUTIONS.c.wake_at)),
            to_step=case((moves, to_step)),
            moved_at=case((moves, now)),
        )
        .returning(ITEMS.c.execution_id, ITEMS.c.state, ITEMS.c.from_step, ITEMS.c.to_step)
        .cte("settled")
    )
    moved = (
        update(EXECUTIONS)
        .where(pending_here, moves)
        .values(
            version=migration.to_version,
            current_step=to_step,
            **_new_positions("postgresql", movable, step, now),
        )
        .cte("moved")
    )
    migrated = settled.c.state == "migrated"
    detail = _json_object(
        "postgresql",
        **{
            "migration_id": literal(str(migration.id)),
            "from": literal(migration.from_version),
            "to": literal(migration.to_version),
            "from_step": settled.c.from_step,
            "step": settled.c.to_step,
        },
    )
    history = insert(HISTORY).from_select(
        ["account_id", "execution_id", "at", "step", "result", "detail"],
        select(
            literal(account, Uuid()),
            settled.c.execution_id,
            literal(now, HISTORY.c.at.type),
            settled.c.to_step,
            literal("migrated"),
            detail,
        )
        .where(migrated)
        .order_by(settled.c.execution_id),
    )
    skipped = settled.c.state == "skipped"
    return (
        select(
            func.count().filter(migrated),
            func.count().filter(skipped),
            func.array_agg(settled.c.execution_id).filter(skipped),
        )
        .select_from(settled)
        .add_cte(moved, history.cte("history"))
    )


def _new_positions(
    dialect: str, movable: dict[str, StepPlan], from_step: Any, now: dt.datetime
) -> dict[str, Any]:
    """An UPDATE's new status, wake time and wait start of the executions the plan moves off
    the step ``from_step`` names (each column kept where the plan changes nothing)."""
    waiting = EXECUTIONS.c.status == "waiting"
    wake_cases: list[tuple[Any, Any]] = []
    started_cases: list[tuple[Any, Any]] = []
    now_steps = [s for s, p in movable.items() if p.wake == "now"]
    if now_steps:
        wake_cases.append((and_(waiting, from_step.in_(now_steps)), now))
        started_cases.append((and_(waiting, from_step.in_(now_steps)), None))
    for step, p in movable.items():
        at_step = and_(waiting, from_step == step)
        if p.wake == "restart":
            assert p.seconds is not None
            wake_cases.append((at_step, now + dt.timedelta(seconds=p.seconds)))
            started_cases.append((at_step, now))
        elif p.wake == "recompute":
            assert p.seconds is not None
            wake_cases.append(
                (at_step, _plus_seconds(dialect, EXECUTIONS.c.wait_started_at, p.seconds))
            )
        elif p.wake == "until":
            assert p.until is not None
            wake_cases.append((at_step, dt.datetime.fromisoformat(p.until)))
    values: dict[str, Any] = {}
    if now_steps:
        values["status"] = case(
            (and_(waiting, from_step.in_(now_steps)), "active"), else_=EXECUTIONS.c.status
        )
    if wake_cases:
        values["wake_at"] = case(*wake_cases, else_=EXECUTIONS.c.wake_at)
    if started_cases:
        values["wait_started_at"] = case(*started_cases, else_=EXECUTIONS.c.wait_started_at)
    return values


async def _settle_in_one_statement(
    session: AsyncSession, migration: Migration, ids: list[uuid.UUID], now: dt.datetime
) -> _Settled:
    row: Any = (await session.execute(_settle_statement(migration, ids, now))).one()
    moved, skipped, skipped_ids = row
    return _Settled(int(moved), int(skipped), list(skipped_ids or []))


async def moved_failure_rate(session: AsyncSession, migration: Migration) -> tuple[int, int]:
    """(failed, completed) among the executions this migration moved or failed to move."""
    rows = await session.execute(
        select(EXECUTIONS.c.status, func.count())
        .join(
            ITEMS,
            (ITEMS.c.account_id == EXECUTIONS.c.account_id)
            & (ITEMS.c.execution_id == EXECUTIONS.c.id),
        )
        .where(
            ITEMS.c.account_id == migration.account_id,
            ITEMS.c.migration_id == migration.id,
            ITEMS.c.state == "migrated",
            EXECUTIONS.c.status.in_(("failed", "completed")),
        )
        .group_by(EXECUTIONS.c.status)
    )
    counts = {str(row[0]): int(row[1]) for row in rows.all()}
    # Executions it could not move (an error while moving them) count as failures too.
    return counts.get("failed", 0) + migration.failed, counts.get("completed", 0)


async def run_next(db: Database, now: dt.datetime) -> int:
    """Run one batch of the most overdue runnable migration; answers executions settled."""
    async with db.session(write=True) as session:
        migration = await claim_runnable(session, now)
        if migration is None:
            return 0
        settled = await run_batch(session, migration, now)
        await session.commit()
        return settled or 1


async def claim_runnable(session: AsyncSession, now: dt.datetime) -> Migration | None:
    return await session.scalar(
        select(Migration)
        .where(Migration.status.in_(("pending", "in_progress")), Migration.next_batch_at <= now)
        .order_by(Migration.next_batch_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


LISTED_LIMIT = 100


def _transient(exc: BaseException) -> bool:
    """A failure of the database itself (connection lost, deadlock, serialization): the batch
    is retried later, no execution is blamed for it."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return code in ("40001", "40P01", "55P03", "57014", "57P01")
    return False


async def _settle(
    session: AsyncSession, migration: Migration, ids: list[uuid.UUID], now: dt.datetime
) -> tuple[int, int]:
    finished = await _skip_finished(session, migration, ids)
    if migration.reverts is None:
        moved, skipped = await _move_by_plan(session, migration, ids, now)
    else:
        moved, skipped = await _move_back(session, migration, ids, now)
    return moved, skipped + finished


async def _settle_batch(
    session: AsyncSession, migration: Migration, ids: list[uuid.UUID], now: dt.datetime
) -> tuple[int, int, int]:
    """Move the batch with its set-based statements; if they fail, move its executions one by
    one so that only those that cannot be moved fail (each with its error). Answers (moved,
    skipped, failed)."""
    try:
        async with session.begin_nested():
            moved, skipped = await _settle(session, migration, ids, now)
        return moved, skipped, 0
    except Exception as exc:
        if _transient(exc):
            raise
    moved = skipped = failed = 0
    for execution_id in ids:
        try:
            async with session.begin_nested():
                one_moved, one_skipped = await _settle(session, migration, [execution_id], now)
        except Exception as exc:
            if _transient(exc):
                raise
            await _fail_item(session, migration, execution_id, exc)
            failed += 1
        else:
            moved += one_moved
            skipped += one_skipped
    return moved, skipped, failed


async def _fail_item(
    session: AsyncSession, migration: Migration, execution_id: uuid.UUID, exc: Exception
) -> None:
    error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
    step = await session.scalar(
        select(EXECUTIONS.c.current_step).where(
            EXECUTIONS.c.account_id == migration.account_id, EXECUTIONS.c.id == execution_id
        )
    )
    await session.execute(
        update(ITEMS)
        .where(
            ITEMS.c.account_id == migration.account_id,
            ITEMS.c.migration_id == migration.id,
            ITEMS.c.execution_id == execution_id,
        )
        .values(state="failed", reason="error", from_step=step)
    )
    if len(migration.errors or []) < LISTED_LIMIT:
        entry = {"execution_id": str(execution_id), "step": step, "error": error}
        migration.errors = [*(migration.errors or []), entry]


async def _list_skips(session: AsyncSession, migration: Migration, ids: list[uuid.UUID]) -> None:
    """Keep the first ``LISTED_LIMIT`` skipped executions with their reasons."""
    room = LISTED_LIMIT - len(migration.skips or [])
    if room <= 0:
        return
    rows = await session.execute(
        select(ITEMS.c.execution_id, ITEMS.c.from_step, ITEMS.c.reason)
        .where(
            ITEMS.c.account_id == migration.account_id,
            ITEMS.c.migration_id == migration.id,
            ITEMS.c.execution_id.in_(ids),
            ITEMS.c.state == "skipped",
        )
        .order_by(ITEMS.c.execution_id)
        .limit(room)
    )
    entries = [
        {"execution_id": str(row[0]), "step": row[1], "reason": row[2]} for row in rows.all()
    ]
    if entries:
        migration.skips = [*(migration.skips or []), *entries]


async def _target_gone(session: AsyncSession, migration: Migration) -> bool:
    status = await session.scalar(
        select(Version.status).where(
            Version.account_id == migration.account_id,
            Version.workflow_id == migration.workflow_id,
            Version.number == migration.to_version,
        )
    )
    return status is None or status == "archived"


async def _fail(session: AsyncSession, migration: Migration, now: dt.datetime, why: str) -> None:
    """The migration cannot run at all: it ends ``failed``, saying why; what it moved stays."""
    migration.status = "failed"
    migration.status_reason = why
    migration.finished_at = now
    migration.next_batch_at = None
    await audit.record(
        session,
        migration.account_id,
        SYSTEM,
        "migration.failed",
        object_type="migration",
        object_id=migration.id,
        workflow_id=migration.workflow_id,
        details={"reason": why, "migrated": migration.migrated},
        now=now,
    )
    await session.flush()
    await webhook_events.migration_event(
        session, migration, "migration.failed", migration_out(migration), now
    )


async def _next_batch(
    session: AsyncSession, migration: Migration, now: dt.datetime
) -> tuple[int, bool]:
    """Pick and settle the migration's next batch; answers (executions settled, whether any
    item is still pending).

    A forward migration on PostgreSQL settles its batch in one statement; if that fails for
    anything but the database itself, the batch goes the way of every other batch
    (``_settle_batch``), which finds the executions that cannot be moved one by one.
    """
    # ``picked_through`` is set after the batch's statements, so that it is written with the
    # counts.
    ids, picked_through = await _pick_batch(session, migration, now)
    settled = 0
    one_statement = session.get_bind().dialect.name == "postgresql" and migration.reverts is None
    if ids and one_statement:
        try:
            async with session.begin_nested():
                done = await _settle_in_one_statement(session, migration, ids, now)
        except Exception as exc:
            if _transient(exc):
                raise
        else:
            settled = done.moved + done.skipped
            migration.migrated += done.moved
            migration.skipped += done.skipped
            migration.batches += 1
            migration.picked_through = picked_through
            if done.skipped_ids:
                await _list_skips(session, migration, done.skipped_ids)
            return settled, await _any_pending(session, migration, settled)
    if ids:
        moved, skipped, failed = await _settle_batch(session, migration, ids, now)
        migration.migrated += moved
        migration.skipped += skipped
        migration.failed += failed
        migration.batches += 1
        settled = moved + skipped + failed
        await _list_skips(session, migration, ids)
    migration.picked_through = picked_through
    return settled, await _any_pending(session, migration, settled)


def _unsettled(migration: Migration) -> int:
    """How many of the migration's items are still pending, by its counts (every item settled
    is counted, in the transaction that settles it)."""
    return migration.total - migration.migrated - migration.skipped - migration.failed


async def _any_pending(session: AsyncSession, migration: Migration, settled: int) -> bool:
    """Whether any item is still pending. The counts answer unless they say some are and
    this batch found none to settle: then the items themselves (read in full, so only then)."""
    if _unsettled(migration) <= 0:
        return False
    if settled:
        return True
    remaining = await session.scalar(
        select(ITEMS.c.execution_id)
        .where(
            ITEMS.c.account_id == migration.account_id,
            ITEMS.c.migration_id == migration.id,
            ITEMS.c.state == "pending",
        )
        .limit(1)
    )
    return remaining is not None


async def run_batch(session: AsyncSession, migration: Migration, now: dt.datetime) -> int:
    """Run one batch of ``migration`` (locked by the caller); the caller commits.

    Answers how many executions the batch settled (moved or skipped).
    """
    if migration.strategy == "gradual" and migration.status == "in_progress":
        failed, completed = await moved_failure_rate(session, migration)
        if failed + completed >= 20 and failed / (failed + completed) > migration.halt_failure_rate:
            migration.status = "paused"
            migration.status_reason = (
                f"paused itself: {failed} of {failed + completed} moved executions failed "
                f"(above halt_failure_rate {migration.halt_failure_rate})"
            )
            await audit.record(
                session,
                migration.account_id,
                SYSTEM,
                "migration.paused",
                object_type="migration",
                object_id=migration.id,
                workflow_id=migration.workflow_id,
                details={"reason": migration.status_reason},
                now=now,
            )
            return 0
    if await _target_gone(session, migration):
        await _fail(session, migration, now, f"version {migration.to_version} was archived")
        return 0
    migration.status = "in_progress"
    settled, remaining = await _next_batch(session, migration, now)
    if not remaining:
        migration.status = "completed"
        migration.finished_at = now
        migration.next_batch_at = None
        await audit.record(
            session,
            migration.account_id,
            SYSTEM,
            "migration.finished",
            object_type="migration",
            object_id=migration.id,
            workflow_id=migration.workflow_id,
            details={
                "migrated": migration.migrated,
                "skipped": migration.skipped,
                "failed": migration.failed,
            },
            now=now,
        )
        await session.flush()
        await webhook_events.migration_event(
            session, migration, "migration.completed", migration_out(migration), now
        )
    elif migration.strategy == "gradual":
        migration.next_batch_at = now + dt.timedelta(seconds=migration.interval_seconds)
    else:
        # Executions held by workers are retried shortly rather than spun on.
        migration.next_batch_at = now if settled else now + dt.timedelta(seconds=0.2)
    await session.flush()
    return settled
