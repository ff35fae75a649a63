"""Applications made in one process share their routes (built once), and nothing else: each
answers from its own database, settings and console."""

from __future__ import annotations

import httpx

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from tests.support.tenants import make_tenant
from tests.support.workflows import create_workflow


async def test_two_applications_share_routes_and_keep_their_own_state(
    settings: Settings, fresh_database_url: str
) -> None:
    other_settings = Settings(
        database_url=fresh_database_url, admin_token="other-secret", log_json=False
    )
    first_db = Database(settings.database_url, pool_size=2)
    second_db = Database(fresh_database_url, pool_size=2)
    first, second = create_app(settings, first_db), create_app(other_settings, second_db)
    # The same route objects: built once, not again for the second application.
    api = [r for r in first.routes if getattr(r, "path", "").startswith("/api/v1/workflows")]
    assert api and all(any(r is s for s in second.routes) for r in api)
    pages = [r for r in first.routes if getattr(r, "path", "").startswith("/ui/workflows")]
    assert pages and all(any(r is s for s in second.routes) for r in pages)
    try:
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=first), base_url="http://a") as a,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=second), base_url="http://b") as b,
        ):
            one = await make_tenant(first_db, a, "first")
            two = await make_tenant(second_db, b, "second")
            made = await create_workflow(one, "only in the first database")
            # Each application reads its own database through the shared routes.
            listed_one = (await one.request("GET", "/api/v1/workflows")).json()["items"]
            listed_two = (await two.request("GET", "/api/v1/workflows")).json()["items"]
            assert [w["id"] for w in listed_one] == [made["id"]]
            assert listed_two == []
            # A key of one database is unknown to the other application.
            crossed = await b.get("/api/v1/workflows", headers=one.headers)
            assert crossed.status_code == 401
            # And each keeps its own settings: the operator token is the second's only.
            operator = {"Authorization": "Bearer other-secret"}
            refused = await a.post("/api/v1/accounts", headers=operator, json={"name": "x"})
            created = await b.post("/api/v1/accounts", headers=operator, json={"name": "x"})
            assert (refused.status_code, created.status_code) == (401, 201)
    finally:
        await first_db.dispose()
        await second_db.dispose()
