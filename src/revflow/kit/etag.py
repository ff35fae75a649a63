"""Workflow ETags (RFC 9110 strong validators) and the If-Match check."""

from __future__ import annotations

import uuid

from revflow.errors import PreconditionFailed


def make_etag(workflow_id: uuid.UUID, revision: int) -> str:
    return f'"{workflow_id.hex[:12]}-{revision}"'


def _normalise(tag: str) -> str:
    tag = tag.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    return tag.strip('"')


def check_if_match(if_match: str | None, current: str) -> None:
    """Raise 412 unless ``If-Match`` is absent, ``*``, or names the current etag.

    Quotes are optional, as clients often drop them.
    """
    if if_match is None:
        return
    candidates = [_normalise(part) for part in if_match.split(",") if part.strip()]
    if "*" in candidates or _normalise(current) in candidates:
        return
    raise PreconditionFailed(
        f"If-Match {if_match!r} does not match the current etag {current}", etag=current
    )
