"""Dependencies down, through the registered HTTP functions with the real SDK clients: storage refusing or
never answering, Key Vault (the local server) answering 503/500/403, hanging or gone. Every ingestion route
answers 503 with Retry-After well inside 2 s (the Azure DevOps check inside its 3 s window), and nothing is
half-written. Sealed rows that were tampered with or moved answer a named, logged and audited
`integrity-error`, never a traceback."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.data.tables import UpdateMode

from devstack.keyvault_server import LocalKeyVault
from gatekeeper.contracts.gate import GateStatus
from gatekeeper.gates.store import GATE_ROW, GateIndex, GateRecord, GateStore
from gatekeeper.services import Services, get_services, set_services
from gatekeeper.store.keyring import DATA_KEY_PARTITION
from gatekeeper.store.keys import KeyVaultKeyProvider, LocalKeyProvider, build_cipher, tenant_key_name
from gatekeeper.store.tables import StorageAccount, TablePurpose, tenant_table_name
from tests.conftest import ROOT, SHARED_FIXTURES
from tests.support.gatekeeper_env import (
    ADO_CHECK_SECRET,
    ADO_HOOK_SECRET,
    API_KEY,
    ENTRA_TENANT,
    GatekeeperEnv,
    github_request,
    http_function,
    make_env,
    problem,
)
from tests.support.outage import SilentServer, dead_port, storage_connection_string

pytestmark = pytest.mark.azurite

# The promise is 2 s; the margin is for a loaded test machine, not for the product.
BOUND_SECONDS = 2.5
ROUTES = ("generic_events", "github_webhook", "azure_devops_check", "azure_devops_service_hook")
GENERIC = (ROOT / "tests/fixtures/generic/gate-request.json").read_bytes()
DPR = json.loads((ROOT / "tests/fixtures/github/deployment_protection_rule.requested.json").read_text())
CHECK_SAMPLE = json.loads((SHARED_FIXTURES / "azure-devops/invoke-azure-function-check.request.json").read_text())
JOB_TOKEN = "job-access-token-for-outage-tests-0123456789"
HOOK_BODY = (SHARED_FIXTURES / "azure-devops/build.complete.json").read_bytes()
CHECK_BODY = json.dumps({"environment": "production", "runId": "77", "requestedBy": "alice@fabrikam.com"}).encode()


def route_request(route: str, tenant_id: str) -> func.HttpRequest:
    if route == "github_webhook":
        return github_request("deployment_protection_rule", DPR)
    if route == "azure_devops_check":
        headers = {**CHECK_SAMPLE["headers"], "AuthToken": JOB_TOKEN, "X-Gatekeeper-Check-Secret": ADO_CHECK_SECRET}
        return func.HttpRequest("POST", "http://localhost/api/azure-devops/checks", headers=headers, body=CHECK_BODY)
    if route == "azure_devops_service_hook":
        basic = "Basic " + base64.b64encode(f"gatekeeper:{ADO_HOOK_SECRET}".encode()).decode()
        headers = {"Content-Type": "application/json", "Authorization": basic}
        return func.HttpRequest(
            "POST", "http://localhost/api/azure-devops/service-hooks", headers=headers, body=HOOK_BODY
        )
    headers = {"Content-Type": "application/json", "X-Gatekeeper-Tenant": tenant_id, "x-functions-key": API_KEY}
    return func.HttpRequest("POST", "http://localhost/api/events", headers=headers, body=GENERIC)


def timed(route: str, tenant_id: str, attempts: int = 3) -> tuple[func.HttpResponse, float]:
    """The fastest of up to `attempts` answers (stopping at the first inside the bound). The promise is about
    the product's time budget; a loaded test machine only ever adds time, so one answer inside the bound shows
    the budget holds, while a product without budgets (tens of seconds per call) fails every attempt."""
    best: tuple[func.HttpResponse, float] | None = None
    for _ in range(attempts):
        started = time.monotonic()
        response = http_function(route)(route_request(route, tenant_id))
        elapsed = time.monotonic() - started
        if best is None or elapsed < best[1]:
            best = (response, elapsed)
        if elapsed < BOUND_SECONDS:
            break
    assert best is not None
    return best


def assert_unavailable(response: func.HttpResponse, elapsed: float, bound: float = BOUND_SECONDS) -> dict[str, Any]:
    assert response.status_code == 503, response.get_body()
    assert int(response.headers["Retry-After"]) > 0
    body = problem(response)
    assert body["type"].endswith("/dependency-unavailable") and body["status"] == 503
    text = response.get_body().decode()
    assert "Traceback" not in text and JOB_TOKEN not in text
    assert elapsed < bound, f"answered after {elapsed:.2f} s"
    return body


@pytest.fixture
def env(storage_connection_string: str, tmp_path: Path) -> Iterator[GatekeeperEnv]:
    env = make_env(storage_connection_string, tmp_path / "keys")
    yield env
    set_services(None)


def trust_easyauth(monkeypatch: pytest.MonkeyPatch, services: Services) -> None:
    """Behind App Service authentication: the settings value the approval routes pass on is true."""
    monkeypatch.setattr(services, "settings", dataclasses.replace(services.settings, trust_easyauth_header=True))


def install(env: GatekeeperEnv, storage: StorageAccount, sealer: Any) -> Services:
    """A fresh process's services (cold caches) on `storage`, for the tenant `env` registered."""
    runtime = Services(
        env.services.settings,  # tenant cache off, the tenant's secrets
        storage=storage,
        sealer=sealer,
        queue_name=env.services.queue_name,
        checkpoint_signer_factory=None,
    )
    set_services(runtime)
    return runtime


