"""Per-tenant table naming and the storage account handle.

Repositories take a tenant id and a purpose, never a raw table name, so no code path can be pointed at
another tenant's table by a value that came from a request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any

from azure.data.tables import TableClient, TableServiceClient
from azure.storage.queue import QueueClient, QueueServiceClient

from gatekeeper.store import budgets

if TYPE_CHECKING:  # the blob SDK is imported on first use: no ingestion route needs it before a large event
    from azure.storage.blob import BlobServiceClient

TENANT_ID_PATTERN = re.compile(r"^[a-z][a-z0-9]{2,31}$")
TABLE_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")


class TablePurpose(StrEnum):
    """The tables each tenant owns. Shared, tenant-less tables are named in SharedTable."""

    EVENTS = "Events"  # dedupe records and sealed normalised events
    GATES = "Gates"  # gate state projections for approvers
    AUDIT = "Audit"  # the append-only audit log
    KEYS = "Keys"  # wrapped data keys
    POLICY = "Policy"  # policy document versions
    IDENTITIES = "Identities"  # the identity map: external identities -> Entra object ids (sealed)
    WATCHES = "Watches"  # post-deploy watches, rollback leases per environment, last known good deployments
    MODELS = "Models"  # the recommendation model's versions (sealed counts; gatekeeper.recommend.store)


class SharedTable(StrEnum):
    TENANTS = "gkTenants"  # the tenant registry: source identities -> tenant, secret references


class InvalidTenantId(ValueError):
    pass


def validate_tenant_id(tenant_id: str) -> str:
    # fullmatch, not match: `$` would also accept a trailing newline ("acme\n")
    if not isinstance(tenant_id, str) or not TENANT_ID_PATTERN.fullmatch(tenant_id):
        raise InvalidTenantId(
            f"tenant id {tenant_id!r} must be 3-32 lower-case letters and digits, starting with a letter"
        )
    return tenant_id


def tenant_table_name(tenant_id: str, purpose: TablePurpose) -> str:
    """`gk<tenant><Purpose>`: unique per tenant and purpose, and a valid Azure table name."""
    name = f"gk{validate_tenant_id(tenant_id)}{TablePurpose(purpose).value}"
    if not TABLE_NAME_PATTERN.fullmatch(name):  # defensive: the tenant pattern already guarantees it
        raise InvalidTenantId(f"derived table name {name!r} is not a valid table name")
    return name


@dataclass(frozen=True)
class StorageAccount:
    """Clients for one storage account, from a connection string (Azurite, local) or an account URL
    with a token credential (Azure, managed identity).

    `request_path=True` gives the clients bounded timeouts and retry budgets (gatekeeper.store.budgets), so an
    outage is answered with 503 within 2 s; `bounded()` returns that twin of an account."""

    connection_string: str | None = None
    table_endpoint: str | None = None
    queue_endpoint: str | None = None
    blob_endpoint: str | None = None
    credential: object | None = None
    request_path: bool = False

    def bounded(self) -> StorageAccount:
        """The same account with request-path budgets (itself when it already has them)."""
        return self if self.request_path else replace(self, request_path=True)

    def _table_options(self) -> dict[str, Any]:
        return budgets.table_client_options() if self.request_path else {}

    def _queue_options(self) -> dict[str, Any]:
        return budgets.queue_client_options() if self.request_path else {}

    def _blob_options(self) -> dict[str, Any]:
        """Blobs retry like queues (storage's ExponentialRetry), so they take the queue budgets."""
        return budgets.queue_client_options() if self.request_path else {}

    @cached_property
    def blobs(self) -> BlobServiceClient:
        """The account's blob service (claim-check events, the audit checkpoint archive)."""
        from azure.storage.blob import BlobServiceClient

        options = self._blob_options()
        if self.connection_string:
            return BlobServiceClient.from_connection_string(self.connection_string, **options)
        if not self.blob_endpoint:
            raise ValueError("storage: a blob endpoint (or a connection string) is needed for blobs")
        return BlobServiceClient(account_url=self.blob_endpoint, credential=self.credential, **options)  # type: ignore[arg-type]

    @cached_property
    def tables(self) -> TableServiceClient:
        options = self._table_options()
        if self.connection_string:
            return TableServiceClient.from_connection_string(self.connection_string, **options)
        return TableServiceClient(endpoint=self.table_endpoint, credential=self.credential, **options)  # type: ignore[arg-type]

    @cached_property
    def queues(self) -> QueueServiceClient:
        options = self._queue_options()
        if self.connection_string:
            return QueueServiceClient.from_connection_string(self.connection_string, **options)
        return QueueServiceClient(account_url=self.queue_endpoint, credential=self.credential, **options)  # type: ignore[arg-type]

    def table(self, name: str) -> TableClient:
        return self.tables.get_table_client(name)

    def tenant_table(self, tenant_id: str, purpose: TablePurpose) -> TableClient:
        return self.tables.get_table_client(tenant_table_name(tenant_id, purpose))

    @cached_property
    def _ensured_tables(self) -> set[str]:
        return set()

    def ensure_table(self, name: str) -> TableClient:
        """Create the table once per process: per-tenant tables are ensured on hot paths (every event)."""
        if name not in self._ensured_tables:
            self.tables.create_table_if_not_exists(name)
            self._ensured_tables.add(name)
        return self.tables.get_table_client(name)

    def ensure_tenant_table(self, tenant_id: str, purpose: TablePurpose) -> TableClient:
        return self.ensure_table(tenant_table_name(tenant_id, purpose))

    def queue(self, name: str, **client_options: object) -> QueueClient:
        """A queue client; pass message_encode_policy/message_decode_policy for Functions' base64."""
        client_options = {**self._queue_options(), **client_options}
        if self.connection_string:
            return QueueClient.from_connection_string(self.connection_string, name, **client_options)  # type: ignore[arg-type]
        return QueueClient(self.queue_endpoint, name, credential=self.credential, **client_options)  # type: ignore[arg-type]
