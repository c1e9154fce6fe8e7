"""`POST /api/azure-monitor/alerts` and RMM alerts (gatekeeper/rollback/alerts.py): cases a hand sweep of planted
bugs found untested (docs/mutation.md, second sweep). The rig is tests/integration/test_rollback_routes.py's."""

from __future__ import annotations

import copy
import json

import pytest

from gatekeeper.events.model import EventKind, EventSource, PipelineEvent
from gatekeeper.rollback.alerts import connector_alert
from tests.integration.test_rollback_routes import (  # noqa: F401 - the fixtures are used by name
    FIRED,
    TARGET,
    call,
    env,
    issuer,
    raised,
)
from tests.support.gatekeeper_env import API_KEY

pytestmark = pytest.mark.azurite


def test_an_alert_target_matches_its_registered_resource_whatever_its_case_or_trailing_slash(env):
    alert = copy.deepcopy(FIRED)
    alert["data"]["essentials"]["alertTargetIDs"] = [TARGET.upper() + "/"]
    headers = {"X-Gatekeeper-Tenant": env["runtime"].tenant_id, "x-functions-key": API_KEY}
    answer = call(env, "azure_monitor_alert", "azure-monitor/alerts", body=alert, headers=headers)
    assert answer.status_code == 202 and json.loads(answer.get_body())["watches"] == [env["watch"]]
    assert [name for name, _ in raised(env)] == ["watch-wake-0"]


@pytest.mark.parametrize("source", [EventSource.GENERIC, EventSource.GITHUB, EventSource.AZURE_DEVOPS])
def test_only_a_connectors_alert_names_an_rmm_device(source):
    """A device target `<connector>:device:<id>` comes only from an RMM or PSA connector's authenticated
    webhook; any other source's alert event is not one."""
    event = PipelineEvent(tenant_id="contoso", source=source, kind=EventKind.ALERT, subject="dev-1")
    assert connector_alert(event) is None
    rmm = event.model_copy(update={"source": EventSource.NINJARMM})
    assert connector_alert(rmm) is not None


def test_an_alert_naming_no_registered_resource_reaches_no_watch(env):
    """A watched environment does not make every alert of the tenant its own: only its registered resources."""
    alert = copy.deepcopy(FIRED)
    alert["data"]["essentials"]["alertTargetIDs"] = [TARGET + "-other", "/subscriptions/x/resourceGroups/y"]
    headers = {"X-Gatekeeper-Tenant": env["runtime"].tenant_id, "x-functions-key": API_KEY}
    answer = call(env, "azure_monitor_alert", "azure-monitor/alerts", body=alert, headers=headers)
    assert answer.status_code == 202 and json.loads(answer.get_body())["status"] == "ignored"
    assert raised(env) == []


def test_a_resolved_alert_is_recorded_and_wakes_nothing(env):
    alert = copy.deepcopy(FIRED)
    alert["data"]["essentials"]["monitorCondition"] = "Resolved"
    headers = {"X-Gatekeeper-Tenant": env["runtime"].tenant_id, "x-functions-key": API_KEY}
    answer = call(env, "azure_monitor_alert", "azure-monitor/alerts", body=alert, headers=headers)
    assert answer.status_code == 202 and json.loads(answer.get_body())["condition"] == "Resolved"
    assert raised(env) == []


def test_an_oversize_alert_is_refused_before_the_caller_is_authenticated(env):
    huge = json.dumps({**FIRED, "padding": "x" * 300_000}).encode()
    answer = call(env, "azure_monitor_alert", "azure-monitor/alerts", body=huge, headers={})
    assert answer.status_code == 413


def test_a_wrong_schema_id_says_to_enable_the_common_alert_schema(env):
    headers = {"X-Gatekeeper-Tenant": env["runtime"].tenant_id, "x-functions-key": API_KEY}
    answer = call(
        env,
        "azure_monitor_alert",
        "azure-monitor/alerts",
        body={**FIRED, "schemaId": "Microsoft.Insights/activityLogs"},
        headers=headers,
    )
    assert answer.status_code == 422
    document = json.loads(answer.get_body())
    assert document["field"] == "schemaId" and "common alert schema" in document["detail"]
