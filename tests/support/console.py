"""Console sessions over the in-process app: sign in through the form, keep the cookie, send
forms with the CSRF token and the editor's JSON calls with its header."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found, "the page carries no CSRF token"
    return found.group(1)


@dataclass
class Console:
    """A running ``revflow serve``, an account on it and an API client with its admin key."""

    url: str
    key: str
    account_id: str
    api: httpx.Client

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.api.request(method, path, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.text}"
        return response.json() if response.content else None


@dataclass
class Browserless:
    """A console session over the in-process app (httpx keeps the cookies)."""

    client: httpx.AsyncClient
    csrf: str

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(url, **kwargs)

    async def post(self, url: str, data: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return await self.client.post(url, data={"csrf_token": self.csrf, **(data or {})}, **kw)

    async def send_json(self, method: str, url: str, body: Any) -> httpx.Response:
        headers = {"X-CSRF-Token": self.csrf, "Accept": "application/json"}
        return await self.client.request(method, url, json=body, headers=headers)


async def console_session(app: Any, key: str) -> Browserless:
    """Sign in with ``key`` through the form; the session's CSRF token from the next page."""
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://revflow.test")
    form = await client.get("/ui/sign-in")
    token = re.search(r'name="sign_in_token" value="([^"]+)"', form.text)
    assert token, form.text
    signed = await client.post(
        "/ui/sign-in", data={"api_key": key, "sign_in_token": token.group(1), "next": ""}
    )
    assert signed.status_code == 303, signed.text
    page = await client.get("/ui/workflows")
    assert page.status_code == 200, page.text
    return Browserless(client, csrf_of(page.text))
