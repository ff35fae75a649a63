"""``Idempotency-Key`` for creating POSTs.

The key is claimed at the start of the request's transaction (a row insert inside a savepoint):
a concurrent request with the same key waits on that row and then replays the stored answer;
a failed request rolls its claim back with everything else, so a retry runs afresh.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.errors import IdempotencyKeyReused, ValidationFailed
from revflow.kit.jsonutil import canonical, sha256_hex
from revflow.models import IdempotencyRecord
from revflow.problems import raises

HEADER = "idempotency-key"
_PENDING = 0


@dataclass
class Claim:
    """A claimed key; ``replay`` is set when an earlier request already answered it."""

    account_id: uuid.UUID
    scope: str
    key: str
    replay: JSONResponse | None = None

    async def save(
        self, session: AsyncSession, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        await session.execute(
            update(IdempotencyRecord)
            .where(
                IdempotencyRecord.account_id == self.account_id,
                IdempotencyRecord.scope == self.scope,
                IdempotencyRecord.key == self.key,
            )
            .values(status_code=status, response=body, headers=headers or {})
        )


async def _request_hash(request: Request) -> str:
    raw = await request.body()
    try:
        return sha256_hex(canonical(json.loads(raw))) if raw else sha256_hex(b"")
    except ValueError:
        return sha256_hex(raw)


def _replay(record: IdempotencyRecord, request_hash: str) -> JSONResponse:
    if record.request_hash != request_hash:
        raise IdempotencyKeyReused(
            [
                {
                    "pointer": "",
                    "parameter": "Idempotency-Key",
                    "in": "header",
                    "message": "this Idempotency-Key was already used with another body",
                }
            ]
        )
    headers = dict(record.headers or {})
    headers["Idempotent-Replayed"] = "true"
    return JSONResponse(record.response, status_code=record.status_code, headers=headers)


@raises(IdempotencyKeyReused)
async def key_header(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="1 to 200 characters. A retry with the same key and body answers the "
            "first answer (with `Idempotent-Replayed: true`) and does nothing again; the same "
            "key with another body answers 422 `idempotency_key_reused`.",
            json_schema_extra={"minLength": 1, "maxLength": 200},
        ),
    ] = None,
) -> str | None:
    """The ``Idempotency-Key`` header of a route that claims it (documents it; ``claim`` reads
    it)."""
    return key


async def claim(session: AsyncSession, request: Request, account_id: uuid.UUID) -> Claim | None:
    """Claim the request's ``Idempotency-Key`` (``None`` without one)."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 200:
        raise ValidationFailed(
            [
                {
                    "pointer": "",
                    "parameter": "Idempotency-Key",
                    "in": "header",
                    "message": "Idempotency-Key must be 1 to 200 characters",
                }
            ]
        )
    scope = f"{request.method} {request.url.path}"
    request_hash = await _request_hash(request)
    where = (
        IdempotencyRecord.account_id == account_id,
        IdempotencyRecord.scope == scope,
        IdempotencyRecord.key == key,
    )
    existing = await session.scalar(select(IdempotencyRecord).where(*where))
    if existing is not None:
        return Claim(account_id, scope, key, _replay(existing, request_hash))
    try:
        async with session.begin_nested():
            session.add(
                IdempotencyRecord(
                    account_id=account_id,
                    scope=scope,
                    key=key,
                    request_hash=request_hash,
                    status_code=_PENDING,
                    response=None,
                )
            )
    except IntegrityError:
        # Another request with this key committed while we waited on its row.
        existing = await session.scalar(
            select(IdempotencyRecord).where(*where).execution_options(populate_existing=True)
        )
        if existing is None:  # pragma: no cover - the winner rolled back in between
            raise
        return Claim(account_id, scope, key, _replay(existing, request_hash))
    return Claim(account_id, scope, key)
