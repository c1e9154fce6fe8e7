"""Per-tenant tables: a repository bound to tenant A cannot reach tenant B's data by any route its API offers."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from gatekeeper.store.envelope import EnvelopeCipher, SealedDataUnreadable
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.repository import TenantRepository
from gatekeeper.store.tables import (
    TABLE_NAME_PATTERN,
    InvalidTenantId,
    StorageAccount,
    TablePurpose,
    tenant_table_name,
)
from tests.keyvault_fixtures import local_cipher, local_key_provider, new_tenant_id, storage  # noqa: F401

pytestmark = pytest.mark.azurite

BAD_TENANT_IDS = [
    "../x",
    "..",
    "A",
    "ab",
    "Acme",
    "ACME",
    "acme-1",
    "acme/x",
    "acme x",
    "1acme",
    "a" * 33,
    "",
    "acmé",
    "gkacmeEvents",
    "acme\n",
    "acme\x00",
]


class Events(TenantRepository):
    purpose = TablePurpose.EVENTS
    sealed_properties = frozenset({"payload"})


class Gates(TenantRepository):
    purpose = TablePurpose.GATES
    sealed_properties = frozenset({"payload"})


class Plain(TenantRepository):
    purpose = TablePurpose.POLICY


def _make_two_tenants(storage: StorageAccount, cipher: EnvelopeCipher):
    a, b = new_tenant_id(), new_tenant_id()
    repos = {}
    for tenant in (a, b):
        repo = Events(storage, tenant, cipher)
        repo.ensure_table()
        repo.batch(
            {"PartitionKey": "shared", "RowKey": f"r{n}", "owner": tenant, "payload": {"owner": tenant}}
            for n in range(3)
        )
        repo.create({"PartitionKey": f"only-{tenant}", "RowKey": "x", "owner": tenant, "payload": {"owner": tenant}})
        repos[tenant] = repo
    return a, b, repos


@pytest.fixture(scope="module")
def module_storage(azurite) -> StorageAccount:
    return StorageAccount(connection_string=azurite.connection_string)


@pytest.fixture(scope="module")
def module_cipher(module_storage, tmp_path_factory) -> EnvelopeCipher:
    return build_cipher(module_storage, LocalKeyProvider(tmp_path_factory.mktemp("keys")))


@pytest.fixture(scope="module")
def two_tenants(module_storage, module_cipher):
    """Read-only tests share these two tenants (three rows in a common partition, one row of their own)."""
    return _make_two_tenants(module_storage, module_cipher)


@pytest.fixture
def fresh_tenants(module_storage, module_cipher):
    """For tests that plant rows: two tenants of their own."""
    return _make_two_tenants(module_storage, module_cipher)


@pytest.mark.parametrize("tenant", BAD_TENANT_IDS)
def test_invalid_tenant_ids_are_refused_everywhere(storage, local_cipher, local_key_provider, tenant):
    with pytest.raises(InvalidTenantId):
        tenant_table_name(tenant, TablePurpose.EVENTS)
    with pytest.raises(InvalidTenantId):
        Events(storage, tenant, local_cipher)
    with pytest.raises(InvalidTenantId):
        storage.tenant_table(tenant, TablePurpose.KEYS)
    with pytest.raises(ValueError, match="tenant_id"):
        local_cipher.seal(tenant, "t", "p", "r", b"x")
    with pytest.raises(InvalidTenantId):
        local_key_provider.crypto_client(tenant)


def test_table_names_are_valid_and_never_collide():
    tenants = ["abc", "abce", "abcevents", "gates", "a" * 32, "keys", "acme1", "acme12", "events"]
    names = {(t, p): tenant_table_name(t, p) for t in tenants for p in TablePurpose}
    for name in names.values():
        assert TABLE_NAME_PATTERN.fullmatch(name) and len(name) <= 63, name
    assert len(set(names.values())) == len(names)


def test_the_api_never_takes_a_table_name():
    for name, member in inspect.getmembers(TenantRepository, inspect.isfunction):
        if name.startswith("_") and name != "__init__":
            continue
        params = set(inspect.signature(member).parameters)
        assert not params & {"table", "table_name", "name"}, f"{name} takes a table name"


def test_get_sees_only_the_own_tenant(two_tenants):
    a, b, repos = two_tenants
    assert repos[a].get("shared", "r0")["owner"] == a
    assert repos[a].get(f"only-{b}", "x") is None
    assert repos[b].get(f"only-{a}", "x") is None


@pytest.mark.parametrize(
    "filter",
    [
        "PartitionKey eq 'x' or true",
        "true",
        "PartitionKey ne ''",
        "owner ne 'nobody'",
    ],
)
def test_crafted_filters_stay_inside_the_tenant_table(two_tenants, filter):
    a, _, repos = two_tenants
    rows = list(repos[a].query(filter))
    assert rows and {row["owner"] for row in rows} == {a}
    assert {row["payload"]["owner"] for row in rows} == {a}


def test_filter_naming_the_other_tenant_finds_nothing(two_tenants):
    a, b, repos = two_tenants
    assert list(repos[a].query("owner eq @who", {"who": b})) == []
    assert list(repos[a].query("PartitionKey eq @pk", {"pk": f"only-{b}"})) == []


def test_parameters_cannot_inject_filter_syntax(two_tenants):
    a, _, repos = two_tenants
    injected = "x' or PartitionKey ne '"
    assert list(repos[a].query("PartitionKey eq @pk", {"pk": injected})) == []
    assert list(repos[a].partition(injected)) == []


def test_list_and_partition_see_only_the_own_tenant(two_tenants):
    a, b, repos = two_tenants
    assert {row["owner"] for row in repos[a].all()} == {a}
    assert len(list(repos[a].all())) == 4
    assert [row["owner"] for row in repos[b].partition("shared")] == [b, b, b]


def test_delete_cannot_reach_the_other_tenant(two_tenants):
    a, b, repos = two_tenants
    repos[a].delete(f"only-{b}", "x")  # deletes are idempotent: it removes nothing in a's table
    assert repos[b].get(f"only-{b}", "x")["owner"] == b


@pytest.mark.parametrize("key", ["../gkotherEvents", "a/b", "a#b", "a?b", "a\\b", "a\x00b", "a\nb"])
def test_keys_with_path_characters_are_refused(two_tenants, key):
    a, _, repos = two_tenants
    with pytest.raises(ValueError, match="PartitionKey"):
        repos[a].get(key, "x")
    with pytest.raises(ValueError, match="RowKey"):
        repos[a].create({"PartitionKey": "p", "RowKey": key, "payload": 1})
    with pytest.raises(ValueError, match="PartitionKey"):
        list(repos[a].partition(key))


def test_row_copied_into_another_tenant_does_not_open(fresh_tenants, storage):
    a, b, repos = fresh_tenants
    raw = dict(storage.table(repos[a].table_name).get_entity(f"only-{a}", "x"))
    storage.table(repos[b].table_name).create_entity(raw)
    with pytest.raises(SealedDataUnreadable):
        repos[b].get(f"only-{a}", "x")
    with pytest.raises(SealedDataUnreadable):
        list(repos[b].all())


def test_sealed_value_opened_under_another_tenants_binding_is_unreadable(two_tenants, module_cipher):
    a, b, repos = two_tenants
    sealed = module_cipher.seal(a, repos[a].table_name, "p", "r", b"secret")
    for other in [(b, repos[a].table_name), (b, repos[b].table_name), (a, repos[b].table_name)]:
        with pytest.raises(SealedDataUnreadable):
            module_cipher.open(other[0], other[1], "p", "r", sealed)
    assert module_cipher.open(a, repos[a].table_name, "p", "r", sealed) == b"secret"


def test_moved_rows_do_not_open(fresh_tenants, storage, module_cipher):
    a, _, repos = fresh_tenants
    table = storage.table(repos[a].table_name)
    raw = dict(table.get_entity("shared", "r0"))
    table.create_entity({**raw, "RowKey": "moved"})  # same table, another row
    with pytest.raises(SealedDataUnreadable):
        repos[a].get("shared", "moved")
    table.create_entity({**raw, "PartitionKey": "elsewhere"})  # same row key, another partition
    with pytest.raises(SealedDataUnreadable):
        repos[a].get("elsewhere", "r0")
    gates = Gates(storage, a, module_cipher)  # same tenant and keys, another table
    gates.ensure_table()
    storage.table(gates.table_name).create_entity(raw)
    with pytest.raises(SealedDataUnreadable):
        gates.get("shared", "r0")


def test_plain_text_in_a_sealed_property_is_refused(fresh_tenants, storage):
    a, _, repos = fresh_tenants
    storage.table(repos[a].table_name).create_entity({"PartitionKey": "p", "RowKey": "forged", "payload": '{"x":1}'})
    with pytest.raises(SealedDataUnreadable, match="plain text"):
        repos[a].get("p", "forged")


def test_repository_without_sealed_properties_needs_no_cipher(storage: StorageAccount):
    tenant = new_tenant_id()
    repo = Plain(storage, tenant)
    repo.ensure_table()
    repo.upsert({"PartitionKey": "doc", "RowKey": "v1", "text": "allow"})
    assert repo.get("doc", "v1")["text"] == "allow"
    with pytest.raises(ValueError, match="cipher"):
        Events(storage, tenant)


@dataclasses.dataclass(frozen=True)
class CountingStorage(StorageAccount):
    """The real account (Azurite), noting each table it is asked to ensure."""

    asked: list[str] = dataclasses.field(default_factory=list)

    def ensure_table(self, name: str):
        self.asked.append(name)
        return super().ensure_table(name)


def test_ready_creates_the_table_on_first_use_and_asks_once_per_repository(storage: StorageAccount):
    """The stores (gates, actions, watches, identities, Slack messages, Teams cards) call `ready()` before
    every read and write: the first call creates the missing table, later calls of that repository ask the
    storage account nothing."""
    counting = CountingStorage(**{f.name: getattr(storage, f.name) for f in dataclasses.fields(storage)})
    repo = Plain(counting, new_tenant_id())
    assert repo.ready() is repo
    repo.upsert({"PartitionKey": "doc", "RowKey": "v1", "text": "allow"})  # the table exists now
    assert repo.ready() is repo and repo.ready().get("doc", "v1")["text"] == "allow"
    assert counting.asked == [repo.table_name]
