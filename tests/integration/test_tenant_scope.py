"""A tenant can only ever act on its own resources: cross-tenant targets through the real registered functions.

Tenant A is the test environment's tenant (the fixture payloads' organisations, repositories, installations,
Azure DevOps organisation and connector accounts). Tenant B is a second tenant with credentials of its own.
Each test has a tenant authenticate correctly and name something that is not its own; the answer must be 422
naming the field (or 401 where the request then authenticates as nobody), and nothing may be queued.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Callable
from typing import Any

import azure.functions as func
import pytest

from gatekeeper.ingest.deadletter import DeadLetters
from gatekeeper.ingest.queue import decode_message
from gatekeeper.ingest.service import sign_envelope
from gatekeeper.services import set_services
from gatekeeper.tenancy.model import SecretPurpose, TenantRecord
from tests.conftest import ROOT, SHARED_FIXTURES
from tests.support.gatekeeper_env import (
    ADO_HOOK_SECRET,
    API_KEY,
    CONNECTOR_SECRET,
    GatekeeperEnv,
    github_request,
    http_function,
    make_env,
    problem,
)

pytestmark = pytest.mark.azurite

B_GITHUB, B_HOOK, B_CONNECTOR, B_KEY = "b-github-secret", "b-hook-secret", "b-connector-secret", "b-api-key"
B_CHECK = "b-check-secret"
B_ORG, B_REPO, B_INSTALLATION = "tenant-b-org", "tenant-b-org/app", 7777
B_ADO_ORG = "https://dev.azure.com/tenant-b/"
A_ACCOUNT = "f844ec47-a9db-4511-8281-8b63f4eaf94e"  # the published samples' account: tenant A's
DPR = json.loads((ROOT / "tests/fixtures/github/deployment_protection_rule.requested.json").read_text())
CW_APPROVED = json.loads((ROOT / "tests/fixtures/connectors/connectwise.ticket-approved.json").read_text())


def tenant_b(tenant_id: str, **overrides: Any) -> TenantRecord:
    fields: dict[str, Any] = {
        "tenant_id": tenant_id,
        "display_name": "Tenant B",
        "identities": (
            f"github:org:{B_ORG}",
            "github:org:tenant-b-other",
            f"github:installation:{B_INSTALLATION}",
            f"azure-devops:org:{B_ADO_ORG}",
            "connectwise:company:tenant-b",
            "connectwise:company:tenant-b-second",
        ),
        "callback_url_prefixes": ("https://ci.tenant-b.example/hooks/",),
        "secrets": {
            SecretPurpose.GITHUB_WEBHOOK: ("env:B_GITHUB",),
            SecretPurpose.AZURE_DEVOPS_SERVICE_HOOK: ("env:B_HOOK",),
            SecretPurpose.AZURE_DEVOPS_CHECK: ("env:B_CHECK",),
            SecretPurpose.CONNECTOR: ("env:B_CONNECTOR",),
            SecretPurpose.GENERIC_API_KEY: ("env:B_KEY",),
        },
    }
    fields.update(overrides)
    return TenantRecord.model_validate(fields)


@pytest.fixture
def env(storage_connection_string, tmp_path):
    b = "b" + uuid.uuid4().hex[:12]
    unsigned = "u" + uuid.uuid4().hex[:12]
    env = make_env(
        storage_connection_string,
        tmp_path / "keys",
        extra_identities=("connectwise:company:contoso", "connectwise:company:contoso-second"),
        extra_tenants=(
            tenant_b(b),
            # A connector-only tenant that configured no connector secret and did not opt out.
            TenantRecord(tenant_id=unsigned, display_name="Unsigned", identities=("connectwise:company:nosecret",)),
        ),
        extra_environ={
            "B_GITHUB": B_GITHUB,
            "B_HOOK": B_HOOK,
            "B_CONNECTOR": B_CONNECTOR,
            "B_KEY": B_KEY,
            "B_CHECK": B_CHECK,
        },
    )
    env.b = b  # type: ignore[attr-defined]
    env.unsigned = unsigned  # type: ignore[attr-defined]
    set_services(env.services)
    yield env
    set_services(None)


def b_dpr() -> dict[str, Any]:
    """Tenant B's own protection rule request: B's organisation, repository, installation and run."""
    payload = copy.deepcopy(DPR)
    payload["organization"]["login"] = B_ORG
    payload["repository"].update(full_name=B_REPO, name="app")
    payload["repository"]["owner"]["login"] = B_ORG
    payload["installation"]["id"] = B_INSTALLATION
    payload["deployment_callback_url"] = (
        f"https://api.github.com/repos/{B_REPO}/actions/runs/42/deployment_protection_rule"
    )
    return payload


def as_b(payload: dict[str, Any]) -> func.HttpResponse:
    return http_function("github_webhook")(github_request("deployment_protection_rule", payload, secret=B_GITHUB))


def _a_repo(p: dict[str, Any]) -> None:  # A's repository (and its callback URL), B's organisation and installation
    p["repository"].update(full_name="octo-org/octo-repo", name="octo-repo")
    p["repository"]["owner"]["login"] = "octo-org"
    p["deployment_callback_url"] = DPR["deployment_callback_url"]


def _a_org(p: dict[str, Any]) -> None:  # A's organisation beside B's repository
    p["organization"]["login"] = "octo-org"


def _a_installation(p: dict[str, Any]) -> None:
    p["installation"]["id"] = DPR["installation"]["id"]


def _a_callback(p: dict[str, Any]) -> None:  # B's repository, but the callback URL path names A's run
    p["deployment_callback_url"] = DPR["deployment_callback_url"]


def _a_owner(p: dict[str, Any]) -> None:  # B's full_name, A's owner login
    p["repository"]["owner"]["login"] = "octo-org"


def _disagreeing_names(p: dict[str, Any]) -> None:  # every name B's own, but not one repository
    p["repository"]["owner"]["login"] = "tenant-b-other"
    p["organization"]["login"] = "tenant-b-other"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_a_repo, "repository.full_name"),
        (_a_org, "organization.login"),
        (_a_installation, "installation.id"),
        (_a_callback, "deployment_callback_url"),
        (_a_owner, "repository.owner.login"),
        (_disagreeing_names, "repository.full_name"),
    ],
    ids=["a-repository", "a-organization", "a-installation", "a-callback-url", "a-owner", "names-disagree"],
)
def test_tenant_b_naming_tenant_a_targets_in_a_protection_rule_is_refused(env, mutate, field):
    payload = b_dpr()
    mutate(payload)
    response = as_b(payload)
    assert response.status_code == 422, response.get_body()
    assert problem(response)["field"] == field
    assert env.tenant_id not in response.get_body().decode()  # whose target it is, is not said
    assert env.queued_texts() == []


def test_tenant_b_own_protection_rule_gates_in_b_with_bs_installation(env):
    payload = b_dpr()
    response = as_b(payload)
    assert response.status_code == 202, response.get_body()
    [text] = env.queued_texts()
    event = decode_message(env.services.sealer, text).event
    assert event.tenant_id == env.b  # type: ignore[attr-defined]
    assert (event.callback.owner, event.callback.repo, event.callback.run_id) == (B_ORG, "app", 42)
    assert event.callback.installation_id == B_INSTALLATION


def test_protection_rule_without_installation_uses_the_tenants_registered_one(env):
    payload = b_dpr()
    del payload["installation"]
    assert as_b(payload).status_code == 202
    [text] = env.queued_texts()
    assert decode_message(env.services.sealer, text).event.callback.installation_id == B_INSTALLATION


def test_tenant_a_with_several_installations_leaves_the_installation_to_the_callback(env):
    """GitHub's schema lets a protection rule omit `installation`: tenant A registers three, so none is
    guessed here; the App asks GitHub which one the repository is in when it answers, and acts only if it is
    one of A's (test_integrations_github.py, test_scoped_app_asks_github_for_the_installation_among_several)."""
    payload = copy.deepcopy(DPR)
    del payload["installation"]
    response = http_function("github_webhook")(github_request("deployment_protection_rule", payload))
    assert response.status_code == 202, response.get_body()
    [text] = env.queued_texts()
    event = decode_message(env.services.sealer, text).event
    assert event.tenant_id == env.tenant_id and event.callback.installation_id is None


