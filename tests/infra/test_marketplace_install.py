"""Issue 17, infrastructure: the offer installs the released code, redeploys and reinstalls are safe, and a
data boundary holds every resource's region. Checked on pycep's parse of the real Bicep (no Azure here)."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest

from gatekeeper.ingest.queue import CONNECTOR_EVENTS_QUEUE, PIPELINE_EVENTS_QUEUE
from gatekeeper.marketplace.app_package import package_name
from gatekeeper.marketplace.template_model import pycep_body
from tests.infra.conftest import INFRA, ROOT

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
STORAGE_QUEUE_DATA_MESSAGE_SENDER = "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a"
KEY_VAULT_CRYPTO_USER = "12338af0-0e69-4776-bea7-57ae8d297424"
ALLOWED_LOCATIONS_POLICY = "e56962a6-4747-49cd-b67b-bf8b01975c4c"


def _resource(parsed: dict[str, Any], path: str, symbol: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the declaration, its body) of one resource."""
    spec = parsed[path]["resources"][symbol]
    return spec, pycep_body(spec["config"])


def _condition(spec: dict[str, Any]) -> Any:
    return spec["config"].get("condition")


def _module_params(parsed: dict[str, Any], symbol: str) -> dict[str, Any]:
    return pycep_body(parsed["main.bicep"]["modules"][symbol]["config"])["params"]


# ------------------------------------------------------------------------------------ 1. the code is deployed


def test_the_released_package_is_installed_by_onedeploy(parsed_infra):
    spec, body = _resource(parsed_infra, "modules/functionapp.bicep", "packageDeployment")
    assert (spec["type"], spec["api_version"], body["name"], body["parent"]) == (
        "Microsoft.Web/sites/extensions",
        "2025-03-01",
        "onedeploy",
        "app",
    )
    assert body["properties"] == {"packageUri": "packageUri", "remoteBuild": False}
    assert "settings" in body["dependsOn"], "the code must start with its app settings in place"
    # only when a package is named: azd deploys from source with packageUri empty
    empty = {"function": {"type": "empty", "parameters": {"item_to_test": "packageUri"}}}
    assert _condition(spec) == {"operator": {"type": "not", "operands": {"bool_value": empty}}}
    assert _module_params(parsed_infra, "functionApp")["packageUri"] == "packageUri"


def test_package_uri_defaults_to_this_versions_release_asset(parsed_infra):
    default = parsed_infra["main.bicep"]["parameters"]["packageUri"]["default"]
    pattern = (
        rf"https://github\.com/[^/]+/[^/]+/releases/download/v{re.escape(VERSION)}/{re.escape(package_name(VERSION))}"
    )
    assert re.fullmatch(pattern, default), default


# ------------------------------------------------------------------------------ 2. redeploys and reinstalls


def test_every_microsoft_web_resource_uses_2025_03_01(parsed_infra):
    versions = {
        (path, spec["type"], spec["api_version"])
        for path, data in parsed_infra.items()
        for spec in (data.get("resources") or {}).values()
        if spec["type"].startswith("Microsoft.Web/")
    }
    assert versions and {v for _, _, v in versions} == {"2025-03-01"}, versions
    writer = (INFRA / "modules" / "appsettings.bicep").read_text()
    assert "list('${app.id}/config/appsettings', '2025-03-01')" in writer


def test_queues_and_their_poison_queues_are_created(parsed_infra):
    names = parsed_infra["modules/storage.bicep"]["variables"]["queueNames"]["value"]
    expected = [PIPELINE_EVENTS_QUEUE, f"{PIPELINE_EVENTS_QUEUE}-poison", CONNECTOR_EVENTS_QUEUE]
    assert names == [*expected, f"{CONNECTOR_EVENTS_QUEUE}-poison", "slack-interactions", "slack-interactions-poison"]
    spec, body = _resource(parsed_infra, "modules/storage.bicep", "queues")
    assert spec["type"] == "Microsoft.Storage/storageAccounts/queueServices/queues"
    assert spec["config"]["loop_type"]["detail"] == {"item_name": "queueName", "array_name": "queueNames"}
    assert body == {"parent": "queueService", "name": "queueName"}


