"""Azure DevOps checks and service hooks, the generic API and connector queue messages, through the real
trigger functions into Azurite; secrets stay out of queues, answers and logs."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import azure.functions as func
import pytest

from devstack.entra_issuer import LocalEntraIssuer
from gatekeeper.events.identity import source_identities
from gatekeeper.events.model import EventSource
from gatekeeper.ingest.deadletter import DeadLetters
from gatekeeper.ingest.queue import decode_message
from gatekeeper.security.entra import EntraTokenValidator
from gatekeeper.services import set_services
from tests.conftest import ROOT, SHARED_FIXTURES
from tests.support.gatekeeper_env import (
    ADO_CHECK_SECRET,
    ADO_HOOK_SECRET,
    API_KEY,
    ENTRA_TENANT,
    http_function,
    make_env,
    problem,
    signed_connector,
)

CONNECTOR_FIXTURES = sorted((ROOT / "tests/fixtures/connectors").glob("*.json"))
CHECK_SAMPLE = json.loads((SHARED_FIXTURES / "azure-devops/invoke-azure-function-check.request.json").read_text())
JOB_TOKEN = "job-access-token-that-must-never-leak-0123456789"


def connector_identities() -> tuple[str, ...]:
    found: list[str] = []
    for path in CONNECTOR_FIXTURES:
        document = json.loads(path.read_text())
        found += source_identities(EventSource(document["connector"]), document)
    return tuple(sorted(set(found)))


@pytest.fixture
def env(storage_connection_string, tmp_path):
    env = make_env(storage_connection_string, tmp_path / "keys", extra_identities=connector_identities())
    set_services(env.services)
    yield env
    set_services(None)


def post(route_function: str, body: bytes, headers: dict[str, str]) -> func.HttpResponse:
    request = func.HttpRequest("POST", f"http://localhost/api/{route_function}", headers=headers, body=body)
    return http_function(route_function)(request)


# -- Azure DevOps "Invoke Azure Function" check -------------------------------------------------------


def check_headers(**overrides: str) -> dict[str, str]:
    headers = dict(CHECK_SAMPLE["headers"], AuthToken=JOB_TOKEN)
    headers["X-Gatekeeper-Check-Secret"] = ADO_CHECK_SECRET
    headers.update(overrides)
    return {k: v for k, v in headers.items() if v}


CHECK_BODY = json.dumps(
    {
        "environment": "production",
        "repository": "fabrikam/web",
        "runId": "1234",
        "ref": "refs/heads/main",
        "commit": "a1b2c3d",
        "requestedBy": "alice@fabrikam.com",
    }
).encode()


def test_check_is_acknowledged_with_200_and_the_token_is_sealed(env, caplog):
    caplog.set_level(logging.DEBUG)
    response = post("azure_devops_check", CHECK_BODY, check_headers())
    assert response.status_code == 200, response.get_body()
    body = json.loads(response.get_body())
    assert body["kind"] == "gate_request" and body["instanceId"].startswith("gate-")
    [text] = env.queued_texts()
    assert JOB_TOKEN not in text and JOB_TOKEN not in caplog.text and JOB_TOKEN not in response.get_body().decode()
    event = decode_message(env.services.sealer, text).event
    assert event.callback.auth_token.get_secret_value() == JOB_TOKEN
    assert JOB_TOKEN not in repr(event) and JOB_TOKEN not in event.model_dump_json()


@pytest.mark.parametrize(
    "missing", ["PlanUrl", "ProjectId", "HubName", "PlanId", "JobId", "TaskInstanceId", "AuthToken"]
)
def test_check_without_a_documented_header_names_it(env, missing):
    response = post("azure_devops_check", CHECK_BODY, check_headers(**{missing: ""}))
    assert response.status_code in (400, 422)
    assert problem(response)["field"].lower() == f"header:{missing.lower()}"
    assert env.queued_texts() == []


def test_check_with_only_the_minimum_headers_is_accepted(env):
    """invoke-checks.md lists the minimum headers without TimelineId; the task's defaults add it."""
    headers = {k: v for k, v in check_headers().items() if k != "TimelineId"}
    response = post("azure_devops_check", CHECK_BODY, headers)
    assert response.status_code == 200, response.get_body()
    [text] = env.queued_texts()
    assert decode_message(env.services.sealer, text).event.callback.timeline_id is None


