"""Concurrent writers of the tenant registry (gatekeeper/tenancy/registry.py, `gatekeeper tenants import` and
`gatekeeper keys rotate`): the steps of two writers are driven in the bad order through a loopback proxy in front
of Azurite's Tables endpoint. The proxy speaks nothing of its own: right before it forwards a chosen request of
one writer, it lets the other writer run to the end against Azurite, so the first writer's next write meets what
the service really answers (412 on a stale ETag, 409 on a row created meanwhile)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.cli import main
from gatekeeper.store.keys import LocalKeyProvider
from gatekeeper.store.tables import StorageAccount
from gatekeeper.tenancy.model import TenantRecord
from gatekeeper.tenancy.registry import RegistryConflict, TenantRegistry
from tests.support.tables_proxy import WRITES, TablesProxy

pytestmark = pytest.mark.azurite


@pytest.fixture
def proxied(storage_connection_string: str) -> Iterator[tuple[str, TablesProxy]]:
    """A connection string whose Tables endpoint is the interleaving proxy, and the proxy."""
    with TablesProxy(storage_connection_string) as proxy:
        yield proxy.connection_string, proxy


def first_write(method: str, path: str, body: bytes) -> bool:
    return method in WRITES


def record(tenant_id: str, *identities: str) -> TenantRecord:
    return TenantRecord(tenant_id=tenant_id, display_name=tenant_id, identities=identities)


def names() -> tuple[str, str, str]:
    suffix = uuid.uuid4().hex[:10]
    return f"ra{suffix}", f"rb{suffix}", f"github:org:race-{suffix}"


def test_two_imports_claiming_one_identity_for_two_tenants_leave_one_owner_and_the_loser_hears_conflict(
    proxied, storage_connection_string
):
    """Import B checks that the identity is free, then import A claims it for tenant a and finishes, then B
    writes. B used to overwrite the index (last writer wins): both reported success, tenant a's record named an
    identity that resolved to b. Now B's claim is create-only: B hears RegistryConflict and writes no record."""
    connection, proxy = proxied
    a, b, identity = names()
    direct = TenantRegistry(StorageAccount(connection_string=storage_connection_string))
    racing = TenantRegistry(StorageAccount(connection_string=connection))
    racing.table  # noqa: B018 - the table exists before the race, so its creation is not the first write
    proxy.interleave(first_write, lambda: direct.import_records([record(a, identity)]))
    with pytest.raises(RegistryConflict, match=re.escape(f"identity {identity} already belongs to another tenant")):
        racing.import_records([record(b, identity)])
    assert proxy.fired == 1
    fresh = TenantRegistry(StorageAccount(connection_string=storage_connection_string))
    assert fresh.tenant_for_identity(identity) == a
    assert fresh.get(a) is not None and fresh.get(b) is None, "the loser wrote no record naming the identity"


def test_a_stale_delete_does_not_remove_an_ownership_written_after_it_was_read(proxied, storage_connection_string):
    """Import C re-imports tenant a without the identity and reads it as a's; before C deletes it, import D moves
    the identity to tenant b (D imports both). C's delete used to remove b's ownership: neither tenant owned the
    identity and b's events found no tenant. Now the delete is conditional on the ETag C read."""
    connection, proxy = proxied
    a, b, identity = names()
    direct = TenantRegistry(StorageAccount(connection_string=storage_connection_string))
    direct.import_records([record(a, identity, f"{identity}-keep")])
    racing = TenantRegistry(StorageAccount(connection_string=connection))
    proxy.interleave(
        lambda method, path, body: method == "DELETE" and "PartitionKey='identity'" in path,
        lambda: direct.import_records([record(a, f"{identity}-keep"), record(b, identity)]),
    )
    racing.import_records([record(a, f"{identity}-keep")])
    assert proxy.fired == 1
    fresh = TenantRegistry(StorageAccount(connection_string=storage_connection_string))
    assert fresh.tenant_for_identity(identity) == b
    assert fresh.tenant_for_identity(f"{identity}-keep") == a


def test_concurrent_identical_imports_both_succeed_with_one_owner(proxied, storage_connection_string):
    """The same file imported twice at once (a retried deployment step): the second meets the first's rows and
    finishes, nothing refused, the identity the tenant's."""
    connection, proxy = proxied
    a, _, identity = names()
    direct = TenantRegistry(StorageAccount(connection_string=storage_connection_string))
    racing = TenantRegistry(StorageAccount(connection_string=connection))
    racing.table  # noqa: B018
    proxy.interleave(first_write, lambda: direct.import_records([record(a, identity)]))
    racing.import_records([record(a, identity)])
    assert proxy.fired == 1
    fresh = TenantRegistry(StorageAccount(connection_string=storage_connection_string))
    assert fresh.tenant_for_identity(identity) == a


