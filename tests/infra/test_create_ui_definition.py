"""createUiDefinition.json: Azure's published schema and ARM-TTK's createUiDefinition rules."""

from __future__ import annotations

import copy

import pytest

from gatekeeper.marketplace.bicep_params import read_parameters
from gatekeeper.marketplace.cuid_rules import SCHEMA_RELAXATIONS, check_cuid, validate_schema
from tests.infra.conftest import INFRA, SCHEMA_DIR, load_json

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


@needs_schemas
def test_valid_against_the_published_schema(cuid):
    findings = validate_schema(cuid, SCHEMA_DIR)
    assert findings == [], "\n".join(map(str, findings))
    assert SCHEMA_RELAXATIONS == {}, "a relaxation must be documented in docs/deploy.md and tested here"


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
    del cuid["parameters"]["steps"][1]["elements"][3]["toolTip"]
    findings = check_cuid(cuid, PARAMETERS)
    assert [(f.rule, f.where) for f in findings] == [
        ("Tooltips-Should-Be-Present", "createUiDefinition.json:logRetentionDays")
    ]


def test_validation_without_message_is_caught(cuid):
    del cuid["parameters"]["basics"][0]["constraints"]["validations"][0]["message"]
    assert _rules(check_cuid(cuid, PARAMETERS)) == ["Validations-Must-Have-Message"]


def test_textbox_without_regex_is_caught(cuid):
    cuid["parameters"]["steps"][0]["elements"][3]["constraints"] = {"required": True}
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
    assert len(asked) == len(PARAMETERS) - 1  # location comes from the Basics blade
    assert all(c["toolTip"].strip() for c in asked)
