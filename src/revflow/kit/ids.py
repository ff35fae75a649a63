"""Ids in paths and queries: parsed once, a malformed one answers like a missing object."""

from __future__ import annotations

import uuid

from revflow.errors import NotFound

# The largest value of a 32-bit integer column (version numbers, revisions).
INT32_MAX = 2**31 - 1


def parse_id(value: str | uuid.UUID) -> uuid.UUID | None:
    """The UUID in ``value``, or None when it is not one."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def require_id(value: str | uuid.UUID, what: str) -> uuid.UUID:
    """The UUID in ``value``; a malformed id answers 404 exactly like a missing ``what``."""
    parsed = parse_id(value)
    if parsed is None:
        raise NotFound(f"No {what} {value}")
    return parsed
