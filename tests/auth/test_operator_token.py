"""The operator token is read from ``Authorization: Bearer`` exactly as API keys are: the
scheme is required and case-insensitive."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("Bearer operator-secret", 201),
        ("bearer operator-secret", 201),
        ("BEARER   operator-secret  ", 201),
        ("operator-secret", 401),
        ("Basic operator-secret", 401),
        ("Bearer ", 401),
        ("Bearer wrong", 401),
    ],
)
async def test_the_operator_token_is_parsed_like_an_api_key(
    client: httpx.AsyncClient, header: str, status: int
) -> None:
    response = await client.post(
        "/api/v1/accounts", json={"name": "op"}, headers={"Authorization": header}
    )
    assert response.status_code == status, response.text
