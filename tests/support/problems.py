"""Checks of RFC 9457 problem documents."""

from __future__ import annotations

import httpx

PROBLEM_JSON = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, code: str, what: str) -> None:
    assert response.status_code == status, f"{what}: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith(PROBLEM_JSON), what
    body = response.json()
    assert body["code"] == code, f"{what}: {body}"
    assert body["status"] == status, f"{what}: {body}"
    assert body["type"] == f"urn:revflow:problem:{code}", f"{what}: {body}"
