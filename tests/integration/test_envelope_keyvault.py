"""Envelope encryption end to end: Azurite tables, the real Key Vault SDK, and the local Key Vault server."""

from __future__ import annotations

import threading

import pytest
from azure.core.exceptions import ResourceNotFoundError

from gatekeeper.store.envelope import EnvelopeCipher, SealedDataUnreadable, SealingUnavailable
from gatekeeper.store.keyring import DATA_KEY_PARTITION, DataKeyRing
from gatekeeper.store.keys import KeyVaultKeyProvider, tenant_key_name
from gatekeeper.store.repository import TenantRepository
from gatekeeper.store.tables import StorageAccount, TablePurpose, tenant_table_name
from tests.keyvault_fixtures import (  # noqa: F401
    keyvault_provider,
    keyvault_tenant,
    local_keyvault,
    new_tenant_id,
    storage,
)

pytestmark = pytest.mark.azurite


class EventRecords(TenantRepository):
    purpose = TablePurpose.EVENTS
    sealed_properties = frozenset({"payload", "callback_token"})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _cipher(storage: StorageAccount, provider: KeyVaultKeyProvider, clock: Clock | None = None) -> EnvelopeCipher:
    return EnvelopeCipher(DataKeyRing(storage, provider), cache_seconds=300, clock=clock or Clock())


def _repo(storage, tenant, cipher) -> EventRecords:
    repo = EventRecords(storage, tenant, cipher)
    repo.ensure_table()
    return repo


def test_ten_thousand_sealed_writes_across_three_tenants_cost_three_unwraps(
    storage,
    keyvault_provider,
    keyvault_tenant,
    local_keyvault,
):
    tenants = [keyvault_tenant() for _ in range(3)]
    # An earlier process made each tenant's data key (wrapping runs on the public key: no unwrap needed).
    earlier = _cipher(storage, keyvault_provider)
    for tenant in tenants:
        earlier.seal(tenant, "warm-up", "p", "r", b"x")
    assert local_keyvault.count("unwrapkey") == 0
    local_keyvault.reset_counts()

    clock = Clock()
    cipher = _cipher(storage, keyvault_provider, clock)  # this process starts with a cold cache
    repos = [_repo(storage, tenant, cipher) for tenant in tenants]
    # 1,200 rows through table transactions (two sealed properties each: 2,400 seals) ...
    for i in range(12):
        repos[i % 3].batch(
            {
                "PartitionKey": f"batch{i}",
                "RowKey": f"{n:03d}",
                "payload": {"run": i * 100 + n},
                "callback_token": f"token-{i}-{n}",
            }
            for n in range(100)
        )
    # ... and 7,600 more sealed values (Azurite's write speed is not what this test measures)
    sealed = [
        (tenants[n % 3], str(n), cipher.seal(tenants[n % 3], "gkEvents", "p", str(n), str(n).encode()))
        for n in range(7_600)
    ]
    assert local_keyvault.count("unwrapkey") == 3
    for tenant in tenants:
        assert local_keyvault.count("unwrapkey", tenant_key_name(tenant)) == 1

    # reading everything back and opening all 10,000 sealed values needs no further Key Vault call
    rows = [row for repo in repos for row in repo.all()]
    assert len(rows) == 1_200
    assert {row["payload"]["run"] for row in rows} == set(range(1_200))
    assert all(cipher.open(t, "gkEvents", "p", row, value) == row.encode() for t, row, value in sealed)
    assert local_keyvault.count("unwrapkey") == 3

    clock.now += 301  # next cache period: one unwrap per tenant again
    for repo in repos:
        repo.create({"PartitionKey": "later", "RowKey": "1", "payload": {"x": 1}})
    assert local_keyvault.count("unwrapkey") == 6
    assert local_keyvault.count("wrapkey") == 0


def test_stored_values_are_ciphertext(storage, keyvault_provider, keyvault_tenant):
    tenant = keyvault_tenant()
    repo = _repo(storage, tenant, _cipher(storage, keyvault_provider))
    repo.create(
        {
            "PartitionKey": "github",
            "RowKey": "run-1",
            "payload": {"secret": "hunter2"},
            "callback_token": "ado-token-xyz",
            "status": "pending",
        }
    )
    raw = storage.table(tenant_table_name(tenant, TablePurpose.EVENTS)).get_entity("github", "run-1")
    assert raw["status"] == "pending"  # not listed as sensitive: stays queryable
    for name in ("payload", "callback_token"):
        assert raw[name].startswith("gk1.")
    assert "hunter2" not in str(dict(raw)) and "ado-token-xyz" not in str(dict(raw))
    assert repo.get("github", "run-1")["callback_token"] == "ado-token-xyz"


