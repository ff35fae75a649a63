"""Durations (`30s`, `2d`, `P1DT2H`) and `until` date-times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from revflow.definition import MAX_DURATION, parse_datetime, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("3d", timedelta(days=3)),
        ("1w", timedelta(weeks=1)),
        (" 90m ", timedelta(minutes=90)),
        ("P2D", timedelta(days=2)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("P2W", timedelta(weeks=2)),
        ("PT45S", timedelta(seconds=45)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("PT1,5S", timedelta(seconds=1.5)),
        ("P1DT0H0M1S", timedelta(days=1, seconds=1)),
        ("3650d", MAX_DURATION),
    ],
)
def test_valid_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("P1M", "years or months"),
        ("P1Y", "years or months"),
        ("P1Y2M3DT4H", "years or months"),
        ("0s", "must be positive"),
        ("PT0S", "must be positive"),
        ("-5m", "must be positive"),
        ("-P1D", "must be positive"),
        ("3651d", "too long"),
        ("99999999999999999999d", "too long"),
        ("", "not a valid duration"),
        ("P", "not a valid duration"),
        ("PT", "not a valid duration"),
        ("P1DT", "not a valid duration"),
        ("2 days", "not a valid duration"),
        ("2D", "not a valid duration"),
        ("1h30m", "not a valid duration"),
        ("1.5h", "not a valid duration"),
        ("PT1.5H", "not a valid duration"),
        ("٣d", "not a valid duration"),
        ("3 d", "not a valid duration"),
    ],
)
def test_invalid_durations(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0s", "PT0S", "0d", "P0D"])
def test_an_offset_may_be_zero(text: str) -> None:
    assert parse_duration(text, allow_zero=True) == timedelta(0)


@pytest.mark.parametrize("text", ["-5m", "-P1D", "-0s"])
def test_an_offset_is_never_negative(text: str) -> None:
    with pytest.raises(ValueError, match="must be zero or positive"):
        parse_duration(text, allow_zero=True)
    # The cache keeps the two readings apart.
    with pytest.raises(ValueError, match="must be positive"):
        parse_duration(text)


def test_a_duration_must_be_a_string() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_duration(60)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-31T09:00:00Z", datetime(2030, 1, 31, 9, tzinfo=UTC)),
        ("2030-01-31T09:00:00+02:00", datetime(2030, 1, 31, 7, tzinfo=UTC)),
        ("2030-01-31T09:00:00", datetime(2030, 1, 31, 9, tzinfo=UTC)),
        ("2030-01-31 09:00", datetime(2030, 1, 31, 9, tzinfo=UTC)),
        ("2030-01-31T09:00:00.250-05:00", datetime(2030, 1, 31, 14, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_until_is_an_aware_utc_datetime(text: str, expected: datetime) -> None:
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed.tzinfo == UTC


def test_until_keeps_the_instant_of_another_offset() -> None:
    parsed = parse_datetime("2030-01-31T09:00:00+05:30")
    assert parsed == datetime(2030, 1, 31, 9, tzinfo=timezone(timedelta(hours=5, minutes=30)))


@pytest.mark.parametrize("text", ["2030-01-31", "tomorrow", "2030-13-01T00:00:00Z", "T"])
def test_invalid_until(text: str) -> None:
    with pytest.raises(ValueError):
        parse_datetime(text)