def test_a_loser_hands_back_the_identities_it_had_claimed(proxied, storage_connection_string):
    """B claims a fresh identity, then meets one A took meanwhile: the fresh one is handed back, so a refused
    import leaves no index row pointing at a tenant that has no record."""
    connection, proxy = proxied
    a, b, identity = names()
    fresh_identity = f"{identity}-fresh"
    direct = TenantRegistry(StorageAccount(connection_string=storage_connection_string))
    racing = TenantRegistry(StorageAccount(connection_string=connection))
    racing.table  # noqa: B018
    proxy.interleave(first_write, lambda: direct.import_records([record(a, identity)]))
    with pytest.raises(RegistryConflict):
        racing.import_records([record(b, fresh_identity, identity)])
    fresh = TenantRegistry(StorageAccount(connection_string=storage_connection_string))
    assert fresh.tenant_for_identity(fresh_identity) is None and fresh.tenant_for_identity(identity) == a


def test_tenants_import_losing_the_race_exits_2_naming_the_file_and_identity(
    proxied, storage_connection_string, tmp_path: Path, capsys, monkeypatch
):
    connection, proxy = proxied
    monkeypatch.setenv("GATEKEEPER_KEY_MODE", "local")
    monkeypatch.setenv("GATEKEEPER_LOCAL_KEY_DIR", str(tmp_path / "keys"))
    a, b, identity = names()
    TenantRegistry(StorageAccount(connection_string=connection)).table  # noqa: B018
    file = tmp_path / "tenants.yaml"
    file.write_text(f"tenants:\n  - tenant_id: {b}\n    display_name: B\n    identities: [{identity}]\n")
    direct = TenantRegistry(StorageAccount(connection_string=storage_connection_string))
    proxy.interleave(
        lambda method, path, body: method in WRITES and "gkTenants" in path,
        lambda: direct.import_records([record(a, identity)]),
    )
    assert main(["tenants", "import", str(file), "--storage-connection", connection]) == 2
    err = capsys.readouterr().err
    assert f"{file}: identity {identity} already belongs to another tenant" in err and "Traceback" not in err
    assert direct.get(b) is None


def test_keys_rotate_whose_record_changed_meanwhile_exits_2_naming_the_tenant_and_overwrites_nothing(
    proxied, storage_connection_string, tmp_path: Path, capsys, monkeypatch
):
    """`keys rotate` reads the tenant record, an import replaces it, then the rotation's conditional write of the
    KEK public key meets 412. It used to crash with an unhandled ResourceModifiedError (a traceback, exit 1)."""
    connection, proxy = proxied
    keys = tmp_path / "keys"
    monkeypatch.setenv("GATEKEEPER_KEY_MODE", "local")
    monkeypatch.setenv("GATEKEEPER_LOCAL_KEY_DIR", str(keys))
    a, _, identity = names()
    direct = TenantRegistry(StorageAccount(connection_string=storage_connection_string))
    direct.import_records([record(a, identity)])
    renamed = record(a, identity).model_copy(update={"display_name": "renamed meanwhile"})
    proxy.interleave(
        lambda method, path, body: method in ("MERGE", "PATCH") and f"RowKey='{a}'" in path,
        lambda: direct.import_records([renamed]),
    )
    assert main(["keys", "rotate", "--tenant", a, "--new-kek-version", "--storage-connection", connection]) == 2
    captured = capsys.readouterr()
    assert proxy.fired == 1
    assert "Traceback" not in captured.err
    assert f"tenant {a}: the registry record changed while the KEK public key was being recorded" in captured.err
    assert "(field: tenant)" in captured.err
    stored = TenantRegistry(StorageAccount(connection_string=storage_connection_string)).get(a)
    assert stored is not None and stored.display_name == "renamed meanwhile" and stored.kek_public is None
    proxy.clear()
    assert main(["keys", "rotate", "--tenant", a, "--storage-connection", connection]) == 0  # run again: recorded
    again = TenantRegistry(StorageAccount(connection_string=storage_connection_string)).get(a)
    assert again is not None and again.kek_public == LocalKeyProvider(keys).public_jwk(a)
    assert again.display_name == "renamed meanwhile"


def test_an_import_whose_identity_claims_fail_midway_hands_back_what_it_had_claimed(proxied, storage_connection_string):
    """The second identity's claim meets a storage outage (503). Only a RegistryConflict used to hand the
    claims back: the first identity stayed pointed at a tenant whose record was never written, so the next import
    of another tenant naming it heard "already belongs to another tenant" (a tenant that does not exist)."""
    connection, proxy = proxied
    a, b, identity = names()
    racing = TenantRegistry(StorageAccount(connection_string=connection))
    racing.table  # noqa: B018 - the table exists before the outage
    claims = [0]

    def second_claim(method: str, path: str, body: bytes) -> bool:
        if method == "POST" and re.search(rb'"PartitionKey":\s*"identity"', body):
            claims[0] += 1
            return claims[0] >= 2
        return False

    proxy.refuse(second_claim)
    with pytest.raises(Exception) as failed:
        racing.import_records([record(a, identity, f"{identity}-two")])
    assert not isinstance(failed.value, RegistryConflict) and proxy.refused, "an outage, not a conflict"
    proxy.clear()
    fresh = TenantRegistry(StorageAccount(connection_string=storage_connection_string))
    assert fresh.get(a) is None, "no record written"
    assert fresh.tenant_for_identity(identity) is None and fresh.tenant_for_identity(f"{identity}-two") is None
    fresh.import_records([record(b, identity)])  # free again: another tenant may claim it
    assert fresh.tenant_for_identity(identity) == b
