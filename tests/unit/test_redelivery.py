"""The deferral of a pipeline-events message whose dispatch failed (`gatekeeper.ingest.redelivery`): 30 s
doubling to 15 minutes, counted from the first queueing across copies, none after 24 h; a malformed or
hostile note starts afresh and never stretches the wait."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.ingest.queue import QUEUE_MESSAGE_LIMIT
from gatekeeper.ingest.redelivery import DEFER_LIMIT, defer, defer_wrapped, unwrap

T0 = datetime(2030, 6, 3, 10, 0, tzinfo=UTC)
MESSAGE = json.dumps({"v": 1, "tenant": "contoso", "id": "e1", "sealed": "v1.abc"})


def test_the_delays_double_from_30_seconds_to_15_minutes_and_keep_the_first_queueing_time():
    text, now, delays = MESSAGE, T0, []
    for _ in range(8):
        deferral = defer(text, now, now, QUEUE_MESSAGE_LIMIT)  # each copy has its own insertion time
        assert deferral is not None
        delays.append(deferral.delay_seconds)
        assert deferral.waited == now - T0
        text, now = deferral.text, now + timedelta(seconds=deferral.delay_seconds)
    assert delays == [30, 60, 120, 240, 480, 900, 900, 900]
    document = json.loads(text)
    assert {k: document[k] for k in ("v", "tenant", "id", "sealed")} == json.loads(MESSAGE)  # the event untouched
    assert document["deferred"] == {"since": T0.isoformat(), "n": 8}


def test_no_deferral_after_24_hours_so_the_host_retries_and_poison_apply():
    first = defer(MESSAGE, T0, T0, QUEUE_MESSAGE_LIMIT)
    assert first is not None
    assert defer(first.text, T0 + DEFER_LIMIT - timedelta(seconds=1), None, QUEUE_MESSAGE_LIMIT) is not None
    assert defer(first.text, T0 + DEFER_LIMIT, None, QUEUE_MESSAGE_LIMIT) is None


def test_a_message_that_is_not_a_json_object_or_would_outgrow_the_queue_is_not_deferred():
    assert defer("not json", T0, T0, QUEUE_MESSAGE_LIMIT) is None
    assert defer("[1, 2]", T0, T0, QUEUE_MESSAGE_LIMIT) is None
    assert defer(MESSAGE, T0, T0, limit_chars=len(MESSAGE)) is None  # no room for the note
    beyond_bounds = MESSAGE[:-1] + ', "deferred": {"n": 1' + "0" * 5000 + "}}"
    assert defer(beyond_bounds, T0, T0, QUEUE_MESSAGE_LIMIT) is None  # the bounded reader refuses it


@pytest.mark.parametrize(
    "note",
    [
        "yes",
        {"since": "not a time", "n": 3},
        {"since": (T0 + timedelta(days=400)).isoformat(), "n": 2},  # a future start reads as now
        {"since": T0.isoformat(), "n": -5},
        {"since": T0.isoformat(), "n": True},
        {"since": T0.isoformat(), "n": 10**9},
    ],
    ids=["string", "bad-since", "future-since", "negative-n", "bool-n", "huge-n"],
)
def test_a_malformed_or_hostile_note_never_stretches_the_wait(note):
    text = json.dumps({**json.loads(MESSAGE), "deferred": note})
    deferral = defer(text, T0, T0, QUEUE_MESSAGE_LIMIT)
    assert deferral is not None and 30 <= deferral.delay_seconds <= 900
    assert datetime.fromisoformat(json.loads(deferral.text)["deferred"]["since"]) <= T0


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=10**6),
    age=st.integers(min_value=0, max_value=3 * 24 * 3600),
)
def test_every_deferral_is_bounded_and_none_outlives_the_limit(n, age):
    since = T0 - timedelta(seconds=age)
    text = json.dumps({**json.loads(MESSAGE), "deferred": {"since": since.isoformat(), "n": n}})
    deferral = defer(text, T0, T0, QUEUE_MESSAGE_LIMIT)
    if timedelta(seconds=age) >= DEFER_LIMIT:
        assert deferral is None
    else:
        assert deferral is not None and 30 <= deferral.delay_seconds <= 900 and deferral.attempt == n + 1


ENVELOPE = '{"connector":"ninjarmm","account":"42","payload":{"id":1},"signature":"sha256=ab"}'


def test_a_signed_envelope_is_wrapped_byte_for_byte_and_rewrapped_never_nested():
    first = defer_wrapped(ENVELOPE, T0, T0, QUEUE_MESSAGE_LIMIT)
    assert first is not None and unwrap(first.text) == ENVELOPE and first.delay_seconds == 30
    second = defer_wrapped(first.text, T0 + timedelta(seconds=30), None, QUEUE_MESSAGE_LIMIT)
    assert second is not None and unwrap(second.text) == ENVELOPE and second.delay_seconds == 60
    assert json.loads(second.text)["deferred"] == {"since": T0.isoformat(), "n": 2}
    assert defer_wrapped(first.text, T0 + DEFER_LIMIT, None, QUEUE_MESSAGE_LIMIT) is None


@pytest.mark.parametrize(
    "text",
    [
        ENVELOPE,
        '{"deferred": {"n": 1}, "message": "x", "signature": "sha256=ab"}',  # more than the wrapper's two keys
        '{"deferred": {"n": 1}, "message": {"connector": "x"}}',  # the message is not a string
        'not json, though it names "message"',
    ],
    ids=["envelope", "extra-key", "object-message", "not-json"],
)
def test_only_an_exact_wrapper_is_unwrapped(text):
    assert unwrap(text) is None


def test_a_copy_held_by_an_earlier_attempts_claim_stays_invisible_until_the_claim_expires():
    now = datetime(2030, 1, 1, tzinfo=UTC)
    text = json.dumps({"v": 1, "sealed": "x"})
    held = defer(text, now, now, QUEUE_MESSAGE_LIMIT, until=now + timedelta(minutes=5))
    assert held is not None and held.delay_seconds == 301, "past the lease, not the first 30 s"
    expired = defer(text, now, now, QUEUE_MESSAGE_LIMIT, until=now - timedelta(minutes=1))
    assert expired is not None and expired.delay_seconds == 30, "an expired claim: the usual delay"
    hostile = defer(text, now, now, QUEUE_MESSAGE_LIMIT, until=now + timedelta(days=3650))
    assert hostile is not None and hostile.delay_seconds == 7 * 24 * 3600, "bounded by the queue's longest"
