"""GET /api/tenants/{tenant}/audit/export through the real trigger: the tenant's auditors and nobody else."""

from __future__ import annotations

import json
import uuid

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


def test_storage_down_answers_503_with_retry_after_not_a_traceback(env, issuer, tmp_path):
    from gatekeeper.services import Services
    from gatekeeper.store.keys import LocalKeyProvider, build_cipher
    from gatekeeper.store.tables import StorageAccount
    from tests.support.outage import dead_port, storage_connection_string

    port = dead_port()
    down = StorageAccount(connection_string=storage_connection_string(blob=port, queue=port, table=port))
    runtime = Services(
        env.services.settings,
        storage=down,
        sealer=build_cipher(down, LocalKeyProvider(str(tmp_path / "keys"))),
        queue_name=env.services.queue_name,
        checkpoint_signer_factory=None,
    )
    runtime.token_validator = env.services.token_validator
    set_services(runtime)
    token = issuer.issue(AUDITOR, ENTRA_TENANT, AUDIENCE, roles=("Gatekeeper.Auditor",))
    response = export(env.tenant_id, token)
    assert response.status_code == 503 and response.headers.get("Retry-After")
    assert problem(response)["type"].endswith("dependency-unavailable")
    assert b"decision" not in response.get_body()


# -- the checkpoint timer --------------------------------------------------------------------------------


def test_the_checkpoint_timer_signs_each_grown_log_and_one_tenants_failure_does_not_stop_the_others(
    storage_connection_string, tmp_path, caplog
):
    from azure.data.tables import UpdateMode

    from gatekeeper.audit.log import ENTRY_PARTITION, HEAD_ROW
    from gatekeeper.services import Services
    from gatekeeper.store.tables import TablePurpose
    from gatekeeper.tenancy.model import TenantRecord

    # The registry lists tenants in id order: the broken one first, so the others come after its failure.
    broken, fine, quiet = ("t" + prefix + uuid.uuid4().hex[:9] for prefix in ("000", "fff", "ffe"))
    env = make_env(
        storage_connection_string,
        tmp_path / "keys",
        extra_tenants=tuple(TenantRecord(tenant_id=t, display_name=t) for t in (broken, fine, quiet)),
        extra_environ={"GATEKEEPER_CHECKPOINT_EVERY": "1"},
    )
    for tenant in (broken, env.tenant_id, fine):  # no signer in this process: no checkpoints yet
        env.services.audit_for(tenant).append("decision", "gatekeeper", "gate-1", "deploy", {"level": "L0"})
    table = env.storage.tenant_table(broken, TablePurpose.AUDIT)
    head = dict(table.get_entity(ENTRY_PARTITION, HEAD_ROW))
    table.update_entity({**head, "size": "not-a-number"}, mode=UpdateMode.REPLACE)
    signer = LocalCheckpointKey(str(tmp_path / "keys"), "audit-checkpoint").signer()
    timer_process = Services(
        env.services.settings,
        storage=env.storage,
        sealer=env.services.sealer,
        queue_name=env.services.queue_name,
        checkpoint_signer_factory=lambda: signer,
    )
    set_services(timer_process)
    try:
        with caplog.at_level("ERROR", logger="gatekeeper.audit"):
            http_function("audit_checkpoints")(None)
    finally:
        set_services(None)
    sizes = {t: [c.checkpoint().size for c in timer_process.audit_for(t).checkpoints()] for t in (env.tenant_id, fine)}
    assert sizes == {env.tenant_id: [1], fine: [1]}
    assert timer_process.audit_for(quiet).checkpoints() == []  # an empty log gets none
    assert [r.getMessage() for r in caplog.records] == [f"checkpoint failed for tenant {broken}"]