@pytest.mark.parametrize("outage", ["unavailable", "forbidden"])
def test_key_vault_down_fails_closed_and_writes_nothing(
    storage,
    keyvault_provider,
    keyvault_tenant,
    local_keyvault,
    outage,
):
    tenant = keyvault_tenant()
    repo = _repo(storage, tenant, _cipher(storage, keyvault_provider))
    local_keyvault.outage = outage
    with pytest.raises(SealingUnavailable):
        repo.create({"PartitionKey": "github", "RowKey": "run-1", "payload": {"secret": "hunter2"}})
    with pytest.raises(SealingUnavailable):
        repo.upsert({"PartitionKey": "github", "RowKey": "run-2", "callback_token": "tok"})
    with pytest.raises(SealingUnavailable):
        repo.batch([{"PartitionKey": "github", "RowKey": "run-3", "payload": 1}])
    assert list(storage.table(repo.table_name).list_entities()) == []
    # no data key was made either: nothing to unwrap later, nothing half-written
    keys_table = storage.table(tenant_table_name(tenant, TablePurpose.KEYS))
    assert list(keys_table.query_entities("PartitionKey eq @pk", parameters={"pk": DATA_KEY_PARTITION})) == []
    local_keyvault.outage = None
    repo.create({"PartitionKey": "github", "RowKey": "run-1", "payload": {"secret": "hunter2"}})
    assert repo.get("github", "run-1")["payload"] == {"secret": "hunter2"}


def test_missing_or_disabled_tenant_key_fails_closed(storage, keyvault_provider, keyvault_tenant, local_keyvault):
    never_created = new_tenant_id()
    with pytest.raises(SealingUnavailable):
        _cipher(storage, keyvault_provider).seal(never_created, "t", "p", "r", b"x")

    tenant = keyvault_tenant()
    _cipher(storage, keyvault_provider).seal(tenant, "t", "p", "r", b"x")  # data key exists now
    local_keyvault.set_enabled(tenant_key_name(tenant), False)
    with pytest.raises(SealingUnavailable):
        _cipher(storage, keyvault_provider).seal(tenant, "t", "p", "r", b"x")


def test_crypto_shredding_deleting_the_key_makes_only_that_tenant_unreadable(
    storage,
    keyvault_provider,
    keyvault_tenant,
    local_keyvault,
):
    clock = Clock()
    cipher = _cipher(storage, keyvault_provider, clock)
    doomed, kept = keyvault_tenant(), keyvault_tenant()
    for tenant in (doomed, kept):
        _repo(storage, tenant, cipher).create({"PartitionKey": "p", "RowKey": "r", "payload": {"t": tenant}})

    local_keyvault.delete_key(tenant_key_name(doomed))
    # within the cache period the process still holds the unwrapped key; after it, the data is gone
    assert _repo(storage, doomed, cipher).get("p", "r")["payload"] == {"t": doomed}
    clock.now += 301
    with pytest.raises(SealedDataUnreadable):
        _repo(storage, doomed, cipher).get("p", "r")
    # a fresh process cannot read it either, and cannot write new data for that tenant
    fresh = _cipher(storage, keyvault_provider)
    with pytest.raises(SealedDataUnreadable):
        _repo(storage, doomed, fresh).get("p", "r")
    with pytest.raises(SealingUnavailable):
        _repo(storage, doomed, fresh).create({"PartitionKey": "p", "RowKey": "r2", "payload": 1})
    # the other tenant is untouched
    assert _repo(storage, kept, cipher).get("p", "r")["payload"] == {"t": kept}
    assert _repo(storage, kept, fresh).get("p", "r")["payload"] == {"t": kept}


def test_crypto_shredding_through_the_sdk_delete(storage, keyvault_provider, keyvault_tenant, local_keyvault):
    from azure.keyvault.keys import KeyClient

    tenant = keyvault_tenant()
    cipher = _cipher(storage, keyvault_provider)
    sealed = cipher.seal(tenant, "t", "p", "r", b"x")
    client = KeyClient(local_keyvault.vault_url, local_keyvault.credential(), **local_keyvault.client_kwargs())
    client.begin_delete_key(tenant_key_name(tenant)).result()
    cipher.forget(tenant)
    with pytest.raises(SealedDataUnreadable):
        cipher.open(tenant, "t", "p", "r", sealed)


