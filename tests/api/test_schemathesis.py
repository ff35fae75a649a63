"""Property-based conformance: requests generated from ``/openapi.json`` are sent to the real
application (in process) with an admin key of a fresh account, and every answer must be no
server error and match the document — its status codes, content types and schemas.

Seeded (``derandomize``) and bounded (``MAX_EXAMPLES`` per operation), so a run is
reproducible and takes about a minute. It runs on SQLite only: on PostgreSQL it takes as long
again, and what it checks (the document against the answers) does not depend on the database,
whose behaviour the rest of the suite covers on both.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from revflow.app import create_app
from revflow.audit.service import Actor
from revflow.auth import service as auth_service
from revflow.config import Settings
from revflow.db import Database
from tests.support.databases import DatabaseFactory

MAX_EXAMPLES = 8
REQUEST_TIMEOUT_S = 60
OPERATOR_TOKEN = "operator-secret"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


async def _admin_key(url: str) -> str:
    db = Database(url, pool_size=1)
    try:
        async with db.session(write=True) as session:
            _account, clear = await auth_service.create_account(
                session, "schemathesis", Actor(user="test"), dt.datetime.now(dt.UTC)
            )
            await session.commit()
    finally:
        await db.dispose()
    return clear


@pytest.fixture
def api(database_factories: dict[str, DatabaseFactory]) -> Any:
    """The document of an application on a SQLite database of its own, with an admin key."""
    database_url = database_factories["sqlite"].create()
    app = create_app(
        Settings(database_url=database_url, admin_token=OPERATOR_TOKEN, log_json=False)
    )
    app.state.admin_key = asyncio.run(_admin_key(database_url))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_conforms_to_the_document(case: Any) -> None:
    admin_key = case.operation.app.state.admin_key
    token = OPERATOR_TOKEN if case.path == "/api/v1/accounts" else admin_key
    # A hang still fails; a slow answer on a loaded machine is not a wrong one.
    case.call_and_validate(
        headers={"Authorization": f"Bearer {token}"}, checks=CHECKS, timeout=REQUEST_TIMEOUT_S
    )
