"""Dead letters: messages that can never be processed are kept, with the reason, instead of dropped.

Two ways in: a message the code recognises as permanently bad (unknown connector account, invalid
payload), and a message the Functions host moved to `<queue>-poison` after maxDequeueCount failures.
Both land in the shared `gkDeadLetters` table, where `gatekeeper deadletters list` shows them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from azure.data.tables import TableClient

from gatekeeper.store.tables import StorageAccount

DEAD_LETTER_TABLE = "gkDeadLetters"
MAX_STORED_CHARS = 30_000  # a table property holds at most 64 KiB of UTF-16


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    row_key: str
    reason: str
    message: str
    recorded_at: datetime


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
        return row_key

    def list(self, queue: str | None = None) -> list[DeadLetter]:
        table = self._table()
        entities = table.query_entities(f"PartitionKey eq '{queue}'") if queue else table.list_entities()
        return [
            DeadLetter(e["PartitionKey"], e["RowKey"], e["reason"], e["message"], e["recorded_at"]) for e in entities
        ]

    def _table(self) -> TableClient:
        return self._storage.ensure_table(DEAD_LETTER_TABLE)
