"""The tenant registry in Azure Tables: tenant records and an index from source identity to tenant.

Lookups are cached in process for a bounded time, because every ingested event needs one and the
registry changes rarely; an import invalidates this process's cache at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from gatekeeper.errors import Conflict, InvalidInput, NotFound
from gatekeeper.settings import DataBoundary
from gatekeeper.store.tables import SharedTable, StorageAccount
from gatekeeper.tenancy.boundary import require_fit
from gatekeeper.tenancy.model import TenantRecord, normalise_identity
from gatekeeper.tenancy.references import first_problem

TENANT_PARTITION = "tenant"
IDENTITY_PARTITION = "identity"


class RegistryConflict(Conflict, ValueError):
    """An import would map one source identity to two tenants."""

    default_code = "identity-claimed"
    default_title = "The identity belongs to another tenant"

    def __str__(self) -> str:
        return self.detail


def identity_row_key(identity: str) -> str:
    """Identities hold characters table keys forbid ('/', '#', '?'), so rows are keyed by their hash."""
    return hashlib.sha256(normalise_identity(identity).encode()).hexdigest()


class TenantRegistry:
    def __init__(
        self,
        storage: StorageAccount,
        cache_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        data_boundary: DataBoundary = DataBoundary.ANY,
    ):
        """`data_boundary` is the deployment's (GATEKEEPER_DATA_BOUNDARY): imports of tenants that require
        another one are refused (gatekeeper.tenancy.boundary)."""
        self._storage = storage
        self.data_boundary = data_boundary
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._identities: dict[str, tuple[float, str | None]] = {}
        self._records: dict[str, tuple[float, TenantRecord | None]] = {}
        self._table: TableClient | None = None
        self._reader: TableClient | None = None

    @property
    def table(self) -> TableClient:
        if self._table is None:
            self._table = self._storage.ensure_table(SharedTable.TENANTS)
        return self._table

    @property
    def _lookups(self) -> TableClient:
        """Reads create nothing: a registry whose table does not exist yet knows no tenant (404 = unknown), and
        a new instance should not spend a create-table round trip before answering its first request."""
        if self._reader is None:
            self._reader = self._storage.table(SharedTable.TENANTS)
        return self._reader

    # -- reads -------------------------------------------------------------------------------------

    def get(self, tenant_id: str) -> TenantRecord | None:
        cached = self._cached(self._records, tenant_id)
        if cached is not _MISS:
            return cached  # type: ignore[return-value]
        record = self._read_record(tenant_id)
        self._store(self._records, tenant_id, record)
        return record

    def tenant_for_identity(self, identity: str) -> str | None:
        key = normalise_identity(identity)
        cached = self._cached(self._identities, key)
        if cached is not _MISS:
            return cached  # type: ignore[return-value]
        tenant_id = self._read_identity(key)
        self._store(self._identities, key, tenant_id)
        return tenant_id

    def resolve(self, identities: Iterable[str]) -> TenantRecord | None:
        """The enabled tenant the first known identity belongs to, or None."""
        for identity in identities:
            tenant_id = self.tenant_for_identity(identity)
            if tenant_id:
                record = self.get(tenant_id)
                return record if record and record.enabled else None
        return None

    def candidates(self, identities: Iterable[str]) -> list[TenantRecord]:
        """Every enabled tenant any of the identities belongs to, each once, in the order first named.

        The hints come from an unverified body and may name several tenants (a tenant's own org beside
        another tenant's repository); the caller authenticates against each in turn and then checks that
        every named target belongs to the one that authenticated.
        """
        return list(self.iter_candidates(identities))

    def iter_candidates(self, identities: Iterable[str]) -> Iterator[TenantRecord]:
        """`candidates`, one at a time: each hint is looked up only when the tenants before it were tried, so
        a request whose first tenant authenticates costs one lookup, not one per hint (cold start)."""
        seen: set[str] = set()
        for identity in identities:
            tenant_id = self.tenant_for_identity(identity)
            if not tenant_id or tenant_id in seen:
                continue
            seen.add(tenant_id)
            record = self.get(tenant_id)
            if record and record.enabled:
                yield record

    def records(self) -> list[TenantRecord]:
        entities = self.table.query_entities(f"PartitionKey eq '{TENANT_PARTITION}'")
        return sorted((TenantRecord.model_validate_json(e["record"]) for e in entities), key=lambda r: r.tenant_id)

    # -- writes ------------------------------------------------------------------------------------

    def import_records(self, records: list[TenantRecord]) -> None:
        """Add or replace tenants. Everything is checked before anything is written: each record's data
        boundary against the deployment's (BoundaryMismatch naming `tenants[i].data_boundary`), then identities.
        Then every identity is claimed for its tenant (create-only or ETag-conditional, `_claim`) before any
        record is written, so of two concurrent imports claiming one identity for two tenants one wins and the
        other hears RegistryConflict with nothing of its own left written; identities a tenant no longer names
        are deleted only as read (`_release`)."""
        self.check_boundaries(records)
        for index, record in enumerate(records):  # outbound credentials name only the tenant's own settings
            refused = first_problem(record)
            if refused is not None:
                field = f"tenants[{index}].{refused[0]}"
                raise InvalidInput(f"{field}: {refused[1]}", field=field)
        claimed: dict[str, str] = {}
        for record in records:
            for identity in record.all_identities:
                owner = claimed.setdefault(identity, record.tenant_id)
                if owner != record.tenant_id:
                    raise RegistryConflict(f"identity {identity} is claimed by both {owner} and {record.tenant_id}")
        importing = {r.tenant_id for r in records}
        for identity, tenant_id in claimed.items():
            existing = self._read_identity(identity)
            if existing and existing != tenant_id and existing not in importing:
                raise RegistryConflict(f"identity {identity} already belongs to another tenant")

        previous = {r.tenant_id: self._read_record(r.tenant_id) for r in records}
        self._claim(claimed, importing)
        now = datetime.now(UTC).isoformat()
        for record in records:
            self.table.upsert_entity(
                {
                    "PartitionKey": TENANT_PARTITION,
                    "RowKey": record.tenant_id,
                    "record": record.model_dump_json(),
                    "updated_at": now,
                },
                mode=UpdateMode.REPLACE,
            )
        for record in records:
            before = previous[record.tenant_id]
            stale = set(before.all_identities) - set(record.all_identities) if before else set()
            for identity in stale - claimed.keys():
                self._release(identity, record.tenant_id)
        self.invalidate()

    def _claim(self, claimed: dict[str, str], importing: set[str]) -> None:
        """Point every identity at its tenant before any record is written, each write create-only or
        conditional on the ETag read, so a concurrent import claiming the same identity for another tenant
        cannot be overwritten (last writer wins) and both imports report success. The loser hears
        RegistryConflict and hands back what it had claimed; no record of its is written. So does an import whose
        claims fail midway (an outage): nothing is left pointing at a tenant whose record was never written."""
        undo: list[tuple[str, str | None, str]] = []  # (identity, owner before, ETag of our write)
        try:
            for identity, tenant_id in claimed.items():
                undo.extend(self._claim_one(identity, tenant_id, importing))
        except Exception:
            for identity, owner, etag in reversed(undo):
                with contextlib.suppress(Exception):  # best effort: the failure worth reporting is the claim's
                    self._undo_claim(identity, owner, etag)
            raise

    def _claim_one(self, identity: str, tenant_id: str, importing: set[str]) -> list[tuple[str, str | None, str]]:
        row = identity_row_key(identity)
        entity_body = {"PartitionKey": IDENTITY_PARTITION, "RowKey": row, "identity": identity, "tenant_id": tenant_id}
        for _ in range(3):
            try:
                current = self.table.get_entity(IDENTITY_PARTITION, row)
            except ResourceNotFoundError:
                try:
                    written = self.table.create_entity(entity_body)
                except ResourceExistsError:
                    continue  # another import created it meanwhile: decide again on what it wrote
                return [(identity, None, str(written["etag"]))]
            owner = str(current["tenant_id"])
            if owner != tenant_id and owner not in importing:
                raise RegistryConflict(f"identity {identity} already belongs to another tenant")
            try:  # also when it is ours already: the new ETag makes a concurrent stale delete of it fail
                written = self.table.update_entity(
                    entity_body,
                    mode=UpdateMode.REPLACE,
                    etag=current.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceNotFoundError):
                continue  # changed or deleted since read: decide again
            return [(identity, owner, str(written["etag"]))]
        raise RegistryConflict(f"identity {identity} is being changed by another import at the same time; try again")

    def _undo_claim(self, identity: str, owner: str | None, etag: str) -> None:
        """Put back what this import changed, only where nobody wrote the row since (ETag-conditional)."""
        row = identity_row_key(identity)
        try:
            if owner is None:
                self.table.delete_entity(
                    IDENTITY_PARTITION, row, etag=etag, match_condition=MatchConditions.IfNotModified
                )
            else:
                self.table.update_entity(
                    {"PartitionKey": IDENTITY_PARTITION, "RowKey": row, "identity": identity, "tenant_id": owner},
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceModifiedError, ResourceNotFoundError):
            pass  # another writer owns the row now; it is theirs to keep

    def _release(self, identity: str, tenant_id: str) -> None:
        """Delete an identity the tenant no longer names, only if it still points at the tenant as read: an
        unconditional delete after the read would remove an ownership another import wrote meanwhile."""
        row = identity_row_key(identity)
        try:
            current = self.table.get_entity(IDENTITY_PARTITION, row)
        except ResourceNotFoundError:
            return
        if current["tenant_id"] != tenant_id:
            return
        with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):  # another import's since read
            self.table.delete_entity(
                IDENTITY_PARTITION, row, etag=current.metadata["etag"], match_condition=MatchConditions.IfNotModified
            )

    def check_boundaries(self, records: list[TenantRecord]) -> None:
        """Refuse (BoundaryMismatch naming `tenants[i].data_boundary`) any record this deployment may not hold."""
        for index, record in enumerate(records):
            require_fit(record.tenant_id, record.data_boundary, self.data_boundary, f"tenants[{index}].data_boundary")

    def set_kek_public(self, tenant_id: str, jwk: dict[str, str]) -> TenantRecord:
        """Record the public key of the tenant's current KEK version (after onboarding or a KEK rotation).
        The record is validated again (the key must be the tenant's) and replaced only if unchanged since read;
        otherwise Conflict (field `tenant`), nothing written."""
        try:
            entity = self.table.get_entity(TENANT_PARTITION, tenant_id)
        except ResourceNotFoundError:
            raise NotFound(f"tenant {tenant_id} is not registered", field="tenant") from None
        current = TenantRecord.model_validate_json(entity["record"])
        record = TenantRecord.model_validate({**current.model_dump(), "kek_public": jwk})
        try:
            self.table.update_entity(
                {"PartitionKey": TENANT_PARTITION, "RowKey": tenant_id, "record": record.model_dump_json()},
                mode=UpdateMode.MERGE,
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            raise Conflict(
                f"tenant {tenant_id}: the registry record changed while the KEK public key was being recorded"
                " (another import or rotation); nothing was written, run the command again",
                code="registry-record-changed",
                field="tenant",
            ) from None
        self.invalidate()
        return record

    def invalidate(self) -> None:
        with self._lock:
            self._identities.clear()
            self._records.clear()

    # -- helpers -----------------------------------------------------------------------------------

    def _read_identity(self, identity: str) -> str | None:
        try:
            return str(self._lookups.get_entity(IDENTITY_PARTITION, identity_row_key(identity))["tenant_id"])
        except ResourceNotFoundError:
            return None

    def _read_record(self, tenant_id: str) -> TenantRecord | None:
        try:
            return TenantRecord.model_validate_json(self._lookups.get_entity(TENANT_PARTITION, tenant_id)["record"])
        except ResourceNotFoundError:
            return None

    def _cached(self, cache: dict, key: str) -> object:
        with self._lock:
            hit = cache.get(key)
        if hit and self._clock() - hit[0] < self._cache_seconds:
            return hit[1]
        return _MISS

    def _store(self, cache: dict, key: str, value: object) -> None:
        with self._lock:
            cache[key] = (self._clock(), value)


_MISS = object()


def load_tenant_file(text: str, *, filename: str) -> list[TenantRecord]:
    """Parse a YAML or JSON tenants file (`tenants: [...]` or a bare list) into validated records."""
    from pydantic import ValidationError

    from gatekeeper import json_bounded, yaml_bounded

    try:
        document = json_bounded.loads(text) if filename.endswith(".json") else yaml_bounded.load_yaml(text)
    except json_bounded.JsonBoundsError as exc:
        kind = "JSON" if filename.endswith(".json") else "YAML"
        raise ValueError(f"{filename}: not accepted as {kind}: {exc}") from None
    items = document.get("tenants") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise ValueError(f"{filename}: tenants: expected a list of tenant records")
    records: list[TenantRecord] = []
    for index, item in enumerate(items):
        try:
            records.append(TenantRecord.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{filename}: tenants[{index}].{where}: {first['msg']}") from exc
    seen: set[str] = set()
    for index, record in enumerate(records):
        refused = first_problem(record)
        if refused is not None:
            raise ValueError(f"{filename}: tenants[{index}].{refused[0]}: {refused[1]}")
        if record.tenant_id in seen:
            raise ValueError(f"{filename}: tenants[{index}].tenant_id: {record.tenant_id} appears twice")
        seen.add(record.tenant_id)
    return records
