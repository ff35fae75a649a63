"""The audit trail: one entry per change, written in the change's own transaction.

Entries of an account form a hash chain. The chain's head (``audit_heads``) is updated with a
row lock, so concurrent changes of one account append one after the other and the chain never
forks. A change's entries join the chain as its transaction commits (``before_commit``): the
head stays locked for the last few statements only, so concurrent changes of an account wait
for each other's commit, not for each other's whole work. A change whose last statement is
known before it runs (a new version without a publish) may append its entry in that statement
instead (``joining_row``): one round trip fewer, the head locked as briefly.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from revflow.audit import repository as repo
from revflow.db import GuardedSession, new_id
from revflow.kit.jsonutil import canonical, sha256_hex
from revflow.models import AuditEntry


@dataclass(frozen=True)
class Actor:
    """Who made a change: the user named by the API key, and the key."""

    user: str
    key_id: uuid.UUID | None = None


SYSTEM = Actor(user="system")


def entry_hash(
    *,
    prev_hash: str,
    seq: int,
    at: dt.datetime,
    actor_user: str,
    actor_key_id: uuid.UUID | None,
    action: str,
    workflow_id: uuid.UUID | None,
    object_type: str,
    object_id: str,
    details: dict[str, Any],
) -> str:
    """SHA-256 over the previous hash and every field of the entry."""
    body = {
        "seq": seq,
        "at": at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor_user": actor_user,
        "actor_key_id": str(actor_key_id) if actor_key_id else None,
        "action": action,
        "workflow_id": str(workflow_id) if workflow_id else None,
        "object_type": object_type,
        "object_id": object_id,
        "details": details,
    }
    return sha256_hex(prev_hash.encode() + canonical(body))


# The session's entries waiting for its commit (``Session.info`` key).
PENDING = "audit_pending"


@dataclass(frozen=True)
class Entry:
    """An entry before it joins its account's chain (which numbers and hashes it)."""

    account_id: uuid.UUID
    actor: Actor
    action: str
    object_type: str
    object_id: str
    workflow_id: uuid.UUID | None
    details: dict[str, Any]
    at: dt.datetime


async def record(
    session: AsyncSession,
    account_id: uuid.UUID,
    actor: Actor,
    action: str,
    *,
    object_type: str,
    object_id: str | uuid.UUID,
    workflow_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
    now: dt.datetime,
) -> None:
    """Append an entry at ``now`` to the account's chain when the transaction commits (the
    caller commits; a rollback drops it). Inside a savepoint, whose rollback must take the
    entry with it, the entry is appended at once."""
    entry = Entry(
        account_id, actor, action, object_type, str(object_id), workflow_id, details or {}, now
    )
    await record_entry(session, entry)


async def record_entry(session: AsyncSession, entry: Entry) -> None:
    """:func:`record` of an entry already made."""
    if session.in_nested_transaction():
        await session.run_sync(_append, [entry])
        return
    await session.connection()  # the transaction the entry belongs to has begun
    session.info.setdefault(PENDING, []).append(entry)


def joining_row(session: AsyncSession, entry: Entry) -> dict[str, Any] | None:
    """The row with which a statement of the caller's own may append ``entry`` to its
    account's chain (``repo.APPENDED_AFTER`` with ``repo.append_after_parameters``), one
    statement fewer than :func:`record`: where this process knows where it left the account's
    head, on PostgreSQL, outside a savepoint, with no other entry of the transaction waiting
    for its commit (which must come first). The head is then locked from that statement on,
    not only at the commit: for a change whose statement is its last. Otherwise None, for
    :func:`record` to take the entry. Either way the caller ends with :func:`joined`."""
    sync = session.sync_session
    if session.in_nested_transaction() or sync.info.get(PENDING) or not repo.appends_after(sync):
        return None
    known = _HEADS.get(entry.account_id)
    if known is None:
        return None
    return _row(entry.account_id, entry, known[0] + 1, known[1])


async def joined(
    session: AsyncSession, entry: Entry, row: dict[str, Any] | None, appended: bool
) -> None:
    """After the caller's statement with ``row`` (:func:`joining_row`): the head is where the
    entry left it, or — it was not where this process had left it, or there was no ``row`` —
    the entry is recorded as :func:`record` does."""
    if row is not None:
        if appended:
            _left_head(entry.account_id, row["seq"], row["hash"])
            return
        _HEADS.pop(entry.account_id, None)  # not where it was left: the commit reads it
    await record_entry(session, entry)


@event.listens_for(GuardedSession, "before_commit")
def _append_pending(session: Session) -> None:
    entries = session.info.pop(PENDING, None)
    if entries:
        session.flush()  # the change's own statements first: the head is locked last
        _append(session, entries)


