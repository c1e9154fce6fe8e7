"""The write-once copy of every signed checkpoint, in a blob container.

In Azure the container carries a time-based immutability (WORM) policy set by the Bicep, so not even the
Function App's identity can change or delete a checkpoint once written; locally Azurite simply stores it.
Blobs are created with `overwrite=False` either way, so a second writer can never replace the first.
Because the checkpoints outlive anything an attacker can do to the table, verification reads them from
here, not only from the table.
"""

from __future__ import annotations

import contextlib
import json

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from gatekeeper.audit.checkpoints import SignedCheckpoint
from gatekeeper.store.tables import StorageAccount, validate_tenant_id


class CheckpointConflict(RuntimeError):
    """Two different checkpoints claim the same tenant and size: the log forked. Never expected."""


def blob_service(storage: StorageAccount) -> BlobServiceClient:
    """A blob client for the account, with request-path budgets when the account has them."""
    return storage.blobs


def blob_name(tenant_id: str, size: int) -> str:
    """`<tenant>/<size, 20 digits>.json`: zero-padded so a listing comes back in size order."""
    return f"{validate_tenant_id(tenant_id)}/{size:020d}.json"


class CheckpointArchive:
    def __init__(self, container: ContainerClient) -> None:
        self._container = container
        self._ensured = False

    @classmethod
    def from_storage(cls, storage: StorageAccount, container_name: str) -> CheckpointArchive:
        return cls(blob_service(storage).get_container_client(container_name))

    def __repr__(self) -> str:
        return f"CheckpointArchive({self._container.container_name!r})"

    def ensure(self) -> None:
        if self._ensured:
            return
        with contextlib.suppress(ResourceExistsError):
            self._container.create_container()
        self._ensured = True

    def put(self, tenant_id: str, signed: SignedCheckpoint) -> bool:
        """Write once. True when written now, False when the same checkpoint was already there."""
        self.ensure()
        checkpoint = signed.checkpoint()
        name = blob_name(tenant_id, checkpoint.size)
        body = json.dumps(signed.model_dump(), sort_keys=True, indent=1).encode("utf-8")
        try:
            self._container.upload_blob(
                name, body, overwrite=False, content_settings=ContentSettings(content_type="application/json")
            )
            return True
        except ResourceExistsError:
            existing = self.get(tenant_id, checkpoint.size)
            if existing is None or existing.checkpoint() != checkpoint:
                raise CheckpointConflict(
                    f"tenant {tenant_id}: a different checkpoint for size {checkpoint.size} is already archived"
                ) from None
            return False

    def get(self, tenant_id: str, size: int) -> SignedCheckpoint | None:
        try:
            data = self._container.download_blob(blob_name(tenant_id, size)).readall()
        except ResourceNotFoundError:
            return None
        return SignedCheckpoint.model_validate_json(data)

    def list(self, tenant_id: str) -> list[tuple[str, bytes]]:
        """Every archived checkpoint blob of a tenant as (blob name, raw bytes), in size order. Raw, so the
        verifier (not this reader) decides what a damaged blob means."""
        prefix = f"{validate_tenant_id(tenant_id)}/"
        try:
            names = [b.name for b in self._container.list_blobs(name_starts_with=prefix)]
        except ResourceNotFoundError:
            return []
        return [(name, self._container.download_blob(name).readall()) for name in sorted(names)]
