"""The registry records a tenant KEK's public key (`set_kek_public`): validated again, only for a registered
tenant, and only over the record it read (ETag), so a concurrent import is never overwritten."""

from __future__ import annotations

import uuid

import pytest
from azure.data.tables import UpdateMode
from cryptography.hazmat.primitives.asymmetric import rsa

from gatekeeper.encoding import int_to_b64url
from gatekeeper.errors import Conflict, NotFound
from gatekeeper.store.tables import StorageAccount
from gatekeeper.tenancy.model import TenantRecord
from gatekeeper.tenancy.registry import TENANT_PARTITION, TenantRegistry

pytestmark = pytest.mark.azurite


def public_jwk(tenant_id: str, version: str = "0123abcd") -> dict[str, str]:
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers()
    kid = f"https://kv.vault.azure.net/keys/tenant-{tenant_id}/{version}"
    return {"kty": "RSA", "kid": kid, "n": int_to_b64url(numbers.n), "e": int_to_b64url(numbers.e)}


@pytest.fixture
def registry(storage_connection_string: str) -> TenantRegistry:
    return TenantRegistry(StorageAccount(connection_string=storage_connection_string), cache_seconds=3600)


def tenant(registry: TenantRegistry) -> str:
    tenant_id = "k" + uuid.uuid4().hex[:12]
    identity = f"github:org:kek-{tenant_id}"
    registry.import_records([TenantRecord(tenant_id=tenant_id, display_name="Kek", identities=(identity,))])
    return tenant_id


def test_the_public_key_is_recorded_and_everything_else_is_kept(registry):
    tenant_id = tenant(registry)
    assert registry.get(tenant_id).kek_public is None  # cached now: the write must invalidate it
    jwk = public_jwk(tenant_id)
    written = registry.set_kek_public(tenant_id, jwk)
    assert written.kek_public == jwk
    read = registry.get(tenant_id)
    assert read == written and read.identities == (f"github:org:kek-{tenant_id}",) and read.display_name == "Kek"
    assert TenantRegistry(registry._storage).get(tenant_id).kek_public == jwk  # stored, not only cached


def test_a_public_key_of_another_tenant_is_refused_and_nothing_changes(registry):
    tenant_id = tenant(registry)
    with pytest.raises(ValueError, match=r"kek_public\.kid: does not name a version of the key tenant-"):
        registry.set_kek_public(tenant_id, public_jwk("someoneelse"))
    assert TenantRegistry(registry._storage).get(tenant_id).kek_public is None


def test_an_unregistered_tenant_is_not_found(registry):
    with pytest.raises(NotFound) as caught:
        registry.set_kek_public("nobody" + uuid.uuid4().hex[:6], public_jwk("nobody"))
    assert caught.value.field == "tenant"


class RacingTable:
    """The registry's real table client; right after the record is read, another import writes it."""

    def __init__(self, table, tenant_id: str) -> None:
        self._table = table
        self._tenant_id = tenant_id

    def get_entity(self, partition: str, row: str, **kwargs):
        entity = self._table.get_entity(partition, row, **kwargs)
        self._table.update_entity(
            {"PartitionKey": TENANT_PARTITION, "RowKey": self._tenant_id, "updated_at": "concurrent import"},
            mode=UpdateMode.MERGE,
        )
        return entity

    def __getattr__(self, name: str):
        return getattr(self._table, name)


def test_a_record_changed_since_it_was_read_is_not_overwritten(registry):
    tenant_id = tenant(registry)
    registry._table = RacingTable(registry.table, tenant_id)
    with pytest.raises(Conflict) as caught:  # a product error naming the tenant, not the SDK's 412
        registry.set_kek_public(tenant_id, public_jwk(tenant_id))
    assert caught.value.field == "tenant" and caught.value.code == "registry-record-changed"
    assert TenantRegistry(registry._storage).get(tenant_id).kek_public is None