def test_status_events_naming_another_tenants_repository_are_refused_too(env):
    run = json.loads((SHARED_FIXTURES / "github/workflow_run.completed.payload.json").read_text())  # A's repo
    run["organization"]["login"] = B_ORG
    response = http_function("github_webhook")(github_request("workflow_run", run, secret=B_GITHUB))
    assert response.status_code == 422 and problem(response)["field"] == "repository.full_name"
    assert env.queued_texts() == []


def test_a_protection_rule_with_null_deployment_is_gated_on_the_top_level_commit(env):
    payload = copy.deepcopy(DPR)
    payload["deployment"] = None
    payload["sha"], payload["ref"] = "3484a3fb816e0859fd6e1cea078d76385ff50625", "refs/heads/main"
    call = http_function("github_webhook")
    first = call(github_request("deployment_protection_rule", payload, delivery="d-1"))
    rerun = call(github_request("deployment_protection_rule", payload, delivery="d-2"))
    assert first.status_code == rerun.status_code == 202, first.get_body()
    assert json.loads(first.get_body())["instanceId"] != json.loads(rerun.get_body())["instanceId"]
    event = decode_message(env.services.sealer, env.queued_texts()[0]).event
    assert (event.commit, event.ref) == ("3484a3fb816e0859fd6e1cea078d76385ff50625", "refs/heads/main")


