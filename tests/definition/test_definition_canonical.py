"""Canonical JSON and content hash: stable under key order, sensitive to content."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import json
import random
import re
import uuid
from collections import OrderedDict
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from revflow.definition import (
    DefinitionInvalid,
    canonical_json,
    content_hash,
    make_definition,
    validate_definition,
)
from revflow.definition.canonical import canonical_json_and_copy, parsed_canonical_json


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


# The canonical form, as it has always been written: content hashes of stored versions depend
# on every byte of it.
_STANDARD = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def _standard(value: object) -> bytes:
    return _STANDARD.encode(value).encode("utf-8")


_awkward_floats = st.sampled_from(
    [
        *(1e16, 1e-5, -0.0, 0.0, 1.5, 1e-4, 9.99e-5, 1.5e-7, 1e-10, 1e22, 1e300, 5e-324),
        *(2.5e-308, 1.7976931348623157e308, 123456789012345680.0, 0.1, -1e-9, 1e15, 1e21),
    ]
)
_awkward_text = st.text(
    st.characters(codec="utf-8") | st.sampled_from('\x00\x1f\x7f\u2028\u2029\ufeff"\\/é😀'),
)
_wide_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**64 + 2)
    | st.integers(min_value=-(2**63) - 2, max_value=-(2**63) + 2)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _awkward_floats
    | _awkward_text,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(_awkward_text, children, max_size=5)
    ),
    max_leaves=40,
)


@given(_wide_json)
@example({"b": 1e-05, "a": "x"})
@example([2**64, 2**64 - 1, -(2**63), -(2**63) - 1])
@example({"é": 1, "z": 2, "😀": 3, "\uffff": 4, "": 5, "\x00": 6})
def test_canonical_bytes_are_the_standard_encoders(value: Any) -> None:
    canonical, copy = canonical_json_and_copy(value)
    assert canonical == _standard(value)
    assert canonical_json(value) == canonical
    # The copy, when one came on the way, is what reading the canonical bytes back gives: the
    # same types (1, 1.0 and True apart), the same -0.0, keys in the same order.
    if copy is not None:
        assert repr(copy) == repr(json.loads(canonical))


@given(_wide_json | st.lists(st.sampled_from([float("nan"), float("inf"), -float("inf"), 1])))
@example([float("nan")])
@example({"a": None, "b": 1e-07})
def test_a_parsed_values_canonical_bytes_are_the_standard_encoders(value: Any) -> None:
    # As a request's JSON value comes: read back from JSON text (NaN and the infinities
    # included, which the standard parser accepts and the standard encoder refuses).
    parsed = json.loads(json.dumps(value))
    fast = parsed_canonical_json(parsed)
    if fast is None:
        return  # for canonical_json_and_copy to decide
    assert fast == _standard(parsed)


@given(
    st.lists(st.dictionaries(st.text(max_size=3), _wide_json, max_size=4), min_size=1),
    st.dictionaries(st.text(max_size=6), _wide_json, max_size=4),
)
@example([{"b": 1e-05}], {"a": 1})
@example([{"x": float("nan")}], {})
@example([{"z": 1, "a": [2**70]}], {"trigger": None})
@example([{"b": 2, "a": 1}], {"t": 1, "steps!": 2, "step": 3, "stepz": 4})
def test_steps_written_already_give_the_same_canonical_bytes(
    steps: list[dict[str, Any]], rest: dict[str, Any]
) -> None:
    # A definition's steps, written one by one with sorted keys (as the validation finds known
    # steps by), are taken into its canonical bytes as they are: the bytes are the same.
    parsed = json.loads(json.dumps({**rest, "steps": steps}))
    try:
        written = [orjson.dumps(step, option=orjson.OPT_SORT_KEYS) for step in parsed["steps"]]
    except TypeError:
        return  # a step orjson refuses has no bytes to take (nor a known model)
    fast = parsed_canonical_json(parsed, written)
    assert fast == parsed_canonical_json(parsed)
    if fast is not None:
        assert fast == _standard(parsed)


def test_a_parsed_definition_is_kept_as_it_came() -> None:
    raw = json.loads(json.dumps(make_definition(40, seed=3)))
    parsed = validate_definition(raw, parsed=True)
    copied = validate_definition(raw)
    assert parsed.definition is raw and copied.definition is not raw
    assert parsed.canonical == copied.canonical == _standard(raw)
    assert parsed.content_hash == copied.content_hash and parsed.model == copied.model
    # NaN, which the standard parser reads, is refused as before (orjson would write null).
    with pytest.raises(DefinitionInvalid) as refused:
        validate_definition({**raw, "description": float("nan")}, parsed=True)
    assert "only JSON values" in refused.value.errors[0]["message"]


def test_a_plain_definition_takes_the_fast_way() -> None:
    definition = make_definition(40, seed=2)
    canonical, copy = canonical_json_and_copy(definition)
    assert copy is not None
    assert canonical == _standard(definition)
    assert copy == definition
    assert copy is not definition and copy["steps"][0] is not definition["steps"][0]


class _Colour(enum.Enum):
    RED = 1


class _Size(enum.IntEnum):
    SMALL = 1


class _Name(enum.StrEnum):
    ADA = "ada"


class _Int(int):
    pass


@dataclasses.dataclass
class _Point:
    x: int


@pytest.mark.parametrize(
    "value",
    [
        (1, [2, (3,)]),
        OrderedDict(b=1, a=2),
        _Size.SMALL,
        _Name.ADA,
        _Int(7),
        {"n": True, "1": 1.0, "k": [None, -0.0]},
        {"big": 2**64, "small": 1e-7},
        {"s": "😀\u2028\x00"},
    ],
    ids=repr,
)
def test_values_the_standard_encoder_accepts_give_its_bytes(value: object) -> None:
    canonical, copy = canonical_json_and_copy(value)
    assert canonical == _standard(value)
    assert repr(copy if copy is not None else json.loads(canonical)) == repr(json.loads(canonical))


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        [float("inf")],
        {"x": float("-inf")},
        _Colour.RED,
        uuid.UUID(int=1),
        datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC),
        _Point(1),
        {1: "x", "a": 2},
        {"a": "\ud800"},
        {2, 3},
        b"bytes",
    ],
    ids=repr,
)
def test_values_the_standard_encoder_refuses_are_refused_alike(value: object) -> None:
    with pytest.raises((TypeError, ValueError)) as expected:
        _standard(value)
    with pytest.raises(type(expected.value), match="^" + re.escape(str(expected.value)) + "$"):
        canonical_json_and_copy(value)


def test_a_circular_value_is_refused_as_before() -> None:
    value: list[Any] = []
    value.append(value)
    with pytest.raises(ValueError, match="Circular reference detected"):
        canonical_json(value)


def test_deep_nesting_beyond_the_fast_encoder_gives_the_same_bytes() -> None:
    value: Any = "x"
    for _ in range(400):
        value = {"k": [value]}
    canonical, copy = canonical_json_and_copy(value)
    assert canonical == _standard(value)
    assert copy is None
    assert json.loads(canonical) == value
