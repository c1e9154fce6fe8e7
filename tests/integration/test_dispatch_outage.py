"""An accepted event whose dispatch meets an outage (the task hub answering 503, Key Vault down while the
dispatcher opens the sealed event) is sent back to its queue with a delay instead of being retried five
times in two and a half minutes into poison, where nothing replays it: the registered queue trigger returns
normally, one invisible copy waits, and once the dependency is back that copy starts exactly one gate. The
queue, tables and blobs are Azurite; the Durable HTTP API and Key Vault are the local servers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.functions.queue import QueueMessage

from devstack.keyvault_server import LocalKeyVault
from gatekeeper.ingest import redelivery
from gatekeeper.services import set_services
from gatekeeper.store.keys import build_cipher, tenant_key_name
from tests.conftest import ROOT
from tests.integration.test_outage import install, keyvault_provider
from tests.support.gatekeeper_env import GatekeeperEnv, github_request, http_function, make_env
from tests.support.worker_loop import run_on_worker

pytestmark = pytest.mark.azurite

DPR = json.loads((ROOT / "tests/fixtures/github/deployment_protection_rule.requested.json").read_text())


@pytest.fixture
def env(storage_connection_string: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GatekeeperEnv]:
    env = make_env(storage_connection_string, tmp_path / "keys")
    set_services(env.services)
    monkeypatch.setattr(redelivery, "DEFER_FIRST", timedelta(seconds=1))  # the product waits 30 s first
    yield env
    set_services(None)


def accepted(env: GatekeeperEnv) -> str:
    response = http_function("github_webhook")(github_request("deployment_protection_rule", DPR))
    assert response.status_code == 202, response.get_body()
    [text] = env.drain()
    return text


def trigger(text: str, durable: Any, inserted: datetime | None = None) -> None:
    """As the worker hands a message over (its binding converter builds this QueueMessage, with the times)."""
    message = QueueMessage(id="m", body=text.encode(), insertion_time=inserted or datetime.now(UTC), dequeue_count=1)
    run_on_worker(http_function("dispatch_pipeline_events")(message, client=durable.client_binding))


def waiting_copies(env: GatekeeperEnv) -> int:
    """Messages in the queue, visible or not (a deferred copy is invisible until its delay has passed)."""
    return int(env.queue().get_queue_properties().approximate_message_count)


def after_the_delay(env: GatekeeperEnv, seconds: float = 10.0) -> list[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        texts = env.drain()
        if texts:
            return texts
        time.sleep(0.2)
    return []


def starts(durable: Any, tenant_id: str) -> list[dict[str, Any]]:
    """Starts the task hub accepted (a refused start is recorded too, with its 503)."""
    accepted = [r for r in durable.requests_to("/orchestrators/", "POST") if r.status == 202]
    bodies = [json.loads(json.loads(r.body)) for r in accepted]  # the SDK sends the input JSON inside JSON
    return [body for body in bodies if body.get("tenant_id") == tenant_id]


def test_a_task_hub_outage_defers_the_event_and_the_copy_starts_one_gate_when_it_is_back(env, durable):
    text = accepted(env)
    durable.fail_next(100, 503, path_contains="/orchestrators/")
    trigger(text, durable)  # returns normally: the host completes the original, nothing moves toward poison
    assert starts(durable, env.tenant_id) == [] and waiting_copies(env) == 1
    assert env.queued_texts() == [], "the copy waits invisibly"
    durable.clear()  # the task hub is back
    [copy] = after_the_delay(env)
    assert json.loads(copy)["deferred"]["n"] == 1 and json.loads(copy)["sealed"] == json.loads(text)["sealed"]
    trigger(copy, durable)
    assert len(starts(durable, env.tenant_id)) == 1
    assert waiting_copies(env) == 0


def test_every_failed_attempt_waits_longer_and_a_day_old_event_goes_the_hosts_way(env, durable):
    text = accepted(env)
    durable.fail_next(100, 503, path_contains="/orchestrators/")
    trigger(text, durable)
    [copy] = after_the_delay(env)
    trigger(copy, durable, inserted=datetime.now(UTC))  # fails again: a second, longer deferral
    assert waiting_copies(env) == 1
    [again] = after_the_delay(env)
    assert json.loads(again)["deferred"]["n"] == 2
    stale = json.dumps({**json.loads(again), "deferred": {"since": "2000-01-01T00:00:00+00:00", "n": 40}})
    with pytest.raises(Exception):  # noqa: B017 - whatever the start raised: the host retries, then poison
        trigger(stale, durable)
    assert waiting_copies(env) == 0


@pytest.fixture
def local_keyvault() -> Iterator[LocalKeyVault]:
    with LocalKeyVault() as vault:
        yield vault


def test_key_vault_down_while_the_dispatcher_opens_the_event_defers_it_without_plaintext(env, local_keyvault, durable):
    local_keyvault.create_key(tenant_key_name(env.tenant_id), size=3072, key_ops=["wrapKey", "unwrapKey"])
    install(env, env.storage, build_cipher(env.storage, keyvault_provider(local_keyvault)))
    text = accepted(env)  # sealed under a data key wrapped by the tenant's Key Vault key
    install(env, env.storage, build_cipher(env.storage, keyvault_provider(local_keyvault)))  # a cold worker
    local_keyvault.outage = "unavailable"
    trigger(text, durable)
    assert starts(durable, env.tenant_id) == [] and waiting_copies(env) == 1
    local_keyvault.outage = None
    [copy] = after_the_delay(env)
    assert "deploy" not in copy and json.loads(copy)["sealed"] == json.loads(text)["sealed"]  # still sealed
    trigger(copy, durable)
    assert len(starts(durable, env.tenant_id)) == 1


def test_a_copy_meeting_its_own_earlier_attempts_claim_waits_out_the_claim_instead_of_going_to_poison(env, durable):
    """The worker that claimed the event died mid-start (or failed and could not hand the claim back), and a
    copy of its message comes back while the claim holds. It used to raise for the host, whose retries (every
    30 s, five times) poisoned it well within the five-minute lease, and nothing replays poison: an accepted
    event lost. Now the copy is sent back invisible until the claim has expired; then it reclaims and starts
    the gate once."""
    from gatekeeper.ingest.dispatcher import CLAIM_LEASE
    from gatekeeper.ingest.queue import decode_message
    from gatekeeper.store.tables import TablePurpose
    from tests.integration.test_dispatch import DyingGateway, WorkerDied

    text = accepted(env)
    queued = decode_message(env.services.sealer, text)
    with pytest.raises(WorkerDied):
        env.services.dispatcher(DyingGateway(durable, after_start=False)).dispatch(queued.event, queued.event_id)
    trigger(text, durable)  # returns normally: no host retry, no poison
    assert waiting_copies(env) == 1 and starts(durable, env.tenant_id) == []
    assert after_the_delay(env, seconds=3) == [], "invisible past the first deferral (1 s here): until the lease"
    events = env.storage.tenant_table(env.tenant_id, TablePurpose.EVENTS)
    row = events.get_entity("event", queued.event.key_hash)
    assert row["state"] == "starting" and row["lease_until"] > datetime.now(UTC) + CLAIM_LEASE / 2
    expired = {"PartitionKey": "event", "RowKey": queued.event.key_hash, "lease_until": datetime.now(UTC)}
    events.update_entity(expired)  # the lease has run out by the time the copy is visible again
    trigger(text, durable)  # the copy, as it comes back
    assert len(starts(durable, env.tenant_id)) == 1


def test_a_failed_dispatch_whose_copy_cannot_be_sent_is_raised_for_the_host_with_the_claim_handed_back(
    env, durable, azurite
):
    from gatekeeper.store.tables import StorageAccount, TablePurpose
    from tests.support.outage import dead_port, storage_connection_string

    text = accepted(env)
    down = storage_connection_string(blob=azurite.blob_port, queue=dead_port(), table=azurite.table_port)
    install(env, StorageAccount(connection_string=down), env.services.sealer)
    durable.fail_next(100, 503, path_contains="/orchestrators/")
    with pytest.raises(Exception):  # noqa: B017 - the start's own error: the host retries, then poison
        trigger(text, durable)
    assert waiting_copies(env) == 0 and starts(durable, env.tenant_id) == []
    rows = env.storage.tenant_table(env.tenant_id, TablePurpose.EVENTS).query_entities("PartitionKey eq 'event'")
    assert [row["state"] for row in rows] == ["received"]  # the claim handed back for the host's retry