# -- Azure DevOps -------------------------------------------------------------------------------------------


def hook(body: dict[str, Any], password: str) -> func.HttpResponse:
    basic = "Basic " + base64.b64encode(f"gatekeeper:{password}".encode()).decode()
    request = func.HttpRequest(
        "POST",
        "http://localhost/api/azure-devops/service-hooks",
        headers={"Content-Type": "application/json", "Authorization": basic},
        body=json.dumps(body).encode(),
    )
    return http_function("azure_devops_service_hook")(request)


def test_service_hook_signed_by_b_naming_as_account_is_refused(env):
    body = json.loads((SHARED_FIXTURES / "azure-devops/ms.vss-pipelines.run-state-changed-event.json").read_text())
    body["resourceContainers"]["collection"]["baseUrl"] = B_ADO_ORG  # B's organisation, A's account id
    response = hook(body, B_HOOK)
    assert response.status_code == 422 and problem(response)["field"] == "resourceContainers.account.id"
    assert env.queued_texts() == []


def test_service_hook_signed_by_a_naming_bs_organisation_is_refused(env):
    body = json.loads((SHARED_FIXTURES / "azure-devops/ms.vss-pipelines.run-state-changed-event.json").read_text())
    body["resourceContainers"]["project"]["baseUrl"] = B_ADO_ORG
    response = hook(body, ADO_HOOK_SECRET)
    assert response.status_code == 422 and problem(response)["field"] == "resourceContainers.project.baseUrl"
    assert env.queued_texts() == []


def check(plan_url: str, secret: str, body: dict[str, Any]) -> func.HttpResponse:
    sample = json.loads((SHARED_FIXTURES / "azure-devops/invoke-azure-function-check.request.json").read_text())
    headers = dict(sample["headers"], PlanUrl=plan_url, AuthToken="job-token")
    headers["X-Gatekeeper-Check-Secret"] = secret
    request = func.HttpRequest(
        "POST", "http://localhost/api/azure-devops/check", headers=headers, body=json.dumps(body).encode()
    )
    return http_function("azure_devops_check")(request)


def test_check_is_addressed_by_its_plan_url_only(env):
    """The decision goes to the PlanUrl, so that is what names the tenant: B's secret with A's PlanUrl is an
    authentication failure (401), and a body naming B's organisation cannot move it into B."""
    body = {"environment": "production", "resourceContainers": {"collection": {"baseUrl": B_ADO_ORG}}}
    response = check("https://dev.azure.com/fabrikam/", B_CHECK, body)
    assert response.status_code == 401 and env.queued_texts() == []
    own = check(B_ADO_ORG, B_CHECK, {"environment": "production"})
    assert own.status_code == 200, own.get_body()
    [text] = env.queued_texts()
    assert decode_message(env.services.sealer, text).event.tenant_id == env.b  # type: ignore[attr-defined]


def test_run_state_sample_without_run_id_is_accepted_with_the_run_from_its_link(env):
    body = json.loads(
        (ROOT / "tests/fixtures/azure-devops/ms.vss-pipelines.run-state-changed-event.without-run-id.json").read_text()
    )
    response = hook(body, ADO_HOOK_SECRET)
    assert response.status_code == 202, response.get_body()
    assert decode_message(env.services.sealer, env.queued_texts()[0]).event.run_id == "11"


# -- connectors ---------------------------------------------------------------------------------------------


def deliver(body: dict[str, Any] | bytes) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    http_function("connector_events")(func.QueueMessage(id=uuid.uuid4().hex, body=raw))


