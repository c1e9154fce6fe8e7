"""An RMM alert whose delivery to the watches fails once (functions/queues.py `_rmm_alert`), then the message's
retry: a product bug found by the third planted-bug sweep (docs/mutation.md, docs/security.md). The
dispatcher had moved the business key to `recorded` before the delivery failed, so the retry was dispatched as a
`duplicate` and the alert never reached the watch; the key is now handed back (`release_recorded`). The rig is
tests/integration/test_rmm_alert_watch.py's."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ServiceResponseError

from gatekeeper.policy.store import PolicyStore
from tests.integration.test_dispatch import trigger
from tests.integration.test_rmm_alert_watch import DEVICE, TRIGGERED, env, health_checks, policy  # noqa: F401
from tests.support.gatekeeper_env import http_function, signed_connector

pytestmark = pytest.mark.azurite


def test_an_rmm_alert_whose_delivery_failed_once_reaches_the_watch_on_the_retry(env: dict[str, Any]):
    runtime = env["runtime"]
    services = runtime.services
    PolicyStore(runtime.storage, runtime.tenant_id).publish(
        json.dumps(policy([f"ninjarmm:device:{DEVICE}"])), published_by="tests"
    )
    real = type(services).policy_for
    failures = [ServiceResponseError("storage connection reset")]

    def flaky(tenant_id: str) -> Any:  # the storage blip: the first read of the policy fails
        if failures:
            raise failures.pop()
        return real(services, tenant_id)

    http_function("connector_events")(func.QueueMessage(id="m", body=signed_connector(TRIGGERED)))
    [text] = runtime.drain()
    services.__dict__["policy_for"] = flaky
    try:
        trigger(text.encode(), env["durable"])  # the failure is deferred (a delayed copy) or left to the host
    finally:
        services.__dict__.pop("policy_for", None)
    assert failures == []  # the delivery did fail after the dispatcher recorded the event
    trigger(text.encode(), env["durable"])  # the host's retry of the same message
    events = env["durable"].instances[env["watch"]].get("events", [])
    assert [name for name, _ in events] == ["watch-wake-0"]
    assert len(health_checks(env)) == 1
