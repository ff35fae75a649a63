"""Request dependencies shared by every route: the database, sessions and the caller."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from revflow.auth.service import KeyCache, Principal, authenticate
from revflow.config import Settings
from revflow.db import Database, ReadOnlyViolation, enter_account, mark_read_only
from revflow.engine.clock import Clock
from revflow.errors import (
    ConcurrentChange,
    DatabaseBusy,
    Forbidden,
    RateLimited,
    ServerBusy,
    Unauthorized,
)
from revflow.kit.bearer import bearer_token
from revflow.kit.ratelimit import TokenBuckets
from revflow.problems import raises

READ_METHODS = ("GET", "HEAD", "OPTIONS")

_Fn = TypeVar("_Fn", bound=Callable[..., Any])
_READING_ROUTES: set[Callable[..., Any]] = set()

# Documents the scheme (the Authorize button of /docs); the header itself is read below, so
# that a missing or malformed one answers revflow's own 401 problem.
api_key = HTTPBearer(
    scheme_name="ApiKey",
    description="An API key of the account: `Authorization: Bearer rf_...`",
    auto_error=False,
)


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


def reads_only(route: _Fn) -> _Fn:
    """Mark a route that is asked with a POST (its input does not fit a query) but changes
    nothing: its request opens no write transaction, and it takes a ``ReadSession``."""
    _READING_ROUTES.add(route)
    return route


def is_reading(endpoint: Callable[..., Any]) -> bool:
    """Whether ``endpoint`` is a route marked with :func:`reads_only`."""
    return endpoint in _READING_ROUTES


def _may_write(request: Request) -> bool:
    if request.method in READ_METHODS:
        return False
    endpoint = getattr(request.scope.get("route"), "endpoint", None)
    return endpoint is None or not is_reading(endpoint)


@raises(DatabaseBusy, ServerBusy)
async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's one session: authentication and the work share it. Requests that may
    change something open a write transaction (``BEGIN IMMEDIATE`` on SQLite). Once the key
    names the account, ``current_principal`` holds the session to it (``enter_account``)."""
    db: Database = request.app.state.db
    async with db.session(write=_may_write(request)) as session:
        yield session


# What a request costs in tokens of its account's rate limit, when it is not one: by endpoint
# (an enrollment costs one per contact).
RequestCost = Callable[[Request], Awaitable[int]]
_COSTS: dict[object, RequestCost] = {}


def costs(cost: RequestCost) -> Callable[[_Fn], _Fn]:
    """Declare what a route's request costs in rate-limit tokens (default: one)."""

    def declare(fn: _Fn) -> _Fn:
        _COSTS[fn] = cost
        return fn

    return declare


async def _rate_limit(request: Request, principal: Principal) -> None:
    """Pay for the request from the account's token bucket, or refuse it (429)."""
    buckets: TokenBuckets | None = request.app.state.rate_limiter
    if buckets is None:
        return
    cost_of = _COSTS.get(request.scope.get("endpoint"))
    cost = await cost_of(request) if cost_of is not None else 1
    clock: Clock = request.app.state.clock
    decision = buckets.take(principal.account_id, cost, clock.now().timestamp())
    request.state.rate_limit = decision  # the RateLimit-* header fields are added on the way out
    if not decision.allowed:
        raise RateLimited(
            f"This request costs {cost} of the account's {decision.limit} requests per "
            f"{decision.window_seconds} s; retry in {decision.retry_after_seconds} s",
            retry_after=decision.retry_after_seconds,
        )


@raises(Unauthorized, RateLimited)
async def current_principal(
    request: Request,
    session: Annotated[AsyncSession, Depends(request_session)],
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(api_key)],
) -> Principal:
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise Unauthorized("Send Authorization: Bearer <api key>")
    # Finding the key by its hash runs before the account is known: one of the documented
    # cross-account paths (README, "PostgreSQL"). From here on the session is the
    # account's alone (on PostgreSQL, under row-level security).
    cache: KeyCache | None = getattr(request.app.state, "key_cache", None)
    principal = await authenticate(session, token, cache)
    if principal is None:
        raise Unauthorized("The API key is unknown or revoked")
    await enter_account(session, principal.account_id)
    request.state.principal = principal
    await _rate_limit(request, principal)
    return principal


def _require(role: str) -> object:
    async def dependency(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        if not principal.can(role):
            raise Forbidden(f"This needs the {role} role; your key has {principal.role}")
        return principal

    dependency.__name__ = f"require_{role}"
    return raises(Forbidden)(dependency)


# Every key may read: a viewer's routes need the principal, and no check of its role.
Viewer = Annotated[Principal, Depends(current_principal)]
Editor = Annotated[Principal, Depends(_require("editor"))]
Admin = Annotated[Principal, Depends(_require("admin"))]


async def read_session(
    session: Annotated[AsyncSession, Depends(request_session)],
) -> AsyncSession:
    """The session of a read route: it refuses every write (``ReadOnlyViolation``)."""
    mark_read_only(session)
    return session


@raises(ConcurrentChange)
async def write_session(
    request: Request, session: Annotated[AsyncSession, Depends(request_session)]
) -> AsyncSession:
    """The session of a changing route: a write transaction (``BEGIN IMMEDIATE`` on SQLite)."""
    if not _may_write(request):
        raise ReadOnlyViolation(f"{request.method} {request.url.path} asks for a write session")
    return session


# Distinct dependencies: a read route's session cannot write, a write route's is a write
# transaction; both share the one session that authenticated the request.
ReadSession = Annotated[AsyncSession, Depends(read_session)]
WriteSession = Annotated[AsyncSession, Depends(write_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Now = Annotated[dt.datetime, Depends(now)]
