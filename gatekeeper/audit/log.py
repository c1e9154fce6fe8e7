"""A tenant's append-only audit log in its Audit table, with signed checkpoints.

Layout (one table per tenant, `gk<tenant>Audit`):

- PartitionKey `log`, RowKey = seq as 20 digits: the entries, written with `create` only, never updated,
  upserted or deleted by this code;
- PartitionKey `log`, RowKey `head`: size, last entry hash, the Merkle compact range (so a checkpoint root
  never needs a scan) and the last checkpoint (size, root, time);
- PartitionKey `checkpoint`, RowKey = size as 20 digits: signed checkpoints (also written, write-once, to
  the WORM blob container, which is what verification trusts); see `gatekeeper.audit.checkpointing`.

Sequence numbers are allocated by one entity-group transaction per append: `update` of the head under its
ETag (If-Match) plus `create` of the new entries, committed atomically in the `log` partition. A concurrent
writer makes the transaction fail with 412 (or 409 when two writers create the first head); the writer then
re-reads the head and retries with jittered exponential backoff. So the sequence is gap-free and each entry
holds its predecessor's hash, however many writers there are.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, TableClient, TableTransactionError, UpdateMode
from pydantic import ValidationError
from pydantic_core import to_jsonable_python
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from gatekeeper.audit.archive import CheckpointArchive
from gatekeeper.audit.checkpointing import LogCheckpoints
from gatekeeper.audit.checkpoints import Checkpoint, load_public_keys, origin_for
from gatekeeper.audit.head import Head
from gatekeeper.audit.merkle import HASH_SIZE, CompactRange
from gatekeeper.audit.ports import NoteSigner, RecordSealer
from gatekeeper.audit.records import (
    ENTRY_FIELDS,
    GENESIS_HASH,
    HEX64,
    RECORD_FORMAT,
    AuditInput,
    AuditRecord,
    RecordKind,
    actor_stays_plain,
    format_time,
    parse_time,
    sealed_entry,
)
from gatekeeper.audit.verify import Progress, VerificationError, VerificationResult, check_log
from gatekeeper.errors import InvalidInput
from gatekeeper.store.envelope import FORMAT as SEALED_FORMAT
from gatekeeper.store.envelope import SealedDataUnreadable
from gatekeeper.store.tables import StorageAccount, TablePurpose, tenant_table_name, validate_tenant_id

log = logging.getLogger(__name__)

ENTRY_PARTITION = "log"
HEAD_ROW = "head"
# Subjects and non-identifier actors are sealed too, each bound to its own field of its entry's row: '#' never
# occurs in a RowKey, so no row's data binding can equal a field binding, and the fields cannot be swapped.
SEALED_TEXT_FIELDS = {"actor": "#actor", "subject": "#subject"}
MAX_ENTRIES_PER_TRANSACTION = 99  # an entity-group transaction holds 100 operations; the head takes one
DATA_CHUNK_CHARS = 30_000  # a Table string property holds 64 KiB (32K UTF-16 code units)
MAX_DATA_CHARS = 600_000  # keeps an entry well under the 1 MiB entity limit
MAX_TRANSACTION_CHARS = 3_000_000  # entity-group transactions are limited to 4 MiB
# The declared defaults of GATEKEEPER_CHECKPOINT_EVERY, _MINUTES and GATEKEEPER_AUDIT_CONTAINER, for logs built
# outside the composition root (tools, tests); tests/unit/test_composition_root.py keeps them in step.
DEFAULT_CHECKPOINT_EVERY = 100
DEFAULT_CHECKPOINT_INTERVAL = timedelta(minutes=15)
DEFAULT_ARCHIVE_CONTAINER = "audit-checkpoints"


class AuditContention(RuntimeError):
    """The head kept changing under us for every attempt: far more concurrent writers than expected."""


class AuditLogCorrupted(RuntimeError):
    """The head entity is unreadable, so no sequence number can be allocated safely. Run `verify`."""


class _Conflict(Exception):
    pass


def _row(seq: int) -> str:
    return f"{seq:020d}"


def _int(value: Any) -> int:
    if isinstance(value, EntityProperty):
        value = value.value
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("not an integer")
    return int(value)


def _int64(value: int) -> EntityProperty:
    return EntityProperty(value, EdmType.INT64)


def _data_json(data: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """The data as plain JSON values (datetimes, enums and models converted) and its JSON size in bytes."""
    try:
        value = to_jsonable_python(data)
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"data: cannot be recorded as JSON ({type(exc).__name__})", field="data") from None
    return value, size


def _validation_problem(exc: ValidationError) -> InvalidInput:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "entry"
    return InvalidInput(
        f"{field}: {first['msg']}",
        field=field,
        errors=[{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()],
    )


def entity_to_entry(entity: Mapping[str, Any]) -> dict[str, Any]:
    """A stored entry entity as a sealed entry dict (as exported). Missing or odd properties are passed
    through as they are, for the verifier to name."""
    parts = entity.get("data_parts", 1)
    try:
        count = _int(parts)
    except ValueError:
        count = 1
    data = entity.get("data")
    if isinstance(data, str) and count > 1:
        data += "".join(str(entity.get(f"data_{i}", "")) for i in range(1, count))
    row = str(entity.get("RowKey", ""))
    special = {"seq": int(row) if row.isdigit() else row, "data": data}
    return {name: special[name] if name in special else entity.get(name) for name in ENTRY_FIELDS}


_PLAIN_COLUMNS = tuple(name for name in ENTRY_FIELDS if name not in ("seq", "data"))
"""Entry fields stored as one column each (seq is the RowKey; data is chunked)."""


def _entry_entity(entry: Mapping[str, Any]) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": ENTRY_PARTITION,
        "RowKey": _row(entry["seq"]),
        "format": RECORD_FORMAT,
    }
    for name in _PLAIN_COLUMNS:
        entity[name] = entry[name]
    data: str = entry["data"]
    chunks = [data[i : i + DATA_CHUNK_CHARS] for i in range(0, len(data), DATA_CHUNK_CHARS)] or [""]
    entity["data"] = chunks[0]
    for i, chunk in enumerate(chunks[1:], start=1):
        entity[f"data_{i}"] = chunk
    entity["data_parts"] = len(chunks)
    return entity


class AuditLog(LogCheckpoints):
    """One tenant's audit log. Thread-safe; share one instance per tenant and process if you like."""

    def __init__(
        self,
        storage: StorageAccount,
        cipher: RecordSealer,
        signer: NoteSigner | None,
        tenant_id: str,
        *,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        checkpoint_interval: timedelta = DEFAULT_CHECKPOINT_INTERVAL,
        archive: CheckpointArchive | None = None,
        clock: Callable[[], datetime] | None = None,
        max_attempts: int = 200,
    ) -> None:
        """`checkpoint_every`, `checkpoint_interval` and the WORM `archive` are values: the composition root
        (gatekeeper.services) passes them from the app settings; without an archive, the default container."""
        self.tenant_id = validate_tenant_id(tenant_id)
        self.origin = origin_for(tenant_id)
        self.table_name = tenant_table_name(tenant_id, TablePurpose.AUDIT)
        self._storage = storage
        self._cipher = cipher
        self._signer = signer
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        if self.checkpoint_every < 1:
            raise ValueError("checkpoint_every: must be at least 1")
        if self.checkpoint_interval <= timedelta(0):
            raise ValueError("checkpoint_interval: must be positive")
        self.archive = archive or CheckpointArchive.from_storage(storage, DEFAULT_ARCHIVE_CONTAINER)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._max_attempts = max_attempts
        self._table: TableClient | None = None
        self._head: Head | None = None
        self._lock = threading.Lock()
        self.last_checkpoint_error: str | None = None

    _contention_error = AuditContention

    def __repr__(self) -> str:
        return f"AuditLog(tenant_id={self.tenant_id!r})"

    # -- storage ---------------------------------------------------------------------------------
    @property
    def table(self) -> TableClient:
        if self._table is None:
            self._table = self._storage.ensure_tenant_table(self.tenant_id, TablePurpose.AUDIT)
        return self._table

    def _read_head(self) -> Head:
        try:
            entity = self.table.get_entity(ENTRY_PARTITION, HEAD_ROW)
        except ResourceNotFoundError:
            now = format_time(self._clock())
            return Head(0, GENESIS_HASH, (), 0, CompactRange().root().hex(), now, None)
        try:
            size = _int(entity["size"])
            frontier_text = str(entity.get("frontier", ""))
            frontier = tuple(
                bytes.fromhex(frontier_text[i : i + 2 * HASH_SIZE]) for i in range(0, len(frontier_text), 2 * HASH_SIZE)
            )
            head = Head(
                size=size,
                last_hash=str(entity["last_hash"]),
                frontier=frontier,
                checkpoint_size=_int(entity["cp_size"]),
                checkpoint_root=str(entity["cp_root"]),
                checkpoint_time=str(entity["cp_time"]),
                etag=entity.metadata["etag"],
            )
            CompactRange(head.size, head.frontier)
            parse_time(head.checkpoint_time)
            if not HEX64.match(head.last_hash) or not HEX64.match(head.checkpoint_root):
                raise ValueError("hash fields")
        except (KeyError, ValueError, TypeError) as exc:
            raise AuditLogCorrupted(f"tenant {self.tenant_id}: the audit log head is unreadable ({exc})") from None
        return head

    def _head_entity(self, head: Head) -> dict[str, Any]:
        return {
            "PartitionKey": ENTRY_PARTITION,
            "RowKey": HEAD_ROW,
            "tenant": self.tenant_id,
            "format": RECORD_FORMAT,
            "size": _int64(head.size),
            "last_hash": head.last_hash,
            "frontier": "".join(h.hex() for h in head.frontier),
            "cp_size": _int64(head.checkpoint_size),
            "cp_root": head.checkpoint_root,
            "cp_time": head.checkpoint_time,
        }

    def _head_operation(self, previous: Head, new: Head) -> tuple[Any, ...]:
        entity = self._head_entity(new)
        if previous.etag is None:
            return ("create", entity)
        return (
            "update",
            entity,
            {"mode": UpdateMode.REPLACE, "etag": previous.etag, "match_condition": MatchConditions.IfNotModified},
        )

    def head(self) -> Head:
        """The head as stored now (fresh read)."""
        return self._read_head()

    # -- appending -------------------------------------------------------------------------------
    def append(
        self,
        kind: RecordKind | str,
        actor: str,
        instance_id: str | None = None,
        subject: str | None = None,
        data: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditRecord:
        """Append one entry and return it (with its seq and hash). Raises InvalidInput naming the
        field for bad input, SealingUnavailable when the tenant key can't be used (nothing is written)."""
        item = self._input(
            kind=kind, actor=actor, instance_id=instance_id or "", subject=subject or "", data=dict(data or {}), at=at
        )
        return self._append_items([item])[0]

    def append_many(self, items: Sequence[AuditInput | Mapping[str, Any]]) -> list[AuditRecord]:
        """Append several entries in order, up to 99 per transaction (contiguous sequence numbers within
        each transaction)."""
        parsed = [i if isinstance(i, AuditInput) else self._input(**i) for i in items]
        return self._append_items(parsed)

    @staticmethod
    def _input(**fields: Any) -> AuditInput:
        try:
            return AuditInput(**fields)
        except ValidationError as exc:
            raise _validation_problem(exc) from None

    def _append_items(self, items: list[AuditInput]) -> list[AuditRecord]:
        payloads = [_data_json(item.data) for item in items]
        records: list[AuditRecord] = []
        start = 0
        while start < len(items):
            end, budget = start, 0
            while end < len(items) and end - start < MAX_ENTRIES_PER_TRANSACTION:
                cost = payloads[end][1] * 2 + 2048  # sealed base64 plus fields, generously
                if end > start and budget + cost > MAX_TRANSACTION_CHARS:
                    break
                budget += cost
                end += 1
            records.extend(self._commit(items[start:end], payloads[start:end]))
            start = end
        return records

    def _commit(self, items: list[AuditInput], payloads: list[tuple[dict[str, Any], int]]) -> list[AuditRecord]:
        retrying = Retrying(
            retry=retry_if_exception_type(_Conflict),
            wait=wait_random_exponential(multiplier=0.005, max=0.25),
            stop=stop_after_attempt(self._max_attempts),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    records, checkpoint = self._try_commit(
                        items, payloads, fresh=attempt.retry_state.attempt_number > 1
                    )
        except _Conflict:
            raise AuditContention(
                f"tenant {self.tenant_id}: could not append after {self._max_attempts} attempts (concurrent writers)"
            ) from None
        if checkpoint is not None:
            self._publish_quietly(checkpoint)
        return records

    def _try_commit(
        self, items: list[AuditInput], payloads: list[tuple[dict[str, Any], int]], *, fresh: bool
    ) -> tuple[list[AuditRecord], Checkpoint | None]:
        with self._lock:
            cached = self._head
        head = cached if cached is not None and not fresh else self._read_head()
        now = self._clock()
        compact = CompactRange(head.size, head.frontier)
        seq, prev = head.size, head.last_hash
        operations: list[tuple[Any, ...]] = []
        records: list[AuditRecord] = []
        for item, (value, size) in zip(items, payloads, strict=True):
            at = item.at or now
            sealed = self._cipher.seal_json(self.tenant_id, self.table_name, ENTRY_PARTITION, _row(seq), value)
            if len(sealed) > MAX_DATA_CHARS:
                raise InvalidInput(f"data: too large for one audit entry ({size} bytes of JSON)", field="data")
            entry = sealed_entry(
                self.tenant_id,
                seq,
                item.kind.value,
                format_time(at),
                item.actor if actor_stays_plain(item.actor) else self._seal_text(seq, "actor", item.actor),
                item.instance_id,
                self._seal_text(seq, "subject", item.subject) if item.subject else "",
                sealed,
                prev,
            )
            operations.append(("create", _entry_entity(entry)))
            compact.append(bytes.fromhex(entry["entry_hash"]))
            records.append(
                AuditRecord(
                    tenant_id=self.tenant_id,
                    seq=seq,
                    kind=item.kind.value,
                    at=at.astimezone(UTC),
                    actor=item.actor,
                    instance_id=item.instance_id,
                    subject=item.subject,
                    data=value,
                    prev_hash=prev,
                    entry_hash=entry["entry_hash"],
                )
            )
            prev = entry["entry_hash"]
            seq += 1
        new_head = Head(
            seq, prev, tuple(compact.hashes), head.checkpoint_size, head.checkpoint_root, head.checkpoint_time
        )
        checkpoint = None
        if self._signer is not None and self._due(new_head, now, force=False):  # no signer: no checkpoints
            checkpoint = Checkpoint(self.origin, seq, compact.root(), format_time(now))
            new_head = replace(
                new_head, checkpoint_size=seq, checkpoint_root=checkpoint.root.hex(), checkpoint_time=checkpoint.time
            )
        try:
            result = self.table.submit_transaction([self._head_operation(head, new_head), *operations])
        except TableTransactionError as exc:
            if exc.status_code == 409 and fresh and head.etag is not None and exc.index > 0:
                raise AuditLogCorrupted(
                    f"tenant {self.tenant_id}: entry seq {head.size} already exists although the head says the "
                    "log ends before it; run `audit verify`"
                ) from None
            if exc.status_code in (409, 412):
                with self._lock:
                    self._head = None
                raise _Conflict() from None
            raise
        with self._lock:
            self._head = replace(new_head, etag=result[0].get("etag"))
        return records, checkpoint

    # -- reading ---------------------------------------------------------------------------------
    def entries(self, from_seq: int = 0, to_seq: int | None = None) -> Iterator[dict[str, Any]]:
        """Sealed entries with from_seq <= seq < to_seq, in order, as stored (the export bundle form)."""
        query = f"PartitionKey eq '{ENTRY_PARTITION}' and RowKey ge '{_row(max(from_seq, 0))}'"
        query += f" and RowKey lt '{_row(to_seq)}'" if to_seq is not None else f" and RowKey lt '{HEAD_ROW}'"
        try:
            for entity in self.table.query_entities(query):
                yield entity_to_entry(entity)
        except ResourceNotFoundError:
            return

    def _seal_text(self, seq: int, field: str, value: str) -> str:
        binding = _row(seq) + SEALED_TEXT_FIELDS[field]
        return self._cipher.seal_json(self.tenant_id, self.table_name, ENTRY_PARTITION, binding, value)

    def open_text(self, entry: Mapping[str, Any], field: str) -> str:
        """The readable `actor` or `subject` of a stored entry: opened when sealed, as stored when plain (Entra
        object ids, system actors, entries written before these fields were sealed). Raises
        SealedDataUnreadable when a sealed value does not open here."""
        value = entry.get(field)
        if not isinstance(value, str) or not value.startswith(SEALED_FORMAT + "."):
            return value if isinstance(value, str) else ""
        binding = _row(int(entry["seq"])) + SEALED_TEXT_FIELDS[field]
        opened = self._cipher.open_json(self.tenant_id, self.table_name, ENTRY_PARTITION, binding, value)
        if not isinstance(opened, str):
            raise SealedDataUnreadable(f"tenant {self.tenant_id}: sealed {field} is not text", reason="not-json")
        return opened

    def readable(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of a stored entry with `actor` and `subject` opened for the tenant's own auditors (exports).
        A field that no longer opens (its key destroyed, or moved) is left as stored, so one bad entry does not
        hide the others; verification judges the stored form anyway."""
        view = dict(entry)
        for field in SEALED_TEXT_FIELDS:
            with contextlib.suppress(SealedDataUnreadable, ValueError, KeyError, TypeError):
                view[field] = self.open_text(entry, field)
        return view

    def open_data(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """The opened `data` of a sealed entry. Raises SealedDataUnreadable if it was moved or its key is gone."""
        value = self._cipher.open_json(
            self.tenant_id, self.table_name, ENTRY_PARTITION, _row(int(entry["seq"])), entry["data"]
        )
        return value if isinstance(value, dict) else {"value": value}

    def records(self, from_seq: int = 0, to_seq: int | None = None) -> Iterator[AuditRecord]:
        """Entries with their data opened."""
        for entry in self.entries(from_seq, to_seq):
            yield AuditRecord(
                tenant_id=self.tenant_id,
                seq=entry["seq"],
                kind=entry["kind"],
                at=parse_time(entry["at"]),
                actor=self.open_text(entry, "actor"),
                instance_id=entry["instance_id"],
                subject=self.open_text(entry, "subject"),
                data=self.open_data(entry),
                prev_hash=entry["prev_hash"],
                entry_hash=entry["entry_hash"],
            )

    # -- verification ----------------------------------------------------------------------------
    @property
    def has_signer(self) -> bool:
        return self._signer is not None

    def trusted_public_key_pem(self) -> str:
        """The checkpoint public key as this log's signer knows it (from Key Vault or the local JWK)."""
        if self._signer is None:
            raise ValueError("this AuditLog has no checkpoint signer")
        return self._signer.public_key_pem()

    def trusted_keys(self, public_key_pem: str | bytes | None = None) -> dict[str, Any]:
        if public_key_pem is not None:
            return load_public_keys(public_key_pem)
        if self._signer is None:
            raise ValueError("public_key_pem: needed to verify when the log has no signer")
        return load_public_keys(self._signer.public_key_pem())

    def verify(
        self, *, public_key_pem: str | bytes | None = None, progress: Progress | None = None
    ) -> VerificationResult:
        """`check` that raises: the verified result, or VerificationError naming the first bad entry."""
        result = self.check(public_key_pem=public_key_pem, progress=progress)
        if not result.ok:
            raise VerificationError.of(result)
        return result

    def check(
        self, *, public_key_pem: str | bytes | None = None, progress: Progress | None = None
    ) -> VerificationResult:
        """Online verification of the whole log as stored now: entries, head, table and archived checkpoints,
        reported failed or not. Entries after the last checkpoint are allowed (reported as `unsigned_tail`)."""
        keys = self.trusted_keys(public_key_pem)
        entries = list(self.entries())
        try:
            head: Head | None = self._read_head()
        except AuditLogCorrupted:
            head = None
        result = check_log(
            self.tenant_id,
            entries,
            self.all_checkpoints(),
            keys,
            expected_size=head.size if head else None,
            expected_last_hash=head.last_hash if head and head.size else None,
            allow_unsigned_tail=True,
            progress=progress,
        )
        if result.ok and entries and (head is None or head.etag is None):
            return replace(
                result,
                ok=False,
                first_bad_seq=len(entries),
                problem="the log head is missing or unreadable, so removed entries cannot be ruled out",
            )
        return result
