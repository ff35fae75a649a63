"""Accounts and API keys. Keys are stored as SHA-256 digests; the clear key is shown once."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.audit import service as audit
from revflow.audit.service import Actor
from revflow.errors import NotFound
from revflow.models import Account, ApiKey, AuditHead

KEY_PREFIX = "rf_"
ROLE_RANK = {"viewer": 0, "editor": 1, "admin": 2}


@dataclass(frozen=True)
class Principal:
    """The caller, as named by its API key."""

    account_id: uuid.UUID
    key_id: uuid.UUID
    user: str
    role: str

    @property
    def actor(self) -> Actor:
        return Actor(user=self.user, key_id=self.key_id)

    def can(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def hash_key(clear: str) -> bytes:
    return hashlib.sha256(clear.encode()).digest()


def _new_clear_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def create_account(
    session: AsyncSession, name: str, actor: Actor, now: dt.datetime
) -> tuple[Account, str]:
    """A new account with an admin key for ``actor.user``; answers the account and the key."""
    account = Account(name=name, created_at=now)
    session.add(account)
    await session.flush()
    session.add(AuditHead(account_id=account.id, seq=0, hash=""))
    await session.flush()
    await audit.record(
        session,
        account.id,
        actor,
        "account.created",
        object_type="account",
        object_id=account.id,
        details={"name": name},
        now=now,
    )
    _key, clear = await create_key(
        session, account.id, user="admin", role="admin", actor=actor, now=now
    )
    return account, clear


async def create_key(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    user: str,
    role: str,
    actor: Actor,
    now: dt.datetime,
) -> tuple[ApiKey, str]:
    clear = _new_clear_key()
    key = ApiKey(
        account_id=account_id,
        user=user,
        role=role,
        key_hash=hash_key(clear),
        prefix=clear[:10],
        created_at=now,
    )
    session.add(key)
    await session.flush()
    await audit.record(
        session,
        account_id,
        actor,
        "api_key.created",
        object_type="api_key",
        object_id=key.id,
        details={"user": user, "role": role},
        now=now,
    )
    return key, clear


async def list_keys(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    after: tuple[dt.datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[ApiKey]:
    query = select(ApiKey).where(ApiKey.account_id == account_id)
    if after is not None:
        query = query.where(tuple_(ApiKey.created_at, ApiKey.id) > tuple_(*after))
    query = query.order_by(ApiKey.created_at, ApiKey.id).limit(limit)
    return (await session.scalars(query)).all()


async def revoke_key(
    session: AsyncSession, account_id: uuid.UUID, key_id: uuid.UUID, actor: Actor, now: dt.datetime
) -> ApiKey:
    key = await session.scalar(
        select(ApiKey).where(ApiKey.account_id == account_id, ApiKey.id == key_id)
    )
    if key is None:
        raise NotFound("No such API key")
    if key.revoked_at is None:
        key.revoked_at = now
        await audit.record(
            session,
            account_id,
            actor,
            "api_key.revoked",
            object_type="api_key",
            object_id=key.id,
            details={"user": key.user},
            now=now,
        )
    return key


class KeyCache:
    """The principals of the active keys one process has recently looked up, by key hash.

    A key's account, user and role never change; only revocation ends it. An entry lives
    ``ttl_seconds``, so a key revoked by another process stops working here within that time;
    the process that revokes a key forgets it at once (:meth:`forget`). Unknown and revoked
    keys are never kept: each of their requests reads the table. At most ``max_keys`` entries,
    the oldest dropped first.
    """

    def __init__(
        self,
        ttl_seconds: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_keys = max_keys
        self._clock = clock
        self._entries: dict[bytes, tuple[float, Principal]] = {}

    def get(self, digest: bytes) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        expires, principal = entry
        if self._clock() >= expires:
            del self._entries[digest]
            return None
        return principal

    def put(self, digest: bytes, principal: Principal) -> None:
        if self.ttl_seconds <= 0:
            return
        self._entries.pop(digest, None)
        while len(self._entries) >= self.max_keys:
            del self._entries[next(iter(self._entries))]
        self._entries[digest] = (self._clock() + self.ttl_seconds, principal)

    def forget(self, digest: bytes) -> None:
        self._entries.pop(digest, None)

    def __len__(self) -> int:
        return len(self._entries)


async def authenticate(
    session: AsyncSession, clear: str, cache: KeyCache | None = None
) -> Principal | None:
    """The principal of an active key, or ``None``; from ``cache`` when it holds the key."""
    digest = hash_key(clear)
    if cache is not None and (cached := cache.get(digest)) is not None:
        return cached
    row = (
        await session.execute(
            select(ApiKey.id, ApiKey.account_id, ApiKey.user, ApiKey.role).where(
                ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)
            )
        )
    ).first()
    if row is None:
        return None
    principal = Principal(account_id=row.account_id, key_id=row.id, user=row.user, role=row.role)
    if cache is not None:
        cache.put(digest, principal)
    return principal
