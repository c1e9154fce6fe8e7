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

from gatekeeper.events.identity import source_identities
from gatekeeper.events.model import EventSource
from gatekeeper.ingest.deadletter import DeadLetters
from gatekeeper.ingest.queue import decode_message
from gatekeeper.services import set_services
from gatekeeper.tenancy.model import SecretPurpose
from tests.conftest import ROOT
from tests.support.gatekeeper_env import http_function, make_env

SAMPLE = json.loads((ROOT / "tests/fixtures/connectors/halopsa.ticket-approved.json").read_text())
CONNECTOR_SECRET = "connector-relay-secret-for-tests"
OLD_SECRET = "connector-relay-secret-rotated-out"


def sign(document: dict, secret: str) -> dict:
    """What a connector relay does: HMAC-SHA256 of the whole envelope but `signature` (connector, account,
    receivedAt, payload) as compact, key-sorted, ASCII-escaped JSON, GitHub-style `sha256=<hex>`.

    Written out here rather than calling the product's `sign_envelope`, so a change to what the product signs
    (a member left out, another serialisation) fails these tests instead of agreeing with itself.
    """
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    canonical = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return dict(unsigned, signature="sha256=" + hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest())


@pytest.fixture
def env(storage_connection_string, tmp_path):
    identities = tuple(source_identities(EventSource(SAMPLE["connector"]), SAMPLE))
    env = make_env(
        storage_connection_string,
        tmp_path / "keys",
        extra_identities=identities,
        extra_environ={"GK_CONNECTOR": CONNECTOR_SECRET, "GK_CONNECTOR_OLD": OLD_SECRET},
    )
    registry = env.services.registry
    record = registry.get(env.tenant_id)
    assert record is not None
    secrets = dict(record.secrets)
    secrets[SecretPurpose.CONNECTOR] = ("env:GK_CONNECTOR_OLD", "env:GK_CONNECTOR")
    registry.import_records([record.model_copy(update={"secrets": secrets})])
    set_services(env.services)
    yield env
    set_services(None)


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
    event = decode_message(env.services.sealer, text).event
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
        lambda d: dict(sign(d, CONNECTOR_SECRET), receivedAt="2031-01-01T00:00:00Z"),  # envelope member changed
        lambda d: dict(sign(d, CONNECTOR_SECRET), extra="added"),  # a member added after signing
        lambda d: dict(sign(d, CONNECTOR_SECRET), signature=sign(d, CONNECTOR_SECRET)["signature"].upper()),
        lambda d: dict(sign(d, CONNECTOR_SECRET), signature=7),  # not a string
    ],
    ids=[
        "other-secret",
        "unsigned",
        "empty",
        "truncated",
        "payload-changed",
        "received-at-changed",
        "member-added",
        "upper-case",
        "not-a-string",
    ],
)
def test_a_forged_connector_message_is_dead_lettered_and_not_queued(env, forge):
    body = deliver(forge(SAMPLE))
    assert env.queued_texts() == []
    reason = dead_letter_reason(env, body)
    assert reason is not None and "401" in reason, reason
