"""Read sessions refuse writes; write sessions are write transactions (both databases)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import DBAPIError

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database, JSONType, ReadOnlyViolation, mark_read_only
from revflow.deps import is_reading, read_session, request_session, write_session
from revflow.models import Account


async def test_a_read_session_refuses_every_kind_of_write(db: Database) -> None:
    async with db.session() as session:
        mark_read_only(session)
        with pytest.raises(ReadOnlyViolation):
            await session.execute(insert(Account).values(name="sneaky"))
        with pytest.raises(ReadOnlyViolation):
            await session.execute(update(Account).values(name="renamed"))
        session.add(Account(name="added"))
        with pytest.raises(ReadOnlyViolation):
            await session.flush()


async def test_an_ordinary_session_writes(db: Database) -> None:
    async with db.session(write=True) as session:
        session.add(Account(name="written"))
        await session.flush()
        await session.rollback()


def _calls(dependant: Dependant) -> set[object]:
    found = {dependant.call}
    for sub in dependant.dependencies:
        found |= _calls(sub)
    return found


def _api_routes(routes: Iterable[object]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route


def test_read_routes_take_read_sessions_and_changing_routes_write_sessions(
    settings: Settings,
) -> None:
    """Every GET route that touches the database holds a ReadSession, and so does every route
    marked ``reads_only`` (a read asked with a POST); every other one a WriteSession — so a
    read route cannot write by mistake."""
    checked = 0
    for route in _api_routes(create_app(settings).routes):
        calls = _calls(route.dependant)
        if request_session not in calls:
            continue
        checked += 1
        reads = route.methods <= {"GET", "HEAD"} or is_reading(route.endpoint)
        wanted, unwanted = (read_session, write_session) if reads else (write_session, read_session)
        assert wanted in calls, f"{route.methods} {route.path} lacks {wanted.__name__}"
        assert unwanted not in calls, f"{route.methods} {route.path} takes {unwanted.__name__}"
    assert checked > 30


async def test_jsonb_parameters_keep_their_values_and_refuse_nan(
    backend: str, db: Database
) -> None:
    """PostgreSQL's JSONB values are encoded and decoded by pydantic-core, not the ``json``
    module: the same values come back, however deep, and a number that is not JSON is still
    refused by the database."""
    if backend != "postgresql":
        pytest.skip("the JSONB encoder is PostgreSQL's")
    value = {"é": ["ü", 1.5, None, True, {"k": "\u2028", "n": 2**60}], "": []}
    async with db.session() as session:
        assert await session.scalar(select(bindparam("v", value, type_=JSONType))) == value
        # Read back by pydantic-core's parser, or the standard one where it stops (depth).
        deep: list[object] = []
        for _ in range(300):
            deep = [deep]
        assert await session.scalar(select(bindparam("v", deep, type_=JSONType))) == deep
        with pytest.raises(DBAPIError):
            await session.scalar(select(bindparam("v", {"x": float("nan")}, type_=JSONType)))
