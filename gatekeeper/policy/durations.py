"""ISO 8601 durations (`PT4H`, `P1DT12H`, `P2W`) for approval timeouts.

Policies state timeouts the way Azure and Durable Functions do; years and months are refused because
their length depends on the calendar, and a timeout must be an exact span of time.
"""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(
    r"^P(?!$)"
    r"(?:(?P<weeks>\d+)W)?"
    r"(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_CALENDAR_UNIT = re.compile(r"^P\d+[YM]")


def parse_duration(text: str) -> timedelta:
    """The timedelta of an ISO 8601 duration; ValueError naming what is wrong otherwise."""
    if not isinstance(text, str):
        raise ValueError("must be an ISO 8601 duration string such as PT4H")
    match = _DURATION.match(text)
    if not match:
        if _CALENDAR_UNIT.match(text):
            raise ValueError(f"{text!r}: years and months are not exact; use days (D), weeks (W) or hours (H)")
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT4H or P1DT12H")
    parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
    value = timedelta(**parts)
    if value <= timedelta(0):
        raise ValueError(f"{text!r} must be longer than zero")
    return value


def format_duration(value: timedelta) -> str:
    """A canonical ISO 8601 duration (days, hours, minutes, seconds) for a positive timedelta."""
    if value <= timedelta(0):
        raise ValueError("only positive durations can be formatted")
    whole = int(value.total_seconds())
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    second_text = f"{seconds}.{value.microseconds:06d}".rstrip("0") if value.microseconds else str(seconds)
    parts = [(hours, "H"), (minutes, "M")]
    time = "".join(f"{n}{u}" for n, u in parts if n) + (f"{second_text}S" if seconds or value.microseconds else "")
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")
