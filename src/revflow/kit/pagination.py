"""Opaque cursors for keyset pagination.

A cursor carries the sort key of the last item and a fingerprint of the list (its name and,
for a workflow's lists, the workflow) and of the filters it was made
for, so a cursor replayed against other filters is refused rather than silently skipping rows.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from collections.abc import Sequence
from typing import Any

from revflow.errors import InvalidCursor
from revflow.kit.jsonutil import canonical, sha256_hex

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def _fingerprint(filters: dict[str, Any]) -> str:
    return sha256_hex(canonical(filters))[:16]


def encode_cursor(key: list[Any], filters: dict[str, Any]) -> str:
    raw = canonical({"k": key, "f": _fingerprint(filters)})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, filters: dict[str, Any], arity: int) -> list[Any] | None:
    """The sort key inside ``cursor``; ``None`` for the first page."""
    if cursor is None:
        return None
    problem = [{"parameter": "cursor", "in": "query", "pointer": "/cursor"}]
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor([{**problem[0], "message": "the cursor is malformed"}]) from None
    if not isinstance(data, dict) or not isinstance(data.get("k"), list) or len(data["k"]) != arity:
        raise InvalidCursor([{**problem[0], "message": "the cursor is malformed"}])
    if data.get("f") != _fingerprint(filters):
        raise InvalidCursor([{**problem[0], "message": "the cursor was made for other filters"}])
    return list(data["k"])


def _malformed() -> InvalidCursor:
    return InvalidCursor(
        [
            {
                "parameter": "cursor",
                "in": "query",
                "pointer": "/cursor",
                "message": "the cursor is malformed",
            }
        ]
    )


def cursor_datetime(value: Any) -> dt.datetime:
    """An aware UTC datetime read back from a cursor (422 if it is not one, or if it cannot be
    expressed in UTC, e.g. year 1 with a positive offset)."""
    try:
        parsed = dt.datetime.fromisoformat(str(value))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise _malformed() from None


def cursor_uuid(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise _malformed() from None


def cursor_int(value: Any, *, bits: int = 64) -> int:
    """An integer read back from a cursor, within the signed ``bits`` range of the column it is
    compared with (a forged one out of range would overflow the driver)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _malformed()
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise _malformed()
    return int(value)


def time_id_after(
    cursor: str | None, filters: dict[str, Any]
) -> tuple[dt.datetime, uuid.UUID] | None:
    """The (time, id) sort key of a list ordered newest first by a timestamp, then id."""
    after = decode_cursor(cursor, filters, 2)
    return None if after is None else (cursor_datetime(after[0]), cursor_uuid(after[1]))


def time_id_next(
    rows: Sequence[Any], limit: int, filters: dict[str, Any], time_attr: str = "created_at"
) -> str | None:
    """The cursor after a page read with ``limit + 1`` rows (``None`` on the last page)."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor([getattr(last, time_attr).isoformat(), str(last.id)], filters)
