"""Per-tenant data keys: made here, wrapped by the tenant's KEK, kept in the tenant's Keys table.

Rows (table `gk<tenant>Keys`):
- PartitionKey `datakey`, RowKey `<data-key id>`: `wrapped_key` (base64), `kek_id` (the versioned KEK id that
  wrapped it), `algorithm` (RSA-OAEP-256), `created`, `active`, and after a re-wrap `rewrapped`.
- PartitionKey `transit`, RowKey `t<hex>`: the same properties for a transit key, made and wrapped with the
  KEK's public key by an ingesting instance to seal queued events (gatekeeper.store.transit). Never active;
  opened here like any data key, and re-wrapped with the others on a KEK rotation.
- PartitionKey `pointer`, RowKey `active`: `data_key_id` of the key new writes use. It is created with
  `create_entity` and changed only with an ETag match, so two processes racing to make a tenant's first data
  key (or to rotate it) agree on one winner before anything is sealed; the loser deletes its unused row.

Plain data keys leave this module only as return values to the cipher, which keeps them inside AESGCM objects.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableEntity, UpdateMode
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

from gatekeeper import telemetry
from gatekeeper.store.key_errors import KeyGone, KeyProviderError, KeyRefused, KeyServiceUnavailable, classify
from gatekeeper.store.tables import StorageAccount, TablePurpose, validate_tenant_id
from gatekeeper.store.transit import TRANSIT_PARTITION, is_transit_id

DATA_KEY_PARTITION = "datakey"
POINTER_PARTITION = "pointer"
POINTER_ROW = "active"
WRAP_ALGORITHM = KeyWrapAlgorithm.rsa_oaep_256
DATA_KEY_BYTES = 32  # AES-256
DATA_KEY_ID_PATTERN = re.compile(r"^[a-z0-9]{8,32}$")


class KekClients(Protocol):
    """What the key ring needs of a tenant key provider (gatekeeper.store.keys.TenantKeyProvider): clients on
    the current KEK version and on one named version. Declared here so keys.py imports this module, not the
    reverse (no import cycle)."""

    def crypto_client(self, tenant_id: str) -> CryptographyClient: ...

    def crypto_client_for(self, tenant_id: str, key_id: str) -> CryptographyClient: ...


@dataclass(frozen=True)
class DataKeyRecord:
    """One wrapped data key as stored (no plaintext key material here)."""

    data_key_id: str
    wrapped_key: bytes = field(repr=False)
    kek_id: str
    algorithm: str
    created: dt.datetime | None
    active: bool
    etag: str | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class RewrapResult:
    kek_id: str
    rewrapped: list[str]
    already_current: list[str]
    past_retention: list[str] = field(default_factory=list)  # transit keys left alone (about to go, or gone)


def new_data_key_id() -> str:
    return secrets.token_hex(8)


class DataKeyRing:
    """Reads, creates, rotates and re-wraps a tenant's data keys. Every failure is KeyGone or
    KeyServiceUnavailable (see key_errors), so the cipher can fail closed."""

    def __init__(self, storage: StorageAccount, provider: KekClients) -> None:
        self._storage = storage
        self.provider = provider

    def __repr__(self) -> str:
        return f"DataKeyRing({self.provider!r})"

    # -- table access ----------------------------------------------------------------------------
    def _table(self, tenant_id: str) -> TableClient:
        return self._storage.tenant_table(validate_tenant_id(tenant_id), TablePurpose.KEYS)

    def _ensure_table(self, tenant_id: str) -> TableClient:
        try:
            return self._storage.ensure_tenant_table(validate_tenant_id(tenant_id), TablePurpose.KEYS)
        except AzureError as exc:
            raise KeyServiceUnavailable(f"tenant {tenant_id}: Keys table cannot be created") from exc

    def _get(self, tenant_id: str, partition: str, row: str) -> TableEntity | None:
        try:
            return self._table(tenant_id).get_entity(partition, row)
        except ResourceNotFoundError:  # no such row, or no Keys table yet
            return None
        except AzureError as exc:
            raise KeyServiceUnavailable(f"tenant {tenant_id}: Keys table cannot be read") from exc

    def _pointer(self, tenant_id: str) -> tuple[str, str] | None:
        entity = self._get(tenant_id, POINTER_PARTITION, POINTER_ROW)
        if entity is None:
            return None
        return str(entity["data_key_id"]), str(entity.metadata["etag"])

    @staticmethod
    def _to_record(entity: dict[str, Any]) -> DataKeyRecord:
        created = entity.get("created")
        return DataKeyRecord(
            data_key_id=str(entity["RowKey"]),
            wrapped_key=base64.b64decode(entity["wrapped_key"]),
            kek_id=str(entity["kek_id"]),
            algorithm=str(entity.get("algorithm", "")),
            created=created if isinstance(created, dt.datetime) else None,
            active=bool(entity.get("active", False)),
            etag=getattr(entity, "metadata", {}).get("etag"),
        )

    def record(self, tenant_id: str, data_key_id: str) -> DataKeyRecord:
        if not DATA_KEY_ID_PATTERN.match(data_key_id):
            raise KeyGone(f"tenant {tenant_id}: data key id is malformed")
        partition = TRANSIT_PARTITION if is_transit_id(data_key_id) else DATA_KEY_PARTITION
        entity = self._get(tenant_id, partition, data_key_id)
        if entity is None:
            raise KeyGone(f"tenant {tenant_id}: data key {data_key_id} does not exist in this tenant's Keys table")
        try:
            return self._to_record(entity)
        except (KeyError, ValueError, TypeError) as exc:
            raise KeyGone(f"tenant {tenant_id}: data key {data_key_id} row is damaged") from exc

    def records(self, tenant_id: str, partition: str = DATA_KEY_PARTITION) -> list[DataKeyRecord]:
        """The tenant's data keys (or, with `partition=TRANSIT_PARTITION`, its transit keys), oldest first."""
        try:
            entities = list(self._table(tenant_id).query_entities("PartitionKey eq @pk", parameters={"pk": partition}))
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise KeyServiceUnavailable(f"tenant {tenant_id}: Keys table cannot be read") from exc
        return sorted(
            (self._to_record(e) for e in entities),
            key=lambda r: (r.created or dt.datetime.min.replace(tzinfo=dt.UTC), r.data_key_id),
        )

    def active_id(self, tenant_id: str) -> str | None:
        pointer = self._pointer(tenant_id)
        return pointer[0] if pointer else None

    # -- crypto ----------------------------------------------------------------------------------
    def _wrap(self, tenant_id: str, key: bytes) -> tuple[bytes, str]:
        try:
            client = self.provider.crypto_client(tenant_id)
            result = client.wrap_key(WRAP_ALGORITHM, key)
            kek_id = result.key_id or client.key_id
        except Exception as exc:
            raise classify(exc, f"tenant {tenant_id}: wrap data key") from exc
        if not kek_id:
            raise KeyServiceUnavailable(f"tenant {tenant_id}: the KEK has no versioned id")
        return result.encrypted_key, str(kek_id)

    def unwrap(self, tenant_id: str, record: DataKeyRecord) -> bytes:
        if record.algorithm != WRAP_ALGORITHM.value:
            raise KeyGone(f"tenant {tenant_id}: data key {record.data_key_id} uses unsupported wrap algorithm")
        try:
            client = self.provider.crypto_client_for(tenant_id, record.kek_id)
            key = client.unwrap_key(WRAP_ALGORITHM, record.wrapped_key).key
        except Exception as exc:
            failure = classify(exc, f"tenant {tenant_id}: unwrap data key {record.data_key_id}")
            _unwrap_failed(tenant_id, failure, exc)
            raise failure from exc
        if len(key) != DATA_KEY_BYTES:
            raise KeyGone(f"tenant {tenant_id}: data key {record.data_key_id} unwrapped to the wrong length")
        return key

    def data_key(self, tenant_id: str, data_key_id: str) -> bytes:
        """The plain data key for reading data sealed under `data_key_id` (one KEK unwrap)."""
        return self.unwrap(tenant_id, self.record(tenant_id, data_key_id))

    def active_key(self, tenant_id: str) -> tuple[str, bytes]:
        """The data key new writes use, creating the tenant's first one if there is none yet."""
        pointer = self._pointer(tenant_id)
        if pointer is None:
            return self._create_first(tenant_id)
        return pointer[0], self.data_key(tenant_id, pointer[0])

    # -- creation and rotation -------------------------------------------------------------------
    def _insert_new(self, tenant_id: str) -> tuple[TableClient, str, bytes]:
        table = self._ensure_table(tenant_id)
        key = secrets.token_bytes(DATA_KEY_BYTES)
        wrapped, kek_id = self._wrap(tenant_id, key)
        data_key_id = new_data_key_id()
        entity = {
            "PartitionKey": DATA_KEY_PARTITION,
            "RowKey": data_key_id,
            "wrapped_key": base64.b64encode(wrapped).decode("ascii"),
            "kek_id": kek_id,
            "algorithm": WRAP_ALGORITHM.value,
            "created": dt.datetime.now(dt.UTC),
            "active": False,
        }
        try:
            table.create_entity(entity)
        except AzureError as exc:
            raise KeyServiceUnavailable(f"tenant {tenant_id}: data key cannot be stored") from exc
        return table, data_key_id, key

    def _set_active_flags(self, table: TableClient, active: str, previous: str | None) -> None:
        """Keep the informative `active` flags in step with the pointer (the pointer is the truth)."""
        updates = [(active, True)] + ([(previous, False)] if previous and previous != active else [])
        for row, flag in updates:
            with contextlib.suppress(AzureError):  # a stale flag is cosmetic; the pointer decides
                table.update_entity(
                    {"PartitionKey": DATA_KEY_PARTITION, "RowKey": row, "active": flag}, mode=UpdateMode.MERGE
                )

    def _discard(self, table: TableClient, data_key_id: str) -> None:
        with contextlib.suppress(AzureError):  # an unused, never-active row is harmless
            table.delete_entity(DATA_KEY_PARTITION, data_key_id)

    def _create_first(self, tenant_id: str) -> tuple[str, bytes]:
        table, data_key_id, key = self._insert_new(tenant_id)
        try:
            table.create_entity({"PartitionKey": POINTER_PARTITION, "RowKey": POINTER_ROW, "data_key_id": data_key_id})
        except ResourceExistsError:
            self._discard(table, data_key_id)  # another process won the race; use its key
            winner = self._pointer(tenant_id)
            if winner is None:
                raise KeyServiceUnavailable(f"tenant {tenant_id}: active data key pointer vanished") from None
            return winner[0], self.data_key(tenant_id, winner[0])
        except AzureError as exc:
            self._discard(table, data_key_id)
            raise KeyServiceUnavailable(f"tenant {tenant_id}: active data key pointer cannot be stored") from exc
        self._set_active_flags(table, data_key_id, None)
        return data_key_id, key

    def create_data_key(self, tenant_id: str) -> str:
        """Data-key rotation: a new data key becomes active for new writes; old ones stay for reading."""
        pointer = self._pointer(tenant_id)
        if pointer is None:
            return self._create_first(tenant_id)[0]
        table, data_key_id, _ = self._insert_new(tenant_id)
        previous, etag = pointer
        try:
            table.update_entity(
                {"PartitionKey": POINTER_PARTITION, "RowKey": POINTER_ROW, "data_key_id": data_key_id},
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:
            self._discard(table, data_key_id)
            raise KeyServiceUnavailable(
                f"tenant {tenant_id}: another rotation changed the active data key at the same time; retry"
            ) from None
        except AzureError as exc:
            self._discard(table, data_key_id)
            raise KeyServiceUnavailable(f"tenant {tenant_id}: active data key pointer cannot be updated") from exc
        self._set_active_flags(table, data_key_id, previous)
        return data_key_id

    def rewrap(self, tenant_id: str, *, retire_before: dt.datetime | None = None) -> RewrapResult:
        """KEK rotation: re-wrap every data key (transit keys included: queued events may still need them)
        under the KEK's current version. Data is not touched; each new wrapping is checked by unwrapping it
        before it replaces the old one (a bad re-wrap would shred).

        With `retire_before` (gatekeeper.store.retention.cutoff), transit keys created before it are past
        retention and left as they are: re-wrapping them would cost a Key Vault unwrap and wrap each, for keys
        the retention timer deletes anyway, and rotation itself deletes nothing. Data keys are always
        re-wrapped, whatever their age."""
        transit = self.records(tenant_id, TRANSIT_PARTITION)
        past = [r.data_key_id for r in transit if retire_before and r.created and r.created < retire_before]
        records = self.records(tenant_id) + [r for r in transit if r.data_key_id not in past]
        if not records:
            return RewrapResult(kek_id="", rewrapped=[], already_current=[], past_retention=past)
        try:
            client = self.provider.crypto_client(tenant_id)
            current = str(client.key_id or "")
        except Exception as exc:
            raise classify(exc, f"tenant {tenant_id}: get current KEK") from exc
        if not current:
            raise KeyServiceUnavailable(f"tenant {tenant_id}: the KEK has no versioned id")
        done: list[str] = []
        skipped: list[str] = []
        for record in records:
            if record.kek_id == current:
                skipped.append(record.data_key_id)
                continue
            key = self.unwrap(tenant_id, record)
            try:
                wrapped = client.wrap_key(WRAP_ALGORITHM, key).encrypted_key
                check = self.provider.crypto_client_for(tenant_id, current).unwrap_key(WRAP_ALGORITHM, wrapped).key
            except Exception as exc:
                raise classify(exc, f"tenant {tenant_id}: re-wrap data key {record.data_key_id}") from exc
            if not secrets.compare_digest(check, key):
                raise KeyServiceUnavailable(f"tenant {tenant_id}: re-wrapped data key did not round-trip")
            try:
                self._table(tenant_id).update_entity(
                    {
                        "PartitionKey": TRANSIT_PARTITION if is_transit_id(record.data_key_id) else DATA_KEY_PARTITION,
                        "RowKey": record.data_key_id,
                        "wrapped_key": base64.b64encode(wrapped).decode("ascii"),
                        "kek_id": current,
                        "rewrapped": dt.datetime.now(dt.UTC),
                    },
                    mode=UpdateMode.MERGE,
                    etag=record.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceNotFoundError as exc:
                if not is_transit_id(record.data_key_id):
                    raise KeyServiceUnavailable(f"tenant {tenant_id}: data key {record.data_key_id} vanished") from exc
                past.append(record.data_key_id)  # reached its retention and was deleted meanwhile: nothing to keep
                continue
            except AzureError as exc:
                raise KeyServiceUnavailable(
                    f"tenant {tenant_id}: data key {record.data_key_id} could not be updated"
                ) from exc
            done.append(record.data_key_id)
        return RewrapResult(kek_id=current, rewrapped=done, already_current=skipped, past_retention=past)


def _unwrap_failed(tenant_id: str, failure: KeyProviderError, cause: BaseException) -> None:
    """KeyUnwrapFailed for the alert rule: which tenant, what kind (refused: wrong or damaged key; gone: the
    key was deleted; unavailable: Key Vault down or throttling) and the HTTP status when there was one.
    The caller raises the failure right after."""
    kind = "refused" if isinstance(failure, KeyRefused) else "gone" if isinstance(failure, KeyGone) else "unavailable"
    status = getattr(cause, "status_code", None)
    telemetry.emit(
        telemetry.Event.KEY_UNWRAP_FAILED,
        tenant=tenant_id,
        kind=kind,
        status_code=status if isinstance(status, int) else None,
    )
