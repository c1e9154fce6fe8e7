"""Dependencies down on the ingestion routes tests/integration/test_outage.py does not cover: action requests
(`POST /api/actions`), vendor webhooks (`POST /api/connectors/{vendor}`) and Azure Monitor alerts
(`POST /api/azure-monitor/alerts`), through the registered functions with the real SDK clients. Storage
refusing or never answering and Key Vault down (the local server answering 503/500/403, hanging or stopped)
each answer 503 `dependency-unavailable` with Retry-After inside the 2 s budget, no traceback and no secret,
and nothing is half-written: the same request once the dependency is back is accepted and queued once."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from devstack.durable_api import DurableApiServer
from devstack.keyvault_server import LocalKeyVault
from gatekeeper.gates.store import GateIndex
from gatekeeper.ingest.connector_webhooks import autotask_signature
from gatekeeper.policy.store import PolicyStore
from gatekeeper.rollback.store import Deployment, WatchRecord, WatchStore
from gatekeeper.services import get_services, set_services
from gatekeeper.store.keys import LocalKeyProvider, build_cipher, tenant_key_name
from gatekeeper.store.tables import StorageAccount
from gatekeeper.tenancy.model import SecretPurpose
from tests.conftest import ROOT
from tests.integration.test_outage import (
    BOUND_SECONDS,
    assert_unavailable,
    data_key_rows,
    install,
    keyvault_provider,
)
from tests.integration.test_outage import ROUTES as PIPELINE_ROUTES
from tests.integration.test_outage import route_request as pipeline_request
from tests.support.gatekeeper_env import API_KEY, GatekeeperEnv, github_request, http_function, make_env
from tests.support.outage import (
    ImpostorServer,
    SilentServer,
    SlowAnswerProxy,
    dead_port,
    storage_connection_string,
)
from tests.support.worker_loop import run_on_worker

pytestmark = pytest.mark.azurite

ROUTES = ("action_request", "connector_webhook", "azure_monitor_alert")
AUTOTASK_SECRET = "autotask-webhook-secret-for-outage-0123456789"
AUTOTASK = (ROOT / "tests/fixtures/connectors/autotask/ticket-change-approved.json").read_bytes()
ALERT = (ROOT / "tests/fixtures/azure-monitor/common-alert-schema.metric-static.fired.json").read_bytes()


@pytest.fixture(scope="module")
def durable() -> Iterator[DurableApiServer]:
    with DurableApiServer() as server:
        yield server


@pytest.fixture
def env(storage_connection_string: str, tmp_path: Path) -> Iterator[GatekeeperEnv]:
    """The tests' tenant, also the owner of the Autotask account the fixture names, with its webhook secret."""
    env = make_env(
        storage_connection_string,
        tmp_path / "keys",
        extra_identities=("autotask:account:29683501",),
        extra_environ={"GK_AUTOTASK_OUTAGE": AUTOTASK_SECRET},
    )
    registry = env.services.registry
    record = registry.get(env.tenant_id)
    assert record is not None
    secrets = {**record.secrets, SecretPurpose.AUTOTASK_WEBHOOK: ("env:GK_AUTOTASK_OUTAGE",)}
    registry.import_records([record.model_copy(update={"secrets": secrets})])
    yield env
    set_services(None)


def action_body(key: str) -> bytes:
    return json.dumps(
        {
            "command": "terraform apply -auto-approve plan.tfplan",
            "action": "infrastructure_change",
            "target": {"environment": "production", "resource": "rg-contoso-prod"},
            "idempotency_key": key,
        }
    ).encode()


def running_watch(env: GatekeeperEnv, cipher: Any, durable: DurableApiServer) -> str:
    """A running post-deploy watch of production whose policy registers the alert's target resource."""
    target = json.loads(ALERT)["data"]["essentials"]["alertTargetIDs"][0]
    policy = {
        "version": 1,
        "watch": [
            {
                "environments": ["production"],
                "probes": [{"name": "health", "url": "https://shop.contoso.com/health"}],
                "alert_resources": [target],
            }
        ],
    }
    PolicyStore(env.storage, env.tenant_id).publish(json.dumps(policy), published_by="tests")
    watch_id = "watch-" + uuid.uuid4().hex[:40]
    now = datetime.now(UTC)
    WatchStore(env.storage, env.tenant_id, cipher).save(
        WatchRecord(
            instance_id=watch_id,
            tenant_id=env.tenant_id,
            deployment=Deployment(source="github", repository="contoso/shop", environment="production"),
            started_at=now,
            updated_at=now,
        )
    )
    GateIndex(env.storage).put(watch_id, env.tenant_id)
    durable.instances[watch_id] = {"name": "post_deploy_watch", "runtimeStatus": "Running"}
    return watch_id