@event.listens_for(GuardedSession, "after_transaction_end")
def _drop_pending(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(PENDING, None)


# Where this process last left each account's head: (its number, its hash). A guess, only
# ever used as the condition of an append (see ``_append``), so a stale one costs a statement.
_HEADS: dict[uuid.UUID, tuple[int, str]] = {}
_HEADS_KEPT = 4096


def _append(session: Session, entries: Sequence[Entry]) -> None:
    """Add ``entries`` to their accounts' chains, in order; accounts' heads are locked in
    the order of their ids, so that two transactions never wait for each other's.

    On PostgreSQL, a single entry of an account whose head this process has seen is first
    appended in one statement, on the condition that the head is still where it was seen
    (``repo.append_after``); otherwise — another process or a rolled-back transaction moved
    it, or nothing is known — the head is advanced and read, then the entries appended."""
    by_account: dict[uuid.UUID, list[Entry]] = {}
    for entry in entries:
        by_account.setdefault(entry.account_id, []).append(entry)
    heads = _HEADS if repo.appends_after(session) else None
    for account_id in sorted(by_account):
        mine = by_account[account_id]
        known = None if heads is None else heads.get(account_id)
        if known is not None and len(mine) == 1:
            row = _row(account_id, mine[0], known[0] + 1, known[1])
            if repo.append_after(session, row):
                _left_head(account_id, row["seq"], row["hash"])
                continue
        last, prev_hash = repo.advance_head(session, account_id, len(mine))
        rows: list[dict[str, Any]] = []
        for seq, entry in enumerate(mine, start=last - len(mine) + 1):
            rows.append(_row(account_id, entry, seq, prev_hash))
            prev_hash = rows[-1]["hash"]
        repo.append(session, account_id, rows)
        if heads is not None:
            _left_head(account_id, last, prev_hash)
    session.flush()


def _left_head(account_id: uuid.UUID, seq: int, hash_: str) -> None:
    if account_id not in _HEADS and len(_HEADS) >= _HEADS_KEPT:
        _HEADS.clear()
    _HEADS[account_id] = (seq, hash_)


def _row(account_id: uuid.UUID, entry: Entry, seq: int, prev_hash: str) -> dict[str, Any]:
    """The row of ``entry`` as number ``seq`` of its account's chain, after ``prev_hash``."""
    return {
        "id": new_id(),
        "account_id": account_id,
        "seq": seq,
        "at": entry.at,
        "actor_user": entry.actor.user,
        "actor_key_id": entry.actor.key_id,
        "action": entry.action,
        "workflow_id": entry.workflow_id,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "details": entry.details,
        "prev_hash": prev_hash,
        "hash": entry_hash(
            prev_hash=prev_hash,
            seq=seq,
            at=entry.at,
            actor_user=entry.actor.user,
            actor_key_id=entry.actor.key_id,
            action=entry.action,
            workflow_id=entry.workflow_id,
            object_type=entry.object_type,
            object_id=entry.object_id,
            details=entry.details,
        ),
    }


@dataclass(frozen=True)
class VerifyResult:
    account_id: uuid.UUID
    entries: int
    ok: bool
    first_bad_seq: int | None = None
    first_bad_id: uuid.UUID | None = None
    problem: str | None = None


async def verify_account(session: AsyncSession, account_id: uuid.UUID) -> VerifyResult:
    """Walk the chain in order and name the first entry that does not match."""
    prev_hash = ""
    expected_seq = 1
    count = 0
    async for entry in repo.entries_in_order(session, account_id):
        count += 1
        problem = None
        if entry.seq != expected_seq:
            problem = f"entry {expected_seq} is missing (next entry is {entry.seq})"
        elif entry.prev_hash != prev_hash:
            problem = "prev_hash does not match the previous entry"
        else:
            digest = entry_hash(
                prev_hash=entry.prev_hash,
                seq=entry.seq,
                at=entry.at,
                actor_user=entry.actor_user,
                actor_key_id=entry.actor_key_id,
                action=entry.action,
                workflow_id=entry.workflow_id,
                object_type=entry.object_type,
                object_id=entry.object_id,
                details=entry.details,
            )
            if digest != entry.hash:
                problem = "the entry's content does not match its hash"
        if problem:
            return VerifyResult(account_id, count, False, expected_seq, entry.id, problem)
        prev_hash = entry.hash
        expected_seq += 1
    head = await repo.head(session, account_id)
    if head is not None and (head.seq != expected_seq - 1 or head.hash != prev_hash):
        return VerifyResult(
            account_id,
            count,
            False,
            expected_seq,
            None,
            f"entries after {expected_seq - 1} are missing (the chain's head is at {head.seq})",
        )
    return VerifyResult(account_id, count, True)


async def list_entries(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    workflow_id: uuid.UUID | None,
    action: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    before_seq: int | None,
    limit: int,
) -> Sequence[AuditEntry]:
    """The account's entries, newest first, filtered."""
    return await repo.list_entries(
        session,
        account_id,
        workflow_id=workflow_id,
        action=action,
        since=since,
        until=until,
        before_seq=before_seq,
        limit=limit,
    )