def test_check_with_a_wrong_secret_is_refused(env):
    response = post("azure_devops_check", CHECK_BODY, check_headers(**{"X-Gatekeeper-Check-Secret": "nope"}))
    assert response.status_code == 401 and env.queued_texts() == []


# -- Azure DevOps service hooks ---------------------------------------------------------------------


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"gatekeeper:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("fixture", "kind"),
    [
        ("ms.vss-pipelines.run-state-changed-event.json", "run_status"),
        ("ms.vss-pipelines.stage-state-changed-event.json", "stage_status"),
        ("build.complete.json", "run_status"),
    ],
)
def test_service_hook_samples_are_accepted(env, fixture, kind):
    body = (SHARED_FIXTURES / "azure-devops" / fixture).read_bytes()
    response = post(
        "azure_devops_service_hook", body, {"Content-Type": "application/json", "Authorization": basic(ADO_HOOK_SECRET)}
    )
    assert response.status_code == 202, response.get_body()
    assert json.loads(response.get_body())["kind"] == kind
    assert len(env.queued_texts()) == 1


def test_service_hook_with_wrong_password_is_refused(env):
    body = (SHARED_FIXTURES / "azure-devops/build.complete.json").read_bytes()
    response = post(
        "azure_devops_service_hook", body, {"Content-Type": "application/json", "Authorization": basic("wrong")}
    )
    assert response.status_code == 401 and env.queued_texts() == []


def test_service_hook_unknown_event_is_ignored_with_the_reason(env):
    sample = json.loads((SHARED_FIXTURES / "azure-devops/build.complete.json").read_text())
    body = json.dumps(dict(sample, eventType="git.push")).encode()
    response = post(
        "azure_devops_service_hook", body, {"Content-Type": "application/json", "Authorization": basic(ADO_HOOK_SECRET)}
    )
    assert response.status_code == 202
    answer = json.loads(response.get_body())
    assert answer["status"] == "ignored" and "git.push" in answer["reason"]
    assert env.queued_texts() == []


def test_published_approval_events_are_ignored_with_the_reason(env):
    body = (SHARED_FIXTURES / "azure-devops/ms.vss-pipelinechecks-events.approval-pending.json").read_bytes()
    response = post(
        "azure_devops_service_hook", body, {"Content-Type": "application/json", "Authorization": basic(ADO_HOOK_SECRET)}
    )
    assert response.status_code == 202
    answer = json.loads(response.get_body())
    assert answer["status"] == "ignored" and "approval" in answer["reason"]
    assert env.queued_texts() == []


# -- generic API ------------------------------------------------------------------------------------

GENERIC = (ROOT / "tests/fixtures/generic/gate-request.json").read_bytes()


def test_generic_api_with_the_tenant_api_key(env):
    headers = {"Content-Type": "application/json", "X-Gatekeeper-Tenant": env.tenant_id, "x-functions-key": API_KEY}
    response = post("generic_events", GENERIC, headers)
    assert response.status_code == 202, response.get_body()
    assert json.loads(response.get_body())["kind"] == "gate_request"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Gatekeeper-Tenant": "contoso", "x-functions-key": "wrong"},
        {"X-Gatekeeper-Tenant": "nosuchtenant", "x-functions-key": API_KEY},
        {"X-Gatekeeper-Tenant": "../../etc", "x-functions-key": API_KEY},
        {},
    ],
)
def test_generic_api_refuses_bad_credentials_alike(env, headers):
    response = post("generic_events", GENERIC, {"Content-Type": "application/json", **headers})
    assert response.status_code == 401
    assert problem(response)["type"].endswith("/unauthenticated")
    assert env.queued_texts() == []