# -- storage down ----------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("outage", ["refused", "silent"])
def test_storage_down_answers_503_with_retry_after_within_two_seconds(env, tmp_path, route, outage):
    with SilentServer() as silent:
        port = dead_port() if outage == "refused" else silent.port
        storage = StorageAccount(connection_string=storage_connection_string(blob=port, queue=port, table=port))
        install(env, storage, build_cipher(storage, LocalKeyProvider(tmp_path / "keys")))
        response, elapsed = timed(route, env.tenant_id)
        body = assert_unavailable(response, elapsed)
        assert body["dependency"] == "storage service"
        if outage == "silent":
            assert silent.accepted >= 1  # it really reached the stuck server and gave up on it


@pytest.mark.parametrize("outage", ["refused", "silent"])
def test_storage_down_on_the_approval_routes_answers_503_within_two_seconds(env, tmp_path, monkeypatch, outage):
    trust_easyauth(monkeypatch, env.services)  # install() builds the fresh services on these settings
    with SilentServer() as silent:
        port = dead_port() if outage == "refused" else silent.port
        storage = StorageAccount(connection_string=storage_connection_string(blob=port, queue=port, table=port))
        install(env, storage, build_cipher(storage, LocalKeyProvider(tmp_path / "keys")))
        gate_id = "gate-" + uuid.uuid4().hex
        started = time.monotonic()
        request = func.HttpRequest(
            "GET",
            f"http://localhost/api/approvals/{gate_id}",
            headers=easyauth("0000000a-0000-4000-8000-00000000000a"),
            route_params={"instance_id": gate_id},
            body=b"",
        )
        response = http_function("approval_state")(request)
        assert_unavailable(response, time.monotonic() - started)


@pytest.mark.parametrize("route", ROUTES)
def test_queue_down_with_tables_up_answers_503_and_queues_nothing(env, azurite, route):
    with SilentServer() as silent:
        connection = storage_connection_string(blob=azurite.blob_port, queue=silent.port, table=azurite.table_port)
        storage = StorageAccount(connection_string=connection)
        install(env, storage, env.services.sealer)
        response, elapsed = timed(route, env.tenant_id)
        assert_unavailable(response, elapsed)
    assert env.queued_texts() == []


# -- Key Vault down --------------------------------------------------------------------------------


@pytest.fixture
def local_keyvault() -> Iterator[LocalKeyVault]:
    with LocalKeyVault() as vault:
        yield vault


def keyvault_provider(vault: LocalKeyVault) -> KeyVaultKeyProvider:
    """The production provider with the production budgets: only TLS trust and the challenge check differ."""
    return KeyVaultKeyProvider(
        vault.vault_url, vault.credential(), connection_verify=vault.ca_file, verify_challenge_resource=False
    )


