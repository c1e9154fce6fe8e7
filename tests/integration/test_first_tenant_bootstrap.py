"""The first-tenant bootstrap against Azurite: it imports the tenant with the example policy and audits it once;
a second run, instances racing, and a run that stopped half-way change nothing and audit nothing twice; a
tenant an admin registered first is kept; bad settings write nothing. And the data boundary at import: the
registry and `tenants import` refuse a tenant this stamp must not hold, naming the field."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gatekeeper.audit.log import AuditLog
from gatekeeper.cli import main
from gatekeeper.policy.store import NoPolicy, PolicyStore
from gatekeeper.settings import DataBoundary
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import SharedTable, StorageAccount
from gatekeeper.tenancy.bootstrap import (
    AUDIT_INSTANCE,
    CLAIM_LEASE,
    CLAIM_PARTITION,
    BootstrapState,
    FirstTenantBootstrap,
)
from gatekeeper.tenancy.boundary import BoundaryMismatch
from gatekeeper.tenancy.model import TenantRecord
from gatekeeper.tenancy.registry import TenantRegistry

pytestmark = pytest.mark.azurite


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class Install:
    """One stamp's storage and keys; `bootstrap()` is one app instance's bootstrap (its own claim owner)."""

    def __init__(self, connection: str, key_dir: Path, boundary: DataBoundary = DataBoundary.EU) -> None:
        self.storage = StorageAccount(connection_string=connection)
        self.tenant_id = "t" + uuid.uuid4().hex[:12]
        self.boundary = boundary
        self.cipher = build_cipher(self.storage, LocalKeyProvider(str(key_dir)))
        self.keys = LocalKeyProvider(str(key_dir))
        self.clock = Clock()
        self.entra = str(uuid.uuid4())
        self.values = {
            "GATEKEEPER_BOOTSTRAP_TENANT_ID": self.tenant_id,
            "GATEKEEPER_BOOTSTRAP_TENANT_NAME": "Northwind Traders",
            "GATEKEEPER_BOOTSTRAP_TENANT_ENTRA_ID": self.entra,
            "GATEKEEPER_BOOTSTRAP_TENANT_OPERATORS": "ops@northwind.example",
            "GATEKEEPER_BOOTSTRAP_TENANT_GITHUB": "true",
            "GATEKEEPER_BOOTSTRAP_TENANT_AZURE_DEVOPS": "false",
        }

    def registry(self) -> TenantRegistry:
        return TenantRegistry(self.storage, cache_seconds=0, data_boundary=self.boundary)

    def audit(self) -> AuditLog:
        return AuditLog(self.storage, self.cipher, None, self.tenant_id)

    def bootstrap(self, **values: str) -> FirstTenantBootstrap:
        return FirstTenantBootstrap(
            {**self.values, **values},
            self.boundary,
            storage=self.storage,
            status_storage=self.storage.bounded(),
            registry=self.registry(),
            policies=lambda tenant: PolicyStore(self.storage, tenant),
            audit_for=lambda tenant: AuditLog(self.storage, self.cipher, None, tenant),
            kek_public=lambda tenant: self.keys.public_jwk(tenant, create=True),
            clock=self.clock,
        )

    def bootstrap_entries(self) -> list[dict]:
        return [e for e in self.audit().entries() if e["instance_id"] == AUDIT_INSTANCE]


@pytest.fixture
def install(storage_connection_string, tmp_path) -> Install:
    return Install(storage_connection_string, tmp_path / "keys")


def test_the_first_run_imports_the_tenant_with_the_example_policy_and_audits_it(install):
    result = install.bootstrap().run()
    assert result.state is BootstrapState.DONE
    record = install.registry().get(install.tenant_id)
    assert record is not None and record.display_name == "Northwind Traders"
    assert record.data_boundary is DataBoundary.EU and record.kek_public is not None
    assert install.registry().resolve([f"entra:tenant:{install.entra}"]) == record
    revision = PolicyStore(install.storage, install.tenant_id).current()
    assert revision.revision == 1 and revision.published_by == "gatekeeper-bootstrap"
    records = [r for r in install.audit().records() if r.instance_id == AUDIT_INSTANCE]
    assert [r.kind for r in records] == ["tenant_changed", "policy_changed"]
    assert records[0].data["data_boundary"] == "EU" and records[0].data["deployment_data_boundary"] == "EU"
    assert records[1].data["fingerprint"] == revision.fingerprint
    assert install.bootstrap().status().state is BootstrapState.DONE  # what the health route shows


def test_a_second_run_and_a_restarted_app_change_nothing(install):
    first = install.bootstrap()
    assert first.run().state is BootstrapState.DONE
    entity = install.storage.table(SharedTable.TENANTS).get_entity("tenant", install.tenant_id)
    assert first.run().state is BootstrapState.DONE  # the same process: nothing read
    assert install.bootstrap().run().state is BootstrapState.DONE  # a new instance: one read, nothing written
    after = install.storage.table(SharedTable.TENANTS).get_entity("tenant", install.tenant_id)
    assert after.metadata["etag"] == entity.metadata["etag"]
    assert len(PolicyStore(install.storage, install.tenant_id).history()) == 1
    assert len(install.bootstrap_entries()) == 2


def test_instances_racing_import_once_publish_once_and_audit_once(install):
    instances = [install.bootstrap() for _ in range(6)]
    barrier = threading.Barrier(len(instances))
    results: list[BootstrapState] = []
    errors: list[BaseException] = []

    def run(instance: FirstTenantBootstrap) -> None:
        barrier.wait()
        try:
            results.append(instance.run().state)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert results.count(BootstrapState.DONE) >= 1
    assert set(results) <= {BootstrapState.DONE, BootstrapState.IN_PROGRESS}
    assert len(PolicyStore(install.storage, install.tenant_id).history()) == 1
    assert len(install.bootstrap_entries()) == 2


def test_a_run_that_stopped_before_marking_done_is_finished_by_the_next_without_duplicates(install):
    class Stops(FirstTenantBootstrap):
        def _finish(self, *args, **kwargs):  # the instance dies after its audit entries
            raise RuntimeError("instance recycled")

    crashed = Stops(
        install.values,
        install.boundary,
        storage=install.storage,
        status_storage=install.storage,
        registry=install.registry(),
        policies=lambda tenant: PolicyStore(install.storage, tenant),
        audit_for=lambda tenant: install.audit(),
        clock=install.clock,
    )
    with pytest.raises(RuntimeError):
        crashed.run()
    assert len(install.bootstrap_entries()) == 2
    assert install.bootstrap().run().state is BootstrapState.IN_PROGRESS  # the lease still holds
    install.clock.now += CLAIM_LEASE + timedelta(seconds=1)
    assert install.bootstrap().run().state is BootstrapState.DONE  # taken over once the lease ran out
    assert len(install.bootstrap_entries()) == 2
    assert len(PolicyStore(install.storage, install.tenant_id).history()) == 1
    row = install.storage.table(SharedTable.TENANTS).get_entity(CLAIM_PARTITION, install.tenant_id)
    assert row["state"] == "done"


def test_a_tenant_the_admin_registered_first_is_kept_as_it_is(install):
    mine = TenantRecord(tenant_id=install.tenant_id, display_name="Registered by the admin")
    install.registry().import_records([mine])
    result = install.bootstrap().run()
    assert result.state is BootstrapState.DONE and "kept" in result.detail
    assert install.registry().get(install.tenant_id) == mine
    with pytest.raises(NoPolicy):
        PolicyStore(install.storage, install.tenant_id).current()
    assert install.bootstrap_entries() == []


def test_an_entra_tenant_another_tenant_holds_is_refused_naming_the_setting(install):
    other = TenantRecord(tenant_id="o" + install.tenant_id[1:], display_name="Other", entra_tenant_ids=(install.entra,))
    install.registry().import_records([other])
    result = install.bootstrap().run()
    assert result.state is BootstrapState.REFUSED and result.setting == "GATEKEEPER_BOOTSTRAP_TENANT_ENTRA_ID"
    shown = install.bootstrap().status()  # what the anonymous health route shows
    assert shown.setting == "GATEKEEPER_BOOTSTRAP_TENANT_ENTRA_ID"
    assert install.entra not in str(shown.to_json()) and other.tenant_id not in str(shown.to_json())
    assert install.registry().get(install.tenant_id) is None
    install.registry().import_records([other.model_copy(update={"entra_tenant_ids": ()})])  # the admin fixes it
    assert install.bootstrap().run().state is BootstrapState.DONE  # and the next run imports


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("GATEKEEPER_BOOTSTRAP_TENANT_ENTRA_ID", "not-a-guid"),
        ("GATEKEEPER_BOOTSTRAP_TENANT_OPERATORS", "nobody"),
        ("GATEKEEPER_BOOTSTRAP_TENANT_GITHUB", "maybe"),
    ],
)
def test_bad_settings_are_refused_by_name_and_write_nothing(install, setting, value, caplog):
    bootstrap = install.bootstrap(**{setting: value})
    result = bootstrap.run()
    assert result.state is BootstrapState.REFUSED and result.setting == setting
    assert bootstrap.status().to_json()["setting"] == setting  # the health route names it
    assert setting in caplog.text  # and the log says so
    assert install.registry().get(install.tenant_id) is None
    with pytest.raises(Exception):  # noqa: B017 - no claim row either
        install.storage.table(SharedTable.TENANTS).get_entity(CLAIM_PARTITION, install.tenant_id)


@pytest.mark.parametrize(
    ("stamp", "tenant", "accepted"),
    [
        (DataBoundary.EU, DataBoundary.EU, True),
        (DataBoundary.EU, DataBoundary.ANY, True),
        (DataBoundary.ANY, DataBoundary.EU, False),
        (DataBoundary.US, DataBoundary.EU, False),
        (DataBoundary.ANY, DataBoundary.ANY, True),
    ],
)
def test_the_registry_refuses_a_tenant_outside_the_stamps_boundary(install, stamp, tenant, accepted):
    registry = TenantRegistry(install.storage, cache_seconds=0, data_boundary=stamp)
    ok = TenantRecord(tenant_id="a" + install.tenant_id, display_name="fits anywhere")
    record = TenantRecord(tenant_id=install.tenant_id, display_name="x", data_boundary=tenant)
    if accepted:
        registry.import_records([ok, record])
        assert registry.get(install.tenant_id) == record
        return
    with pytest.raises(BoundaryMismatch) as refused:
        registry.import_records([ok, record])
    assert refused.value.field == "tenants[1].data_boundary"
    assert registry.get(install.tenant_id) is None and registry.get(ok.tenant_id) is None  # nothing half-written


def test_cli_import_refuses_a_tenant_outside_the_boundary_naming_file_and_field(
    storage_connection_string, tmp_path, capsys, monkeypatch
):
    tenant = "t" + uuid.uuid4().hex[:12]
    monkeypatch.setenv("GATEKEEPER_KEY_MODE", "local")
    monkeypatch.setenv("GATEKEEPER_LOCAL_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("GATEKEEPER_DATA_BOUNDARY", "US")
    file = tmp_path / "tenants.yaml"
    file.write_text(f"tenants:\n  - tenant_id: {tenant}\n    display_name: Contoso EU\n    data_boundary: EU\n")
    conn = ["--storage-connection", storage_connection_string]
    assert main(["tenants", "import", str(file), *conn]) == 2
    err = capsys.readouterr().err
    assert f"{file}: tenants[0].data_boundary:" in err and "requires data boundary EU" in err
    storage = StorageAccount(connection_string=storage_connection_string)
    assert TenantRegistry(storage, cache_seconds=0).get(tenant) is None
    assert not (tmp_path / "keys").exists() or not list((tmp_path / "keys").iterdir())  # no key made for it
    monkeypatch.setenv("GATEKEEPER_DATA_BOUNDARY", "EU")
    assert main(["tenants", "import", str(file), *conn]) == 0
    assert TenantRegistry(storage, cache_seconds=0).get(tenant).data_boundary is DataBoundary.EU
