"""Data keys and KEKs where they fail: a malformed key id, a damaged or swapped data-key row, the Keys table
unreachable, a rotation racing another, a re-wrap meeting a row deleted or changed meanwhile, Key Vault down
while rotating or onboarding, a stored key id that is no Key Vault id, a local key file that is not a key set.
Each fails closed with the error kind the cipher and the CLI act on. Azurite, local JWK files and the local
Key Vault with the real SDK clients."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from azure.data.tables import UpdateMode
from azure.keyvault.keys.crypto import KeyWrapAlgorithm

from gatekeeper.store.envelope import SealedDataUnreadable
from gatekeeper.store.key_errors import KeyGone, KeyServiceUnavailable
from gatekeeper.store.keyring import DATA_KEY_PARTITION, DataKeyRing
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount, TablePurpose
from tests.keyvault_fixtures import (  # noqa: F401
    keyvault_provider,
    keyvault_tenant,
    local_key_provider,
    local_keyvault,
    new_tenant_id,
    storage,
)
from tests.support.outage import dead_port, storage_connection_string

pytestmark = pytest.mark.azurite


def sealed_by(storage: StorageAccount, provider: Any, tenant: str) -> tuple[str, str]:
    """A value sealed for `tenant` and the id of the data key it was sealed under."""
    sealed = build_cipher(storage, provider).seal(tenant, "gkEvents", "p", "r", b"payload")
    return sealed, DataKeyRing(storage, provider).active_id(tenant) or ""


def damage(storage: StorageAccount, tenant: str, data_key_id: str, **changes: Any) -> None:
    table = storage.tenant_table(tenant, TablePurpose.KEYS)
    row = dict(table.get_entity(DATA_KEY_PARTITION, data_key_id))
    row.update(changes)
    table.update_entity({k: v for k, v in row.items() if v is not None}, mode=UpdateMode.REPLACE)


def opens(storage: StorageAccount, provider: Any, tenant: str, sealed: str) -> bytes:
    return build_cipher(storage, provider).open(tenant, "gkEvents", "p", "r", sealed)  # a fresh process


# -- the data-key ring -----------------------------------------------------------------------------------


def test_a_malformed_data_key_id_is_gone_before_any_table_is_read(storage, local_key_provider):
    ring = DataKeyRing(StorageAccount(connection_string=_down()), local_key_provider)  # a read would fail
    for bad in ("../etc", "ZZ", "", "a" * 200):
        with pytest.raises(KeyGone, match="data key id is malformed"):
            ring.record(new_tenant_id(), bad)


def test_a_damaged_data_key_row_is_gone_and_the_value_does_not_open(storage, local_key_provider):
    tenant = new_tenant_id()
    sealed, key_id = sealed_by(storage, local_key_provider, tenant)
    damage(storage, tenant, key_id, kek_id=None)
    with pytest.raises(KeyGone, match="row is damaged"):
        DataKeyRing(storage, local_key_provider).record(tenant, key_id)
    with pytest.raises(SealedDataUnreadable):
        opens(storage, local_key_provider, tenant, sealed)


def test_a_data_key_swapped_for_a_wrapped_key_of_the_wrong_length_does_not_open(storage, local_key_provider):
    tenant = new_tenant_id()
    sealed, key_id = sealed_by(storage, local_key_provider, tenant)
    short = local_key_provider.crypto_client(tenant).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"k" * 16)
    damage(storage, tenant, key_id, wrapped_key=base64.b64encode(short.encrypted_key).decode())
    with pytest.raises(KeyGone, match="unwrapped to the wrong length"):
        DataKeyRing(storage, local_key_provider).data_key(tenant, key_id)
    with pytest.raises(SealedDataUnreadable):
        opens(storage, local_key_provider, tenant, sealed)


def _down() -> str:
    port = dead_port()
    return storage_connection_string(blob=port, queue=port, table=port)


def test_keys_table_unreachable_is_a_key_service_outage_naming_the_tenant(local_key_provider):
    ring = DataKeyRing(StorageAccount(connection_string=_down()), local_key_provider)
    tenant = new_tenant_id()
    with pytest.raises(KeyServiceUnavailable, match=f"tenant {tenant}: Keys table cannot be read"):
        ring.active_key(tenant)
    with pytest.raises(KeyServiceUnavailable, match=f"tenant {tenant}: Keys table cannot be read"):
        ring.records(tenant)


def test_a_rotation_racing_another_keeps_the_winners_key_and_discards_its_own(storage, local_key_provider, tmp_path):
    tenant = new_tenant_id()
    ring = DataKeyRing(storage, local_key_provider)
    first = ring.create_data_key(tenant)
    won: list[str] = []

    class RotatedMeanwhile(LocalKeyProvider):
        """Another process rotates the data key while this one wraps its new key."""

        def crypto_client(self, tenant_id):  # type: ignore[no-untyped-def]
            if not won:
                won.append(DataKeyRing(storage, local_key_provider).create_data_key(tenant_id))
            return super().crypto_client(tenant_id)

    with pytest.raises(KeyServiceUnavailable, match="another rotation changed the active data key"):
        DataKeyRing(storage, RotatedMeanwhile(local_key_provider.key_dir)).create_data_key(tenant)
    assert ring.active_id(tenant) == won[0]
    assert sorted(r.data_key_id for r in ring.records(tenant)) == sorted([first, won[0]])  # its own row removed


@pytest.mark.parametrize("meanwhile", ["deleted", "changed"])
def test_a_rewrap_meeting_a_data_key_row_deleted_or_changed_meanwhile_stops_naming_it(
    storage, local_key_provider, meanwhile
):
    tenant = new_tenant_id()
    _, key_id = sealed_by(storage, local_key_provider, tenant)
    local_key_provider.new_version(tenant)
    table = storage.tenant_table(tenant, TablePurpose.KEYS)

    class Racing(DataKeyRing):  # the row goes or changes between the re-wrap's read and its update
        def unwrap(self, tenant_id, record):  # type: ignore[no-untyped-def]
            key = super().unwrap(tenant_id, record)
            if meanwhile == "deleted":
                table.delete_entity(DATA_KEY_PARTITION, record.data_key_id)
            else:
                table.update_entity(
                    {"PartitionKey": DATA_KEY_PARTITION, "RowKey": record.data_key_id, "note": "x"},
                    mode=UpdateMode.MERGE,
                )
            return key

    expected = "vanished" if meanwhile == "deleted" else "could not be updated"
    with pytest.raises(KeyServiceUnavailable, match=f"data key {key_id} {expected}"):
        Racing(storage, local_key_provider).rewrap(tenant)


# -- the KEK providers -----------------------------------------------------------------------------------


def test_a_stored_kek_id_that_is_no_key_vault_id_is_gone_and_the_value_does_not_open(
    storage, keyvault_provider, keyvault_tenant
):
    tenant = keyvault_tenant()
    sealed, key_id = sealed_by(storage, keyvault_provider, tenant)
    damage(storage, tenant, key_id, kek_id="not a key id")
    with pytest.raises(KeyGone, match="stored key id is not a Key Vault key id"):
        DataKeyRing(storage, keyvault_provider).data_key(tenant, key_id)
    with pytest.raises(SealedDataUnreadable):
        opens(storage, keyvault_provider, tenant, sealed)


def test_key_vault_down_while_rotating_or_creating_a_kek_is_an_outage_not_a_crash(
    keyvault_provider, keyvault_tenant, local_keyvault
):
    tenant = keyvault_tenant()
    local_keyvault.outage = "unavailable"
    with pytest.raises(KeyServiceUnavailable, match=f"tenant {tenant}: rotate key"):
        keyvault_provider.new_version(tenant)
    with pytest.raises(KeyServiceUnavailable, match="create key"):
        keyvault_provider.create_key(new_tenant_id())
    local_keyvault.outage = None
    assert keyvault_provider.key_id(tenant).startswith(local_keyvault.vault_url)


def test_a_kek_that_is_not_rsa_gives_no_public_key_for_the_edge(keyvault_provider, local_keyvault):
    from gatekeeper.store.keys import tenant_key_name

    tenant = new_tenant_id()
    local_keyvault.create_key(tenant_key_name(tenant), "EC", curve="P-256")
    with pytest.raises(KeyServiceUnavailable, match="not an RSA key with a versioned id"):
        keyvault_provider.public_jwk(tenant)


def test_the_providers_repr_names_where_keys_are_never_a_credential(keyvault_provider, local_keyvault, tmp_path):
    assert repr(keyvault_provider) == f"KeyVaultKeyProvider({local_keyvault.vault_url!r})"
    assert repr(LocalKeyProvider(tmp_path)) == f"LocalKeyProvider({str(tmp_path)!r})"
    assert local_keyvault.credential().get_token("x").token not in repr(keyvault_provider)


@pytest.mark.parametrize(
    ("content", "reason"),
    [({"keys": []}, "is not a JWK Set"), ({"keys": {}}, "is not a JWK Set"), ("directory", "cannot be read")],
)
def test_a_local_key_file_that_is_no_key_set_is_an_outage_never_a_new_key(tmp_path, content, reason):
    provider = LocalKeyProvider(tmp_path)
    tenant = new_tenant_id()
    path = provider.path(tenant)
    if content == "directory":
        path.mkdir(parents=True)
    else:
        path.write_text(json.dumps(content))
    with pytest.raises(KeyServiceUnavailable, match=f"local key file {reason}"):
        provider.crypto_client(tenant)
    assert path.is_dir() or json.loads(path.read_text()) == content  # nothing was replaced


def test_key_vault_down_during_a_kek_rotation_rewrap_changes_no_data_key(
    storage, keyvault_provider, keyvault_tenant, local_keyvault
):
    tenant = keyvault_tenant()
    sealed, key_id = sealed_by(storage, keyvault_provider, tenant)
    before = DataKeyRing(storage, keyvault_provider).record(tenant, key_id)
    local_keyvault.outage = "unavailable"
    with pytest.raises(KeyServiceUnavailable):
        DataKeyRing(storage, keyvault_provider).rewrap(tenant)
    local_keyvault.outage = None
    after = DataKeyRing(storage, keyvault_provider).record(tenant, key_id)
    assert (after.wrapped_key, after.kek_id) == (before.wrapped_key, before.kek_id)
    assert opens(storage, keyvault_provider, tenant, sealed) == b"payload"
