"""Dead letters: messages that can never be processed are kept, with the reason, instead of dropped.

Two ways in: a message the code recognises as permanently bad (unknown connector account, invalid
payload), and a message the Functions host moved to `<queue>-poison` after maxDequeueCount failures.
Both land in the shared `gkDeadLetters` table, where `gatekeeper deadletters list` shows them. A
`pipeline-events` dead letter keeps the sealed message, so whether it can still be read (and replayed) depends
on its key: `key_state` says whether the data or transit key it was sealed under is still in the tenant's Keys
table, or was deleted (transit keys past GATEKEEPER_TRANSIT_KEY_RETENTION_DAYS are, gatekeeper.store.retention).
"""

from __future__ import annotations

import contextlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from gatekeeper import json_bounded, telemetry
from gatekeeper.store.tables import InvalidTenantId, StorageAccount, TablePurpose, validate_tenant_id
from gatekeeper.store.transit import TRANSIT_PARTITION, is_transit_id

DEAD_LETTER_TABLE = "gkDeadLetters"
MAX_STORED_CHARS = 30_000  # a table property holds at most 64 KiB of UTF-16
PIPELINE_EVENTS_QUEUE = "pipeline-events"
DATA_KEY_PARTITION = "datakey"  # gatekeeper.store.keyring.DATA_KEY_PARTITION (not imported: no Key Vault SDK)
_SEALED = re.compile(r"gk1\.([a-z0-9]{8,32})\.")
_PROBLEM = re.compile(r"^\d{3} ([a-z0-9][a-z0-9-]{0,39}):")  # "<status> <problem code>: <detail>"
_CAUSES = ("undecodable", "integrity")


def dead_letter_cause(reason: str, dequeue_count: int | None) -> str:
    """A bounded name for why a message became a dead letter (telemetry and alerts; the reason itself is
    free text and stays in the table): poison, undecodable, integrity, the problem code, or other."""
    if dequeue_count is not None:
        return "poison"
    head = reason.split(":", 1)[0]
    if head in _CAUSES:
        return head
    problem = _PROBLEM.match(reason)
    return problem.group(1) if problem else "other"


class KeyState(StrEnum):
    """Whether a dead letter's sealed event can still be read."""

    READABLE = "readable"  # its key is in the tenant's Keys table (the KEK must still unwrap it)
    SHREDDED = "shredded"  # its key is gone: deleted by retention (or never registered); unreadable for good
    BLOB_GONE = "blob-gone"  # a claim-check message whose blob is gone (lifecycle rule, 30 days)
    UNKNOWN = "unknown"  # not a sealed pipeline-events message (undecodable, truncated, another queue)


class BlobReader(Protocol):
    """What `key_state` needs of the claim-check store (gatekeeper.ingest.queue.LargeEventStore)."""

    def get(self, name: str) -> str | None: ...


def sealed_key(message: str, blobs: BlobReader | None = None) -> tuple[str, str] | KeyState:
    """(tenant id, key id) a pipeline-events message was sealed under, or why that cannot be told."""
    try:
        document = json_bounded.loads_object(message)
        tenant_id = validate_tenant_id(str(document.get("tenant", "")))
    except (ValueError, InvalidTenantId):
        return KeyState.UNKNOWN
    sealed, blob = document.get("sealed"), document.get("blob")
    if isinstance(blob, str) and sealed is None:
        if blobs is None:
            return KeyState.UNKNOWN
        from gatekeeper.ingest.queue import large_blob_name  # the one naming rule (loaded where letters are read)

        event_id = document.get("id")
        try:  # a forged id ("../x") names no blob of the container, and a message names only its own blob
            if not isinstance(event_id, str) or blob != large_blob_name(tenant_id, event_id):
                return KeyState.UNKNOWN
        except ValueError:
            return KeyState.UNKNOWN
        sealed = blobs.get(blob)
        if sealed is None:
            return KeyState.BLOB_GONE
    match = _SEALED.match(sealed) if isinstance(sealed, str) else None
    return (tenant_id, match.group(1)) if match else KeyState.UNKNOWN


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    row_key: str
    reason: str
    message: str
    recorded_at: datetime
    truncated: bool = False  # the message was cut at MAX_STORED_CHARS: it cannot be replayed


class DeadLetters:
    def __init__(self, storage: StorageAccount):
        self._storage = storage

    def record(self, queue: str, message: str, reason: str, *, dequeue_count: int | None = None) -> str:
        table = self._table()
        now = datetime.now(UTC)
        row_key = f"{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"
        table.create_entity(
            {
                "PartitionKey": queue,
                "RowKey": row_key,
                "reason": reason[:1000],
                "message": message[:MAX_STORED_CHARS],
                "truncated": len(message) > MAX_STORED_CHARS,
                "dequeue_count": dequeue_count or 0,
                "recorded_at": now,
            }
        )
        telemetry.emit(
            telemetry.Event.DEAD_LETTERED,
            queue=queue,
            cause=dead_letter_cause(reason, dequeue_count),
            dequeue_count=dequeue_count,
        )
        return row_key

    def list(self, queue: str | None = None) -> list[DeadLetter]:
        table = self._table()
        entities = table.query_entities(f"PartitionKey eq '{queue}'") if queue else table.list_entities()
        return [_letter(e) for e in entities]

    def get(self, queue: str, row_key: str) -> DeadLetter | None:
        """One dead letter of `queue`, or None when that queue has no such row."""
        try:
            return _letter(self._table().get_entity(queue, row_key))
        except ResourceNotFoundError:
            return None

    def delete(self, letter: DeadLetter) -> None:
        """Forget a dead letter (after its replay was sent); one already deleted is no error."""
        with contextlib.suppress(ResourceNotFoundError):
            self._table().delete_entity(letter.queue, letter.row_key)

    def key_state(self, letter: DeadLetter, blobs: BlobReader | None = None) -> KeyState:
        """For a pipeline-events dead letter: is the key its event was sealed under still there? Reads one
        Keys-table row (no Key Vault call, nothing is opened). Raises AzureError if the table cannot be read."""
        if letter.queue != PIPELINE_EVENTS_QUEUE:
            return KeyState.UNKNOWN
        found = sealed_key(letter.message, blobs)
        if isinstance(found, KeyState):
            return found
        tenant_id, key_id = found
        partition = TRANSIT_PARTITION if is_transit_id(key_id) else DATA_KEY_PARTITION
        try:
            self._storage.tenant_table(tenant_id, TablePurpose.KEYS).get_entity(partition, key_id, select=["RowKey"])
        except ResourceNotFoundError:  # no such row (or no Keys table left at all)
            return KeyState.SHREDDED
        return KeyState.READABLE

    def _table(self) -> TableClient:
        return self._storage.ensure_table(DEAD_LETTER_TABLE)


def _letter(entity: dict[str, Any]) -> DeadLetter:
    return DeadLetter(
        entity["PartitionKey"],
        entity["RowKey"],
        entity["reason"],
        entity["message"],
        entity["recorded_at"],
        bool(entity.get("truncated", False)),
    )
