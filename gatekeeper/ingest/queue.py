"""The hand-over queue between the HTTP edge and the dispatcher.

The edge answers as soon as the normalised event is durably queued, well inside GitHub's 10 seconds
and Azure DevOps' 3; everything slower (dedupe, starting orchestrations) happens in the dispatcher,
which the queue retries and, after maxDequeueCount, dead-letters. Event contents are sealed with the
tenant's data key, because the queue is outside the tenant's tables (and holds callback tokens).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy, QueueClient

from gatekeeper.events.codec import event_from_sealable, event_to_sealable
from gatekeeper.events.model import PipelineEvent
from gatekeeper.store.tables import StorageAccount

PIPELINE_EVENTS_QUEUE = "pipeline-events"
CONNECTOR_EVENTS_QUEUE = "connector-events"
SEAL_TABLE = "queue-" + PIPELINE_EVENTS_QUEUE
MESSAGE_VERSION = 1


class Sealer(Protocol):
    def seal_json(self, tenant_id: str, table: str, partition_key: str, row_key: str, value: Any) -> str: ...
    def open_json(self, tenant_id: str, table: str, partition_key: str, row_key: str, sealed: str) -> Any: ...


@dataclass(frozen=True)
class QueuedEvent:
    tenant_id: str
    event_id: str
    event: PipelineEvent


def encode_message(sealer: Sealer, event: PipelineEvent, event_id: str) -> str:
    sealed = sealer.seal_json(event.tenant_id, SEAL_TABLE, event.tenant_id, event_id, event_to_sealable(event))
    return json.dumps({"v": MESSAGE_VERSION, "tenant": event.tenant_id, "id": event_id, "sealed": sealed})


def decode_message(sealer: Sealer, text: str) -> QueuedEvent:
    """Raises ValueError for a message that can never be processed (the caller dead-letters it)."""
    try:
        document = json.loads(text)
        if document.get("v") != MESSAGE_VERSION:
            raise ValueError(f"unsupported message version {document.get('v')!r}")
        tenant_id, event_id, sealed = str(document["tenant"]), str(document["id"]), str(document["sealed"])
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a pipeline-events message: {exc}") from exc
    event = event_from_sealable(sealer.open_json(tenant_id, SEAL_TABLE, tenant_id, event_id, sealed))
    if event.tenant_id != tenant_id:
        raise ValueError("message tenant does not match the sealed event")
    return QueuedEvent(tenant_id, event_id, event)


class QueueEventSink:
    """Seals and queues accepted events onto `pipeline-events`."""

    def __init__(self, storage: StorageAccount, sealer: Sealer, queue_name: str = PIPELINE_EVENTS_QUEUE):
        self._queue = storage.queue(
            queue_name,
            message_encode_policy=BinaryBase64EncodePolicy(),
            message_decode_policy=BinaryBase64DecodePolicy(),
        )
        self._sealer = sealer

    @property
    def queue(self) -> QueueClient:
        """The queue the dispatcher's trigger reads (the local demo drains it the way the host does)."""
        return self._queue

    def ensure_queue(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            self._queue.create_queue()

    def submit(self, event: PipelineEvent, event_id: str) -> None:
        message = encode_message(self._sealer, event, event_id).encode()
        try:
            self._queue.send_message(message)
        except ResourceNotFoundError:
            # Created when found missing, not by every new instance before its first answer (cold start).
            self.ensure_queue()
            self._queue.send_message(message)
