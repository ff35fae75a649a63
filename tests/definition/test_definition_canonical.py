"""Canonical JSON and content hash: stable under key order, sensitive to content."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from revflow.definition import canonical_json, content_hash, make_definition, validate_definition


def _shuffled(value: Any, rng: random.Random) -> Any:
    """The same JSON value with the keys of every object in another order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: _shuffled(item, rng) for key, item in items}
    if isinstance(value, list):
        return [_shuffled(item, rng) for item in value]
    return value


def test_canonical_form() -> None:
    assert canonical_json({"b": 1, "a": [True, None, 1.5, "é"]}) == (
        '{"a":[true,null,1.5,"é"],"b":1}'.encode()
    )


def test_content_hash_is_sha256_of_canonical_json() -> None:
    value = {"z": {"y": 1, "x": 2}}
    assert content_hash(value) == hashlib.sha256(b'{"z":{"x":2,"y":1}}').hexdigest()


def test_hash_is_stable_under_key_reordering() -> None:
    definition = make_definition(60, seed=3)
    expected = validate_definition(definition).content_hash
    for seed in range(5):
        reordered = _shuffled(definition, random.Random(seed))
        assert json.dumps(reordered) != json.dumps(definition)
        assert validate_definition(reordered).content_hash == expected


def test_hash_changes_with_content() -> None:
    definition = make_definition(20)
    changed = json.loads(json.dumps(definition))
    changed["steps"][0]["id"] = "renamed"
    changed["start"] = "renamed"
    assert content_hash(changed) != content_hash(definition)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=25,
)


@given(json_values, st.randoms(use_true_random=False))
def test_canonical_json_ignores_key_order_and_round_trips(value: Any, rng: random.Random) -> None:
    canonical = canonical_json(value)
    assert canonical_json(_shuffled(value, rng)) == canonical
    assert canonical_json(json.loads(canonical)) == canonical
