"""``GET /api/v1/audit``: the account's audit entries, newest first."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from revflow.audit import service
from revflow.deps import ReadSession, Viewer
from revflow.kit.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    cursor_int,
    decode_cursor,
    encode_cursor,
)
from revflow.kit.times import UTCInstant
from revflow.models import AuditEntry

router = APIRouter(prefix="/api/v1", tags=["audit"])


class AuditOut(BaseModel):
    id: uuid.UUID
    seq: int
    at: dt.datetime
    actor: dict[str, Any]
    action: str
    workflow_id: uuid.UUID | None
    object_type: str
    object_id: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditList(BaseModel):
    items: list[AuditOut]
    next_cursor: str | None


def entry_out(entry: AuditEntry) -> dict[str, Any]:
    return AuditOut(
        id=entry.id,
        seq=entry.seq,
        at=entry.at,
        actor={
            "user": entry.actor_user,
            "key_id": str(entry.actor_key_id) if entry.actor_key_id else None,
        },
        action=entry.action,
        workflow_id=entry.workflow_id,
        object_type=entry.object_type,
        object_id=entry.object_id,
        details=entry.details,
        prev_hash=entry.prev_hash,
        hash=entry.hash,
    ).model_dump(mode="json")


@router.get("/audit", response_model=AuditList)
async def list_audit(
    principal: Viewer,
    session: ReadSession,
    workflow_id: uuid.UUID | None = None,
    action: str | None = None,
    since: UTCInstant | None = None,
    until: UTCInstant | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> dict[str, Any]:
    filters = {
        "list": "audit",
        "workflow_id": str(workflow_id) if workflow_id else None,
        "action": action,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
    }
    after = decode_cursor(cursor, filters, 1)
    rows = await service.list_entries(
        session,
        principal.account_id,
        workflow_id=workflow_id,
        action=action,
        since=since,
        until=until,
        before_seq=cursor_int(after[0]) if after is not None else None,
        limit=limit + 1,
    )
    next_cursor = encode_cursor([rows[limit - 1].seq], filters) if len(rows) > limit else None
    return {"items": [entry_out(e) for e in rows[:limit]], "next_cursor": next_cursor}