def send(route: str, tenant_id: str, durable: DurableApiServer, key: str) -> func.HttpResponse:
    """One request to `route` as its caller sends it; `key` keeps a retried action the same action."""
    api_key = {"X-Gatekeeper-Tenant": tenant_id, "x-functions-key": API_KEY, "Content-Type": "application/json"}
    if route == "action_request":
        request = func.HttpRequest("POST", "http://localhost/api/actions", headers=api_key, body=action_body(key))
        return http_function(route)(request)
    if route == "connector_webhook":
        headers = {
            "Content-Type": "application/json",
            "X-Hook-Signature": autotask_signature(AUTOTASK_SECRET.encode(), AUTOTASK),
        }
        request = func.HttpRequest(
            "POST",
            f"http://localhost/api/connectors/autotask?tenant={tenant_id}",
            headers=headers,
            body=AUTOTASK,
            route_params={"vendor": "autotask"},
        )
        return http_function(route)(request)
    request = func.HttpRequest("POST", "http://localhost/api/azure-monitor/alerts", headers=api_key, body=ALERT)
    return run_on_worker(http_function(route)(req=request, client=durable.client_binding))


def timed(route: str, tenant_id: str, durable: DurableApiServer, key: str) -> tuple[func.HttpResponse, float]:
    """The fastest of up to three answers (see tests/integration/test_outage.py, `timed`)."""
    best: tuple[func.HttpResponse, float] | None = None
    for _ in range(3):
        started = time.monotonic()
        response = send(route, tenant_id, durable, key)
        elapsed = time.monotonic() - started
        if best is None or elapsed < best[1]:
            best = (response, elapsed)
        if elapsed < BOUND_SECONDS:
            break
    assert best is not None
    return best


def queued_once(env: GatekeeperEnv, route: str) -> None:
    """Alerts act on watches in the request (nothing is queued); the other two routes queue one event."""
    assert len(env.queued_texts()) == (0 if route == "azure_monitor_alert" else 1)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("outage", ["refused", "silent"])
def test_storage_down_answers_503_with_retry_after_within_two_seconds(env, tmp_path, durable, route, outage):
    with SilentServer() as silent:
        port = dead_port() if outage == "refused" else silent.port
        storage = StorageAccount(connection_string=storage_connection_string(blob=port, queue=port, table=port))
        install(env, storage, build_cipher(storage, LocalKeyProvider(tmp_path / "keys")))
        response, elapsed = timed(route, env.tenant_id, durable, "outage-" + uuid.uuid4().hex)
        body = assert_unavailable(response, elapsed)
        assert body["dependency"] == "storage service"
        assert AUTOTASK_SECRET not in response.get_body().decode() and API_KEY not in response.get_body().decode()


@pytest.mark.parametrize("route", (*PIPELINE_ROUTES, *ROUTES))
def test_something_else_answering_for_storage_is_503_not_an_internal_error(env, tmp_path, durable, route):
    """A proxy's or firewall's page where storage should answer (200, HTML): the SDK cannot read it, and that
    is storage being unavailable (503 with Retry-After), never a 500."""
    with ImpostorServer() as impostor:
        port = impostor.port
        storage = StorageAccount(connection_string=storage_connection_string(blob=port, queue=port, table=port))
        install(env, storage, build_cipher(storage, LocalKeyProvider(tmp_path / "keys")))
        if route in PIPELINE_ROUTES:
            started = time.monotonic()
            response = http_function(route)(pipeline_request(route, env.tenant_id))
            elapsed = time.monotonic() - started
        else:
            response, elapsed = timed(route, env.tenant_id, durable, "outage-" + uuid.uuid4().hex)
        body = assert_unavailable(response, elapsed)
        assert body["dependency"] == "storage service" and impostor.answered >= 1


