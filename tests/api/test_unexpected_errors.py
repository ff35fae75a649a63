"""An unexpected error answers a 500 problem document and leaves the keep-alive connection
usable; a path or query that is not UTF-8 is refused, never decoded lossily."""

from __future__ import annotations

import asyncio
import http.client

import uvicorn

from revflow.app import create_app
from revflow.config import Settings
from revflow.db import Database
from tests.support.processes import free_port
from tests.support.tenants import Tenant


async def test_after_a_500_the_next_request_on_the_same_connection_is_answered(
    settings: Settings, db: Database
) -> None:
    app = create_app(settings, db)

    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/test-only/broken", broken)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(1000):
            if server.started:
                break
            await asyncio.sleep(0.02)

        def two_requests() -> list[tuple[int, str, str | None]]:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            answers = []
            for path in ("/test-only/broken", "/healthz"):
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read().decode()
                answers.append((response.status, body, response.getheader("content-type")))
            connection.close()
            return answers

        (first, first_body, first_type), (second, second_body, _) = await asyncio.to_thread(
            two_requests
        )
        assert first == 500 and first_type == "application/problem+json"
        assert '"code":"internal_error"' in first_body and "a bug" not in first_body
        assert (second, second_body) == (200, '{"status":"ok"}')
    finally:
        server.should_exit = True
        await serving


async def test_a_path_or_query_that_is_not_utf8_is_refused(tenant: Tenant) -> None:
    for raw in ("%ff%fe", "%c3%28", "ok%ff"):
        response = await tenant.request("PUT", f"/api/v1/contacts/by-external-id/{raw}", json={})
        assert response.status_code == 400, (raw, response.text)
        assert response.json()["code"] == "bad_request"
        assert response.headers["content-type"] == "application/problem+json"
    query = await tenant.request("GET", "/api/v1/contacts?email=%ff")
    assert query.status_code == 400
    listing = await tenant.request("GET", "/api/v1/contacts", params={"limit": 200})
    assert listing.json()["items"] == []  # nothing was upserted
    fine = await tenant.request("PUT", "/api/v1/contacts/by-external-id/caf%C3%A9", json={})
    assert fine.status_code == 201 and fine.json()["external_id"] == "café"


async def test_a_nul_in_an_external_id_or_a_query_value_is_422_naming_it(tenant: Tenant) -> None:
    response = await tenant.request("PUT", "/api/v1/contacts/by-external-id/a%00b", json={})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == "/external_id"
    query = await tenant.request("GET", "/api/v1/audit", params={"action": "a\x00b"})
    assert query.status_code == 422, query.text
    assert query.json()["errors"][0]["pointer"] == "/action"
