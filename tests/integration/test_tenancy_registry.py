"""The tenant registry against Azurite: import, resolve, list, conflicts, and the CLI."""

from __future__ import annotations

import json

import pytest

from gatekeeper.cli import main
from gatekeeper.store.tables import SharedTable, StorageAccount
from gatekeeper.tenancy.model import SecretPurpose, TenantRecord
from gatekeeper.tenancy.registry import RegistryConflict, TenantRegistry, load_tenant_file
from gatekeeper.tenancy.secrets import SecretResolver
from tests.conftest import ROOT


@pytest.fixture
def registry(storage_connection_string):
    registry = TenantRegistry(StorageAccount(connection_string=storage_connection_string), cache_seconds=0)
    registry.table.delete_table()  # a clean registry per test; Azurite recreates it on demand
    fresh = TenantRegistry(StorageAccount(connection_string=storage_connection_string), cache_seconds=0)
    yield fresh
    fresh.table.delete_table()


def record(tenant_id: str, *identities: str, **secrets: list[str]) -> TenantRecord:
    return TenantRecord(
        tenant_id=tenant_id,
        display_name=tenant_id.title(),
        identities=identities,
        secrets={SecretPurpose(k): tuple(v) for k, v in secrets.items()},
    )


def test_example_file_imports_and_resolves_every_identity(registry):
    records = load_tenant_file((ROOT / "examples/tenants.yaml").read_text(), filename="examples/tenants.yaml")
    registry.import_records(records)
    assert [r.tenant_id for r in registry.records()] == ["contoso", "fabrikam"]
    assert registry.resolve(["github:org:OCTO-ORG"]).tenant_id == "contoso"  # case-insensitive
    assert registry.resolve(["azure-devops:org:https://dev.azure.com/Fabrikam"]).tenant_id == "contoso"
    assert registry.resolve(["entra:tenant:72F988BF-86F1-41AF-91AB-2D7CD011DB47"]).tenant_id == "contoso"
    assert registry.resolve(["github:installation:1"]).tenant_id == "fabrikam"
    assert registry.resolve(["github:org:unknown", "github:org:octocoders"]).tenant_id == "fabrikam"
    assert registry.resolve(["github:org:nobody"]) is None


def test_reimport_drops_identities_the_tenant_no_longer_claims(registry):
    registry.import_records([record("contoso", "github:org:old", "github:org:kept")])
    registry.import_records([record("contoso", "github:org:kept")])
    assert registry.resolve(["github:org:old"]) is None
    assert registry.resolve(["github:org:kept"]).tenant_id == "contoso"


def test_one_identity_cannot_belong_to_two_tenants(registry):
    registry.import_records([record("contoso", "github:org:shared")])
    with pytest.raises(RegistryConflict):
        registry.import_records([record("fabrikam", "github:org:shared")])
    with pytest.raises(RegistryConflict):
        registry.import_records([record("aaa", "github:org:x"), record("bbb", "github:org:x")])
    assert registry.get("fabrikam") is None  # nothing half-written
    assert registry.resolve(["github:org:shared"]).tenant_id == "contoso"


def test_disabled_tenants_do_not_resolve(registry):
    registry.import_records([record("contoso", "github:org:x").model_copy(update={"enabled": False})])
    assert registry.resolve(["github:org:x"]) is None


def test_registry_holds_references_never_secret_values(registry, storage_connection_string):
    registry.import_records([record("contoso", "github:org:x", github_webhook=["env:GK_SECRET_A"])])
    table = StorageAccount(connection_string=storage_connection_string).table(SharedTable.TENANTS)
    stored = json.dumps([dict(e) for e in table.list_entities()], default=str)
    assert "env:GK_SECRET_A" in stored
    resolver = SecretResolver({"GK_SECRET_A": "s3cret-value"})
    assert resolver.resolve(registry.get("contoso"), SecretPurpose.GITHUB_WEBHOOK) == [b"s3cret-value"]
    assert "s3cret-value" not in stored


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tenants: [{tenant_id: Bad-Id, display_name: x}]", "tenants[0].tenant_id"),
        ("tenants: [{tenant_id: abc, display_name: x, identities: ['gitlab:org:x']}]", "tenants[0].identities"),
        ("tenants: [{tenant_id: abc, display_name: x, secrets: {github_webhook: [plaintext]}}]", "tenants[0].secrets"),
        ("tenants: [{tenant_id: abc, display_name: x, colour: blue}]", "tenants[0].colour"),
        ("tenants: {tenant_id: abc}", "tenants: expected a list"),
        ("tenants: [{tenant_id: abc, display_name: x}, {tenant_id: abc, display_name: y}]", "appears twice"),
        ("tenants: [", "not valid YAML"),
    ],
)
def test_bad_tenant_files_name_the_field(text, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_tenant_file(text, filename="t.yaml")


def test_cli_import_and_list(tmp_path, capsys, storage_connection_string, registry):
    conn = ["--storage-connection", storage_connection_string]
    assert main(["tenants", "import", str(ROOT / "examples/tenants.yaml"), *conn]) == 0
    assert "imported 2 tenant(s): contoso, fabrikam" in capsys.readouterr().out
    assert main(["tenants", "list", *conn]) == 0
    out = capsys.readouterr().out
    assert "contoso" in out and "github:org:octo-org" in out and "env:" not in out
    assert main(["tenants", "list", "--json", *conn]) == 0
    assert {t["tenant_id"] for t in json.loads(capsys.readouterr().out)} == {"contoso", "fabrikam"}

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tenants": [{"tenant_id": "ok1", "display_name": ""}]}))
    assert main(["tenants", "import", str(bad), *conn]) == 2
    assert "bad.json: tenants[0].display_name" in capsys.readouterr().err
    assert main(["tenants", "import", str(tmp_path / "missing.yaml"), *conn]) == 2


def test_the_registry_refuses_a_credential_reference_not_the_tenants_own_naming_the_field(registry):
    """Records imported in code (bootstrap, the demo, tests) meet the tenants file's rule: nothing written."""
    from gatekeeper.errors import InvalidInput

    ninja = {"vendor": "ninjaone", "api_url": "https://eu.ninjarmm.com", "client_id": "gk-client"}
    refused = TenantRecord.model_validate(
        {"tenant_id": "refusedref", "display_name": "R", "rmm": {**ninja, "client_secret": "env:AzureWebJobsStorage"}}
    )
    with pytest.raises(InvalidInput) as caught:
        registry.import_records([refused])
    assert caught.value.field == "tenants[0].rmm.client_secret" and registry.get("refusedref") is None
    own = refused.model_copy(
        update={"rmm": refused.rmm.model_copy(update={"client_secret": "env:GK_REFUSEDREF_NINJA"})}
    )  # type: ignore[union-attr]
    registry.import_records([own])
    assert registry.get("refusedref") is not None