def test_connector_relays_may_only_send_to_connector_events(parsed_infra):
    _, queue = _resource(parsed_infra, "modules/storage.bicep", "connectorEventsQueue")
    assert queue["name"] == CONNECTOR_EVENTS_QUEUE
    spec, body = _resource(parsed_infra, "modules/storage.bicep", "connectorRelaySender")
    assert body["scope"] == "connectorEventsQueue"
    assert body["properties"]["principalId"] == "connectorRelayPrincipalId"
    assert parsed_infra["modules/storage.bicep"]["variables"]["storageQueueDataMessageSenderRoleId"]["value"] == (
        STORAGE_QUEUE_DATA_MESSAGE_SENDER
    )
    assert _condition(spec) is not None, "no relay principal, no role assignment"
    assert _module_params(parsed_infra, "storage")["connectorRelayPrincipalId"] == "connectorRelayPrincipalId"


def test_a_locked_worm_policy_is_left_alone(parsed_infra):
    spec, body = _resource(parsed_infra, "modules/storage.bicep", "auditImmutability")
    assert _condition(spec) == {"operator": {"type": "not", "operands": {"bool_value": "auditPolicyLocked"}}}
    assert body["properties"]["immutabilityPeriodSinceCreationInDays"] == "auditImmutabilityDays"
    assert _module_params(parsed_infra, "storage")["auditPolicyLocked"] == "auditPolicyLocked"
    assert parsed_infra["main.bicep"]["parameters"]["auditPolicyLocked"]["default"] is False


def test_admin_settings_are_parameters_so_redeploys_keep_them(parsed_infra):
    """The template's values win the merge in appsettings.bicep: what an admin changes must be a parameter."""
    settings = parsed_infra["modules/functionapp.bicep"]["variables"]["appSettings"]["value"]
    assert settings["GATEKEEPER_CHECKPOINT_KEY_NAME"] == "checkpointKeyName"
    assert settings["GATEKEEPER_GITHUB_API_URL"] == "githubApiUrl"
    main = parsed_infra["main.bicep"]["parameters"]
    assert main["checkpointKeyName"]["default"] == "audit-checkpoint"
    assert main["githubApiUrl"]["default"] == "https://api.github.com"
    assert _module_params(parsed_infra, "keyVault")["checkpointKeyName"] == "checkpointKeyName"
    passed = _module_params(parsed_infra, "functionApp")["checkpointKeyName"]
    assert "'keyVault'" in str(passed) and "'checkpointKeyName'" in str(passed), passed
    assert _module_params(parsed_infra, "functionApp")["githubApiUrl"] == "githubApiUrl"


def test_a_new_checkpoint_key_is_created_and_granted(parsed_infra):
    _, key = _resource(parsed_infra, "modules/keyvault.bicep", "checkpointKey")
    assert key["name"] == "checkpointKeyName"
    _, role = _resource(parsed_infra, "modules/keyvault.bicep", "checkpointSignerRole")
    assert role["scope"] == "checkpointKey"
    # the assignment's name derives from the key's id: a new key gets a new assignment, the old one stays
    base = role["name"]["function"]["parameters"]["base_string"]["operator"]["operands"]
    assert base == {"operand_1": "checkpointKey", "operand_2": "id"}
    assert parsed_infra["modules/keyvault.bicep"]["variables"]["cryptoUserRoleId"]["value"] == KEY_VAULT_CRYPTO_USER


def test_a_reinstall_can_recover_the_vault_or_salt_its_name(parsed_infra):
    _, vault = _resource(parsed_infra, "modules/keyvault.bicep", "vault")
    assert vault["properties"]["createMode"] == "createMode"
    assert vault["properties"]["enablePurgeProtection"] is True
    params = _module_params(parsed_infra, "keyVault")
    assert params["createMode"] == "keyVaultCreateMode"
    assert params["name"] == "kv-${namePrefix}-${vaultToken}"
    main = (INFRA / "main.bicep").read_text()
    assert (
        "var vaultToken = empty(keyVaultNameSalt) ? token : take(uniqueString(subscription().id, "
        "resourceGroup().id, namePrefix, keyVaultNameSalt), 10)" in main
    )
    assert parsed_infra["main.bicep"]["parameters"]["keyVaultCreateMode"]["default"] == "default"
    assert parsed_infra["main.bicep"]["parameters"]["keyVaultNameSalt"]["default"] == ""


# ARM-TTK's DeploymentTemplate-Must-Not-Contain-Hardcoded-Uri hosts (arm-ttk tag 20260213), plus App Service's.
TTK_HOSTS = (
    "management.core.windows.net", "gallery.azure.com", "management.azure.com", "database.windows.net",
    "core.windows.net", "login.microsoftonline.com", "graph.windows.net", "vault.azure.net", "datalake.azure.net",
    "azuredatalakestore.net", "azuredatalakeanalytics.net", "api.loganalytics.io", "asazure.windows.net",
    "azurewebsites.net",
)  # fmt: skip


