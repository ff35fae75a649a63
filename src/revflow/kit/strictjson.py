"""What a JSON request may hold: values every database can store.

Checked once, at the boundary, before any route reads the request: strings without NUL
characters or lone surrogates, finite numbers, nesting at most ``MAX_DEPTH`` deep. A value that
breaks a rule answers 422 naming its JSON Pointer; anything else is left to the route (and an
unparseable body to the framework's 400 ``malformed_json``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

MAX_DEPTH = 64
# The ``request.state`` attribute where the check leaves the body it parsed: for a dependency
# that must know whether the body is valid before the framework validates it (one parse
# fewer).
PARSED_BODY = "parsed_json_body"


class _NotFinite:
    """Stands in for NaN, Infinity or a number too large for a float, found by the walk."""

    def __init__(self, text: str) -> None:
        self.text = text


def _float(text: str) -> Any:
    value = float(text)
    return value if math.isfinite(value) else _NotFinite(text)


def loads(raw: bytes) -> Any:
    """Parse like ``json.loads``, keeping non-finite numbers as markers for ``problems``."""
    return json.loads(raw, parse_constant=_NotFinite, parse_float=_float)


def _escape(key: str) -> str:
    printable = key.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates
    return printable.replace("~", "~0").replace("/", "~1")


def _string_problem(value: str) -> str | None:
    if "\x00" in value:
        return "must not contain the NUL character (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain a lone surrogate (an unpaired \\uD800-\\uDFFF escape)"
    return None


def problems(value: Any, pointer: str = "", depth: int = 0) -> list[dict[str, str]]:
    """Every value of ``value`` that breaks a rule, with its JSON Pointer (the first few)."""
    found: list[dict[str, str]] = []
    stack: list[tuple[Any, str, int]] = [(value, pointer, depth)]
    while stack and len(found) < 10:
        item, at, level = stack.pop()
        if level > MAX_DEPTH:
            found.append({"pointer": at, "message": f"is nested deeper than {MAX_DEPTH} levels"})
            continue
        if isinstance(item, _NotFinite):
            found.append({"pointer": at, "message": f"{item.text} is not a finite number"})
        elif isinstance(item, str):
            problem = _string_problem(item)
            if problem:
                found.append({"pointer": at, "message": problem})
        elif isinstance(item, dict):
            for key, child in item.items():
                child_at = f"{at}/{_escape(key)}"
                problem = _string_problem(key)
                if problem:
                    found.append({"pointer": child_at, "message": f"its key {problem}"})
                stack.append((child, child_at, level + 1))
        elif isinstance(item, list):
            for index, child in enumerate(item):
                stack.append((child, f"{at}/{index}", level + 1))
    return sorted(found, key=lambda p: p["pointer"])


# A NUL or a surrogate can only be written as a \u escape: a raw NUL is not JSON, and
# surrogates are not UTF-8.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
# Where orjson's value could differ from ``json.loads``'s: integers beyond 64 bits (orjson
# makes them floats), and, for safety's sake, every other run of 16 digits or more. Found by
# making every digit a "0" and looking for sixteen of them: a tenth of the time of a regular
# expression's search (which tries the run at every digit).
_LONG_RUN = b"0" * 16
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")


def _long_digit_run(raw: bytes) -> bool:
    return raw.translate(_DIGITS_AS_ZERO).find(_LONG_RUN) >= 0


def body_problems(raw: bytes) -> list[dict[str, str]]:
    """``problems(loads(raw))``: see :func:`checked_body`."""
    return checked_body(raw)[1]


def checked_body(raw: bytes) -> tuple[Any, list[dict[str, str]]]:
    """The JSON value of ``raw`` (as ``json.loads`` gives it) and ``problems(loads(raw))``,
    without the full walk when nothing in the body can break a rule — the common case, where
    the walk's pointer for every value is the cost. Escapes are checked in the raw bytes,
    nesting by a walk of the containers, numbers while parsing. A body without suspect
    escapes or long digit runs is parsed by orjson (a third of ``json.loads``'s time on a
    definition), which refuses what the standard parser would let through as a marker (NaN,
    Infinity, numbers beyond a float's range) or as a lone surrogate: those, and what is not
    JSON at all, go to ``json.loads``. Raises like ``json.loads`` when ``raw`` is not JSON."""
    suspect = _SUSPECT_ESCAPE.search(raw) is not None
    if not suspect and not _long_digit_run(raw):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # NaN, Infinity, 1e400, lone surrogates or not JSON: the standard parser says
        else:
            return value, (problems(value) if _too_deep(value) else [])
    not_finite = False

    def marker(text: str) -> Any:
        nonlocal not_finite
        value = _float(text)
        not_finite = not_finite or isinstance(value, _NotFinite)
        return value

    value = json.loads(raw, parse_constant=marker, parse_float=marker)
    if not_finite or suspect or _too_deep(value):
        return value, problems(value)
    return value, []


def _too_deep(value: Any) -> bool:
    """Whether any value sits deeper than ``MAX_DEPTH`` (the root is at depth 0): the
    containers level by level, down to the last one allowed to hold anything."""
    level = [value] if type(value) is dict or type(value) is list else []
    for _depth in range(MAX_DEPTH):
        # One comprehension a level: a third fewer instructions than loops that append.
        deeper = [
            child
            for item in level
            for child in (item.values() if type(item) is dict else item)
            if type(child) is dict or type(child) is list
        ]
        if not deeper:
            return False
        level = deeper
    # ``level`` holds the containers at MAX_DEPTH: anything inside one is too deep.
    return any(level)
