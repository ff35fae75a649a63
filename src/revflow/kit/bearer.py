"""The ``Authorization: Bearer <token>`` header, parsed one way for API keys and the operator
token alike (RFC 6750: the scheme is case-insensitive)."""

from __future__ import annotations


def bearer_token(header: str | None) -> str | None:
    """The token of a Bearer ``Authorization`` header; None for any other header."""
    scheme, _, token = (header or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
