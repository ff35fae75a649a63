"""The body check's shortcut answers exactly what the full walk answers."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from revflow.definition.samples import make_definition
from revflow.kit.strictjson import (
    MAX_DEPTH,
    _NotFinite,
    body_problems,
    checked_body,
    loads,
    problems,
)

CASES = [
    b'{"a": "x\\u0000"}',
    b'{"a\\ud800": 1}',
    b'{"s": "\\uDFFF"}',
    b'{"s": "\\\\u0000"}',  # an escaped backslash, then text: no NUL
    b"[NaN]",
    b'{"a": Infinity}',
    b"[1e400]",
    b"[-1e400]",
    b"[" + b"1" * 400 + b".0]",
    b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
    b"[" * MAX_DEPTH + b"1" + b"]" * MAX_DEPTH,
    b"[" * (MAX_DEPTH + 1) + b"1" + b"]" * (MAX_DEPTH + 1),
    b'{"a":' * (MAX_DEPTH + 5) + b"1" + b"}" * (MAX_DEPTH + 5),
    b'{"k\\"[": [[1]], "s": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',
    b'"x"',
    b"1",
    b"[1.5, 2e3, {}]",
    json.dumps(make_definition(200, 7)).encode(),
]


def test_known_bodies() -> None:
    for raw in CASES:
        assert body_problems(raw) == problems(loads(raw)), raw[:80]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=40,
)


@given(json_values, st.integers(min_value=0, max_value=MAX_DEPTH + 3))
def test_any_body(value: object, wrap: int) -> None:
    for _ in range(wrap):
        value = [value]
    raw = json.dumps(value).encode()  # floats("nan") become NaN, as a client may send
    assert body_problems(raw) == problems(loads(raw))


def _typed(value: object) -> object:
    """``value`` with every number tagged by its type: ``1 == 1.0 == True`` in Python, not in
    JSON."""
    if isinstance(value, dict):
        return [(key, _typed(child)) for key, child in value.items()]
    if isinstance(value, list):
        return [_typed(child) for child in value]
    if isinstance(value, _NotFinite):
        return ("not finite", value.text)
    return (type(value).__name__, value)


@given(
    json_values
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.lists(st.floats(allow_nan=False) | st.integers(), max_size=5),
    st.booleans(),
)
def test_the_parsed_body_is_the_standard_parsers_value(value: object, ascii_only: bool) -> None:
    # The fast parser hands over to ``json.loads`` wherever their values could differ:
    # the route sees the same value either way, types, key order and duplicates included.
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert _typed(checked_body(raw)[0]) == _typed(loads(raw))


def test_duplicate_keys_keep_the_first_place_and_the_last_value() -> None:
    raw = b'{"a": 1, "b": 2, "a": 3}'
    assert (
        list(checked_body(raw)[0].items())
        == list(json.loads(raw).items())
        == [
            ("a", 3),
            ("b", 2),
        ]
    )
