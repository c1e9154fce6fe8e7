"""Checkpointing of a tenant's audit log: when a checkpoint is due, signing and publishing it (WORM archive
first, then the table copy), repairing one whose publication failed, and reading checkpoints back.

Kept apart from the log's append path (`gatekeeper.audit.log`), which only asks `_due` after a commit and
hands the checkpoint to `_publish_quietly`. Checkpoints live in the log's table under PartitionKey
`checkpoint`, RowKey = size as 20 digits; the WORM copy is what verification trusts.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from gatekeeper.audit import strict_json
from gatekeeper.audit.archive import CheckpointArchive
from gatekeeper.audit.checkpoints import Checkpoint, SignedCheckpoint, sign_checkpoint
from gatekeeper.audit.ports import NoteSigner
from gatekeeper.audit.records import format_time, parse_time

if TYPE_CHECKING:
    from gatekeeper.audit.head import Head

log = logging.getLogger("gatekeeper.audit.log")

CHECKPOINT_PARTITION = "checkpoint"


def _row(size: int) -> str:
    return f"{size:020d}"


class LogCheckpoints:
    """The checkpoint half of `AuditLog` (mixed in): it works on the log's head and table."""

    tenant_id: str
    origin: str
    archive: CheckpointArchive
    checkpoint_every: int
    checkpoint_interval: timedelta
    last_checkpoint_error: str | None
    _signer: NoteSigner | None
    _clock: Callable[[], datetime]
    _max_attempts: int
    _lock: threading.Lock
    _head: Head | None
    _contention_error: type[Exception]

    if TYPE_CHECKING:

        @property
        def table(self) -> TableClient: ...

        def _read_head(self) -> Head: ...

        def _head_entity(self, head: Head) -> dict[str, Any]: ...

    def _due(self, head: Head, now: datetime, *, force: bool) -> bool:
        if head.size <= head.checkpoint_size:
            return False
        if force or head.size - head.checkpoint_size >= self.checkpoint_every:
            return True
        return now - parse_time(head.checkpoint_time) >= self.checkpoint_interval

    # -- checkpoints -----------------------------------------------------------------------------
    def _publish_quietly(self, checkpoint: Checkpoint) -> None:
        """After the entries are committed a failed signature must not fail the append (a retry would
        record the step twice): log it; `checkpoint()` repairs it from the head later."""
        try:
            self._publish(checkpoint)
            self.last_checkpoint_error = None
        except Exception as exc:
            self.last_checkpoint_error = type(exc).__name__
            log.warning(
                "tenant %s: checkpoint at size %d not published yet (%s)",
                self.tenant_id,
                checkpoint.size,
                type(exc).__name__,
            )

    def _publish(self, checkpoint: Checkpoint) -> SignedCheckpoint:
        if self._signer is None:
            raise RuntimeError("this AuditLog has no checkpoint signer")
        signed = sign_checkpoint(self._signer, checkpoint)
        if not self.archive.put(self.tenant_id, signed):
            archived = self.archive.get(self.tenant_id, checkpoint.size)
            signed = archived or signed
        entity = {"PartitionKey": CHECKPOINT_PARTITION, "RowKey": _row(checkpoint.size), **signed.model_dump()}
        with contextlib.suppress(ResourceExistsError):  # already stored by an earlier attempt
            self.table.create_entity(entity)
        return signed

    def _stored_checkpoint(self, size: int) -> SignedCheckpoint | None:
        try:
            entity = self.table.get_entity(CHECKPOINT_PARTITION, _row(size))
        except ResourceNotFoundError:
            return None
        return SignedCheckpoint.model_validate({k: entity.get(k) for k in SignedCheckpoint.model_fields})

    def checkpoint(self, force: bool = False) -> SignedCheckpoint | None:
        """Sign a checkpoint now if one is due (N entries or T minutes since the last, or `force` and there
        are unsigned entries); repair a checkpoint whose publication failed. Returns the latest checkpoint
        (None for an empty log). Call it from a timer so a quiet log still gets its T-minute checkpoint."""
        for _ in range(self._max_attempts):
            head = self._read_head()
            latest: SignedCheckpoint | None = None
            if head.checkpoint_size > 0:
                latest = self._stored_checkpoint(head.checkpoint_size)
                if latest is None:
                    latest = self._publish(
                        Checkpoint(
                            self.origin, head.checkpoint_size, bytes.fromhex(head.checkpoint_root), head.checkpoint_time
                        )
                    )
            now = self._clock()
            if not self._due(head, now, force=force):
                return latest
            checkpoint = Checkpoint(self.origin, head.size, head.root(), format_time(now))
            new_head = replace(
                head, checkpoint_size=head.size, checkpoint_root=checkpoint.root.hex(), checkpoint_time=checkpoint.time
            )
            try:
                self.table.update_entity(
                    self._head_entity(new_head),
                    mode=UpdateMode.REPLACE,
                    etag=head.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except HttpResponseError as exc:
                if exc.status_code in (409, 412):
                    continue
                raise
            with self._lock:
                self._head = None
            return self._publish(checkpoint)
        raise self._contention_error(f"tenant {self.tenant_id}: could not record a checkpoint (concurrent writers)")

    def checkpoints(self) -> list[SignedCheckpoint]:
        """Checkpoints as stored in the table, in size order (convenience copy of the archive)."""
        found = []
        for entity in self.table.query_entities(f"PartitionKey eq '{CHECKPOINT_PARTITION}'"):
            found.append(SignedCheckpoint.model_validate({k: entity.get(k) for k in SignedCheckpoint.model_fields}))
        return found

    def all_checkpoints(self) -> list[Any]:
        """Checkpoints from the WORM archive and the table, raw (dicts), for the verifier to judge."""
        raw: list[Any] = []
        for name, body in self.archive.list(self.tenant_id):
            try:  # strictly: a blob that repeats a key means two things, so it counts as damaged
                raw.append(strict_json.loads(body, source=f"WORM archive blob {name}"))
            except strict_json.StrictJSONError:
                raw.append({"note": None})
        for entity in self.table.query_entities(f"PartitionKey eq '{CHECKPOINT_PARTITION}'"):
            raw.append({k: entity.get(k) for k in SignedCheckpoint.model_fields})
        return raw
