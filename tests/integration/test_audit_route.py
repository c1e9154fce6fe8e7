"""GET /api/tenants/{tenant}/audit/export through the real trigger: the tenant's auditors and nobody else."""

from __future__ import annotations

import json

import azure.functions as func
import pytest

from devstack.entra_issuer import LocalEntraIssuer
from gatekeeper.audit.bundle import check_bundle
from gatekeeper.audit.oscal_validate import validation_errors
from gatekeeper.audit.signing import LocalCheckpointKey
from gatekeeper.security.entra import EntraTokenValidator
from gatekeeper.services import set_services
from tests.conftest import SHARED_FIXTURES
from tests.support.gatekeeper_env import ENTRA_TENANT, http_function, make_env, problem

AUDIENCE = "api://gatekeeper-audit-tests"
OTHER_TENANT = "00000000-0000-0000-0000-0000000000aa"
AUDITOR = "a0000000-0000-0000-0000-000000000001"


@pytest.fixture(scope="module")
def issuer():
    with LocalEntraIssuer() as issuer:
        yield issuer


@pytest.fixture
def env(storage_connection_string, tmp_path, issuer):
    env = make_env(storage_connection_string, tmp_path / "keys")
    env.services.checkpoint_signer = LocalCheckpointKey(str(tmp_path / "keys"), "audit-checkpoint").signer()
    env.services.token_validator = EntraTokenValidator(
        AUDIENCE, issuer.authority_host, allowed_tenants=lambda tid: True
    )
    log = env.services.audit_for(env.tenant_id)
    log.append("policy_changed", "admin@contoso.com", "", "policy revision 1", {"revision": 1})
    log.append("decision", "gatekeeper", "gate-1", "deploy to production", {"level": "L2", "rule": "prod"})
    log.checkpoint(force=True)
    set_services(env.services)
    yield env
    set_services(None)


def export(tenant: str, token: str | None, fmt: str = "oscal") -> func.HttpResponse:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = func.HttpRequest(
        "GET",
        f"http://localhost/api/tenants/{tenant}/audit/export",
        headers=headers,
        body=b"",
        params={"format": fmt},
        route_params={"tenant": tenant},
    )
    return http_function("audit_export")(request)


def test_the_tenants_auditor_gets_a_schema_valid_oscal_document(env, issuer):
    token = issuer.issue(AUDITOR, ENTRA_TENANT, AUDIENCE, roles=("Gatekeeper.Auditor",))
    response = export(env.tenant_id, token)
    assert response.status_code == 200, response.get_body()
    document = json.loads(response.get_body())
    assert validation_errors(document, SHARED_FIXTURES / "oscal/oscal_complete_schema-1.2.3.json") == []


def test_the_bundle_export_verifies_offline(env, issuer):
    token = issuer.issue(AUDITOR, ENTRA_TENANT, AUDIENCE, roles=("Gatekeeper.Auditor",))
    response = export(env.tenant_id, token, "bundle")
    assert response.status_code == 200
    result = check_bundle(json.loads(response.get_body()))
    assert result.ok and result.size == 2


@pytest.mark.parametrize(
    ("tid", "roles", "tenant", "status"),
    [
        (ENTRA_TENANT, (), None, 403),  # a user of the tenant without the auditor role
        (OTHER_TENANT, ("Gatekeeper.Auditor",), None, 403),  # another tenant's auditor
        (ENTRA_TENANT, ("Gatekeeper.Auditor",), "nosuchtenant", 403),  # a tenant that does not exist
        (ENTRA_TENANT, ("Gatekeeper.Auditor",), "../etc", 403),
    ],
)
def test_everyone_else_is_refused(env, issuer, tid, roles, tenant, status):
    token = issuer.issue(AUDITOR, tid, AUDIENCE, roles=roles)
    response = export(tenant or env.tenant_id, token)
    assert response.status_code == status
    assert problem(response)["status"] == status
    assert b"decision" not in response.get_body()


def test_unauthenticated_and_bad_format(env, issuer):
    assert export(env.tenant_id, None).status_code == 401
    token = issuer.issue(AUDITOR, ENTRA_TENANT, AUDIENCE, roles=("Gatekeeper.Auditor",))
    response = export(env.tenant_id, token, "pdf")
    assert response.status_code == 422 and problem(response)["field"] == "format"
