"""Replaying dead letters: once the cause is fixed, a dead letter goes back to its queue as its producer sent it.

Why each queue's message is rebuilt the way it is: the triggers read base64 (host.json `messageEncoding`), so
the text goes out with the same encode policy the edge uses. A `pipeline-events` message loses only the
unsealed `deferred` note a redelivery added (gatekeeper.ingest.redelivery), so the replay gets a fresh 24 h
of outage deferral; the sealed event or claim-check name is untouched. A `connector-events` or
`slack-interactions` message that was a wrapped deferred copy is unwrapped to the relay's signed envelope or
the sealed vote, byte for byte; nothing is re-signed or re-sealed, so a replay authenticates exactly as the
original would have and cannot carry anything the original did not.

Order: send, then delete the row. A crash between the two leaves the row, and replaying it again queues a
second copy, which is harmless: the dispatcher deduplicates on the business key (one gate), a connector event
becomes a pipeline event deduplicated the same way, and a vote is one vote per person. Refused, with nothing
sent: a truncated message (cut at MAX_STORED_CHARS), a pipeline event whose key is shredded or whose
claim-check blob is gone (it could never open), one that is not a readable message of its queue.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import BinaryBase64EncodePolicy

from gatekeeper import json_bounded, telemetry
from gatekeeper.ingest.deadletter import PIPELINE_EVENTS_QUEUE, BlobReader, DeadLetter, DeadLetters, KeyState
from gatekeeper.ingest.queue import QUEUE_MESSAGE_LIMIT, _stored_length
from gatekeeper.ingest.redelivery import DEFERRAL_FIELD, unwrap
from gatekeeper.store.tables import StorageAccount

CONNECTOR_EVENTS_QUEUE = "connector-events"
SLACK_INTERACTIONS_QUEUE = "slack-interactions"
QUEUES = (PIPELINE_EVENTS_QUEUE, CONNECTOR_EVENTS_QUEUE, SLACK_INTERACTIONS_QUEUE)
ROW_KEY = re.compile(r"[A-Za-z0-9-]{1,64}")  # DeadLetters.record writes `<UTC timestamp>-<8 hex>`


class Outcome(StrEnum):
    REPLAYED = "replayed"
    WOULD_REPLAY = "would replay"
    REFUSED = "refused"
    FAILED = "failed"  # storage or the queue could not be reached; the row is kept


@dataclass(frozen=True)
class RowResult:
    """What happened to one requested dead letter; `reason` says why it was refused or failed."""

    queue: str
    row_key: str
    outcome: Outcome
    reason: str | None = None

    def line(self) -> str:
        text = f"{self.queue}  {self.row_key}  {self.outcome.value}"
        return text + f": {self.reason}" if self.reason else text

    def as_json(self) -> dict[str, str | None]:
        return {"queue": self.queue, "row_key": self.row_key, "outcome": self.outcome.value, "reason": self.reason}


def replay_message(letter: DeadLetter, key_state: KeyState) -> str:
    """The message to send back for `letter`, as its producer sent it. Raises ValueError with the reason
    when it may not be replayed (pure: `key_state` is what DeadLetters.key_state said of it)."""
    if letter.truncated:
        raise ValueError("truncated: the message was cut at 30,000 characters when it was kept")
    if letter.queue == PIPELINE_EVENTS_QUEUE:
        if key_state is KeyState.SHREDDED:
            raise ValueError("key shredded: the key it was sealed under is deleted, it can never open")
        if key_state is KeyState.BLOB_GONE:
            raise ValueError("blob gone: its claim-check blob was deleted")
        if key_state is not KeyState.READABLE:
            raise ValueError("not a sealed pipeline-events message")
        message = _without_deferral(letter.message)
    elif letter.queue in (CONNECTOR_EVENTS_QUEUE, SLACK_INTERACTIONS_QUEUE):
        inner = unwrap(letter.message)  # a deferred copy: the envelope or vote it carries, as it was queued
        message = letter.message if inner is None else inner
        if letter.queue == SLACK_INTERACTIONS_QUEUE and not _is_sealed_vote(message):
            raise ValueError("not a sealed slack-interactions message")
    else:
        raise ValueError(f"not a queue dead letters are replayed to: {letter.queue[:40]!r}")
    if _stored_length(message) > QUEUE_MESSAGE_LIMIT:
        raise ValueError("too large for a queue message")
    return message


def _without_deferral(text: str) -> str:
    """The edge's message without a redelivery's `deferred` note (json.dumps both ways: the same text)."""
    document = json_bounded.loads_object(text)
    if DEFERRAL_FIELD not in document:
        return text
    return json.dumps({k: v for k, v in document.items() if k != DEFERRAL_FIELD})


def _is_sealed_vote(text: str) -> bool:
    try:
        document = json_bounded.loads_object(text)
    except ValueError:
        return False
    return document.get("v") == 1 and all(isinstance(document.get(k), str) for k in ("tenant", "id", "sealed"))


def queue_sender(storage: StorageAccount, queue_name: str) -> Callable[[str], None]:
    """Sends a message as the Functions host reads its queues (base64 of the UTF-8 bytes); the queue is
    created if it is missing (Bicep creates them in Azure)."""
    queue = storage.queue(queue_name, message_encode_policy=BinaryBase64EncodePolicy())

    def send(text: str) -> None:
        try:
            queue.send_message(text.encode())
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                queue.create_queue()
            queue.send_message(text.encode())

    return send


class Replayer:
    """Replays chosen dead letters of one queue: each is sent, then its row deleted (see the module docstring).
    Storage errors (azure.core.exceptions.AzureError) propagate from `find`; `replay` turns one into a FAILED
    result for its row and stops, so the rows after it are untouched."""

    def __init__(self, letters: DeadLetters, blobs: BlobReader | None, send: Callable[[str], None]) -> None:
        self._letters = letters
        self._blobs = blobs
        self._send = send

    def find(self, queue: str, row_keys: list[str]) -> tuple[list[DeadLetter], list[RowResult], list[str]]:
        """(the rows of `queue`, refusals for rows kept under another queue, row keys found nowhere)."""
        found: list[DeadLetter] = []
        elsewhere: list[RowResult] = []
        unknown: list[str] = []
        for row_key in dict.fromkeys(row_keys):
            letter = self._letters.get(queue, row_key)
            if letter is not None:
                found.append(letter)
                continue
            other = next((q for q in QUEUES if q != queue and self._letters.get(q, row_key) is not None), None)
            if other is None:
                unknown.append(row_key)
            else:
                elsewhere.append(RowResult(queue, row_key, Outcome.REFUSED, f"a dead letter of {other}, not {queue}"))
        return found, elsewhere, unknown

    def replay(self, letters: list[DeadLetter], *, dry_run: bool) -> list[RowResult]:
        from azure.core.exceptions import AzureError

        results: list[RowResult] = []
        for letter in letters:
            try:
                message = replay_message(letter, self._letters.key_state(letter, self._blobs))
            except ValueError as refused:
                results.append(self._done(letter, Outcome.REFUSED, str(refused), dry_run))
                continue
            except AzureError as exc:
                results.append(RowResult(letter.queue, letter.row_key, Outcome.FAILED, _failure("read", exc)))
                break
            if dry_run:
                results.append(RowResult(letter.queue, letter.row_key, Outcome.WOULD_REPLAY))
                continue
            try:
                self._send(message)
            except AzureError as exc:
                results.append(RowResult(letter.queue, letter.row_key, Outcome.FAILED, _failure("send", exc)))
                break
            try:
                self._letters.delete(letter)
            except AzureError as exc:
                reason = _failure("delete the row", exc) + "; it was sent: replaying it again is harmless"
                results.append(RowResult(letter.queue, letter.row_key, Outcome.FAILED, reason))
                break
            results.append(self._done(letter, Outcome.REPLAYED, None, dry_run))
        return results

    @staticmethod
    def _done(letter: DeadLetter, outcome: Outcome, reason: str | None, dry_run: bool) -> RowResult:
        if not dry_run:
            telemetry.emit(telemetry.Event.DEAD_LETTER_REPLAYED, queue=letter.queue, outcome=outcome.value)
        return RowResult(letter.queue, letter.row_key, outcome, reason)


def _failure(step: str, exc: Exception) -> str:
    return f"could not {step} ({type(exc).__name__}); the dead letter is kept"
