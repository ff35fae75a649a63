"""Accounts (operator token) and API keys (admins)."""

from __future__ import annotations

import hmac
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, StringConstraints

from revflow.audit.service import Actor
from revflow.auth import service
from revflow.deps import Admin, Now, ReadSession, SettingsDep, WriteSession
from revflow.errors import NotFound, Unauthorized
from revflow.kit.bearer import bearer_token
from revflow.kit.ids import parse_id
from revflow.kit.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    time_id_after,
    time_id_next,
)
from revflow.kit.transactions import commit
from revflow.models import ApiKey
from revflow.problems import raises

router = APIRouter(prefix="/api/v1", tags=["accounts"])

Text200 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Role = Literal["viewer", "editor", "admin"]


class AccountCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text200


class AccountOut(BaseModel):
    id: str
    name: str


class AccountCreated(BaseModel):
    account: AccountOut
    api_key: str


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: Text200
    role: Role


class KeyOut(BaseModel):
    id: str
    user: str
    role: Role
    prefix: str
    created_at: str
    revoked_at: str | None


class KeyCreated(BaseModel):
    id: str
    user: str
    role: Role
    api_key: str


class KeyList(BaseModel):
    items: list[KeyOut]
    next_cursor: str | None


def key_out(key: ApiKey) -> dict[str, Any]:
    return {
        "id": str(key.id),
        "user": key.user,
        "role": key.role,
        "prefix": key.prefix,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


# Documents the scheme; the header is parsed by ``bearer_token`` like API keys.
operator_token = HTTPBearer(
    scheme_name="OperatorToken",
    description="The operator token (`REVFLOW_ADMIN_TOKEN`): `Authorization: Bearer ...`",
    auto_error=False,
)


@raises(Unauthorized)
async def require_operator(
    request: Request,
    settings: SettingsDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(operator_token)],
) -> None:
    """The operator token check; a dependency, so that its 401 comes before the body's 422."""
    token = bearer_token(request.headers.get("authorization"))
    expected = settings.admin_token
    if not expected or token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized("Creating accounts needs the operator token (REVFLOW_ADMIN_TOKEN)")


@router.post(
    "/accounts",
    status_code=201,
    response_model=AccountCreated,
    dependencies=[Depends(require_operator)],
)
async def create_account(body: AccountCreate, session: WriteSession, now: Now) -> dict[str, Any]:
    account, clear = await service.create_account(session, body.name, Actor(user="operator"), now)
    await commit(session)
    return {"account": {"id": str(account.id), "name": account.name}, "api_key": clear}


@router.post("/api-keys", status_code=201, response_model=KeyCreated)
async def create_key(
    body: KeyCreate, principal: Admin, session: WriteSession, now: Now
) -> dict[str, Any]:
    key, clear = await service.create_key(
        session,
        principal.account_id,
        user=body.user,
        role=body.role,
        actor=principal.actor,
        now=now,
    )
    await commit(session)
    return {"id": str(key.id), "user": key.user, "role": key.role, "api_key": clear}


@router.get("/api-keys", response_model=KeyList)
async def list_keys(
    principal: Admin,
    session: ReadSession,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> dict[str, Any]:
    # The list's name is part of the cursor's filters so that another list's cursor is refused.
    after = time_id_after(cursor, {"list": "api_keys"})
    keys = await service.list_keys(
        session,
        principal.account_id,
        after=after,
        limit=limit + 1,
    )
    next_cursor = time_id_next(keys, limit, {"list": "api_keys"})
    return {"items": [key_out(k) for k in keys[:limit]], "next_cursor": next_cursor}


@router.delete("/api-keys/{key_id}", response_model=KeyOut)
async def revoke_key(
    request: Request, key_id: str, principal: Admin, session: WriteSession, now: Now
) -> dict[str, Any]:
    parsed = parse_id(key_id)
    if parsed is None:
        raise NotFound("No such API key")
    key = await service.revoke_key(session, principal.account_id, parsed, principal.actor, now)
    await commit(session)
    # Forgotten once committed, so no request of this process can put it back in between;
    # other processes drop it when their entry expires (README, "Decisions").
    cache: service.KeyCache | None = getattr(request.app.state, "key_cache", None)
    if cache is not None:
        cache.forget(key.key_hash)
    return key_out(key)