def dead_letter_reason(env: GatekeeperEnv, body: dict[str, Any]) -> str:
    text = json.dumps(body)
    letters = [d for d in DeadLetters(env.storage).list("connector-events") if d.message == text]
    assert letters, "the refused message must be kept, not lost"
    return letters[-1].reason


def cw_message(account: str) -> dict[str, Any]:
    message = copy.deepcopy(CW_APPROVED)
    message["account"] = account
    message["payload"]["CompanyId"] = account
    return message


def test_connector_message_signed_by_its_tenant_is_accepted(env):
    deliver(sign_envelope(CONNECTOR_SECRET.encode(), cw_message("contoso")))
    [text] = env.queued_texts()
    assert decode_message(env.services.sealer, text).event.tenant_id == env.tenant_id


@pytest.mark.parametrize(
    "readdress",
    [
        lambda m: m.update(account="contoso-second"),  # another account of the same tenant
        lambda m: m.update(account="tenant-b"),  # another tenant's account
        lambda m: m.update(connector="autotask"),  # another vendor
        lambda m: m.update(receivedAt="2030-01-01T00:00:00Z"),  # any envelope field, not only the payload
    ],
    ids=["same-tenant-account", "other-tenant-account", "vendor", "received-at"],
)
def test_connector_message_readdressed_after_signing_fails_authentication(env, readdress):
    signed = sign_envelope(CONNECTOR_SECRET.encode(), cw_message("contoso"))
    readdress(signed)
    deliver(signed)
    assert env.queued_texts() == []
    assert dead_letter_reason(env, signed).startswith("401")


def test_connector_message_of_b_naming_as_company_in_its_payload_is_refused(env):
    message = cw_message("tenant-b")
    message["payload"]["CompanyId"] = "contoso"
    signed = sign_envelope(B_CONNECTOR.encode(), message)
    deliver(signed)
    assert env.queued_texts() == []
    reason = dead_letter_reason(env, signed)
    assert reason.startswith("422") and "payload.CompanyId" in reason


def test_connector_tenant_without_a_secret_is_refused_unless_it_opts_out(env):
    unsigned = cw_message("nosecret")
    deliver(unsigned)
    assert env.queued_texts() == [] and dead_letter_reason(env, unsigned).startswith("401")
    record = env.services.registry.get(env.unsigned)  # type: ignore[attr-defined]
    env.services.registry.import_records([record.model_copy(update={"connector_secret_required": False})])
    deliver(unsigned)
    assert len(env.queued_texts()) == 1


def test_connector_tenant_record_requires_a_secret_by_default():
    assert TenantRecord(tenant_id="defaults", display_name="x").connector_secret_required is True


# -- generic API: webhook callback URLs ---------------------------------------------------------------------


def generic(document: dict[str, Any], tenant: str, key: str) -> func.HttpResponse:
    headers = {"Content-Type": "application/json", "X-Gatekeeper-Tenant": tenant, "x-functions-key": key}
    request = func.HttpRequest(
        "POST", "http://localhost/api/events", headers=headers, body=json.dumps(document).encode()
    )
    return http_function("generic_events")(request)


GATE = {"kind": "gate_request", "environment": "production", "runId": "77"}


@pytest.mark.parametrize(
    "url",
    [
        "https://ci.tenant-b.example/hooks/gate/77",  # tenant B's registered prefix
        "https://ci.contoso.com/other/77",  # A's host, outside A's prefix
        "https://ci.contoso.com/gatekeeper/../admin",  # dot segments
        "https://ci.contoso.com.evil.example/gatekeeper/77",  # a look-alike host
        "https://ci.contoso.com:8443/gatekeeper/77",  # another port
    ],
)
def test_generic_gate_callback_outside_the_tenants_prefixes_is_refused(env, url):
    response = generic({**GATE, "callbackUrl": url}, env.tenant_id, API_KEY)
    assert response.status_code == 422 and problem(response)["field"] == "callbackUrl"
    assert env.queued_texts() == []


def test_generic_gate_callback_under_the_tenants_prefix_is_accepted(env):
    own: Callable[[str, str], func.HttpResponse] = lambda url, t: generic({**GATE, "callbackUrl": url}, t, B_KEY)  # noqa: E731
    assert own("https://ci.tenant-b.example/hooks/gate/77", env.b).status_code == 202  # type: ignore[attr-defined]
    assert (
        generic({**GATE, "callbackUrl": "https://CI.contoso.com/gatekeeper/cb/77"}, env.tenant_id, API_KEY).status_code
        == 202
    )
