"""Datetimes in requests: any offset is accepted, but the instant must exist in UTC."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator


def _in_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("is outside the range of datetimes in UTC") from None


# A datetime that converts to UTC (0001-01-01T00:00:00+14:00 does not: it is before year 1).
UTCInstant = Annotated[dt.datetime, AfterValidator(_in_utc)]