@pytest.fixture
def keyvault_runtime(env: GatekeeperEnv, local_keyvault: LocalKeyVault) -> Services:
    """The tenant's KEK in the local vault and its data key made by an earlier process; this process starts
    cold, so sealing the first event needs Key Vault (unwrap)."""
    local_keyvault.create_key(tenant_key_name(env.tenant_id), size=3072, key_ops=["wrapKey", "unwrapKey"])
    build_cipher(env.storage, keyvault_provider(local_keyvault)).seal(env.tenant_id, "warm-up", "p", "r", b"x")
    return install(env, env.storage, build_cipher(env.storage, keyvault_provider(local_keyvault)))


def data_key_rows(env: GatekeeperEnv) -> list[str]:
    table = env.storage.table(tenant_table_name(env.tenant_id, TablePurpose.KEYS))
    return [e["RowKey"] for e in table.query_entities("PartitionKey eq @pk", parameters={"pk": DATA_KEY_PARTITION})]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("outage", ["unavailable", "error", "forbidden", "hang", "stopped", "garbage"])
def test_key_vault_down_answers_503_with_retry_after_and_writes_nothing(
    env, local_keyvault, keyvault_runtime, route, outage
):
    keys_before = data_key_rows(env)
    if outage == "stopped":
        local_keyvault.stop()
    else:
        local_keyvault.outage = outage
    response, elapsed = timed(route, env.tenant_id)
    body = assert_unavailable(response, elapsed)
    assert body["dependency"] == "key service"
    assert env.queued_texts() == [], "an event that could not be sealed must not be queued"
    assert data_key_rows(env) == keys_before, "no data key is made while the vault is down"
    if outage == "hang":
        assert local_keyvault.count("hung") >= 1
    if outage != "stopped":  # the same request goes through once the vault is back
        local_keyvault.outage = None
        again, _ = timed(route, env.tenant_id)
        assert again.status_code in (200, 202), again.get_body()
        assert len(env.queued_texts()) == 1


def test_a_new_tenant_key_vault_hanging_is_503_within_two_seconds(env, local_keyvault):
    """First event of a tenant: no data key yet, so sealing needs the KEK's public key (get key) first."""
    local_keyvault.create_key(tenant_key_name(env.tenant_id), size=3072, key_ops=["wrapKey", "unwrapKey"])
    install(env, env.storage, build_cipher(env.storage, keyvault_provider(local_keyvault)))
    local_keyvault.outage = "hang"
    response, elapsed = timed("azure_devops_check", env.tenant_id)
    assert_unavailable(response, elapsed)
    assert env.queued_texts() == [] and data_key_rows(env) == []


# -- sealed rows that do not open ------------------------------------------------------------------


