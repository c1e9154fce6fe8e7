"""What `POST /api/slack/interactions` and `/api/slack/events` do, free of azure.functions.

Slack wants an answer within 3 seconds, so the request path only authenticates (`edge`), parses, and hands the
decision to the `slack-interactions` queue; the queue trigger runs the identity map, the decision service (which
raises the vote to the orchestration) and the message updates. Two things must happen on the request path:
the reject and mark-done buttons open their modal (`views.open`: its `trigger_id` expires after 3 seconds),
and an empty comment or note, or time spent that is not whole minutes within 1..1440, is answered in the
modal (`response_action: errors`, keyed by the input's block), where the person can still fix it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gatekeeper.errors import InputTooLarge, InvalidInput
from gatekeeper.slack.blocks import COMMENT_BLOCK, MINUTES_BLOCK, NOTE_BLOCK
from gatekeeper.slack.edge import (
    MAX_BODY_BYTES,
    QueueSealer,
    Tenants,
    answer_event,
    authenticate_interaction,
    parse_interaction,
    queue_message,
)

if TYPE_CHECKING:
    from gatekeeper.slack.channel import SlackNotifier
    from gatekeeper.store.tables import StorageAccount

log = logging.getLogger("gatekeeper.slack")
SLACK_INTERACTIONS_QUEUE = "slack-interactions"


def queue_sender(storage: StorageAccount, name: str = SLACK_INTERACTIONS_QUEUE) -> Callable[[bytes], None]:
    """Sends a work item as the Functions host reads queue messages (base64); creates the queue when missing."""
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
    from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy

    queue = storage.queue(
        name, message_encode_policy=BinaryBase64EncodePolicy(), message_decode_policy=BinaryBase64DecodePolicy()
    )

    def send(message: bytes) -> None:
        try:
            queue.send_message(message)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                queue.create_queue()
            queue.send_message(message)

    return send


class SlackRoutes:
    def __init__(
        self,
        tenants: Tenants,
        notifier: SlackNotifier,
        enqueue: Callable[[bytes], None],
        sealer: QueueSealer,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._tenants = tenants
        self._notifier = notifier
        self._enqueue = enqueue
        self._sealer = sealer
        self._now = now

    def interactions(self, body: bytes, headers: Mapping[str, str]) -> dict[str, Any] | None:
        """The JSON answer (None: an empty 200). Raises Unauthenticated / InvalidInput naming the field."""
        if len(body) > MAX_BODY_BYTES:
            raise InputTooLarge(f"At most {MAX_BODY_BYTES} bytes.", code="body-too-large")
        record, payload = authenticate_interaction(body, headers, self._tenants, now=self._now)
        try:
            interaction = parse_interaction(payload)
        except InvalidInput as problem:
            block = _modal_block(problem.field)
            if block is None:
                raise
            said = problem.detail.removeprefix(f"{problem.field}: ")
            return {"response_action": "errors", "errors": {block: said[:1].upper() + said[1:]}}
        if interaction is None:
            return None
        if interaction.kind == "reject":
            self._notifier.open_reject_modal(record, interaction)
            return None
        if interaction.kind == "mark_done-open":
            self._notifier.open_mark_done_modal(record, interaction)
            return None
        if interaction.kind == "reject-submitted" and not interaction.comment:
            needed = "Say why you reject: a comment is required."
            return {"response_action": "errors", "errors": {COMMENT_BLOCK: needed}}
        if interaction.kind == "mark_done" and not interaction.comment:
            needed = "Say what was done: a note is required to mark the task done."
            return {"response_action": "errors", "errors": {NOTE_BLOCK: needed}}
        self._enqueue(queue_message(self._sealer, record.tenant_id, interaction))
        log.info("slack %s queued for gate %s", interaction.kind, interaction.instance_id)
        return None

    def events(self, body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        if len(body) > MAX_BODY_BYTES:
            raise InputTooLarge(f"At most {MAX_BODY_BYTES} bytes.", code="body-too-large")
        return answer_event(body, headers, self._tenants, now=self._now)


def _modal_block(field: str | None) -> str | None:
    """The modal input a refused field belongs to (`view.state.values.<block>...`), for an in-modal answer."""
    for block in (NOTE_BLOCK, MINUTES_BLOCK):
        if field and field.startswith(f"view.state.values.{block}."):
            return block
    return None


__all__ = ["SLACK_INTERACTIONS_QUEUE", "InvalidInput", "SlackRoutes"]
