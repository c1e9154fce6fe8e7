"""A connector tenant with a secret (issue 21): its messages must be signed, and a forged one is dead-lettered.

No test registered a connector secret, so a mutant that switched the connector signature check off passed the
suite. The tenant here has one; messages go through the real queue trigger into Azurite.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import azure.functions as func
import pytest
from gatekeeper.runtime import set_runtime

from gatekeeper.events.identity import source_identities
from gatekeeper.events.model import EventSource
from gatekeeper.ingest.deadletter import DeadLetters
from gatekeeper.ingest.queue import decode_message
from gatekeeper.tenancy.model import SecretPurpose
from tests.conftest import ROOT
from tests.support.gatekeeper_env import http_function, make_env

SAMPLE = json.loads((ROOT / "tests/fixtures/connectors/halopsa.ticket-approved.json").read_text())
CONNECTOR_SECRET = "connector-relay-secret-for-tests"
OLD_SECRET = "connector-relay-secret-rotated-out"


def sign(document: dict, secret: str) -> dict:
    """What a connector relay does today: HMAC-SHA256 of the payload as compact, key-sorted JSON, GitHub-style.

    (If the signature comes to cover the whole envelope, only this helper changes.)
    """
    canonical = json.dumps(document["payload"], sort_keys=True, separators=(",", ":")).encode()
    return dict(document, signature="sha256=" + hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest())


@pytest.fixture
def env(storage_connection_string, tmp_path):
    identities = tuple(source_identities(EventSource(SAMPLE["connector"]), SAMPLE))
    env = make_env(storage_connection_string, tmp_path / "keys", extra_identities=identities)
    registry = env.runtime.registry
    record = registry.get(env.tenant_id)
    assert record is not None
    secrets = dict(record.secrets)
    secrets[SecretPurpose.CONNECTOR] = ("env:GK_CONNECTOR_OLD", "env:GK_CONNECTOR")
    registry.import_records([record.model_copy(update={"secrets": secrets})])
    env.runtime.environ["GK_CONNECTOR"] = CONNECTOR_SECRET  # type: ignore[index]
    env.runtime.environ["GK_CONNECTOR_OLD"] = OLD_SECRET  # type: ignore[index]
    set_runtime(env.runtime)
    yield env
    set_runtime(None)


def deliver(document: dict) -> bytes:
    body = json.dumps(document).encode()
    http_function("connector_events")(func.QueueMessage(id="m", body=body))
    return body


def dead_letter_reason(env, body: bytes) -> str | None:
    letters = [d for d in DeadLetters(env.storage).list("connector-events") if d.message == body.decode()]
    return letters[-1].reason if letters else None


def test_a_message_signed_with_the_tenant_secret_is_accepted(env):
    deliver(sign(SAMPLE, CONNECTOR_SECRET))
    [text] = env.queued_texts()
    event = decode_message(env.runtime.sealer, text).event
    assert event.tenant_id == env.tenant_id and event.source.value == SAMPLE["connector"]


def test_the_rotated_out_secret_still_signs_during_rotation(env):
    deliver(sign(SAMPLE, OLD_SECRET))
    assert len(env.queued_texts()) == 1


@pytest.mark.parametrize(
    "forge",
    [
        lambda d: sign(d, "attacker-guessed-secret"),  # signed with another secret
        lambda d: {k: v for k, v in sign(d, CONNECTOR_SECRET).items() if k != "signature"},  # unsigned
        lambda d: dict(sign(d, CONNECTOR_SECRET), signature=""),  # empty signature
        lambda d: dict(sign(d, CONNECTOR_SECRET), signature=sign(d, CONNECTOR_SECRET)["signature"][:-8]),  # cut
        lambda d: dict(
            sign(d, CONNECTOR_SECRET), payload=dict(d["payload"], injected="approved")
        ),  # payload changed after signing
    ],
    ids=["other-secret", "unsigned", "empty", "truncated", "payload-changed"],
)
def test_a_forged_connector_message_is_dead_lettered_and_not_queued(env, forge):
    body = deliver(forge(SAMPLE))
    assert env.queued_texts() == []
    reason = dead_letter_reason(env, body)
    assert reason is not None and "401" in reason, reason