@pytest.mark.parametrize("route", ("action_request", "connector_webhook"))
def test_queue_down_with_tables_up_answers_503_and_the_retry_is_queued_once(env, azurite, durable, route):
    """Tables answer, the queue does not: whatever the route wrote first (the action's idempotency claim) must
    not turn the client's retry into an answer for an event that was never queued."""
    key = "outage-" + uuid.uuid4().hex
    with SilentServer() as silent:
        connection = storage_connection_string(blob=azurite.blob_port, queue=silent.port, table=azurite.table_port)
        install(env, StorageAccount(connection_string=connection), env.services.sealer)
        response, elapsed = timed(route, env.tenant_id, durable, key)
        assert_unavailable(response, elapsed)
    assert env.queued_texts() == []
    install(env, env.storage, env.services.sealer)
    again = send(route, env.tenant_id, durable, key)
    assert again.status_code in (200, 202), again.get_body()
    queued_once(env, route)


@pytest.fixture
def local_keyvault() -> Iterator[LocalKeyVault]:
    with LocalKeyVault() as vault:
        yield vault


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("outage", ["unavailable", "error", "forbidden", "hang", "stopped", "garbage"])
def test_key_vault_down_answers_503_writes_nothing_and_the_retry_goes_through_once(
    env, local_keyvault, durable, route, outage
):
    local_keyvault.create_key(tenant_key_name(env.tenant_id), size=3072, key_ops=["wrapKey", "unwrapKey"])
    warm = build_cipher(env.storage, keyvault_provider(local_keyvault))
    warm.seal(env.tenant_id, "warm-up", "p", "r", b"x")
    watch_id = running_watch(env, warm, durable)  # the alert route opens the tenant's sealed watches
    install(env, env.storage, build_cipher(env.storage, keyvault_provider(local_keyvault)))
    keys_before = data_key_rows(env)
    key = "outage-" + uuid.uuid4().hex
    if outage == "stopped":
        local_keyvault.stop()
    else:
        local_keyvault.outage = outage
    response, elapsed = timed(route, env.tenant_id, durable, key)
    body = assert_unavailable(response, elapsed)
    assert body["dependency"] == "key service"
    assert env.queued_texts() == [], "an event that could not be sealed must not be queued"
    assert data_key_rows(env) == keys_before, "no data key is made while the vault is down"
    if outage != "stopped":
        local_keyvault.outage = None
        again = send(route, env.tenant_id, durable, key)
        assert again.status_code in (200, 202), again.get_body()
        queued_once(env, route)
        if route == "azure_monitor_alert":  # the failed attempt added nothing: the alert is on the watch once
            watch = WatchStore(env.storage, env.tenant_id, get_services().sealer).load(watch_id)
            assert watch is not None and len(watch.alerts) == 1 and watch.wakes == 1, watch


# -- the queue's answer lost: the event is queued although the caller hears 503 ---------------------


def github_delivery(delivery: str) -> func.HttpRequest:
    dpr = json.loads((ROOT / "tests/fixtures/github/deployment_protection_rule.requested.json").read_text())
    return github_request("deployment_protection_rule", dpr, delivery=delivery)


# The queue's answer is held back this long. A lost answer cannot be retried inside one test (the retry is what
# is under test), so the one answer is judged against the held answer itself, not the 2.5 s route bound: the
# product must give up on its own budget and answer 503 before the queue's reply would have come. A loaded
# machine can add a second to one request (seen: 2.8 s under two CPU hogs) without the budget being wrong.
HELD_ANSWER_SECONDS = 6.0


@pytest.mark.parametrize("route", ("github_webhook", "action_request"))
def test_a_lost_queue_answer_is_503_and_the_retry_still_starts_exactly_one_gate(env, azurite, durable, route):
    """The queue stores the message but its answer arrives after the request budget: the caller hears 503 and
    sends the same event again. Both copies are queued; the dispatcher must start one orchestration."""
    key = "outage-" + uuid.uuid4().hex
    delivery = str(uuid.uuid4())

    def once() -> func.HttpResponse:
        if route == "github_webhook":
            return http_function(route)(github_delivery(delivery))
        return send(route, env.tenant_id, durable, key)

    with SlowAnswerProxy(azurite.queue_port, delay=HELD_ANSWER_SECONDS) as proxy:
        connection = storage_connection_string(blob=azurite.blob_port, queue=proxy.port, table=azurite.table_port)
        install(env, StorageAccount(connection_string=connection), env.services.sealer)
        started = time.monotonic()
        lost = once()
        assert_unavailable(lost, time.monotonic() - started, bound=HELD_ANSWER_SECONDS)
        assert proxy.connections >= 1
    assert len(env.queued_texts()) == 1, "the send took effect although its answer was lost"
    install(env, env.storage, env.services.sealer)
    retried = once()
    assert retried.status_code in (200, 202), retried.get_body()
    messages = env.drain()
    assert 1 <= len(messages) <= 2
    dispatch = http_function("dispatch_pipeline_events")
    for text in messages:
        run_on_worker(dispatch(func.QueueMessage(id="m", body=text.encode()), client=durable.client_binding))
    starts = [body for _, body in durable.posts("/orchestrators/") if body.get("tenant_id") == env.tenant_id]
    assert len(starts) == 1, starts


