"""Request dependencies shared by every route: the database, sessions and the caller."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.auth.service import Principal, authenticate
from revflow.config import Settings
from revflow.db import Database
from revflow.engine.clock import Clock
from revflow.errors import Forbidden, Unauthorized


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


async def now(request: Request) -> dt.datetime:
    """The request's "now", from the application's clock (injectable in tests)."""
    clock: Clock = request.app.state.clock
    return clock.now()


def wake_worker(request: Request) -> None:
    """Tell an in-process worker that work is due now (no-op without one)."""
    worker = getattr(request.app.state, "worker", None)
    if worker is not None:
        worker.wake()


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def request_session(
    request: Request, db: Annotated[Database, Depends(get_db)]
) -> AsyncIterator[AsyncSession]:
    """The request's one session: authentication and the work share it. Requests that may
    change something open a write transaction (``BEGIN IMMEDIATE`` on SQLite)."""
    write = request.method not in ("GET", "HEAD", "OPTIONS")
    async with db.session(write=write) as session:
        yield session


async def current_principal(
    request: Request, session: Annotated[AsyncSession, Depends(request_session)]
) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send Authorization: Bearer <api key>")
    principal = await authenticate(session, token.strip())
    if principal is None:
        raise Unauthorized("The API key is unknown or revoked")
    request.state.principal = principal
    return principal


def _require(role: str) -> object:
    async def dependency(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        if not principal.can(role):
            raise Forbidden(f"This needs the {role} role; your key has {principal.role}")
        return principal

    dependency.__name__ = f"require_{role}"
    return dependency


Viewer = Annotated[Principal, Depends(_require("viewer"))]
Editor = Annotated[Principal, Depends(_require("editor"))]
Admin = Annotated[Principal, Depends(_require("admin"))]
ReadSession = Annotated[AsyncSession, Depends(request_session)]
WriteSession = Annotated[AsyncSession, Depends(request_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Now = Annotated[dt.datetime, Depends(now)]
