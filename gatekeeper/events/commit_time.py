"""The time the deployed commit was made: one reading of it for every source.

DORA's lead time for changes runs from the commit to the deployment. Sources state the commit time in RFC 3339
(GitHub `head_commit.timestamp` and the commit object's `committer.date`, the generic API's `commit_time`). A
value without a zone, not RFC 3339, or later than now plus a small clock skew is not a commit time: the
generic API refuses it (problem naming the field), a vendor payload or lookup just has none, so a metric never
fails a gate.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

MAX_FUTURE_SKEW = timedelta(minutes=5)
"""How far past the receiver's clock a commit time may lie (clocks of committers and CI hosts drift)."""

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$")


def parse_rfc3339(value: object) -> datetime:
    """An RFC 3339 date-time with its offset, as UTC. ValueError (with a short reason) otherwise."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with a zone, e.g. 2026-12-05T09:30:00Z")
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError("must be an RFC 3339 date-time with a zone, e.g. 2026-12-05T09:30:00Z") from None


def check_not_future(value: datetime, now: datetime) -> datetime:
    """`value`, or ValueError when it lies more than MAX_FUTURE_SKEW after `now`."""
    if value - now > MAX_FUTURE_SKEW:
        minutes = int(MAX_FUTURE_SKEW.total_seconds() // 60)
        raise ValueError(f"lies in the future (more than {minutes} minutes after the receiver's clock)")
    return value


def commit_time_or_none(value: object, now: datetime) -> datetime | None:
    """A vendor's commit time when it is a plausible one, else None (never an error)."""
    try:
        return check_not_future(parse_rfc3339(value), now)
    except ValueError:
        return None
