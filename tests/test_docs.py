"""``/docs`` and ``/redoc`` work without internet; ``GET /`` leads somewhere; every request is
logged without personal data."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from revflow.app import DOCS_ASSETS, HOME, create_app
from revflow.config import Settings
from tests.support.tenants import Tenant


@pytest.fixture
async def offline(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose database is never touched."""
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/unused.db"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as client:
        yield client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_documentation_pages_load_only_local_assets(
    offline: httpx.AsyncClient, page: str
) -> None:
    response = await offline.get(page)
    assert response.status_code == 200, response.text
    html = response.text
    assert not re.search(r"https?://", html), html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, html
    for asset in assets:
        loaded = await offline.get(asset)
        assert loaded.status_code == 200, asset
        assert len(loaded.content) > 0, asset
    assert "/openapi.json" in html


async def test_swagger_ui_offers_the_bearer_authorization(offline: httpx.AsyncClient) -> None:
    document = (await offline.get("/openapi.json")).json()
    scheme = document["components"]["securitySchemes"]["ApiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


def test_the_vendored_assets_ship_with_their_licences() -> None:
    names = {p.name for p in DOCS_ASSETS.iterdir()}
    assert {"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"} <= names
    assert {"swagger-ui.LICENSE", "swagger-ui.NOTICE", "redoc.LICENSE"} <= names


async def test_the_root_redirects_to_the_home_page(offline: httpx.AsyncClient) -> None:
    response = await offline.get("/")
    assert response.status_code in (302, 307), response.text
    assert response.headers["location"] == HOME == "/ui/workflows"
    # Signed out, the console sends the browser on to its sign-in page, which answers.
    console = await offline.get(HOME, follow_redirects=True)
    assert console.status_code == 200 and "API key" in console.text


async def test_each_request_is_logged_without_personal_data(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    external_id = "ada@example.com"
    with capture_logs() as logs:
        upsert = await tenant.request(
            "PUT", f"/api/v1/contacts/by-external-id/{external_id}", json={"email": external_id}
        )
        assert upsert.status_code == 201, upsert.text
        await client.get("/api/v1/workflows")
    requests = [entry for entry in logs if entry["event"] == "request"]
    assert len(requests) == 2, logs
    first, second = requests
    assert first["log_level"] == "info"
    assert first["method"] == "PUT"
    assert first["path"] == "/api/v1/contacts/by-external-id/{external_id}"
    assert first["status"] == 201
    assert first["ms"] >= 0
    assert first["account"] == tenant.account_id
    assert (second["status"], second["account"]) == (401, None)
    assert external_id not in repr(requests)
