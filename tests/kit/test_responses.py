"""Answers are written by orjson where its bytes are pydantic-core's, and by pydantic-core
everywhere else: the same JSON either way, rows with the database's identifiers and times
included."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

import pydantic_core
import pytest
from asyncpg.pgproto.pgproto import UUID as DriverUUID
from hypothesis import given, settings
from hypothesis import strategies as st

from revflow.kit.responses import FastJSONResponse, WrittenJSON, json_bytes

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


IDENTIFIER = "0b9c6e1e-6a57-4b3f-9d0a-2f1e8c7d6b5a"
AWARE = dt.datetime(2026, 12, 1, 3, 4, 5, 123456, tzinfo=dt.UTC)

ROW_VALUES: list[Any] = [
    None,
    True,
    0,
    -7,
    2**63 - 1,
    2**70,
    1.5,
    "",
    "plain",
    'quote " and \\ backslash / slash',
    "control \x00 \x01 \x08 \t \n \x0b \x0c \r \x1f \x7f",
    "Ünïcödé — 中文 😀 \u2028 \u2029",
    uuid.UUID(IDENTIFIER),
    DriverUUID(IDENTIFIER),
    AWARE,
    AWARE.replace(microsecond=0),
    AWARE.replace(microsecond=1000),
    AWARE.replace(microsecond=120000, tzinfo=None),
    AWARE.replace(tzinfo=None),
    AWARE.replace(tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    AWARE.replace(tzinfo=dt.timezone(-dt.timedelta(hours=8))),
    Colour.RED,
    [],
    {},
    ["q4", "launch"],
    [{"pointer": "/definition/steps/5", "message": "unreachable"}],
]


@pytest.mark.parametrize("value", ROW_VALUES, ids=repr)
def test_a_rows_value_is_written_as_pydantic_core_writes_it(value: Any) -> None:
    assert json_bytes(value) == pydantic_core.to_json(value)


def test_a_page_of_rows_is_written_as_pydantic_core_writes_it() -> None:
    row = {f"field_{i}": value for i, value in enumerate(ROW_VALUES)}
    page = {"items": [row, row], "next_cursor": "abc"}
    assert json_bytes(page) == pydantic_core.to_json(page)


def test_written_json_is_copied_as_it_is() -> None:
    text = b'{"steps":[{"id":"a","type":"end"}],"b":1.50}'  # not as either writer would write it
    assert json_bytes({"definition": WrittenJSON(text), "n": 1}) == (
        b'{"definition":' + text + b',"n":1}'
    )


def test_written_json_survives_the_pydantic_core_fallback() -> None:
    # An integer beyond 64 bits sends the whole answer to pydantic-core, which writes the
    # value the text holds.
    answer = {"definition": WrittenJSON(b'{"a":[1,"\\u00e9"]}'), "big": 2**70}
    assert json_bytes(answer) == pydantic_core.to_json(
        {"definition": {"a": [1, "é"]}, "big": 2**70}
    )