def easyauth(oid: str) -> dict[str, str]:
    claims = [
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": oid},
        {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": ENTRA_TENANT},
        {"typ": "preferred_username", "val": "anna@contoso.com"},
    ]
    header = base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()
    return {"X-MS-CLIENT-PRINCIPAL": header}


SECRET_TITLE = "deploy contoso-payroll (confidential) to production"


def stored_gate(env: GatekeeperEnv) -> tuple[str, dict[str, Any]]:
    """A gate saved through the product's store; returns its id and the raw (sealed) row."""
    gate_id = "gate-" + uuid.uuid4().hex
    now = datetime.now(UTC)
    GateIndex(env.storage).put(gate_id, env.tenant_id)
    GateStore(env.storage, env.tenant_id, env.services.sealer).save(
        GateRecord(
            instance_id=gate_id,
            tenant_id=env.tenant_id,
            status=GateStatus.EVALUATED,
            level="L2",
            title=SECRET_TITLE,
            subject={"repository": "contoso/payroll"},
            requester=("dev@contoso.com",),
            created_at=now,
            updated_at=now,
        )
    )
    table = env.storage.table(tenant_table_name(env.tenant_id, TablePurpose.GATES))
    return gate_id, dict(table.get_entity(gate_id, GATE_ROW))


def _flip(sealed: str) -> str:
    """Change one character of the ciphertext part, keeping it valid base64url."""
    head, body = sealed.rsplit(".", 1)
    middle = len(body) // 2
    return f"{head}.{body[:middle]}{'A' if body[middle] != 'A' else 'B'}{body[middle + 1 :]}"


def tamper(env: GatekeeperEnv, other: Callable[[], GatekeeperEnv], how: str) -> tuple[str, str, str]:
    """Break a sealed gate row as an attacker or a careless operator would. Returns (tenant, gate id, the
    sealed text now stored) of the row the route will read."""
    gate_id, raw = stored_gate(env)
    if how == "tampered":
        raw["record"] = _flip(raw["record"])
        env.storage.table(tenant_table_name(env.tenant_id, TablePurpose.GATES)).update_entity(
            raw, mode=UpdateMode.REPLACE
        )
        return env.tenant_id, gate_id, raw["record"]
    if how == "moved-row":  # copied to another gate's row in the same table
        moved = "gate-" + uuid.uuid4().hex
        GateIndex(env.storage).put(moved, env.tenant_id)
        env.storage.table(tenant_table_name(env.tenant_id, TablePurpose.GATES)).create_entity(
            {**raw, "PartitionKey": moved}
        )
        return env.tenant_id, moved, raw["record"]
    target = other()  # copied into another tenant's table, same keys
    GateIndex(env.storage).put("x" + gate_id, target.tenant_id)
    table = target.storage.ensure_table(tenant_table_name(target.tenant_id, TablePurpose.GATES))
    table.create_entity({**raw, "PartitionKey": "x" + gate_id})
    set_services(target.services)
    return target.tenant_id, "x" + gate_id, raw["record"]


@pytest.mark.parametrize("how", ["tampered", "moved-row", "moved-tenant"])
def test_a_sealed_row_that_does_not_open_is_an_audited_integrity_error(
    env, storage_connection_string, tmp_path, monkeypatch, caplog, how
):
    set_services(env.services)
    tenant_id, gate_id, sealed = tamper(env, lambda: make_env(storage_connection_string, tmp_path / "other-keys"), how)
    trust_easyauth(monkeypatch, get_services())  # the services the route will read the row through
    caplog.set_level(logging.DEBUG)
    request = func.HttpRequest(
        "GET",
        f"http://localhost/api/approvals/{gate_id}",
        headers=easyauth("0000000a-0000-4000-8000-00000000000a"),
        route_params={"instance_id": gate_id},
        body=b"",
    )
    response = http_function("approval_state")(request)

    assert response.status_code == 500
    body = problem(response)
    assert body["type"].endswith("/integrity-error") and body["status"] == 500
    text = response.get_body().decode()
    for leaked in ("Traceback", sealed, SECRET_TITLE, "gk1."):
        assert leaked not in text
    # logged by name and place, without the sealed text or what it held
    assert "integrity failure" in caplog.text and gate_id in caplog.text
    assert sealed not in caplog.text and SECRET_TITLE not in caplog.text
    # audited in the tenant whose table holds the row

    [entry] = [r for r in get_services().audit_for(tenant_id).records() if r.kind == "integrity_failure"]
    assert entry.actor == "system:gatekeeper"
    assert entry.data["partition_key"] == gate_id and entry.data["row_key"] == GATE_ROW
    assert entry.data["table"] == tenant_table_name(tenant_id, TablePurpose.GATES)
    # another tenant's row names a data key this tenant does not have; within a tenant the GCM binding fails
    assert entry.data["reason"] == ("key-gone" if how == "moved-tenant" else "does-not-open")
    assert entry.data["route"].endswith(gate_id)
    assert sealed not in json.dumps(entry.data)


@pytest.mark.parametrize("how", ["tampered", "moved"])
def test_a_queued_event_that_does_not_open_is_dead_lettered_and_audited_not_retried(env, how):
    from devstack.durable_api import DurableApiServer
    from gatekeeper.ingest.deadletter import DeadLetters
    from tests.support.worker_loop import run_on_worker

    set_services(env.services)
    response = http_function("github_webhook")(github_request("deployment_protection_rule", DPR))
    assert response.status_code == 202, response.get_body()
    [text] = env.drain()
    message = json.loads(text)
    if how == "tampered":
        message["sealed"] = _flip(message["sealed"])
    else:  # re-addressed to another event id: the ciphertext is bound to the one it was sealed for
        message["id"] = uuid.uuid4().hex
    with DurableApiServer() as durable:
        function = http_function("dispatch_pipeline_events")
        body = json.dumps(message).encode()
        run_on_worker(function(func.QueueMessage(id="x", body=body), client=durable.client_binding))
        assert durable.posts("/orchestrators/") == [], "nothing may start from an event that did not open"
    letters = DeadLetters(env.storage).list("pipeline-events")
    [letter] = [d for d in letters if "integrity" in d.reason and message["id"] in d.message]
    assert "does-not-open" in letter.reason
    [entry] = [r for r in env.services.audit_for(env.tenant_id).records() if r.kind == "integrity_failure"]
    assert entry.data["route"] == "queue:pipeline-events" and entry.data["row_key"] == message["id"]


def test_a_stored_event_that_does_not_open_in_an_activity_is_audited(env, tmp_path):
    """The gate's evaluate activity reads the sealed event the dispatcher stored; tampered, it fails by name
    and leaves an integrity_failure entry (the orchestration's retry policy then ends the gate)."""
    import azure.durable_functions as df

    from devstack.durable_api import DurableApiServer
    from functions.durable_gateway import DurableClientGateway
    from gatekeeper.gates.common import EVENT_PARTITION, load_event
    from gatekeeper.gates.effects import PolicyDecider
    from gatekeeper.ingest.queue import decode_message
    from gatekeeper.integrations.outbox import OutboxNotifier
    from gatekeeper.services import build_pipeline_callbacks
    from gatekeeper.settings import Settings
    from gatekeeper.store.envelope import SealedDataUnreadable
    from tests.support.worker_loop import worker_loop

    set_services(env.services)
    assert http_function("github_webhook")(github_request("deployment_protection_rule", DPR)).status_code == 202
    [text] = env.drain()
    queued = decode_message(env.services.sealer, text)
    with DurableApiServer() as durable:
        gateway = DurableClientGateway(df.DurableOrchestrationClient(durable.client_binding), worker_loop())
        env.services.dispatcher(gateway).dispatch(queued.event, queued.event_id)
    events = env.storage.table(tenant_table_name(env.tenant_id, TablePurpose.EVENTS))
    row = dict(events.get_entity(EVENT_PARTITION, queued.event.key_hash))
    row["sealed_event"] = _flip(row["sealed_event"])
    events.update_entity(row, mode=UpdateMode.REPLACE)

    services = Services(
        Settings.from_environ({}),
        storage=env.storage,
        sealer=env.services.sealer,
        decider=PolicyDecider(env.services.policy_for),
        audit_for=env.services.audit_for,
        notifier=OutboxNotifier(tmp_path / "outbox"),
        callbacks=build_pipeline_callbacks(Settings.from_environ({})),
    )
    with pytest.raises(SealedDataUnreadable):
        load_event(services, env.tenant_id, queued.event.key_hash)
    [entry] = [r for r in env.services.audit_for(env.tenant_id).records() if r.kind == "integrity_failure"]
    assert entry.data["route"] == "activity:load_event" and entry.data["row_key"] == queued.event.key_hash


@pytest.mark.parametrize("outage", ["hang", "error"])
def test_the_checkpoint_key_read_at_cold_start_is_bounded_and_a_503(local_keyvault, outage):
    """A cold process reads the checkpoint key while building its runtime, inside the first request."""
    from functions.http import status_of
    from gatekeeper.audit.signing import CheckpointKeyError, KeyVaultCheckpointKey
    from gatekeeper.errors import DependencyUnavailable
    from gatekeeper.failures import as_error

    local_keyvault.create_key("audit-checkpoint", size=3072, key_ops=["sign", "verify"])
    key = KeyVaultCheckpointKey(
        local_keyvault.vault_url,
        "audit-checkpoint",
        local_keyvault.credential(),
        connection_verify=local_keyvault.ca_file,
        verify_challenge_resource=False,
    )
    local_keyvault.outage = outage
    started = time.monotonic()
    with pytest.raises(CheckpointKeyError) as info:
        key.signer()
    assert time.monotonic() - started < BOUND_SECONDS
    problem = as_error(info.value)
    assert isinstance(problem, DependencyUnavailable) and status_of(problem) == 503 and problem.retry_after
