"""Canonical JSON: one byte sequence per document, whatever the order its keys came in."""

from __future__ import annotations

import hashlib
import json

# Built once: json.dumps with non-default options makes a new encoder on every call.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(obj: object) -> bytes:
    """Serialise a JSON-compatible value canonically: sorted keys, no spaces, UTF-8.

    Two documents that differ only in key order or whitespace give the same bytes, which is
    what makes :func:`content_hash` usable to detect "no changes". NaN and infinities are
    refused (they are not JSON); a value that is not JSON-compatible raises ``TypeError`` or
    ``ValueError``.
    """
    return _ENCODER.encode(obj).encode("utf-8")


def content_hash(obj: object) -> str:
    """Return the SHA-256 hex digest of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj)).hexdigest()