def test_generic_api_with_an_entra_bearer_token(env):
    with LocalEntraIssuer() as issuer:
        env.services.token_validator = EntraTokenValidator(
            "api://gatekeeper", issuer.authority_host, allowed_tenants=env.services.is_registered_entra_tenant
        )
        good = issuer.issue("11111111-1111-1111-1111-111111111111", ENTRA_TENANT, "api://gatekeeper")
        stranger = issuer.issue(
            "11111111-1111-1111-1111-111111111111", "00000000-0000-0000-0000-000000000001", "api://gatekeeper"
        )
        ok = post("generic_events", GENERIC, {"Content-Type": "application/json", "Authorization": f"Bearer {good}"})
        refused = post(
            "generic_events", GENERIC, {"Content-Type": "application/json", "Authorization": f"Bearer {stranger}"}
        )
    assert ok.status_code == 202, ok.get_body()
    assert refused.status_code == 401
    [text] = env.queued_texts()
    event = decode_message(env.services.sealer, text).event
    # The token says who asks (compared for self-approval); the body's actor is only shown.
    assert event.requester_ids == ("entra:oid:11111111-1111-1111-1111-111111111111",)
    assert event.actor == "jenkins@contoso.com"


def test_generic_api_invalid_body_names_the_field(env):
    body = (ROOT / "tests/fixtures/generic/invalid-gate-request-without-environment.json").read_bytes()
    headers = {"Content-Type": "application/json", "X-Gatekeeper-Tenant": env.tenant_id, "x-functions-key": API_KEY}
    response = post("generic_events", body, headers)
    assert response.status_code == 422
    assert "environment" in json.dumps(problem(response))
    assert env.queued_texts() == []


# -- connectors (queue trigger) ---------------------------------------------------------------------


class QueueMessage(func.QueueMessage):
    """The azure.functions message type the host hands a queue trigger."""


@pytest.mark.parametrize("path", CONNECTOR_FIXTURES, ids=lambda p: p.stem)
def test_connector_samples_are_accepted(env, path: Path):
    http_function("connector_events")(func.QueueMessage(id="m1", body=signed_connector(path.read_bytes())))
    [text] = env.queued_texts()
    event = decode_message(env.services.sealer, text).event
    assert event.source.value == json.loads(path.read_text())["connector"]
    assert event.kind.value in {"change_approved", "change_rejected", "alert"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "malformed"),
        (json.dumps({"connector": "servicenow", "account": "x", "payload": {}}).encode(), "connector"),
        (json.dumps({"connector": "ninjarmm", "account": "999999", "payload": {"id": 1}}).encode(), "401"),
    ],
)
def test_bad_connector_messages_are_dead_lettered_not_lost(env, body, reason):
    http_function("connector_events")(func.QueueMessage(id="m2", body=body))
    assert env.queued_texts() == []
    letters = [d for d in DeadLetters(env.storage).list("connector-events") if d.message == body.decode()]
    assert letters and reason in letters[-1].reason


def test_poison_messages_are_kept(env):
    body = b'{"connector": "halopsa", "account": "contoso.halopsa.com", "payload": {"transient": true}}'
    http_function("connector_events_poison")(func.QueueMessage(id="m3", body=body))
    letters = [d for d in DeadLetters(env.storage).list("connector-events") if d.message == body.decode()]
    assert letters and "poison" in letters[-1].reason


def test_the_generic_api_key_of_a_disabled_tenant_opens_nothing(storage_connection_string, tmp_path):
    """An offboarded tenant keeps its record (and its key may linger in the app settings): its key is the same
    401 as a wrong one, and nothing is queued."""
    from gatekeeper.tenancy.model import SecretPurpose, TenantRecord

    disabled = TenantRecord(
        tenant_id="toff" + tmp_path.name[-8:].lower().replace("_", "x"),
        display_name="Offboarded",
        enabled=False,
        secrets={SecretPurpose.GENERIC_API_KEY: ("env:GK_API_KEY",)},
    )
    env = make_env(storage_connection_string, tmp_path / "keys", extra_tenants=(disabled,))
    set_services(env.services)
    try:
        headers = {
            "Content-Type": "application/json",
            "X-Gatekeeper-Tenant": disabled.tenant_id,
            "x-functions-key": API_KEY,
        }
        response = post("generic_events", GENERIC, headers)
        assert response.status_code == 401, response.get_body()
        assert env.queued_texts() == []
        headers["X-Gatekeeper-Tenant"] = env.tenant_id  # the same key for an enabled tenant opens it
        assert post("generic_events", GENERIC, headers).status_code == 202
    finally:
        set_services(None)
