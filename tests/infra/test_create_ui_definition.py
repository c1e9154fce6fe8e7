"""createUiDefinition.json: Azure's published schema and ARM-TTK's createUiDefinition rules."""

from __future__ import annotations

import copy
import json
import re

import pytest

from gatekeeper.marketplace.bicep_params import read_parameters
from gatekeeper.marketplace.cuid_rules import SCHEMA_RELAXATIONS, check_cuid, permission_checks, validate_schema
from tests.infra.conftest import INFRA, ROOT, SCHEMA_DIR, load_json

CUID_PATH = INFRA / "marketplace" / "createUiDefinition.json"
PARAMETERS = read_parameters((INFRA / "main.bicep").read_text())

needs_schemas = pytest.mark.skipif(
    not (SCHEMA_DIR / "CreateUIDefinition.MultiVm.json").exists(),
    reason=f"Azure's createUiDefinition schemas are not at {SCHEMA_DIR}",
)


@pytest.fixture
def cuid():
    return copy.deepcopy(load_json(CUID_PATH))


def _rules(findings):
    return sorted({f.rule for f in findings})


def _control(cuid, name):
    """The control called `name`, wherever it sits (Basics or a step)."""
    controls = list(cuid["parameters"]["basics"])
    for step in cuid["parameters"]["steps"]:
        controls += step["elements"]
    return next(c for c in controls if c["name"] == name)


# Regions that offer Flex Consumption, as the Azure Functions Flex Consumption quickstart (Azure-Samples,
# functions-quickstart-python-http-azd, infra/main.bicep) lists them, without the eastus2euap canary.
FLEX_CONSUMPTION_REGIONS = [
    "australiaeast", "australiasoutheast", "brazilsouth", "canadacentral", "centralindia", "centralus", "eastasia",
    "eastus", "eastus2", "francecentral", "germanywestcentral", "italynorth", "japaneast", "koreacentral",
    "northcentralus", "northeurope", "norwayeast", "southafricanorth", "southcentralus", "southeastasia",
    "southindia", "spaincentral", "swedencentral", "uaenorth", "uksouth", "ukwest", "westcentralus", "westeurope",
    "westus", "westus2", "westus3",
]  # fmt: skip


@needs_schemas
def test_valid_against_the_published_schema(cuid):
    findings = validate_schema(cuid, SCHEMA_DIR)
    assert findings == [], "\n".join(map(str, findings))
    guide = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert set(SCHEMA_RELAXATIONS) == {"permission-validation"}, "a relaxation must be documented and tested here"
    assert all(f"`{name}`" in guide for name in SCHEMA_RELAXATIONS), "document each relaxation in docs/deploy.md"


@needs_schemas
def test_the_relaxation_lets_only_well_formed_permission_checks_through(cuid):
    checks = cuid["parameters"]["config"]["basics"]["resourceGroup"]["constraints"]["validations"]
    checks.append({"permission": "Microsoft.Web/sites/write", "message": "m", "isValid": "[true]"})
    checks.append({"permission": "not an action", "message": "m"})
    wheres = [f.where for f in validate_schema(cuid, SCHEMA_DIR)]
    assert wheres and all("config/basics/resourceGroup/constraints/validations" in w for w in wheres), wheres


def test_permissions_are_checked_before_the_deployment_starts(cuid):
    """The template creates role assignments: the portal must stop an account that cannot, on Basics."""
    assert permission_checks(cuid) == {
        "resourceGroup": ["Microsoft.Authorization/roleAssignments/write", "Microsoft.Resources/deployments/write"]
    }
    del cuid["parameters"]["config"]["basics"]["resourceGroup"]
    assert permission_checks(cuid) == {}


def test_regions_are_those_with_flex_consumption(cuid):
    location = cuid["parameters"]["config"]["basics"]["location"]
    assert location["allowedValues"] == FLEX_CONSUMPTION_REGIONS
    assert "Flex Consumption" in location["toolTip"]


def test_boundary_mismatch_warning_lists_the_bicep_boundary_regions(cuid, parsed_infra):
    """The form warns with the same region lists the template enforces (boundaryRegions in main.bicep)."""
    regions = parsed_infra["main.bicep"]["variables"]["boundaryRegions"]["value"]
    visible = _control(cuid, "boundaryMismatch")["visible"]
    lists = [json.loads(text) for text in re.findall(r"parse\('(\[[^']*\])'\)", visible)]
    assert lists == [regions["EU"], regions["US"]]
    for boundary in ("EU", "US"):
        assert [r for r in FLEX_CONSUMPTION_REGIONS if r in regions[boundary]], f"no Flex region in {boundary}"
    assert [v["value"] for v in _control(cuid, "dataBoundary")["constraints"]["allowedValues"]] == ["any", "EU", "US"]


