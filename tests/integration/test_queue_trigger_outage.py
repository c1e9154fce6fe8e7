"""The connector-events and slack-interactions triggers during an outage. A relay's connector message that
meets one (tables refusing, Key Vault down while the event is sealed) is sent back to its queue wrapped, with
a growing delay, instead of five host retries into poison; the wrapped copy keeps the signed envelope byte
for byte, so once the dependency is back it authenticates and is handed over once. A bad message is still
dead-lettered at once. A queued Slack vote that cannot be opened (Key Vault down) is deferred the same way.
Azurite, the real queue triggers, the local Key Vault."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.functions.queue import QueueMessage
from azure.storage.queue import BinaryBase64DecodePolicy, QueueClient

from devstack.keyvault_server import LocalKeyVault
from gatekeeper.errors import DependencyUnavailable, GatekeeperError
from gatekeeper.ingest import redelivery
from gatekeeper.ingest.deadletter import DeadLetters
from gatekeeper.services import set_services
from gatekeeper.store.keys import build_cipher, tenant_key_name
from gatekeeper.store.tables import StorageAccount
from tests.conftest import ROOT
from tests.integration.test_ingest_sources import connector_identities
from tests.integration.test_outage import install, keyvault_provider
from tests.support.gatekeeper_env import GatekeeperEnv, http_function, make_env, signed_connector
from tests.support.outage import dead_port, storage_connection_string
from tests.support.worker_loop import run_on_worker

pytestmark = pytest.mark.azurite

CONNECTOR_QUEUE = "connector-events"
FIXTURE = sorted((ROOT / "tests/fixtures/connectors").glob("*.json"))[0]


@pytest.fixture
def env(storage_connection_string: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GatekeeperEnv]:
    env = make_env(storage_connection_string, tmp_path / "keys", extra_identities=connector_identities())
    set_services(env.services)
    monkeypatch.setattr(redelivery, "DEFER_FIRST", timedelta(seconds=1))  # the product waits 30 s first
    with contextlib.suppress(ResourceExistsError):  # Bicep creates it in Azure
        connector_queue(env).create_queue()
    yield env
    set_services(None)


def signed_message() -> bytes:
    document = json.loads(FIXTURE.read_text())
    document["payload"] = {**document.get("payload", {}), "test_nonce": uuid.uuid4().hex}  # this test's own
    return signed_connector(document)


def relay(body: bytes) -> None:
    message = QueueMessage(id="c", body=body, insertion_time=datetime.now(UTC), dequeue_count=1)
    http_function("connector_events")(message)


def connector_queue(env: GatekeeperEnv) -> QueueClient:
    return env.storage.queue(CONNECTOR_QUEUE, message_decode_policy=BinaryBase64DecodePolicy())


def deferred_copy(env: GatekeeperEnv, body: bytes, seconds: float = 10.0) -> str | None:
    """This test's wrapped copy once its delay has passed (the queue is shared by the tests: others are left)."""
    queue = connector_queue(env)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for message in queue.receive_messages(max_messages=32, visibility_timeout=1):
            text = message.content.decode()
            if body.decode() in text or json.dumps(body.decode())[1:-1] in text:
                queue.delete_message(message)
                return text
        time.sleep(0.2)
    return None


def letters(env: GatekeeperEnv, body: bytes) -> list[str]:
    return [d.reason for d in DeadLetters(env.storage).list(CONNECTOR_QUEUE) if d.message == body.decode()]


def test_tables_down_defers_the_message_and_the_copy_is_handed_over_once(env, azurite):
    body = signed_message()
    down = storage_connection_string(blob=azurite.blob_port, queue=azurite.queue_port, table=dead_port())
    install(env, StorageAccount(connection_string=down), env.services.sealer)
    relay(body)  # returns normally: nothing goes toward poison
    assert env.queued_texts() == [] and letters(env, body) == []
    install(env, env.storage, env.services.sealer)  # the tables are back
    copy = deferred_copy(env, body)
    assert copy is not None and json.loads(copy)["message"] == body.decode()  # the signed envelope, unchanged
    relay(copy.encode())
    assert len(env.queued_texts()) == 1 and letters(env, body) == []


def test_key_vault_down_while_sealing_defers_and_nothing_is_queued_in_plain_text(env, azurite):
    with LocalKeyVault() as vault:
        vault.create_key(tenant_key_name(env.tenant_id), size=3072, key_ops=["wrapKey", "unwrapKey"])
        warm = build_cipher(env.storage, keyvault_provider(vault))
        warm.seal(env.tenant_id, "warm-up", "p", "r", b"x")
        install(env, env.storage, build_cipher(env.storage, keyvault_provider(vault)))
        body = signed_message()
        vault.outage = "unavailable"
        relay(body)
        assert env.queued_texts() == [] and letters(env, body) == []
        vault.outage = None
        copy = deferred_copy(env, body)
        assert copy is not None
        relay(copy.encode())
        [queued] = env.queued_texts()
        assert "test_nonce" not in queued  # sealed


