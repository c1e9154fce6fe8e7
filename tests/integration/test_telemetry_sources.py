"""The events the alert rules page on, from the code that emits them: a dead letter (Azurite, the real table
client) is a `DeadLettered` event with a bounded cause and never the free-text reason; a Key Vault unwrap
that fails (the local Key Vault, the real SDK) is a `KeyUnwrapFailed` event naming the tenant and the kind."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from gatekeeper import telemetry
from gatekeeper.ingest.deadletter import DeadLetters, dead_letter_cause
from gatekeeper.store.key_errors import KeyProviderError
from gatekeeper.store.keyring import DataKeyRing
from gatekeeper.store.keys import KeyVaultKeyProvider, tenant_key_name
from tests.keyvault_fixtures import (  # noqa: F401
    keyvault_provider,
    keyvault_tenant,
    local_keyvault,
    storage,
)

pytestmark = pytest.mark.azurite


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    found = [telemetry.parse(r.getMessage()) for r in caplog.records if r.name == telemetry.LOGGER_NAME]
    return [e for e in found if e is not None and e["name"] == name]


@pytest.mark.parametrize(
    ("reason", "dequeue_count", "cause"),
    [
        ("moved to poison after 5 attempts", 5, "poison"),
        ("undecodable: Expecting value: line 1 column 1", None, "undecodable"),
        ("integrity: sealed event does not open (tag mismatch)", None, "integrity"),
        ("422 invalid-payload: field 'ticket.id' must be a string", None, "invalid-payload"),
        ("401 unknown-credential: the signature sha256=deadbeef did not verify", None, "unknown-credential"),
        ("something else entirely, token=abc123", None, "other"),
        ("500 Some Free Text With Spaces: x", None, "other"),
    ],
)
def test_dead_letter_causes_are_bounded_names(reason: str, dequeue_count: int | None, cause: str):
    assert dead_letter_cause(reason, dequeue_count) == cause


def test_a_dead_letter_is_a_dead_lettered_event_without_its_reason(storage, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER_NAME)
    letters = DeadLetters(storage)
    letters.record("connector-events", '{"secret": "x"}', "422 invalid-payload: ticket 'password=hunter2' is bad")
    letters.record("pipeline-events", "gk1.abc", "moved to poison after 5 attempts", dequeue_count=5)
    found = events(caplog, "DeadLettered")
    assert found == [
        {"name": "DeadLettered", "queue": "connector-events", "cause": "invalid-payload", "dequeue_count": None},
        {"name": "DeadLettered", "queue": "pipeline-events", "cause": "poison", "dequeue_count": 5},
    ]
    assert "hunter2" not in caplog.text and "secret" not in " ".join(map(str, found))
    assert len(letters.list()) >= 2, "the letters themselves are kept"


def test_a_failed_unwrap_is_a_key_unwrap_failed_event(
    storage,
    keyvault_provider: KeyVaultKeyProvider,
    keyvault_tenant,
    local_keyvault,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER_NAME)
    tenant = keyvault_tenant()
    ring = DataKeyRing(storage, keyvault_provider)
    data_key_id, _ = ring.active_key(tenant)  # created and wrapped (public key only: no unwrap yet)
    assert events(caplog, "KeyUnwrapFailed") == []
    assert len(ring.data_key(tenant, data_key_id)) == 32  # a working unwrap emits nothing
    assert events(caplog, "KeyUnwrapFailed") == []

    local_keyvault.set_enabled(tenant_key_name(tenant), False)  # the customer disables the key
    with pytest.raises(KeyProviderError) as raised:
        ring.data_key(tenant, data_key_id)
    (event,) = events(caplog, "KeyUnwrapFailed")
    # Key Vault answers 403 for an operation on a disabled key: the product classifies it "unavailable"
    assert event == {"name": "KeyUnwrapFailed", "tenant": tenant, "kind": "unavailable", "status_code": 403}
    assert getattr(raised.value.__cause__, "status_code", None) == 403
