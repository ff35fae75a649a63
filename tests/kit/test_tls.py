"""One TLS context per process for outgoing requests (``kit.tls``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from revflow.config import Settings
from revflow.engine.channels import ExternalSender
from revflow.kit import tls
from revflow.kit.egress import EgressPolicy
from revflow.webhooks.sender import Sender

CA = Path(__file__).resolve().parent.parent / "support" / "certs" / "ca.pem"


def _pool_context(client: Any) -> Any:
    return client._transport._pool._ssl_context


async def test_every_outgoing_client_shares_one_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's client, the tenants' guarded client and the webhook sender all use the
    process's one context: none loads the trust store again."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    shared = tls.client_context(trust_env=False)
    senders = [ExternalSender(Settings(database_url="sqlite+aiosqlite://")) for _ in range(2)]
    try:
        for sender in senders:
            assert _pool_context(sender.client) is shared
            assert _pool_context(sender.tenant_client) is shared
        assert Sender(EgressPolicy.parse(""), timeout=1.0).ssl_context is shared
        assert len(shared.get_ca_certs()) > 1  # certifi's roots
    finally:
        for sender in senders:
            await sender.aclose()


def test_the_operators_client_follows_ssl_cert_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``SSL_CERT_FILE`` set, the operator's client (which trusts the environment)
    trusts that file's roots alone; the tenants' targets keep certifi's."""
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(CA))
    own = tls.client_context(trust_env=True)
    assert own is tls.client_context(trust_env=True)
    assert own is not tls.client_context(trust_env=False)
    assert len(own.get_ca_certs()) == 1
    monkeypatch.delenv("SSL_CERT_FILE")
    assert tls.client_context(trust_env=True) is tls.client_context(trust_env=False)