def large_gate_request(tenant_id: str, run_id: str) -> func.HttpRequest:
    """A valid gate request whose sealed event is over a queue message (40 KiB of inline evidence): claim check."""
    generic = json.loads((ROOT / "tests/fixtures/generic/gate-request.json").read_text())
    evidence = [{"kind": "tests", "data": {"cases": [f"case-{i:05d}-passed" for i in range(2_200)]}}]
    body = json.dumps({**generic, "runId": run_id, "evidence": evidence}).encode()
    headers = {"Content-Type": "application/json", "X-Gatekeeper-Tenant": tenant_id, "x-functions-key": API_KEY}
    return func.HttpRequest("POST", "http://localhost/api/events", headers=headers, body=body)


def claim_check_blobs(env: GatekeeperEnv) -> list[str]:
    container = env.services.large_events.container
    return [b.name for b in container.list_blobs(name_starts_with=env.tenant_id + "/")] if container.exists() else []


def test_a_lost_queue_answer_keeps_the_claim_check_so_the_queued_large_event_still_starts_its_gate(
    env, azurite, durable
):
    """The queue stored the reference but its answer was lost: the blob it names must still be there, or the
    message is dead-lettered and the gate is lost for a caller that does not retry (GitHub redelivers only
    by hand). An orphan blob is the cheaper failure: the storage lifecycle rule removes it after 30 days."""
    run_id = uuid.uuid4().hex[:8]
    with SlowAnswerProxy(azurite.queue_port, delay=HELD_ANSWER_SECONDS) as proxy:
        connection = storage_connection_string(blob=azurite.blob_port, queue=proxy.port, table=azurite.table_port)
        install(env, StorageAccount(connection_string=connection), env.services.sealer)
        started = time.monotonic()
        lost = http_function("generic_events")(large_gate_request(env.tenant_id, run_id))
        assert_unavailable(lost, time.monotonic() - started, bound=HELD_ANSWER_SECONDS)
    install(env, env.storage, env.services.sealer)
    [text] = env.queued_texts()
    assert '"blob"' in text, "the event travels as a claim check"
    assert claim_check_blobs(env) == [json.loads(text)["blob"]], "the blob the queued message names is kept"
    dispatch = http_function("dispatch_pipeline_events")
    for message in env.drain():
        run_on_worker(dispatch(func.QueueMessage(id="m", body=message.encode()), client=durable.client_binding))
    assert len(starts(durable, env.tenant_id)) == 1, "the queued event started its gate without a retry"
    assert claim_check_blobs(env) == []  # and its blob went after the dispatch, as always


def test_a_refused_queue_still_drops_the_claim_check(env, azurite, durable):
    """The queue refused the connection, so nothing was queued: the blob is removed at once (nothing half-written)."""
    connection = storage_connection_string(blob=azurite.blob_port, queue=dead_port(), table=azurite.table_port)
    install(env, StorageAccount(connection_string=connection), env.services.sealer)
    started = time.monotonic()
    refused = http_function("generic_events")(large_gate_request(env.tenant_id, uuid.uuid4().hex[:8]))
    assert_unavailable(refused, time.monotonic() - started)
    install(env, env.storage, env.services.sealer)
    assert env.queued_texts() == [] and claim_check_blobs(env) == []


def starts(durable: DurableApiServer, tenant_id: str) -> list[dict[str, Any]]:
    return [body for _, body in durable.posts("/orchestrators/") if body.get("tenant_id") == tenant_id]
