"""What `deadletters replay` sends back for a dead letter (`gatekeeper.ingest.replay.replay_message`): the
producer's message, byte for byte, without a redelivery's note or wrapper; refused with the reason otherwise."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.ingest.deadletter import DeadLetter, KeyState
from gatekeeper.ingest.queue import QUEUE_MESSAGE_LIMIT
from gatekeeper.ingest.redelivery import defer, defer_wrapped, unwrap
from gatekeeper.ingest.replay import replay_message

T0 = datetime(2030, 6, 3, 10, 0, tzinfo=UTC)
PIPELINE = json.dumps({"v": 1, "tenant": "contoso", "id": "e1", "sealed": "gk1.abcdefgh.xyz"})
CLAIM_CHECK = json.dumps({"v": 1, "tenant": "contoso", "id": "e2", "blob": "contoso/e2.sealed"})
CONNECTOR = '{"connector": "halopsa",  "account": "7", "payload": {"\\u00e9": 1}, "signature": "sha256=ab"}'
VOTE = json.dumps({"v": 1, "tenant": "contoso", "id": "0f" * 16, "sealed": "gk1.abcdefgh.vote"})


def letter(queue: str, message: str, *, truncated: bool = False) -> DeadLetter:
    return DeadLetter(
        queue, "20300603T100000000000-0a0b0c0d", "moved to poison after 5 attempts", message, T0, truncated
    )


def deferred(text: str, times: int = 3) -> str:
    for _ in range(times):
        copy = defer(text, T0, T0, QUEUE_MESSAGE_LIMIT)
        assert copy is not None
        text = copy.text
    return text


def wrapped(text: str, times: int = 2) -> str:
    for _ in range(times):
        copy = defer_wrapped(text, T0, T0, QUEUE_MESSAGE_LIMIT)
        assert copy is not None
        text = copy.text
    return text


@pytest.mark.parametrize("message", [PIPELINE, CLAIM_CHECK])
def test_a_readable_pipeline_event_goes_back_as_the_edge_sent_it_without_the_deferral_note(message):
    assert replay_message(letter("pipeline-events", message), KeyState.READABLE) == message
    assert replay_message(letter("pipeline-events", deferred(message)), KeyState.READABLE) == message


@pytest.mark.parametrize(
    ("state", "reason"),
    [(KeyState.SHREDDED, "key shredded"), (KeyState.BLOB_GONE, "blob gone"), (KeyState.UNKNOWN, "not a sealed")],
)
def test_a_pipeline_event_that_can_never_open_is_refused_with_the_reason(state, reason):
    with pytest.raises(ValueError, match=reason):
        replay_message(letter("pipeline-events", PIPELINE), state)


@pytest.mark.parametrize("queue", ["pipeline-events", "connector-events", "slack-interactions"])
def test_a_truncated_message_is_refused_whatever_its_queue(queue):
    message = VOTE if queue == "slack-interactions" else PIPELINE
    with pytest.raises(ValueError, match="truncated"):
        replay_message(letter(queue, message, truncated=True), KeyState.READABLE)


def test_a_connector_envelope_goes_back_byte_for_byte_also_from_a_wrapped_deferred_copy():
    assert replay_message(letter("connector-events", CONNECTOR), KeyState.UNKNOWN) == CONNECTOR
    assert replay_message(letter("connector-events", wrapped(CONNECTOR)), KeyState.UNKNOWN) == CONNECTOR


def test_a_slack_vote_goes_back_sealed_as_queued_and_anything_else_is_refused():
    assert replay_message(letter("slack-interactions", wrapped(VOTE)), KeyState.UNKNOWN) == VOTE
    with pytest.raises(ValueError, match="not a sealed slack-interactions message"):
        replay_message(letter("slack-interactions", '{"v": 1, "tenant": "contoso"}'), KeyState.UNKNOWN)
    with pytest.raises(ValueError, match="not a sealed slack-interactions message"):
        replay_message(letter("slack-interactions", "[" * 5000), KeyState.UNKNOWN)  # hostile depth


def test_a_message_over_the_queue_limit_once_encoded_is_refused():
    wide = json.dumps({"connector": "halopsa", "payload": "\u20ac" * 29_000})  # 3 bytes each: over 64 KiB in base64
    with pytest.raises(ValueError, match="too large"):
        replay_message(letter("connector-events", wide), KeyState.UNKNOWN)


def test_an_unknown_queue_is_refused():
    with pytest.raises(ValueError, match="not a queue"):
        replay_message(letter("pipeline-events-poison", PIPELINE), KeyState.READABLE)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(text=st.text(max_size=300))
def test_any_stored_connector_text_goes_back_unchanged_or_unwrapped_never_altered_otherwise(text):
    sent = replay_message(letter("connector-events", text), KeyState.UNKNOWN)
    assert sent == text or unwrap(text) == sent  # unchanged, or `text` was a redelivery's wrapper of `sent`
    assert replay_message(letter("connector-events", wrapped(text)), KeyState.UNKNOWN) == text
