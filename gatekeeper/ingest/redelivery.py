"""When the dispatcher may not finish a queued event now, it sends the message back with a growing delay.

The event was answered 202 at the edge, so it must not be lost to a passing outage. The host retries a failed
message every 30 seconds (host.json `visibilityTimeout`) and moves it to the poison queue after five
dequeues, which a Key Vault, task hub or storage outage of two and a half minutes would exhaust, and nothing
replays poison. So the dispatcher trigger sends a copy back to its queue, invisible for 30 s doubling to
15 minutes, and completes the original, until the event has waited `DEFER_LIMIT` (24 h) since it was first
queued; after that, or when the copy cannot be sent, the host's retries and the poison path apply as before.
The copy carries `deferred: {"since", "n"}` beside the sealed event (not sealed: it only steers the waiting;
`decode_message` ignores it). Duplicates are harmless: the dispatcher deduplicates on the business key.
The `connector-events` trigger defers the same way, wrapping the signed envelope instead of adding to it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from gatekeeper import json_bounded

DEFER_FIRST = timedelta(seconds=30)
DEFER_MAX = timedelta(minutes=15)
DEFER_LIMIT = timedelta(hours=24)
DEFERRAL_FIELD = "deferred"
WRAPPED_FIELD = "message"
MAX_INVISIBLE_SECONDS = 7 * 24 * 3600  # the queue service's longest visibility timeout
_MAX_DOUBLINGS = 10  # 30 s * 2**5 is already past DEFER_MAX; bounds the exponent of a hostile `n`


@dataclass(frozen=True)
class Deferral:
    """The message to send back, how long it stays invisible, and which deferral this is (1 = the first)."""

    text: str
    delay_seconds: int
    attempt: int
    waited: timedelta


def defer(
    text: str, now: datetime, first_queued: datetime | None, limit_chars: int, *, until: datetime | None = None
) -> Deferral | None:
    """The copy of `text` to send back after a failed dispatch, or None when the event has waited long enough
    (or the message cannot carry the note: not a JSON object, or over `limit_chars` with it). `until`: the copy
    stays invisible at least until then (an earlier attempt's claim on the event expires)."""
    try:
        document = json_bounded.loads_object(text)
    except ValueError:
        return None
    since, count = _previous(document.get(DEFERRAL_FIELD), first_queued or now, now)
    deferral = _deferral(since, count, now, limit_chars, lambda note: {**document, DEFERRAL_FIELD: note})
    if deferral is not None and until is not None:
        past = int((_aware(until) - _aware(now)).total_seconds()) + 1
        deferral = replace(deferral, delay_seconds=max(deferral.delay_seconds, min(past, MAX_INVISIBLE_SECONDS)))
    return deferral


def defer_wrapped(text: str, now: datetime, first_queued: datetime | None, limit_chars: int) -> Deferral | None:
    """Like `defer`, for a queue whose messages must stay byte for byte as sent (the connector envelope is
    signed as a whole): the copy wraps the message, `{"deferred": {...}, "message": "<the message>"}`, and
    the trigger reads it back with `unwrap`. A wrapped copy is re-wrapped, never nested."""
    inner, note = text, None
    wrapped = _wrapper(text)
    if wrapped is not None:
        inner, note = wrapped
    since, count = _previous(note, first_queued or now, now)
    return _deferral(since, count, now, limit_chars, lambda fresh: {DEFERRAL_FIELD: fresh, WRAPPED_FIELD: inner})


def unwrap(text: str) -> str | None:
    """The message a wrapped copy carries, or None when `text` is not one (then it is the message itself)."""
    wrapped = _wrapper(text)
    return wrapped[0] if wrapped is not None else None


def _wrapper(text: str) -> tuple[str, object] | None:
    if f'"{WRAPPED_FIELD}"' not in text:  # the common case, without parsing the message twice
        return None
    try:
        document = json_bounded.loads_object(text)
    except ValueError:
        return None
    inner = document.get(WRAPPED_FIELD)
    if set(document) != {DEFERRAL_FIELD, WRAPPED_FIELD} or not isinstance(inner, str):
        return None
    return inner, document[DEFERRAL_FIELD]


def _deferral(
    since: datetime, count: int, now: datetime, limit_chars: int, build: Callable[[dict[str, object]], object]
) -> Deferral | None:
    waited = now - since
    if waited >= DEFER_LIMIT:
        return None
    delay = min(DEFER_FIRST * (2 ** min(count, _MAX_DOUBLINGS)), DEFER_MAX)
    copy = json.dumps(build({"since": since.isoformat(), "n": count + 1}), separators=(",", ":"))
    if 4 * ((len(copy.encode()) + 2) // 3) > limit_chars:  # stored as base64 by the Functions encoding
        return None
    return Deferral(copy, int(delay.total_seconds()), count + 1, waited)


def _previous(note: object, first_queued: datetime, now: datetime) -> tuple[datetime, int]:
    """(since, deferrals so far) from an earlier copy's note; a missing or malformed note starts afresh at the
    message's own insertion time. A `since` in the future is read as now."""
    since, count = _aware(first_queued), 0
    if isinstance(note, dict):
        try:
            since = _aware(datetime.fromisoformat(str(note.get("since"))))
            raw = note.get("n")
            count = raw if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0 else 0
        except ValueError:
            since, count = _aware(first_queued), 0
    return min(since, _aware(now)), count


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
