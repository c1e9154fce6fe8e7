"""The last-resort answers of routes the other tests reach only when all is well: the approval page when the
identity provider or the tables are out of reach (an HTML page with the API's status and Retry-After, never a
traceback), the MCP endpoint when the tenant registry cannot be read (503 with Retry-After, before the SDK sees
the request), and the first-tenant bootstrap timer when storage is not ready (logged and left to the next tick,
never a failed invocation). The registered functions, Azurite, the local Entra issuer."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from devstack.entra_issuer import LocalEntraIssuer
from devstack.functions_host import SignedInUser
from functions.approvals import _NoGateway
from gatekeeper.security.entra import EntraTokenValidator
from gatekeeper.services import Services, set_services
from gatekeeper.settings import Settings
from gatekeeper.store.tables import StorageAccount
from gatekeeper.tenancy.registry import TenantRegistry
from tests.support.approval_gates import ANNA
from tests.support.gatekeeper_env import ENTRA_TENANT, GatekeeperEnv, http_function, make_env
from tests.support.outage import dead_port, storage_connection_string
from tests.support.worker_loop import run_on_worker

pytestmark = pytest.mark.azurite

AUDIENCE = "api://gatekeeper-route-failures"


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalEntraIssuer]:
    with LocalEntraIssuer() as server:
        yield server


@pytest.fixture
def env(storage_connection_string: str, tmp_path: Path) -> Iterator[GatekeeperEnv]:
    env = make_env(
        storage_connection_string, tmp_path / "keys", extra_environ={"GATEKEEPER_TRUST_EASYAUTH_HEADER": "true"}
    )
    set_services(env.services)
    yield env
    set_services(None)


def tables_down(env: GatekeeperEnv, azurite: Any) -> Services:
    """This process's services with the tables unreachable (blobs and queues up)."""
    down = StorageAccount(
        connection_string=storage_connection_string(blob=azurite.blob_port, queue=azurite.queue_port, table=dead_port())
    )
    runtime = Services(
        env.services.settings,
        storage=down,
        sealer=env.services.sealer,
        queue_name=env.services.queue_name,
        checkpoint_signer_factory=None,
    )
    set_services(runtime)
    return runtime


def page_get(gate: str, headers: dict[str, str]) -> func.HttpResponse:
    request = func.HttpRequest(
        "GET",
        f"http://localhost/api/approvals/{gate}/page",
        headers=headers,
        route_params={"instance_id": gate},
        body=b"",
    )
    return http_function("approval_page")(request)


def signed_in(oid: str = ANNA) -> dict[str, str]:
    """The headers App Service authentication sets for a signed-in person."""
    user = SignedInUser(oid, ENTRA_TENANT, "Anna Jansen", "anna@contoso.com")
    return {"X-MS-CLIENT-PRINCIPAL": user.client_principal(), "X-MS-CLIENT-PRINCIPAL-ID": oid, "Accept": "text/html"}


def assert_html_503(response: func.HttpResponse) -> str:
    assert response.status_code == 503, response.get_body()
    assert response.mimetype == "text/html" and response.headers.get("Retry-After")
    assert response.headers.get("Content-Security-Policy")  # the page's own headers, on the refusal too
    text = response.get_body().decode()
    assert "Traceback" not in text and "127.0.0.1" not in text
    return text


# --- the approval page ---------------------------------------------------------------------------------------


def test_the_page_with_the_tables_out_of_reach_is_an_html_503_with_retry_after(env, azurite):
    tables_down(env, azurite)
    text = assert_html_503(page_get("gate-" + uuid.uuid4().hex, signed_in()))
    assert "503" in text


