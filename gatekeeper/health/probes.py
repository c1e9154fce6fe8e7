"""The dependency probes of the health route: one cheap read per dependency, on request-path budgets.

Each `check()` returns a short detail (or None) when the dependency answered, and raises otherwise; the
report classifies the exception (gatekeeper.health.report.reason_of). A 404 counts as an answer: the service
is up and our identity may read there, the row or key simply does not exist yet.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from gatekeeper.store.tables import SharedTable, StorageAccount

PROBE_ROW = ("health", "probe")  # a row that is never written: reading it is the cheapest authorised call
PROBE_INSTANCE = "gatekeeper-health-probe"  # an orchestration instance id that is never started


class StorageTablesProbe:
    name = "storage.tables"

    def __init__(self, storage: StorageAccount) -> None:
        self._storage = storage.bounded()

    def check(self) -> str | None:
        with contextlib.suppress(ResourceNotFoundError):  # absent table or row: the service answered, we may read
            self._storage.table(SharedTable.TENANTS).get_entity(*PROBE_ROW)
        return None


class StorageQueuesProbe:
    name = "storage.queues"

    def __init__(self, storage: StorageAccount, queue_name: str) -> None:
        self._storage = storage.bounded()
        self._queue_name = queue_name

    def check(self) -> str | None:
        try:
            self._storage.queue(self._queue_name).get_queue_properties()
        except ResourceNotFoundError:
            return "queue not created yet"  # created on the first send
        return None


class StorageBlobsProbe:
    """Reads the claim-check container's properties: blob storage holds the events too large for a queue
    message (an ingestion route fails without it) and the audit's checkpoint archive. A blob-only outage
    (a missing private endpoint or firewall rule for the blob service) is otherwise invisible here."""

    name = "storage.blobs"

    def __init__(self, storage: StorageAccount, container: str) -> None:
        self._storage = storage.bounded()
        self._container = container

    def check(self) -> str | None:
        try:
            self._storage.blobs.get_container_client(self._container).get_container_properties()
        except ResourceNotFoundError:
            return "container not created yet"  # created on the first large event
        return None


class KeyVaultProbe:
    """Reads the checkpoint key's properties (the app's identity may: Key Vault Crypto User on that key)."""

    name = "keyVault"

    def __init__(self, vault_url: str, credential: Callable[[], Any], key_name: str, **client_kwargs: Any) -> None:
        self._vault_url = vault_url
        self._credential = credential
        self._key_name = key_name
        self._client_kwargs = client_kwargs
        self._client: Any = None

    def check(self) -> str | None:
        if self._client is None:
            from azure.keyvault.keys import KeyClient

            from gatekeeper.store import budgets

            options = {**budgets.keyvault_client_options(), **self._client_kwargs}
            self._client = KeyClient(self._vault_url, self._credential(), **options)
        self._client.get_key(self._key_name)  # ResourceNotFoundError: the key is missing, reported as such
        return None


class LocalKeysProbe:
    """Key mode 'local' (development): the key folder must be readable."""

    name = "keyVault"

    def __init__(self, key_dir: str) -> None:
        self._key_dir = Path(key_dir)

    def check(self) -> str | None:
        if self._key_dir.exists() and not os.access(self._key_dir, os.R_OK | os.X_OK):
            raise PermissionError("key folder not readable")
        return "local keys (development)"


class TaskHubProbe:
    """Asks the Durable Functions extension for the status of an instance that never exists: the extension
    reads the task hub's instance store to answer, so an answer means the hub is reachable. `status` is the
    durable client's `get_status` (the trigger passes it; gatekeeper/ never imports the SDK's bindings)."""

    name = "taskHub"

    def __init__(self, status: Callable[[str], Awaitable[Any]]) -> None:
        self._status = status

    async def check(self) -> str | None:
        await self._status(PROBE_INSTANCE)
        return None
