"""The log head: one small value both the log (appends) and its checkpointing (publishes) read and write."""

from __future__ import annotations

from dataclasses import dataclass

from gatekeeper.audit.merkle import CompactRange


@dataclass(frozen=True)
class Head:
    """The log head: where the next entry goes and what the last checkpoint said."""

    size: int
    last_hash: str
    frontier: tuple[bytes, ...]
    checkpoint_size: int
    checkpoint_root: str
    checkpoint_time: str
    etag: str | None = None

    def root(self) -> bytes:
        return CompactRange(self.size, self.frontier).root()
