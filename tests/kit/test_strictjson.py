"""The body check's shortcut answers exactly what the full walk answers."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from revflow.definition.samples import make_definition
from revflow.kit.strictjson import MAX_DEPTH, body_problems, loads, problems

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