def test_kek_rotation_rewraps_without_touching_data(storage, keyvault_provider, keyvault_tenant, local_keyvault):
    tenant = keyvault_tenant()
    repo = _repo(storage, tenant, _cipher(storage, keyvault_provider))
    repo.create({"PartitionKey": "p", "RowKey": "r", "payload": {"v": 1}})
    raw_before = dict(storage.table(repo.table_name).get_entity("p", "r"))
    ring = DataKeyRing(storage, keyvault_provider)
    (before,) = ring.records(tenant)

    new_kek = local_keyvault.rotate_key(tenant_key_name(tenant))  # the customer rotates the key in Key Vault
    result = ring.rewrap(tenant)
    assert result.kek_id == new_kek and result.rewrapped == [before.data_key_id]
    (after,) = ring.records(tenant)
    assert after.kek_id == new_kek != before.kek_id and after.wrapped_key != before.wrapped_key
    assert dict(storage.table(repo.table_name).get_entity("p", "r")) == raw_before  # data untouched

    # prove the old version is no longer needed: disable it, and a fresh process still reads the data
    local_keyvault.set_enabled(tenant_key_name(tenant), False, version=before.kek_id.rsplit("/", 1)[1])
    assert _repo(storage, tenant, _cipher(storage, keyvault_provider)).get("p", "r")["payload"] == {"v": 1}
    assert ring.rewrap(tenant).already_current == [before.data_key_id]


def test_data_key_rotation_applies_to_new_writes_only(storage, keyvault_provider, keyvault_tenant):
    tenant = keyvault_tenant()
    repo = _repo(storage, tenant, _cipher(storage, keyvault_provider))
    repo.create({"PartitionKey": "p", "RowKey": "old", "payload": "old"})
    ring = DataKeyRing(storage, keyvault_provider)
    old_id = ring.active_id(tenant)
    new_id = ring.create_data_key(tenant)
    assert new_id != old_id and ring.active_id(tenant) == new_id
    assert {r.data_key_id: r.active for r in ring.records(tenant)} == {old_id: False, new_id: True}

    later = _repo(storage, tenant, _cipher(storage, keyvault_provider))  # a process starting after rotation
    later.create({"PartitionKey": "p", "RowKey": "new", "payload": "new"})
    raw = storage.table(repo.table_name)
    assert raw.get_entity("p", "old")["payload"].split(".")[1] == old_id
    assert raw.get_entity("p", "new")["payload"].split(".")[1] == new_id
    assert later.get("p", "old")["payload"] == "old" and later.get("p", "new")["payload"] == "new"


def test_racing_first_data_keys_end_with_one_active_key(storage, keyvault_provider, keyvault_tenant):
    tenant = keyvault_tenant()
    rings = [DataKeyRing(storage, keyvault_provider) for _ in range(4)]
    barrier = threading.Barrier(len(rings))
    chosen: list[str] = []
    errors: list[BaseException] = []

    def first_use(ring: DataKeyRing) -> None:
        barrier.wait()
        try:
            chosen.append(ring.active_key(tenant)[0])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(ring,)) for ring in rings]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(chosen)) == 1
    assert [r.data_key_id for r in rings[0].records(tenant)] == chosen[:1]

    # the losing side of the race, forced: it made a key, then found the pointer taken
    loser_id, _ = rings[1]._create_first(tenant)
    assert loser_id == chosen[0]
    assert [r.data_key_id for r in rings[0].records(tenant)] == chosen[:1], "the loser's unused key is removed"


def test_sealed_value_copied_to_another_tenant_with_the_same_keys_does_not_open(
    storage,
    keyvault_provider,
    keyvault_tenant,
):
    cipher = _cipher(storage, keyvault_provider)
    a, b = keyvault_tenant(), keyvault_tenant()
    repo_a, repo_b = _repo(storage, a, cipher), _repo(storage, b, cipher)
    repo_a.create({"PartitionKey": "p", "RowKey": "r", "payload": {"owner": a}})
    repo_b.create({"PartitionKey": "p", "RowKey": "other", "payload": {"owner": b}})
    raw = dict(storage.table(repo_a.table_name).get_entity("p", "r"))
    storage.table(repo_b.table_name).create_entity(raw)  # an operator or attacker copies the row across
    with pytest.raises(SealedDataUnreadable):
        repo_b.get("p", "r")
    with pytest.raises(ResourceNotFoundError):
        storage.table(repo_b.table_name).get_entity("p", "missing")