def test_a_bad_message_is_still_dead_lettered_at_once_not_deferred(env):
    body = json.dumps({"connector": "servicenow", "account": "x", "payload": {"n": uuid.uuid4().hex}}).encode()
    relay(body)
    assert letters(env, body) and "connector" in letters(env, body)[-1]
    assert deferred_copy(env, body, seconds=2.5) is None


# -- slack-interactions: a person's vote queued while Key Vault is down ---------------------------------


def test_a_queued_slack_vote_meeting_a_key_vault_outage_is_deferred_not_retried_into_poison(env, durable):
    from gatekeeper.slack.edge import Interaction, queue_message, read_queue_message

    queue = env.storage.queue("slack-interactions", message_decode_policy=BinaryBase64DecodePolicy())
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()
    interaction = Interaction(
        kind="approve", team_id="T0001", user_id="U0001", instance_id="gate-" + uuid.uuid4().hex[:40]
    )
    with LocalKeyVault() as vault:
        vault.create_key(tenant_key_name(env.tenant_id), size=3072, key_ops=["wrapKey", "unwrapKey"])
        body = queue_message(build_cipher(env.storage, keyvault_provider(vault)), env.tenant_id, interaction)
        install(env, env.storage, build_cipher(env.storage, keyvault_provider(vault)))  # a cold worker
        vault.outage = "unavailable"
        message = QueueMessage(id="s", body=body, insertion_time=datetime.now(UTC), dequeue_count=1)
        run_on_worker(http_function("slack_decisions")(message, client=durable.client_binding))  # no raise
        assert [d for d in DeadLetters(env.storage).list("slack-interactions") if d.message == body.decode()] == []
        vault.outage = None
        copy = None
        deadline = time.monotonic() + 10
        while copy is None and time.monotonic() < deadline:
            for queued in queue.receive_messages(max_messages=32, visibility_timeout=1):
                if json.dumps(body.decode())[1:-1] in queued.content.decode():
                    queue.delete_message(queued)
                    copy = queued.content.decode()
            time.sleep(0.2)
        assert copy is not None
        inner = redelivery.unwrap(copy)
        assert inner is not None and inner.encode() == body  # the sealed vote, byte for byte
        reopened = read_queue_message(build_cipher(env.storage, keyvault_provider(vault)), inner.encode())
        assert reopened == (env.tenant_id, interaction)


# -- connector-events: when the message goes the host's way instead (retries, then poison) ---------------


def relay_at(body: bytes, inserted: datetime) -> None:
    message = QueueMessage(id="c", body=body, insertion_time=inserted, dequeue_count=1)
    http_function("connector_events")(message)


def a_day_ago() -> datetime:
    return datetime.now(UTC) - redelivery.DEFER_LIMIT - timedelta(minutes=5)


def test_an_outage_meeting_a_message_older_than_a_day_is_raised_for_the_host_not_deferred(env, azurite):
    body = signed_message()
    down = storage_connection_string(blob=azurite.blob_port, queue=azurite.queue_port, table=dead_port())
    install(env, StorageAccount(connection_string=down), env.services.sealer)
    with pytest.raises(Exception) as raised:  # whatever the SDK raised: the host retries it
        relay_at(body, a_day_ago())
    assert not isinstance(raised.value, GatekeeperError)
    install(env, env.storage, env.services.sealer)
    assert letters(env, body) == [] and deferred_copy(env, body, seconds=2.5) is None


def test_an_outage_whose_copy_cannot_be_sent_is_raised_for_the_host(env):
    body = signed_message()
    port = dead_port()  # storage wholly down: the registry cannot be read, nor the copy queued
    install(env, StorageAccount(connection_string=storage_connection_string(blob=port, queue=port, table=port)), None)
    with pytest.raises(Exception) as raised:
        relay(body)
    assert not isinstance(raised.value, GatekeeperError)
    install(env, env.storage, env.services.sealer)
    assert letters(env, body) == [] and deferred_copy(env, body, seconds=2.5) is None


def unavailable(_body: bytes) -> None:
    raise DependencyUnavailable("The key service did not answer in time.", retry_after=30)


def test_a_dependency_unavailable_answer_is_deferred_never_dead_lettered(env, monkeypatch):
    runtime = install(env, env.storage, env.services.sealer)
    monkeypatch.setattr(runtime.ingestion, "connector", unavailable)
    body = signed_message()
    relay(body)  # returns: a passing outage, kept for later
    assert letters(env, body) == []
    copy = deferred_copy(env, body)
    assert copy is not None and redelivery.unwrap(copy) == body.decode()


def test_a_dependency_unavailable_answer_after_a_day_is_raised_for_the_host_never_dead_lettered(env, monkeypatch):
    runtime = install(env, env.storage, env.services.sealer)
    monkeypatch.setattr(runtime.ingestion, "connector", unavailable)
    body = signed_message()
    with pytest.raises(DependencyUnavailable):
        relay_at(body, a_day_ago())
    assert letters(env, body) == [] and deferred_copy(env, body, seconds=2.5) is None
