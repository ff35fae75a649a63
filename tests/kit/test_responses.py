"""Answers are written by orjson where its bytes are pydantic-core's, and by pydantic-core
everywhere else: the same JSON either way."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

import pydantic_core
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revflow.kit.responses import FastJSONResponse, json_bytes

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)  # beyond 64 bits too
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=40,
)


@settings(max_examples=500, deadline=None)
@given(JSON_VALUES)
def test_an_answer_is_the_json_pydantic_core_writes(value: Any) -> None:
    assert json_bytes(value) == pydantic_core.to_json(value)


class Colour(enum.StrEnum):
    RED = "red"


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 12, 1, 3, 4, 5, tzinfo=dt.UTC),  # orjson: +00:00, pydantic-core: Z
        dt.datetime(2026, 12, 1, 3, 4, 5, 120000),
        dt.date(2026, 12, 1),
        uuid.UUID(int=7),
        Colour.RED,
        (1, 2),
        2**70,
    ],
    ids=repr,
)
def test_values_that_are_not_plain_json_are_written_by_pydantic_core(value: Any) -> None:
    assert json_bytes({"value": value, "steps": [1.5, "é"]}) == pydantic_core.to_json(
        {"value": value, "steps": [1.5, "é"]}
    )


def test_the_response_renders_with_it() -> None:
    body = {"definition": {"steps": [{"id": "é", "n": 1.5}]}, "at": dt.datetime(2026, 1, 1)}
    assert FastJSONResponse(body).body == pydantic_core.to_json(body)
