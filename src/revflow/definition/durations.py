"""Parsing of the time values a definition holds: durations and `until` date-times."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

# The longest duration accepted. A bound keeps `now + duration` far from datetime's limits, so an
# engine computing a wake-up time can never overflow; ten years is beyond any real marketing wait.
MAX_DURATION = timedelta(days=3650)

_SHORT_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SHORT_RE = re.compile(r"([0-9]+)([smhdw])")
_ISO_RE = re.compile(
    r"P(?:(?P<weeks>[0-9]+)W)?(?:(?P<days>[0-9]+)D)?"
    r"(?:T(?:(?P<hours>[0-9]+)H)?(?:(?P<minutes>[0-9]+)M)?(?:(?P<seconds>[0-9]+(?:[.,][0-9]+)?)S)?)?"
)
# A number this long cannot be a sensible duration; refusing it early avoids huge int parsing.
_MAX_DIGITS = 12

_FORMAT_HINT = (
    "use a number and a unit (30s, 15m, 2h, 3d, 1w) or an ISO 8601 duration (P2D, PT1H30M)"
)


def parse_duration(text: str, *, allow_zero: bool = False) -> timedelta:
    """Parse a duration such as ``30s``, ``15m``, ``2h``, ``3d``, ``1w``, ``P2D`` or ``PT1H30M``.

    ISO 8601 years and months are refused because their length varies. The result is always
    positive (or zero, with ``allow_zero``: an offset from a moment rather than a wait) and at
    most :data:`MAX_DURATION`; anything else raises :class:`ValueError` with a message fit to
    show to the author of the definition.
    """
    if not isinstance(text, str):
        raise ValueError(f"a duration must be a string; {_FORMAT_HINT}")
    return _parse_duration(text, allow_zero)


# Definitions repeat the same few durations and instants; results are immutable, so caching them
# is safe and saves most of the parsing when a large definition is validated.
@lru_cache(maxsize=4096)
def _parse_duration(text: str, allow_zero: bool) -> timedelta:
    sign = "zero or positive" if allow_zero else "positive"
    value = text.strip()
    if value.startswith("-"):
        raise ValueError(f"duration '{text}' must be {sign}")
    if any(len(digits) > _MAX_DIGITS for digits in re.findall(r"[0-9]+", value)):
        raise ValueError(f"duration '{text}' is too long; the maximum is {MAX_DURATION.days} days")
    short = _SHORT_RE.fullmatch(value)
    if short is not None:
        amount, unit = short.groups()
        result = timedelta(**{_SHORT_UNITS[unit]: int(amount)})
    else:
        result = _parse_iso(text, value)
    if result < timedelta(0) or (result == timedelta(0) and not allow_zero):
        raise ValueError(f"duration '{text}' must be {sign}")
    if result > MAX_DURATION:
        raise ValueError(f"duration '{text}' is too long; the maximum is {MAX_DURATION.days} days")
    return result


def _parse_iso(text: str, value: str) -> timedelta:
    iso = _ISO_RE.fullmatch(value)
    # "P" and "PT" alone match the pattern with no component at all.
    if iso is None or not any(iso.groupdict().values()) or value.endswith("T"):
        # Calendar units have no fixed length: recognise them only to say why they are refused.
        date_part = value.split("T", 1)[0]
        if value.startswith("P") and ("Y" in date_part or "M" in date_part):
            raise ValueError(
                f"duration '{text}' uses years or months, whose length varies; "
                "use days or weeks instead (e.g. P30D)"
            )
        raise ValueError(f"'{text}' is not a valid duration; {_FORMAT_HINT}")
    parts = iso.groupdict()
    return timedelta(
        weeks=int(parts["weeks"] or 0),
        days=int(parts["days"] or 0),
        hours=int(parts["hours"] or 0),
        minutes=int(parts["minutes"] or 0),
        seconds=float((parts["seconds"] or "0").replace(",", ".")),
    )


def parse_datetime(text: str) -> datetime:
    """Parse an ISO 8601 date-time (date and time required) into an aware UTC datetime.

    A value without a UTC offset is taken as UTC, so the same definition means the same instant
    on every server whatever its local time zone.
    """
    if not isinstance(text, str):
        raise ValueError("a date-time must be a string such as '2025-01-31T09:00:00Z'")
    return _parse_datetime(text)


@lru_cache(maxsize=4096)
def _parse_datetime(text: str) -> datetime:
    value = text.strip()
    # fromisoformat also takes a bare date; a wait needs an instant, so the time is required.
    if "T" not in value and " " not in value:
        raise ValueError(f"'{text}' needs a date and a time, e.g. '2025-01-31T09:00:00Z'")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"'{text}' is not an ISO 8601 date-time, e.g. '2025-01-31T09:00:00Z'"
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
