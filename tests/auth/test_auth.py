"""API keys and accounts: a revoked key is refused, and only the operator token makes accounts.

That every route needs a key, and which role, is walked over every route in tests/api.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from revflow.app import create_app
from revflow.auth.service import KeyCache, Principal
from revflow.config import Settings
from revflow.db import Database
from tests.support.problems import assert_problem
from tests.support.routes import API
from tests.support.tenants import Tenant


async def test_revoked_key_gets_401(client: httpx.AsyncClient, tenant: Tenant) -> None:
    key = await tenant.key_for("editor", "leaver@a.example")
    headers = {"Authorization": f"Bearer {key}"}
    assert (await client.get(f"{API}/workflows", headers=headers)).status_code == 200
    listed = (await tenant.request("GET", f"{API}/api-keys")).json()["items"]
    key_id = next(k["id"] for k in listed if k["user"] == "leaver@a.example")
    revoked = await tenant.request("DELETE", f"{API}/api-keys/{key_id}")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    response = await client.get(f"{API}/workflows", headers=headers)
    assert_problem(response, 401, "unauthorized", "a revoked key")
    response = await client.post(f"{API}/workflows", json={"name": "x"}, headers=headers)
    assert_problem(response, 401, "unauthorized", "a revoked key writing")
    # Revoking it again changes nothing; the admin key still works.
    again = await tenant.request("DELETE", f"{API}/api-keys/{key_id}")
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]


async def test_a_key_revoking_itself_is_locked_out(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    admin2 = await tenant.key_for("admin", "second-admin@a.example")
    headers = {"Authorization": f"Bearer {admin2}"}
    listed = (await tenant.request("GET", f"{API}/api-keys")).json()["items"]
    own_id = next(k["id"] for k in listed if k["user"] == "second-admin@a.example")
    assert (await client.delete(f"{API}/api-keys/{own_id}", headers=headers)).status_code == 200
    response = await client.get(f"{API}/api-keys", headers=headers)
    assert_problem(response, 401, "unauthorized", "a key that revoked itself")


# --- accounts (operator token) -----------------------------------------------------------------


async def test_operator_creates_an_account_whose_key_works(client: httpx.AsyncClient) -> None:
    name = f"acct-{uuid.uuid4().hex[:8]}"
    response = await client.post(
        f"{API}/accounts",
        json={"name": name},
        headers={"Authorization": "Bearer operator-secret"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) >= {"account", "api_key"}
    assert set(body["account"]) >= {"id", "name"} and body["account"]["name"] == name
    uuid.UUID(body["account"]["id"])
    headers = {"Authorization": f"Bearer {body['api_key']}"}
    # It is an admin key of an empty account.
    keys = await client.get(f"{API}/api-keys", headers=headers)
    assert keys.status_code == 200, keys.text
    assert [k["role"] for k in keys.json()["items"]] == ["admin"]
    workflows = await client.get(f"{API}/workflows", headers=headers)
    assert workflows.status_code == 200 and workflows.json()["items"] == []
    created = await client.post(f"{API}/workflows", json={"name": "First"}, headers=headers)
    assert created.status_code == 201, created.text


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer wrong-secret", "Bearer operator-secretx", "operator-secret x", "Bearer "],
)
async def test_account_creation_needs_the_operator_token(
    client: httpx.AsyncClient, tenant: Tenant, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.post(f"{API}/accounts", json={"name": "sneaky"}, headers=headers)
    assert_problem(response, 401, "unauthorized", f"POST /accounts with {authorization!r}")
    # 401 comes before 422: an invalid body without the token is still a 401.
    response = await client.post(f"{API}/accounts", json={"nam": 1}, headers=headers)
    assert_problem(response, 401, "unauthorized", "POST /accounts, no token, invalid body")
    # An account's admin key is not the operator token.
    response = await tenant.request("POST", f"{API}/accounts", json={"name": "sneaky"})
    assert_problem(response, 401, "unauthorized", "POST /accounts with a tenant's admin key")


async def test_account_creation_validates_its_body(client: httpx.AsyncClient) -> None:
    headers = {"Authorization": "Bearer operator-secret"}
    for body, pointer in [({}, "/name"), ({"name": ""}, "/name"), ({"name": "x", "y": 1}, "/y")]:
        response = await client.post(f"{API}/accounts", json=body, headers=headers)
        assert_problem(response, 422, "validation_error", f"POST /accounts {body}")
        assert pointer in [e["pointer"] for e in response.json()["errors"]], response.text


async def test_account_creation_is_disabled_without_an_operator_token(
    settings: Settings, db: Database
) -> None:
    app = create_app(settings.model_copy(update={"admin_token": None}), db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as c:
        for authorization in ("Bearer ", "Bearer None", "Bearer operator-secret"):
            response = await c.post(
                f"{API}/accounts", json={"name": "x"}, headers={"Authorization": authorization}
            )
            assert_problem(response, 401, "unauthorized", f"no operator token, {authorization!r}")


# --- the key cache: how fast a revocation reaches every process --------------------------------


class StepClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _principal(user: str) -> Principal:
    return Principal(account_id=uuid.uuid4(), key_id=uuid.uuid4(), user=user, role="viewer")


def test_key_cache_keeps_a_key_for_its_ttl_and_no_longer() -> None:
    clock = StepClock()
    cache = KeyCache(5, clock=clock)
    principal = _principal("a")
    cache.put(b"a", principal)
    clock.now += 4.9
    assert cache.get(b"a") == principal
    clock.now += 0.1
    assert cache.get(b"a") is None and len(cache) == 0
    # Forgetting ends an entry at once; a TTL of 0 keeps nothing.
    cache.put(b"a", principal)
    cache.forget(b"a")
    assert cache.get(b"a") is None
    off = KeyCache(0, clock=clock)
    off.put(b"a", principal)
    assert off.get(b"a") is None and len(off) == 0


def test_key_cache_is_bounded_oldest_first() -> None:
    cache = KeyCache(60, max_keys=3, clock=StepClock())
    for name in "abcd":
        cache.put(name.encode(), _principal(name))
    assert len(cache) == 3
    assert cache.get(b"a") is None
    assert [cache.get(n) is not None for n in (b"b", b"c", b"d")] == [True, True, True]


async def test_a_key_revoked_in_another_process_stops_within_the_ttl(
    settings: Settings, db: Database, tenant: Tenant
) -> None:
    """Two API processes on one database (two apps): a key revoked through the first is
    refused by the first at once and by the second once its cached entry expires."""
    key = await tenant.key_for("editor", "roaming@a.example")
    headers = {"Authorization": f"Bearer {key}"}
    first, second = create_app(settings, db), create_app(settings, db)
    clock = StepClock()
    second.state.key_cache = KeyCache(settings.api_key_cache_seconds, clock=clock)
    base = "http://revflow.test"
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=first), base_url=base) as one,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=second), base_url=base) as two,
    ):
        assert (await one.get(f"{API}/workflows", headers=headers)).status_code == 200
        assert (await two.get(f"{API}/workflows", headers=headers)).status_code == 200
        listed = (await tenant.request("GET", f"{API}/api-keys")).json()["items"]
        key_id = next(k["id"] for k in listed if k["user"] == "roaming@a.example")
        admin = {"Authorization": f"Bearer {tenant.key}"}
        assert (await one.delete(f"{API}/api-keys/{key_id}", headers=admin)).status_code == 200
        response = await one.get(f"{API}/workflows", headers=headers)
        assert_problem(response, 401, "unauthorized", "revoked by this process")
        # The second process still has the key, for less than its TTL ...
        clock.now += settings.api_key_cache_seconds - 0.01
        assert (await two.get(f"{API}/workflows", headers=headers)).status_code == 200
        # ... and reads it again, revoked, once the TTL has passed.
        clock.now += 0.01
        response = await two.get(f"{API}/workflows", headers=headers)
        assert_problem(response, 401, "unauthorized", "revoked elsewhere, past the TTL")
        assert len(second.state.key_cache) == 0  # expired, and a revoked key is not kept


async def test_without_the_key_cache_a_revocation_is_seen_everywhere_at_once(
    settings: Settings, db: Database, tenant: Tenant
) -> None:
    key = await tenant.key_for("viewer", "strict@a.example")
    headers = {"Authorization": f"Bearer {key}"}
    strict = create_app(settings.model_copy(update={"api_key_cache_seconds": 0}), db)
    transport = httpx.ASGITransport(app=strict)
    async with httpx.AsyncClient(transport=transport, base_url="http://revflow.test") as other:
        assert (await other.get(f"{API}/workflows", headers=headers)).status_code == 200
        listed = (await tenant.request("GET", f"{API}/api-keys")).json()["items"]
        key_id = next(k["id"] for k in listed if k["user"] == "strict@a.example")
        assert (await tenant.request("DELETE", f"{API}/api-keys/{key_id}")).status_code == 200
        response = await other.get(f"{API}/workflows", headers=headers)
        assert_problem(response, 401, "unauthorized", "revoked, no cache")
