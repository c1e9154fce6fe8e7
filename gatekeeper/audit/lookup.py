"""Find an entry a step may already have appended: the audit half of "exactly once between two writes".

A step that appends an entry and then writes a flag saying so (a vote's `audited`, an action's `announced`) can
fail or die between the two; its retry cannot tell from the flag whether the entry was written, and appending
again would audit one change twice. The step records the log's size before it appends (`head().size`, a lower
bound for its entry's sequence number), and the retry looks from there for the entry it would write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol


class ReadableLog(Protocol):
    """What the lookup needs of `gatekeeper.audit.log.AuditLog`."""

    def entries(self, from_seq: int = 0, to_seq: int | None = None) -> Iterator[dict[str, Any]]: ...

    def open_data(self, entry: Mapping[str, Any]) -> dict[str, Any]: ...


def find_entry(
    log: ReadableLog,
    from_seq: int,
    kind: str,
    instance_id: str,
    where: Callable[[Mapping[str, Any]], bool] = lambda data: True,
) -> int | None:
    """The sequence number of the first entry at or after `from_seq` of this kind about this instance whose
    opened data satisfies `where`, or None. Kind and instance id are stored in the clear, so only candidate
    entries are opened."""
    for entry in log.entries(from_seq):
        if entry.get("kind") == kind and entry.get("instance_id") == instance_id and where(log.open_data(entry)):
            return int(entry["seq"])
    return None
