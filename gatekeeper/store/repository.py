"""Base for tenant-scoped table repositories: bound to one tenant's table, sealing sensitive properties.

A repository is built from a tenant id and a `TablePurpose`, never from a table name, and every read and
write goes through that one `TableClient`; no method takes a table name, so no request value can point it at
another tenant. Properties listed in `sealed_properties` are sealed on write with the tenant's data key, bound
to (tenant, table, partition, row), and opened on read; a sealed property found in plain text is refused.

Subclass it:

    class EventRepository(TenantRepository):
        purpose = TablePurpose.EVENTS
        sealed_properties = frozenset({"payload", "callback"})
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar, Literal, Self

from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, TableEntity, UpdateMode

from gatekeeper.store.envelope import FORMAT, EnvelopeCipher, SealedDataUnreadable, SealedLocation
from gatekeeper.store.tables import StorageAccount, TablePurpose, tenant_table_name, validate_tenant_id

# Azure Tables forbids / \ # ? and control characters in PartitionKey and RowKey; keys are at most 1 KiB.
_BAD_KEY_CHARS = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


def check_key(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field}: must be a string, not {type(value).__name__}")
    if len(value.encode("utf-8")) > 1024:
        raise ValueError(f"{field}: is longer than 1 KiB")
    if _BAD_KEY_CHARS.search(value):
        raise ValueError(f"{field}: must not contain '/', '\\', '#', '?' or control characters")
    return value


class TenantRepository:
    """One tenant's table of one purpose. Subclasses set `purpose` and, if needed, `sealed_properties`."""

    purpose: ClassVar[TablePurpose]
    sealed_properties: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, storage: StorageAccount, tenant_id: str, cipher: EnvelopeCipher | None = None) -> None:
        if not hasattr(type(self), "purpose"):
            raise TypeError(f"{type(self).__name__} must set the class attribute 'purpose'")
        if self.sealed_properties and cipher is None:
            raise ValueError(f"cipher: {type(self).__name__} seals {sorted(self.sealed_properties)} and needs one")
        self._tenant_id = validate_tenant_id(tenant_id)
        self._table_name = tenant_table_name(self._tenant_id, self.purpose)
        self._storage = storage
        self._cipher = cipher
        self._client: TableClient = storage.table(self._table_name)
        self._ensured = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tenant={self._tenant_id!r}, table={self._table_name!r})"

    @property
    def tenant_id(self) -> str:
        return self._tenant_id

    @property
    def table_name(self) -> str:
        return self._table_name

    def ensure_table(self) -> None:
        self._storage.ensure_table(self._table_name)

    def ready(self) -> Self:
        """This repository with its table created: the first call creates it if missing, later calls of this
        object cost nothing (the stores call it before every read and write)."""
        if not self._ensured:
            self.ensure_table()
            self._ensured = True
        return self

    # -- sealing ---------------------------------------------------------------------------------
    def _seal(self, entity: Mapping[str, Any]) -> dict[str, Any]:
        pk = check_key("PartitionKey", entity.get("PartitionKey"))
        rk = check_key("RowKey", entity.get("RowKey"))
        out: dict[str, Any] = {}
        for name, value in entity.items():
            if name in ("Timestamp", "odata.etag"):
                continue
            if name in self.sealed_properties and value is not None:
                assert self._cipher is not None
                out[name] = self._cipher.seal_json(self._tenant_id, self._table_name, pk, rk, value)
            else:
                out[name] = value
        return out

    def _open(self, entity: TableEntity) -> TableEntity:
        if not self.sealed_properties:
            return entity
        pk, rk = str(entity["PartitionKey"]), str(entity["RowKey"])
        for name in self.sealed_properties & entity.keys():
            value = entity[name]
            if value is None:
                continue
            if not isinstance(value, str) or not value.startswith(FORMAT + "."):
                raise SealedDataUnreadable(
                    f"tenant {self._tenant_id}: property {name!r} of {self._table_name} should be sealed "
                    "but is stored in plain text",
                    reason="plaintext",
                    location=SealedLocation(self._tenant_id, self._table_name, pk, rk),
                )
            assert self._cipher is not None
            entity[name] = self._cipher.open_json(self._tenant_id, self._table_name, pk, rk, value)
        return entity  # the SDK's TableEntity, opened in place, so its metadata (ETag) stays with it

    # -- writes ----------------------------------------------------------------------------------
    def create(self, entity: Mapping[str, Any]) -> str:
        """Insert only (raises azure.core.exceptions.ResourceExistsError if the row exists); returns the ETag.
        Sealing happens first, so a key failure raises SealingUnavailable and nothing is written."""
        return str(self._client.create_entity(self._seal(entity)).get("etag", ""))

    def upsert(self, entity: Mapping[str, Any], *, merge: bool = False) -> str:
        mode = UpdateMode.MERGE if merge else UpdateMode.REPLACE
        return str(self._client.upsert_entity(self._seal(entity), mode=mode).get("etag", ""))

    def replace(self, entity: Mapping[str, Any], etag: str) -> str:
        """Replace only if unchanged since `etag` (raises azure.core.exceptions.ResourceModifiedError)."""
        result = self._client.update_entity(
            self._seal(entity), mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
        )
        return str(result.get("etag", ""))

    def delete(self, partition_key: str, row_key: str, etag: str | None = None) -> None:
        """Delete the row; with `etag`, only if unchanged since (raises azure.core.exceptions.ResourceModifiedError)."""
        pk, rk = check_key("PartitionKey", partition_key), check_key("RowKey", row_key)
        if etag is None:
            self._client.delete_entity(pk, rk)
        else:
            self._client.delete_entity(pk, rk, etag=etag, match_condition=MatchConditions.IfNotModified)

    def batch(
        self, entities: Iterable[Mapping[str, Any]], *, operation: Literal["create", "upsert"] = "create"
    ) -> None:
        """One entity-group transaction (same partition, at most 100 rows): all or nothing."""
        sealed = [self._seal(e) for e in entities]
        if sealed:
            self._client.submit_transaction([(operation, e) for e in sealed])

    # -- reads -----------------------------------------------------------------------------------
    def get(self, partition_key: str, row_key: str) -> TableEntity | None:
        try:
            entity = self._client.get_entity(check_key("PartitionKey", partition_key), check_key("RowKey", row_key))
        except ResourceNotFoundError:
            return None
        return self._open(entity)

    def query(
        self, filter: str, parameters: Mapping[str, Any] | None = None, *, select: list[str] | None = None
    ) -> Iterator[TableEntity]:
        """An OData filter over this tenant's table only; pass values as `@name` parameters, never by
        string formatting. Sealed properties cannot be filtered on (they are ciphertext)."""
        rows = self._client.query_entities(filter, parameters=dict(parameters or {}), select=select)
        try:
            for entity in rows:
                yield self._open(entity)
        except ResourceNotFoundError:
            return

    def partition(self, partition_key: str) -> Iterator[TableEntity]:
        return self.query("PartitionKey eq @pk", {"pk": check_key("PartitionKey", partition_key)})

    def all(self) -> Iterator[TableEntity]:
        rows = self._client.list_entities()
        try:
            for entity in rows:
                yield self._open(entity)
        except ResourceNotFoundError:
            return
