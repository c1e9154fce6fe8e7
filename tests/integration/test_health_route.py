"""`GET /api/health` through the registered function, against Azurite, the local Key Vault server and the local
Durable HTTP API: 200 when everything answers; 503 naming the dependency, within the deadline, when storage,
Key Vault or the task hub is down or hangs; never tenant data, secrets or exception text; never cached."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest

from devstack.durable_api import DurableApiServer
from devstack.keyvault_server import LocalKeyVault
from gatekeeper.health.probes import KeyVaultProbe, StorageBlobsProbe, StorageQueuesProbe, StorageTablesProbe
from gatekeeper.ingest.queue import LARGE_EVENTS_CONTAINER
from gatekeeper.services import Services, build_services, using_services
from gatekeeper.settings import Settings
from gatekeeper.store.tables import StorageAccount
from tests.support.gatekeeper_env import http_function
from tests.support.worker_loop import run_on_worker

pytestmark = pytest.mark.azurite

CHECKPOINT_KEY = "audit-checkpoint"
SECRET = "do-not-leak-" + uuid.uuid4().hex
TENANT = "northwind" + uuid.uuid4().hex[:6]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unreachable_storage() -> StorageAccount:
    port = _closed_port()
    key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    return StorageAccount(
        connection_string=(
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};"
            f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
            f"QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )
    )


class Stack:
    def __init__(self, connection: str, vault: LocalKeyVault, durable: DurableApiServer) -> None:
        self.connection, self.vault, self.durable = connection, vault, durable

    def services(self, storage: StorageAccount | None = None, **environ: str) -> Services:
        storage = storage or StorageAccount(connection_string=self.connection)
        settings = Settings.from_environ(
            {
                "GATEKEEPER_STORAGE_CONNECTION": self.connection,
                "GATEKEEPER_KEY_MODE": "keyvault",
                "GATEKEEPER_KEY_VAULT_URL": self.vault.vault_url,
                "GATEKEEPER_DATA_BOUNDARY": "EU",
                "GK_SECRET": SECRET,
                **environ,
            }
        )
        services = build_services(settings, storage=storage, credential=self.vault.credential())
        services.health_probes = (  # the production probes, with the local vault's TLS trust
            StorageTablesProbe(storage),
            StorageQueuesProbe(storage, services.queue_name),
            StorageBlobsProbe(storage, LARGE_EVENTS_CONTAINER),
            KeyVaultProbe(self.vault.vault_url, self.vault.credential, CHECKPOINT_KEY, **self.vault.client_kwargs()),
        )
        return services

    def get(self, services: Services, binding: str | None = None) -> tuple[func.HttpResponse, dict[str, Any], float]:
        request = func.HttpRequest("GET", "http://localhost/api/health", headers={}, body=b"")
        binding = binding or self.durable.client_binding
        started = time.monotonic()
        with using_services(services):
            response = run_on_worker(http_function("health")(req=request, client=binding), timeout=30)
        elapsed = time.monotonic() - started
        return response, json.loads(response.get_body()), elapsed


@pytest.fixture
def stack(storage_connection_string) -> Iterator[Stack]:
    with LocalKeyVault() as vault, DurableApiServer() as durable:
        vault.create_key(CHECKPOINT_KEY, size=2048, key_ops=["sign", "verify"])
        yield Stack(storage_connection_string, vault, durable)


def _no_leaks(response: func.HttpResponse, body: dict[str, Any]) -> None:
    text = response.get_body().decode()
    assert SECRET not in text and TENANT not in text and "Traceback" not in text and "127.0.0.1" not in text
    assert response.headers.get("Cache-Control") == "no-store"
    assert response.mimetype == "application/json"
    assert set(body) <= {"status", "dataBoundary", "dependencies", "bootstrap"}


def test_everything_up_is_200_with_each_dependency_and_the_boundary(stack):
    response, body, _ = stack.get(stack.services())
    assert response.status_code == 200, body
    assert body["status"] == "ok" and body["dataBoundary"] == "EU"
    assert set(body["dependencies"]) == {"storage.tables", "storage.queues", "storage.blobs", "keyVault", "taskHub"}
    assert all(d["status"] == "ok" for d in body["dependencies"].values())
    assert body["bootstrap"] == {"status": "not-configured"}
    assert stack.vault.count("get", CHECKPOINT_KEY) >= 1  # the real KeyClient reached the vault
    assert "Retry-After" not in response.headers
    _no_leaks(response, body)


def test_a_flood_of_anonymous_calls_costs_the_dependencies_one_check_per_interval(stack):
    """The route is anonymous: without a bound, any caller sets the pace of Key Vault reads (throttled per vault,
    a budget the data path's unwraps share), storage and task hub reads. Answers within the interval reuse the
    last check; after it, the next call checks again."""
    services = stack.services()
    answers = [stack.get(services) for _ in range(20)]
    assert all(response.status_code == 200 for response, _, _ in answers)
    assert stack.vault.count("get", CHECKPOINT_KEY) == 1
    assert len(stack.durable.requests_to("/instances/", "GET")) == 1
    services.health_cache.expire()
    stack.get(services)
    assert stack.vault.count("get", CHECKPOINT_KEY) == 2


def test_concurrent_calls_share_one_check_in_progress():
    import asyncio

    from gatekeeper.health.report import HealthCache

    checks: list[int] = []

    async def check() -> Any:
        checks.append(1)
        await asyncio.sleep(0.05)
        return "the report"

    async def burst() -> list[Any]:
        cache = HealthCache(ttl=5.0)
        return await asyncio.gather(*(cache.report(check) for _ in range(25)))

    assert asyncio.run(burst()) == ["the report"] * 25 and len(checks) == 1


def test_storage_unreachable_is_503_naming_tables_and_queues(stack):
    response, body, elapsed = stack.get(stack.services(storage=_unreachable_storage()))
    assert response.status_code == 503 and response.headers.get("Retry-After")
    deps = body["dependencies"]
    assert deps["storage.tables"]["status"] == "unavailable" and deps["storage.queues"]["status"] == "unavailable"
    assert deps["storage.tables"]["reason"] in ("unreachable", "timeout")
    assert deps["keyVault"]["status"] == "ok" and deps["taskHub"]["status"] == "ok"
    assert elapsed < 3.0
    _no_leaks(response, body)


def test_blob_storage_alone_unreachable_is_503_naming_blobs(stack):
    """Tables and queues answer, the blob service does not (a missing private endpoint or firewall rule for
    blobs): large events cannot be accepted and checkpoints not archived, so the route says so."""
    from devstack.azurite import DEV_ACCOUNT, DEV_KEY

    healthy = StorageAccount(connection_string=stack.connection)
    blobs_down = StorageAccount(
        connection_string=(
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"TableEndpoint={healthy.tables.url.rstrip('/')};"
            f"QueueEndpoint={healthy.queue('x').url.rsplit('/', 1)[0]};"
            f"BlobEndpoint=http://127.0.0.1:{_closed_port()}/{DEV_ACCOUNT};"
        )
    )
    response, body, elapsed = stack.get(stack.services(storage=blobs_down))
    assert response.status_code == 503 and response.headers.get("Retry-After")
    deps = body["dependencies"]
    assert deps["storage.blobs"]["status"] == "unavailable" and deps["storage.blobs"]["reason"] in (
        "unreachable",
        "timeout",
    )
    assert deps["storage.tables"]["status"] == "ok" and deps["storage.queues"]["status"] == "ok"
    assert elapsed < 3.0
    _no_leaks(response, body)


@pytest.mark.parametrize(
    ("outage", "reason"), [("forbidden", "refused"), ("unavailable", "error"), ("hang", "timeout")]
)
def test_a_key_vault_outage_is_503_naming_key_vault_quickly(stack, outage, reason):
    stack.vault.outage = outage
    try:
        response, body, elapsed = stack.get(stack.services())
    finally:
        stack.vault.outage = None
    assert response.status_code == 503
    assert body["dependencies"]["keyVault"] == {
        **body["dependencies"]["keyVault"],
        "status": "unavailable",
        "reason": reason,
    }
    assert body["dependencies"]["storage.tables"]["status"] == "ok"
    assert elapsed < 3.0  # a vault that never answers still gets an answer from us within the deadline
    _no_leaks(response, body)


def test_a_stopped_key_vault_is_unreachable(stack):
    services = stack.services()
    stack.vault.stop()
    response, body, elapsed = stack.get(services)
    assert response.status_code == 503
    assert body["dependencies"]["keyVault"]["reason"] in ("unreachable", "timeout")
    assert elapsed < 3.0


def test_a_missing_checkpoint_key_is_named_missing(stack):
    services = stack.services()
    services.health_probes = (
        *services.health_probes[:3],
        KeyVaultProbe(stack.vault.vault_url, stack.vault.credential, "no-such-key", **stack.vault.client_kwargs()),
    )
    response, body, _ = stack.get(services)
    assert response.status_code == 503 and body["dependencies"]["keyVault"]["reason"] == "missing"


def test_a_stopped_task_hub_is_503_naming_it(stack):
    services = stack.services()
    binding = stack.durable.client_binding
    stack.durable.stop()
    response, body, elapsed = stack.get(services, binding)
    assert response.status_code == 503
    assert body["dependencies"]["taskHub"]["status"] == "unavailable"
    assert body["dependencies"]["taskHub"]["reason"] == "unreachable"
    assert body["dependencies"]["storage.tables"]["status"] == "ok"
    assert elapsed < 3.0
    _no_leaks(response, body)


def test_a_hanging_task_hub_is_503_within_the_deadline(stack):
    stack.durable.delay("/instances/", 8.0)
    response, body, elapsed = stack.get(stack.services())
    assert response.status_code == 503 and body["dependencies"]["taskHub"]["reason"] == "timeout"
    assert elapsed < 3.0


def test_refused_bootstrap_settings_are_503_naming_the_setting_without_the_value(stack):
    bad_mail = "ops-at-" + TENANT
    services = stack.services(
        GATEKEEPER_BOOTSTRAP_TENANT_ID=TENANT,
        GATEKEEPER_BOOTSTRAP_TENANT_NAME="Northwind",
        GATEKEEPER_BOOTSTRAP_TENANT_ENTRA_ID=str(uuid.uuid4()),
        GATEKEEPER_BOOTSTRAP_TENANT_OPERATORS=bad_mail,
    )
    response, body, _ = stack.get(services)
    assert response.status_code == 503
    assert body["bootstrap"]["status"] == "refused"
    assert body["bootstrap"]["setting"] == "GATEKEEPER_BOOTSTRAP_TENANT_OPERATORS"
    assert all(d["status"] == "ok" for d in body["dependencies"].values())
    _no_leaks(response, body)


def test_a_pending_bootstrap_is_503_until_it_is_done(stack):
    services = stack.services(
        GATEKEEPER_BOOTSTRAP_TENANT_ID=TENANT,
        GATEKEEPER_BOOTSTRAP_TENANT_NAME="Northwind",
        GATEKEEPER_BOOTSTRAP_TENANT_ENTRA_ID=str(uuid.uuid4()),
        GATEKEEPER_BOOTSTRAP_TENANT_OPERATORS="ops@northwind.example",
    )
    response, body, _ = stack.get(services)
    assert response.status_code == 503 and body["bootstrap"]["status"] == "pending"
    _no_leaks(response, body)


def test_settings_that_do_not_build_services_are_503_without_internals(stack):
    services = stack.services()
    del services.health_probes  # rebuilt from settings: key mode keyvault without a vault URL
    services.settings = Settings.from_environ({"GATEKEEPER_KEY_MODE": "keyvault"})
    response, _, _ = stack.get(services)
    assert response.status_code == 503 and response.headers.get("Cache-Control") == "no-store"
    assert "GATEKEEPER_KEY_VAULT_URL" not in response.get_body().decode()


def test_the_production_probes_cover_tables_queues_blobs_and_the_keys(stack, tmp_path):
    settings = Settings.from_environ({"GATEKEEPER_KEY_MODE": "local", "GATEKEEPER_LOCAL_KEY_DIR": str(tmp_path)})
    services = build_services(settings, storage=StorageAccount(connection_string=stack.connection))
    names = [probe.name for probe in services.health_probes]
    assert names == ["storage.tables", "storage.queues", "storage.blobs", "keyVault"]
    response, body, _ = stack.get(services)
    assert response.status_code == 200 and body["dependencies"]["storage.blobs"]["status"] == "ok", body
