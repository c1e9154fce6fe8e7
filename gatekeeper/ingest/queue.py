"""The hand-over queue between the HTTP edge and the dispatcher.

The edge answers as soon as the normalised event is durably queued, well inside GitHub's 10 seconds
and Azure DevOps' 3; everything slower (dedupe, starting orchestrations) happens in the dispatcher,
which the queue retries and, after maxDequeueCount, dead-letters. Event contents are sealed with the
tenant's data key, because the queue is outside the tenant's tables (and holds callback tokens).

A queue message holds at most 64 KiB, and a request within the body limit (inline evidence, an Azure
DevOps `AuthToken` of 44 KiB) seals to more than that. Such events take the claim-check path: the sealed
event goes to a blob in `pipeline-events-large` named after the tenant and event id, sealed exactly as the
message would be but bound to the blob's name, and the message carries only that name. The dispatcher
reads it back, and the blob is deleted after a successful dispatch or kept for the dead-letter path.
A send that fails removes its blob only when the queue certainly stored nothing (the request never left, or
the service refused it with a 4xx); when the answer was lost on the way back the message may be queued, so
the blob stays (an orphan is removed by the storage lifecycle rule after 30 days; a deleted blob would
dead-letter a queued event and lose the gate for a caller that does not retry).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError, ServiceRequestError
from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy, QueueClient

from gatekeeper import json_bounded
from gatekeeper.events.codec import event_from_sealable, event_to_sealable
from gatekeeper.events.model import PipelineEvent
from gatekeeper.store.tables import TENANT_ID_PATTERN, StorageAccount

if TYPE_CHECKING:  # the blob SDK is imported only when a large event needs it (cold start)
    from azure.storage.blob import ContainerClient

PIPELINE_EVENTS_QUEUE = "pipeline-events"
CONNECTOR_EVENTS_QUEUE = "connector-events"
SEAL_TABLE = "queue-" + PIPELINE_EVENTS_QUEUE
MESSAGE_VERSION = 1
LARGE_EVENTS_CONTAINER = PIPELINE_EVENTS_QUEUE + "-large"
LARGE_SEAL_TABLE = "blob-" + LARGE_EVENTS_CONTAINER
QUEUE_MESSAGE_LIMIT = 65_536  # characters of a queue message as stored (the base64 text)
_EVENT_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


class Sealer(Protocol):
    def seal_json(self, tenant_id: str, table: str, partition_key: str, row_key: str, value: Any) -> str: ...
    def open_json(self, tenant_id: str, table: str, partition_key: str, row_key: str, sealed: str) -> Any: ...


@dataclass(frozen=True)
class QueuedEvent:
    tenant_id: str
    event_id: str
    event: PipelineEvent
    blob: str | None = None  # the claim-check blob holding the sealed event, if the message only named it


def large_blob_name(tenant_id: str, event_id: str) -> str:
    """`<tenant>/<event id>.sealed`: derived, so a message can name no other blob than its own."""
    if not TENANT_ID_PATTERN.fullmatch(tenant_id) or not _EVENT_ID.fullmatch(event_id):
        raise ValueError("not a pipeline-events message: bad tenant or event id")
    return f"{tenant_id}/{event_id}.sealed"


class LargeEventStore:
    """The claim-check blobs of `pipeline-events-large`: sealed events too large for a queue message."""

    def __init__(self, container: Callable[[], ContainerClient]) -> None:
        self._container_factory = container
        self._ensured = False

    @classmethod
    def from_storage(cls, storage: StorageAccount, container_name: str = LARGE_EVENTS_CONTAINER) -> LargeEventStore:
        """The store of `storage`; its blob client is built on first use (most events never need it)."""
        return cls(lambda: storage.blobs.get_container_client(container_name))

    @cached_property
    def container(self) -> ContainerClient:
        return self._container_factory()

    @property
    def _container(self) -> ContainerClient:
        return self.container

    def ensure(self) -> None:
        if not self._ensured:
            with contextlib.suppress(ResourceExistsError):
                self._container.create_container()
            self._ensured = True

    def put(self, name: str, sealed: str) -> None:
        self.ensure()
        self._container.upload_blob(name, sealed.encode("ascii"), overwrite=True)

    def get(self, name: str) -> str | None:
        try:
            return self._container.download_blob(name).readall().decode("ascii")
        except ResourceNotFoundError:
            return None

    def delete(self, name: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self._container.delete_blob(name)


def _stored_length(message: str) -> int:
    """Characters the queue stores for `message`: the Functions encoding is base64 of its UTF-8 bytes."""
    return 4 * ((len(message.encode()) + 2) // 3)


def encode_message(sealer: Sealer, event: PipelineEvent, event_id: str, large: LargeEventStore | None = None) -> str:
    """The queue message for `event`; with `large`, an event over the queue limit goes to a blob first and
    the message only names it (claim check). Without `large`, such an event raises ValueError."""
    sealed = sealer.seal_json(event.tenant_id, SEAL_TABLE, event.tenant_id, event_id, event_to_sealable(event))
    message = json.dumps({"v": MESSAGE_VERSION, "tenant": event.tenant_id, "id": event_id, "sealed": sealed})
    if _stored_length(message) <= QUEUE_MESSAGE_LIMIT:
        return message
    if large is None:
        raise ValueError(f"event {event_id}: {_stored_length(message)} characters exceed the queue limit")
    name = large_blob_name(event.tenant_id, event_id)
    in_blob = sealer.seal_json(event.tenant_id, LARGE_SEAL_TABLE, event.tenant_id, name, event_to_sealable(event))
    large.put(name, in_blob)
    return json.dumps({"v": MESSAGE_VERSION, "tenant": event.tenant_id, "id": event_id, "blob": name})


def decode_message(sealer: Sealer, text: str, large: LargeEventStore | None = None) -> QueuedEvent:
    """Raises ValueError for a message that can never be processed (the caller dead-letters it)."""
    try:
        document = json_bounded.loads_object(text)
        if document.get("v") != MESSAGE_VERSION:
            raise ValueError(f"unsupported message version {str(document.get('v'))[:20]!r}")
        tenant_id, event_id = str(document["tenant"]), str(document["id"])
        sealed, blob = document.get("sealed"), document.get("blob")
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a pipeline-events message: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"not a pipeline-events message: {exc}") from None
    if isinstance(sealed, str) and blob is None:
        value = sealer.open_json(tenant_id, SEAL_TABLE, tenant_id, event_id, sealed)
    elif isinstance(blob, str) and sealed is None:
        name = large_blob_name(tenant_id, event_id)
        if blob != name:
            raise ValueError("not a pipeline-events message: the blob is not the one of this event")
        if large is None:
            raise ValueError("a claim-check message, but no blob store to read it from")
        stored = large.get(name)
        if stored is None:
            raise ValueError(f"the claim-check blob {name} is missing")
        value = sealer.open_json(tenant_id, LARGE_SEAL_TABLE, tenant_id, name, stored)
    else:
        raise ValueError("not a pipeline-events message: exactly one of 'sealed' and 'blob' is needed")
    event = event_from_sealable(value)
    if event.tenant_id != tenant_id:
        raise ValueError("message tenant does not match the sealed event")
    return QueuedEvent(tenant_id, event_id, event, blob)


def send_later(storage: StorageAccount, queue_name: str, text: str, delay_seconds: int) -> None:
    """Queue `text` on `queue_name` (base64, as the Functions host reads its queues), invisible for
    `delay_seconds`: a trigger's deferred copy (gatekeeper/ingest/redelivery.py)."""
    queue = storage.queue(queue_name, message_encode_policy=BinaryBase64EncodePolicy())
    queue.send_message(text.encode(), visibility_timeout=delay_seconds)


