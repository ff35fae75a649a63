"""Accounts of the tests: an account, its admin key and a client that sends it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import httpx

from revflow.audit.service import Actor
from revflow.auth import service as auth_service
from revflow.db import Database


@dataclass
class Tenant:
    """An account and an admin key, with helpers for authenticated calls."""

    account_id: str
    key: str
    client: httpx.AsyncClient

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def request(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        headers = {**self.headers, **dict(kwargs.pop("headers", {}) or {})}  # type: ignore[call-overload]
        return await self.client.request(method, url, headers=headers, **kwargs)  # type: ignore[arg-type]

    async def key_for(self, role: str, user: str = "someone@example.com") -> str:
        response = await self.request("POST", "/api/v1/api-keys", json={"user": user, "role": role})
        assert response.status_code == 201, response.text
        key: str = response.json()["api_key"]
        return key


async def make_account(db: Database, name: str = "acme") -> tuple[str, str]:
    """A new account, made in-process: its id and its admin key."""
    async with db.session(write=True) as session:
        account, clear = await auth_service.create_account(
            session, name, Actor(user="test"), dt.datetime.now(dt.UTC)
        )
        await session.commit()
    return str(account.id), clear


async def make_tenant(db: Database, client: httpx.AsyncClient, name: str = "acme") -> Tenant:
    account_id, key = await make_account(db, name)
    return Tenant(account_id, key, client)