def test_no_public_cloud_endpoint_is_written_into_the_bicep(parsed_infra):
    """Outside parameter defaults (which ARM-TTK allows: an admin can override them), no cloud host."""
    for path in INFRA.rglob("*.bicep"):
        text = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("param "))
        text = text.replace("https://schema.management.azure.com/", "")  # schema references are exempt, as in TTK
        for host in TTK_HOSTS:
            assert host not in text, f"{path.name} hard-codes {host}; use outputs, environment() or a parameter"
    settings = parsed_infra["modules/functionapp.bicep"]["variables"]["appSettings"]["value"]
    suffixes = {"function": {"type": "environment", "property_name": "suffixes"}}
    accessor = {"type": "property_accessor", "operands": {"operand_1": suffixes, "operand_2": "storage"}}
    assert settings["GATEKEEPER_STORAGE_ENDPOINT_SUFFIX"] == {"operator": accessor}
    assert settings["GATEKEEPER_KEY_VAULT_URL"] == "keyVaultUri"
    assert settings["GATEKEEPER_LOG_ANALYTICS_ENDPOINT"] == "logAnalyticsApiUrl"


# ------------------------------------------------------------------------------------- 3. first minutes


@pytest.mark.parametrize(
    ("module", "expected"),
    [("modules/storage.bicep", ["deployerTableRole"]), ("modules/keyvault.bicep", ["deployerRoles"])],
)
def test_deployer_data_roles_only_when_a_principal_is_given(parsed_infra, module, expected):
    found = [
        symbol
        for symbol, spec in parsed_infra[module]["resources"].items()
        if "deployerPrincipalId" in str(pycep_body(spec["config"]).get("properties", {}).get("principalId"))
    ]
    assert found == expected
    for symbol in found:
        assert _condition(parsed_infra[module]["resources"][symbol]) is not None
    roles = parsed_infra["modules/keyvault.bicep"]["variables"]["deployerRoleIds"]["value"]
    assert roles == ["14b46e9e-c2b7-41b4-b07b-48a6ebf60603", "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"]
    for symbol in ("storage", "keyVault"):
        params = _module_params(parsed_infra, symbol)
        assert (params["deployerPrincipalId"], params["deployerPrincipalType"]) == ("principalId", "principalType")


def test_attribution_is_sent_only_when_asked(parsed_infra):
    spec, body = _resource(parsed_infra, "main.bicep", "partnerCenterAttribution")
    assert _condition(spec) == "partnerAttribution"
    assert parsed_infra["main.bicep"]["parameters"]["partnerAttribution"]["default"] is False
    assert re.fullmatch(r"pid-[0-9a-f-]{36}-partnercenter", body["name"])


# ------------------------------------------------------------------------------------------ 4. geo-fencing


def test_every_module_gets_the_guarded_location(parsed_infra):
    for symbol, spec in parsed_infra["main.bicep"]["modules"].items():
        params = pycep_body(spec["config"])["params"]
        if "location" in params:
            assert params["location"] == "deployLocation", symbol
    located = {
        s
        for s, spec in parsed_infra["main.bicep"]["modules"].items()
        if "location" in pycep_body(spec["config"])["params"]
    }
    assert located == {"identity", "monitoring", "alerts", "storage", "keyVault", "eventGrid", "functionApp"}
    main = (INFRA / "main.bicep").read_text()
    outside = "'region-${location}-is-outside-the-${dataBoundary}-data-boundary'"
    assert f"var deployLocation = locationInBoundary ? location : {outside}" in main
    assert "var locationInBoundary = (dataBoundary == 'any') || contains(boundaryLocations, toLower(location))" in main


def test_every_resource_in_a_module_takes_its_location_parameter_or_is_global(parsed_infra):
    for path, data in parsed_infra.items():
        if path == "main.bicep":
            continue
        for symbol, spec in (data.get("resources") or {}).items():
            body = pycep_body(spec["config"])
            if "location" in body and not spec.get("existing"):
                assert body["location"] in ("location", "global"), f"{path}:{symbol}"