def certainly_not_sent(exc: BaseException) -> bool:
    """Whether a failed send certainly queued nothing: the request never reached the service (refused,
    unresolvable, connect timeout) or the service refused it with a 4xx. A lost or timed-out answer and a
    5xx (storage may have completed an operation it reports as timed out) leave the outcome open."""
    if isinstance(exc, ServiceRequestError):
        return True
    status = getattr(exc, "status_code", None) if isinstance(exc, HttpResponseError) else None
    return isinstance(status, int) and 400 <= status < 500 and status != 408


class QueueEventSink:
    """Seals and queues accepted events onto `pipeline-events`."""

    def __init__(
        self,
        storage: StorageAccount,
        sealer: Sealer,
        queue_name: str = PIPELINE_EVENTS_QUEUE,
        large: LargeEventStore | None = None,
    ):
        self._large = large
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
        message = encode_message(self._sealer, event, event_id, self._large)
        try:
            self._send(message.encode())
        except Exception as exc:
            if self._large is not None and '"blob"' in message and certainly_not_sent(exc):
                self._large.delete(large_blob_name(event.tenant_id, event_id))  # nothing half-written
            raise

    def send_later(self, text: str, delay_seconds: int) -> None:
        """Queue `text` (an encoded message, e.g. a deferred copy) invisible for `delay_seconds`."""
        self._queue.send_message(text.encode(), visibility_timeout=delay_seconds)

    def _send(self, message: bytes) -> None:
        try:
            self._queue.send_message(message)
        except ResourceNotFoundError:
            # Created when found missing, not by every new instance before its first answer (cold start).
            self.ensure_queue()
            self._queue.send_message(message)
