"""Answering creating POSTs: store the answer for idempotent retries, commit, respond."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.kit.idempotency import Claim
from revflow.kit.transactions import commit


async def committed(
    session: AsyncSession,
    claim: Claim | None,
    body: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    headers = headers or {}
    if claim is not None:
        await claim.save(session, status, body, headers)
    await commit(session)
    return JSONResponse(body, status_code=status, headers=headers)
