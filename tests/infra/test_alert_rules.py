"""The alert rules (infra/modules/alerts.bicep, parsed by pycep): an action group with the operators' mail
and the optional Teams webhook, the five rules the service owner expects, each query reading only events,
fields and metrics the code emits (the same checker as the workbook's), wired from main.bicep; and host.json
logging that keeps every request and the product's events out of sampling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.infra import kql_telemetry
from tests.infra.conftest import copy_infra, needs_infra_venv, parse_bicep_dir

ROOT = Path(__file__).resolve().parents[2]
RULES = {
    "callback-failed": {"CallbackFailed"},
    "dead-letter": {"DeadLettered"},
    "stuck-gate": {"ApprovalRequested", "ApprovalDecided", "GateOutcome"},
    "route-failure-rate": {"IngestRejected"},
    "key-unwrap-failed": {"KeyUnwrapFailed"},
}


def kql(module: dict[str, Any], variable: str) -> str:
    """The KQL text of a query variable: a multi-line string, or the format string of `format(...)`."""
    value = module["variables"][variable]["value"]
    if isinstance(value, dict):
        return str(value["function"]["parameters"]["format_string"])
    return str(value)


def rules_of(module: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rule["key"]: rule for rule in module["variables"]["rules"]["value"]}


@pytest.fixture(scope="module")
def alerts(parsed_infra: dict[str, Any]) -> dict[str, Any]:
    return parsed_infra["modules/alerts.bicep"]


@needs_infra_venv
def test_the_five_rules_exist_and_read_only_what_the_code_emits(alerts: dict[str, Any]):
    rules = rules_of(alerts)
    assert set(rules) == set(RULES)
    for key, events in RULES.items():
        query = kql(alerts, rules[key]["query"])
        assert kql_telemetry.problems(key, query) == [], key
        assert kql_telemetry.names(query) == events, key
        assert rules[key]["measure"] in query, f"{key}: the measured column is computed by the query"
        for dimension in rules[key]["dimensions"]:
            assert f"{dimension} = " in query or f"by {dimension}" in query or f", {dimension}" in query, key


@needs_infra_venv
def test_each_rule_detects_what_it_is_named_for(alerts: dict[str, Any]):
    rules = rules_of(alerts)
    callback = kql(alerts, rules["callback-failed"]["query"])
    assert 'tostring(customDimensions.final) =~ "true"' in callback, "only callbacks that failed after retries"
    stuck = kql(alerts, rules["stuck-gate"]["query"])
    assert "customMeasurements.deadline_seconds" in stuck and "graceMinutes" in stuck and "leftanti" in stuck
    assert alerts["variables"]["stuckGateQuery"]["value"]["function"]["parameters"]["arg_1"] == "stuckGateGraceMinutes"
    route = kql(alerts, rules["route-failure-rate"]["query"])
    assert "requests" in route and "success == false" in route and "toint(customDimensions.status) >= 500" in route
    assert rules["route-failure-rate"]["threshold"] == "routeFailureThresholdPercent"
    assert rules["stuck-gate"]["window"] == "P2D", "the longest window a log alert has"
    for key in ("callback-failed", "dead-letter", "key-unwrap-failed"):
        assert rules[key]["threshold"] == 0 and rules[key]["aggregation"] == "Total", "any occurrence pages"
    assert {rule["severity"] for rule in rules.values()} <= {1, 2}


@needs_infra_venv
def test_the_rules_query_the_component_and_notify_the_operators(alerts: dict[str, Any]):
    rule = alerts["resources"]["alertRules"]["config"]
    assert rule["loop_type"]["detail"] == {"item_name": "rule", "array_name": "rules"}
    properties = rule["config"]["properties"]
    assert properties["scopes"] == ["appInsightsId"] and rule["config"]["kind"] == "LogAlert"
    actions = json.dumps(properties["actions"])
    assert "actionGroup" in actions and "id" in actions
    group = alerts["resources"]["actionGroup"]["config"]["properties"]
    assert group["emailReceivers"][0]["emailAddress"] == "operatorEmail" and group["enabled"] is True
    assert group["webhookReceivers"] == "teamsReceivers"
    teams = alerts["variables"]["teamsReceivers"]["value"]
    assert "teamsWebhookUrl" in json.dumps(teams), "no webhook receiver unless a Teams URL is given"
    decorators = {d["type"] for d in alerts["parameters"]["teamsWebhookUrl"]["decorators"]}
    assert "secure" in decorators, "the webhook URL is a secret"


@needs_infra_venv
def test_main_deploys_the_alerts_with_the_operators_parameters(parsed_infra: dict[str, Any]):
    main = parsed_infra["main.bicep"]
    module = main["modules"]["alerts"]
    assert module["detail"]["path"] == "modules/alerts.bicep"
    params = module["config"]["params"]
    assert params["operatorEmail"] == "alertEmailAddress" and params["teamsWebhookUrl"] == "alertTeamsWebhookUrl"
    assert "appInsightsId" in json.dumps(params["appInsightsId"])
    assert {d["type"] for d in main["parameters"]["alertTeamsWebhookUrl"]["decorators"]} >= {"secure"}


@needs_infra_venv
def test_a_rule_reading_a_field_the_code_does_not_emit_is_caught(tmp_path: Path):
    broken = copy_infra(
        tmp_path,
        {"modules/alerts.bicep": ("(customDimensions.final) =~", "(customDimensions.final_attempt) =~")},
    )
    module = parse_bicep_dir(broken / "modules")["alerts.bicep"]
    query = kql(module, rules_of(module)["callback-failed"]["query"])
    assert kql_telemetry.problems("callback-failed", query) == [
        "callback-failed: reads field(s) no queried event has: ['final_attempt']"
    ]


# ----- host.json --------------------------------------------------------------------------------------


def test_host_logging_keeps_requests_quiets_durable_and_never_samples_events():
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    levels = host["logging"]["logLevel"]
    assert levels["Host.Results"] == "Information", "every execution lands in requests: the error rate is right"
    assert levels["DurableTask.Core"] == "Warning" and levels["DurableTask.AzureStorage"] == "Warning"
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    assert {"Request", "Exception", "Event"} <= set(sampling["excludedTypes"].split(";"))
    assert "telemetryMode" not in host, "the host stays in Application Insights mode (docs/telemetry.md)"
    tracing = host["extensions"]["durableTask"]["tracing"]
    assert tracing == {"traceInputsAndOutputs": False, "traceReplayEvents": False}


def test_the_worker_does_not_configure_a_second_exporter():
    """The app configures Azure Monitor itself, with the managed identity; the worker's own switch would
    configure another distro without it."""
    settings = (ROOT / "infra" / "modules" / "functionapp.bicep").read_text(encoding="utf-8")
    assert "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY" not in settings
    assert "PYTHON_ENABLE_OPENTELEMETRY" not in settings
    assert "APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'" in settings