def test_boundary_regions_and_storage_replication_stay_inside(parsed_infra):
    variables = parsed_infra["main.bicep"]["variables"]
    regions = variables["boundaryRegions"]["value"]
    assert regions["any"] == [] and set(regions) == {"EU", "US", "any"}
    # Azure's region pairs: a boundary region either pairs inside its geography or is listed as unpaired
    pairs = {
        "francecentral": "francesouth", "germanywestcentral": "germanynorth", "northeurope": "westeurope",
        "westeurope": "northeurope", "swedencentral": "swedensouth", "centralus": "eastus2", "eastus": "westus",
        "eastus2": "centralus", "northcentralus": "southcentralus", "southcentralus": "northcentralus",
        "westcentralus": "westus2", "westus": "eastus", "westus2": "westcentralus", "westus3": "eastus",
    }  # fmt: skip
    unpaired = variables["unpairedRegions"]["value"]
    for boundary in ("EU", "US"):
        for region in regions[boundary]:
            if region in pairs:
                assert pairs[region] in regions[boundary], f"{region}'s pair leaves {boundary}"
            elif region not in ("francesouth", "germanynorth", "swedensouth"):  # the pairs' far ends
                assert region in unpaired, f"{region}: GRS would replicate outside {boundary}"
    assert _module_params(parsed_infra, "storage")["skuName"] == "storageSku"
    sku = "((dataBoundary != 'any') && contains(unpairedRegions, toLower(location))) ? 'Standard_ZRS' : 'Standard_GRS'"
    assert f"var storageSku = {sku}" in (INFRA / "main.bicep").read_text()


def test_allowed_locations_policy_is_assigned_on_the_resource_group(parsed_infra):
    spec, body = _resource(parsed_infra, "main.bicep", "allowedLocations")
    assert spec["type"] == "Microsoft.Authorization/policyAssignments"
    assert _condition(spec) == {
        "operator": {"type": "not_equals", "operands": {"operand_1": "dataBoundary", "operand_2": "any"}}
    }
    properties = body["properties"]
    assert parsed_infra["main.bicep"]["variables"]["allowedLocationsPolicyId"]["value"] == ALLOWED_LOCATIONS_POLICY
    assert properties["policyDefinitionId"]["function"]["type"] == "tenant_resource_id"
    assert properties["parameters"] == {"listOfAllowedLocations": {"value": "boundaryLocations"}}
    assert properties["enforcementMode"] == "Default"
    assert "scope" not in body, "the assignment belongs on the resource group the template deploys to"


def test_the_boundary_is_recorded_for_the_app(parsed_infra):
    settings = parsed_infra["modules/functionapp.bicep"]["variables"]["appSettings"]["value"]
    assert settings["GATEKEEPER_DATA_BOUNDARY"] == "dataBoundary"
    assert _module_params(parsed_infra, "functionApp")["dataBoundary"] == "dataBoundary"
    parameter = parsed_infra["main.bicep"]["parameters"]["dataBoundary"]
    assert parameter["default"] == "any"
    allowed = next(d for d in parameter["decorators"] if d.get("type") == "allowed")
    assert allowed["argument"] == ["EU", "US", "any"]


def test_first_tenant_parameters_reach_the_bootstrap_settings(parsed_infra):
    settings = parsed_infra["modules/functionapp.bicep"]["variables"]["appSettings"]["value"]
    for setting, parameter in {
        "GATEKEEPER_BOOTSTRAP_TENANT_ID": "firstTenantId",
        "GATEKEEPER_BOOTSTRAP_TENANT_NAME": "firstTenantName",
        "GATEKEEPER_BOOTSTRAP_TENANT_ENTRA_ID": "firstTenantEntraId",
        "GATEKEEPER_BOOTSTRAP_TENANT_OPERATORS": "operatorsMail",
    }.items():
        assert settings[setting] == parameter
        assert _module_params(parsed_infra, "functionApp")[parameter] == parameter
    for setting, parameter in {
        "GATEKEEPER_BOOTSTRAP_TENANT_GITHUB": "useGitHub",
        "GATEKEEPER_BOOTSTRAP_TENANT_AZURE_DEVOPS": "useAzureDevOps",
    }.items():
        assert settings[setting]["operator"]["operands"] == {
            "condition": parameter,
            "true_value": "true",
            "false_value": "false",
        }


def test_storage_sku_parameter_allows_only_replicated_skus(parsed_infra):
    """What the reviewed checkov skip CKV_AZURE_206 relies on: every allowed SKU replicates."""
    decorators = parsed_infra["modules/storage.bicep"]["parameters"]["skuName"]["decorators"]
    allowed = next(d for d in decorators if d.get("type") == "allowed")
    assert allowed["argument"] == ["Standard_GRS", "Standard_ZRS"]