def test_first_tenant_inputs_feed_the_agreed_parameters(cuid):
    outputs = cuid["parameters"]["outputs"]
    for name in (
        "firstTenantId",
        "firstTenantName",
        "firstTenantEntraId",
        "operatorsMail",
        "useGitHub",
        "useAzureDevOps",
    ):
        assert outputs[name] == f"[steps('firstTenant').{name}]"
        assert _control(cuid, name)["toolTip"].strip()
    tenant_id = re.compile(_control(cuid, "firstTenantId")["constraints"]["validations"][0]["regex"])
    assert tenant_id.match("contoso") and tenant_id.match("") and not tenant_id.match("Contoso")
    assert not tenant_id.match("c" * 33)


def test_marketplace_sends_attribution_and_installs_this_versions_package(cuid):
    outputs = cuid["parameters"]["outputs"]
    assert outputs["partnerAttribution"] is True
    assert _control(cuid, "packageUri")["defaultValue"] == PARAMETERS["packageUri"].default


@needs_schemas
def test_schema_rejects_an_unknown_handler_and_an_unknown_control_property(cuid):
    cuid["handler"] = "Microsoft.Compute.SingleVm"
    cuid["parameters"]["basics"][0]["maxLength"] = 10
    wheres = {f.where for f in validate_schema(cuid, SCHEMA_DIR)}
    assert "createUiDefinition.json:handler" in wheres
    assert "createUiDefinition.json:parameters/basics/0" in wheres


def test_arm_ttk_rules_pass(cuid):
    findings = check_cuid(cuid, PARAMETERS)
    assert findings == [], "\n".join(map(str, findings))


def test_outputs_are_exactly_the_template_parameters(cuid):
    assert set(cuid["parameters"]["outputs"]) == set(PARAMETERS)


def test_output_with_no_matching_parameter_is_caught(cuid):
    cuid["parameters"]["outputs"]["approverGroupId"] = cuid["parameters"]["outputs"].pop("approverGroupObjectId")
    findings = check_cuid(cuid, PARAMETERS)
    messages = {(f.rule, f.message) for f in findings}
    assert (
        "Outputs-Must-Be-Present-In-Template-Parameters",
        "output 'approverGroupId' is not a parameter of the template",
    ) in messages
    assert (
        "Parameters-Without-Default-Must-Exist-In-CreateUIDefinition",
        "template parameter 'approverGroupObjectId' has no default value and is not in the outputs",
    ) in messages


def test_parameter_with_default_left_out_is_caught(cuid):
    del cuid["parameters"]["outputs"]["logRetentionDays"]
    assert _rules(check_cuid(cuid, PARAMETERS)) == ["Outputs-Must-Match-Template-Parameters"]


def test_location_output_must_be_location_function(cuid):
    cuid["parameters"]["outputs"]["location"] = "westeurope"
    assert _rules(check_cuid(cuid, PARAMETERS)) == ["Location-Should-Be-In-Outputs"]
    del cuid["parameters"]["outputs"]["location"]
    assert "Location-Should-Be-In-Outputs" in _rules(check_cuid(cuid, PARAMETERS))


def test_missing_tooltip_is_caught(cuid):
    del _control(cuid, "logRetentionDays")["toolTip"]
    findings = check_cuid(cuid, PARAMETERS)
    assert [(f.rule, f.where) for f in findings] == [
        ("Tooltips-Should-Be-Present", "createUiDefinition.json:logRetentionDays")
    ]


def test_validation_without_message_is_caught(cuid):
    del _control(cuid, "namePrefix")["constraints"]["validations"][0]["message"]
    assert _rules(check_cuid(cuid, PARAMETERS)) == ["Validations-Must-Have-Message"]


def test_textbox_without_regex_is_caught(cuid):
    _control(cuid, "mailSenderAddress")["constraints"] = {"required": True}
    assert _rules(check_cuid(cuid, PARAMETERS)) == ["Textboxes-Are-Well-Formed"]


def test_output_naming_a_missing_control_is_caught(cuid):
    cuid["parameters"]["outputs"]["teamsAppClientId"] = "[steps('approvals').teamsClientId]"
    findings = check_cuid(cuid, PARAMETERS)
    assert [(f.rule, f.message) for f in findings] == [
        ("Controls-In-Outputs-Must-Exist", "step 'approvals' has no control 'teamsClientId'")
    ]


def test_every_asked_control_has_a_tooltip_and_every_validation_a_message(cuid):
    """Belt and braces over the rule: count what the MSP sees."""
    controls = list(cuid["parameters"]["basics"])
    for step in cuid["parameters"]["steps"]:
        controls += step["elements"]
    asked = [c for c in controls if c["type"] != "Microsoft.Common.InfoBox"]
    # location comes from the Basics blade; partnerAttribution is the offer's constant, not a question
    constants = {n: v for n, v in cuid["parameters"]["outputs"].items() if not isinstance(v, str)}
    assert constants == {"partnerAttribution": True}
    assert len(asked) == len(PARAMETERS) - 1 - len(constants)
    assert all(c["toolTip"].strip() for c in asked)
