"""Canonical JSON: one byte sequence per document, whatever the order its keys came in."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import orjson

# Built once: json.dumps with non-default options makes a new encoder on every call.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
# The canonical form is the standard encoder's; orjson writes the same bytes about ten times
# faster for plain JSON values. It refuses (and the standard encoder then decides) subclasses,
# dataclasses, date-times, non-string keys, ints beyond 64 bits and nesting deeper than 254.
_ORJSON_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)
# The one place orjson writes plain JSON differently: nonzero floats smaller than 1e-4 (in
# magnitude), which repr writes with a two-digit exponent (1e-05, 1e-07) and orjson as 0.00001
# or 1e-7. These patterns find every such float; a match inside a string only costs the
# standard encoder.
_SMALL_FLOAT = re.compile(rb"e-(?<=[0-9]e-)")
_SMALL_FLOAT_FIXED = b"0.0000"


def canonical_json(obj: object) -> bytes:
    """Serialise a JSON-compatible value canonically: sorted keys, no spaces, UTF-8.

    Two documents that differ only in key order or whitespace give the same bytes, which is
    what makes :func:`content_hash` usable to detect "no changes". NaN and infinities are
    refused (they are not JSON); a value that is not JSON-compatible raises ``TypeError`` or
    ``ValueError``.
    """
    return canonical_json_and_copy(obj)[0]


def canonical_json_and_copy(obj: object) -> tuple[bytes, Any | None]:
    """Return :func:`canonical_json` of ``obj`` and, when one came on the way, a fresh copy of
    ``obj`` read back from it (plain JSON types, keys in canonical order); None when not."""
    fast = _orjson_canonical(obj)
    if fast is not None:
        return fast
    return _ENCODER.encode(obj).encode("utf-8"), None


def parsed_canonical_json(obj: object, steps: list[bytes] | None = None) -> bytes | None:
    """:func:`canonical_json` of ``obj``, a value as a JSON parser gives it (dicts, lists,
    strings, numbers, booleans, None), without the copy that checks it: orjson's bytes where
    they are the standard encoder's. None where they might not be, for
    :func:`canonical_json_and_copy` to decide: a ``null`` in them (orjson writes NaN and the
    infinities, which the standard parser lets through, as ``null``), small floats, or a value
    orjson refuses. ``steps``: each of ``obj["steps"]`` written by orjson with sorted keys
    already, taken as they are instead of written again."""
    if steps is not None and isinstance(obj, dict):
        obj = {**obj, "steps": orjson.Fragment(b"[" + b",".join(steps) + b"]")}
    canonical = _orjson_bytes(obj)
    return None if canonical is None or b"null" in canonical else canonical


def _orjson_canonical(obj: object) -> tuple[bytes, Any] | None:
    """The canonical bytes and copy by orjson, or None where they might not be the standard's."""
    canonical = _orjson_bytes(obj)
    if canonical is None:
        return None
    copy = orjson.loads(canonical)
    # Equal only if orjson wrote every value as itself: it writes NaN and infinities as null,
    # and enums and UUIDs that the standard encoder refuses. Tuples compare unequal too (the
    # standard path makes them lists).
    return (canonical, copy) if copy == obj else None


def _orjson_bytes(obj: object) -> bytes | None:
    """orjson's canonical bytes of ``obj``; None where orjson refuses ``obj`` or writes a small
    float, the one place its bytes for plain JSON differ from the standard encoder's."""
    try:
        canonical = orjson.dumps(obj, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        return None
    if _SMALL_FLOAT_FIXED in canonical or _SMALL_FLOAT.search(canonical) is not None:
        return None
    return canonical


def content_hash(obj: object) -> str:
    """Return the SHA-256 hex digest of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj)).hexdigest()