def test_the_page_with_the_identity_provider_out_of_reach_is_an_html_503_with_retry_after(env, issuer):
    dead = f"http://127.0.0.1:{dead_port()}"
    env.services.token_validator = EntraTokenValidator(
        AUDIENCE, authority_host=dead, allowed_tenants=lambda tid: True, http_timeout_seconds=1
    )
    token = issuer.issue(ANNA, ENTRA_TENANT, AUDIENCE, issuer=f"{dead}/{ENTRA_TENANT}/v2.0")
    response = page_get("gate-" + uuid.uuid4().hex, {"Authorization": f"Bearer {token}", "Accept": "text/html"})
    text = assert_html_503(response)
    assert "Identity provider unavailable" in text or "identity provider" in text.lower()


def test_reading_a_gate_never_raises_an_event():
    """The page's GET and the state route read with a gateway that refuses to raise events: a tripwire, so a
    read that tried to vote would fail loudly instead of voting."""
    with pytest.raises(RuntimeError, match="raises no events"):
        _NoGateway().raise_event("gate-x", "approval-decision", {"decision": "approve"})


# --- the MCP endpoint ----------------------------------------------------------------------------------------


def test_mcp_with_the_tenant_registry_out_of_reach_is_a_503_with_retry_after(env, azurite, issuer, durable):
    runtime = tables_down(env, azurite)
    runtime.token_validator = EntraTokenValidator(
        AUDIENCE, authority_host=issuer.authority_host, allowed_tenants=lambda tid: True
    )
    token = issuer.issue(ANNA, ENTRA_TENANT, AUDIENCE, app_only=True)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
    request = func.HttpRequest(
        "POST",
        "http://localhost/api/mcp",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        body=body,
    )
    response = run_on_worker(http_function("mcp")(req=request, client=durable.client_binding))
    assert response.status_code == 503 and response.headers.get("Retry-After")
    document = json.loads(response.get_body())
    assert document["type"].endswith("/dependency-unavailable") and "Traceback" not in json.dumps(document)


# --- the first-tenant bootstrap timer ------------------------------------------------------------------------


def bootstrap_settings(tenant_id: str) -> dict[str, str]:
    return {
        "GATEKEEPER_TENANT_CACHE_SECONDS": "0",
        "GATEKEEPER_BOOTSTRAP_TENANT_ID": tenant_id,
        "GATEKEEPER_BOOTSTRAP_TENANT_NAME": "Northwind Traders",
        "GATEKEEPER_BOOTSTRAP_TENANT_ENTRA_ID": str(uuid.uuid4()),
        "GATEKEEPER_BOOTSTRAP_TENANT_OPERATORS": "ops@northwind.example",
    }


def timer_tick() -> None:
    http_function("first_tenant_bootstrap")(TimerRequest(past_due=False))


def test_the_bootstrap_timer_with_storage_not_ready_logs_and_leaves_it_to_the_next_tick(
    env, azurite, tmp_path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger="gatekeeper")
    tenant_id = "b" + uuid.uuid4().hex[:12]
    settings = Settings.from_environ(
        {**bootstrap_settings(tenant_id), "GATEKEEPER_KEY_MODE": "local", "GATEKEEPER_LOCAL_KEY_DIR": str(tmp_path)}
    )
    down = StorageAccount(
        connection_string=storage_connection_string(blob=azurite.blob_port, queue=azurite.queue_port, table=dead_port())
    )
    set_services(Services(settings, storage=down, sealer=env.services.sealer, checkpoint_signer_factory=None))
    timer_tick()  # does not raise: the host would count a failed invocation
    said = [r.getMessage() for r in caplog.records if "first tenant bootstrap" in r.getMessage()]
    assert said and re.search(r"not done yet \(\w+\); retrying in five minutes", said[-1])
    assert TenantRegistry(env.storage, cache_seconds=0).get(tenant_id) is None
    # the next tick, storage ready: the tenant is imported
    set_services(Services(settings, storage=env.storage, sealer=env.services.sealer, checkpoint_signer_factory=None))
    timer_tick()
    assert TenantRegistry(env.storage, cache_seconds=0).get(tenant_id) is not None
