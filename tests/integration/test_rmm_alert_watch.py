"""An RMM alert on a device a running post-deploy watch names (`rmm_devices`) counts against that watch: the
relay's connector message and then the dispatcher trigger as the host runs them, the real
DurableOrchestrationClient against the local Durable HTTP API, state in Azurite; audited with its source."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest

from devstack.durable_api import DurableApiServer
from gatekeeper.audit.log import AuditLog
from gatekeeper.policy.store import PolicyStore
from gatekeeper.rollback.store import Deployment, WatchRecord, WatchStore
from gatekeeper.services import set_services
from tests.conftest import ROOT
from tests.integration.test_dispatch import trigger
from tests.support.gatekeeper_env import http_function, make_env, signed_connector

pytestmark = pytest.mark.azurite

TRIGGERED = json.loads((ROOT / "tests/fixtures/connectors/ninjarmm.condition-triggered.json").read_text())
DEVICE = TRIGGERED["payload"]["deviceId"]


def policy(devices: list[str]) -> dict[str, Any]:
    watch = {"environments": ["production"], "probes": [{"name": "health", "url": "https://shop.contoso.com/h"}]}
    return {"version": 1, "watch": [{**watch, "rmm_devices": devices}]}


@pytest.fixture
def env(azurite, tmp_path) -> Iterator[dict[str, Any]]:
    runtime = make_env(azurite.connection_string, tmp_path / "keys", extra_identities=("ninjarmm:org:42",))
    set_services(runtime.services)
    watch_id = "watch-" + uuid.uuid4().hex[:40]
    now = datetime.now(UTC)
    WatchStore(runtime.storage, runtime.tenant_id, runtime.services.sealer).save(
        WatchRecord(
            instance_id=watch_id,
            tenant_id=runtime.tenant_id,
            deployment=Deployment(source="github", repository="contoso/shop", environment="production"),
            started_at=now,
            updated_at=now,
        )
    )
    with DurableApiServer() as durable:
        durable.instances[watch_id] = {"name": "post_deploy_watch", "runtimeStatus": "Running"}
        try:
            yield {"runtime": runtime, "watch": watch_id, "durable": durable}
        finally:
            set_services(None)


def relay(env: dict[str, Any], document: dict[str, Any]) -> None:
    http_function("connector_events")(func.QueueMessage(id="m", body=signed_connector(document)))
    for text in env["runtime"].drain():
        trigger(text.encode(), env["durable"])


def health_checks(env: dict[str, Any]) -> list[Any]:
    services = env["runtime"].services
    log: AuditLog = services.audit_for(env["runtime"].tenant_id)
    return [r for r in log.records() if r.kind == "health_check" and r.instance_id == env["watch"]]


def test_an_rmm_alert_on_a_watched_device_wakes_the_watch_once_and_is_audited(env):
    PolicyStore(env["runtime"].storage, env["runtime"].tenant_id).publish(
        json.dumps(policy([f"ninjarmm:device:{DEVICE}"])), published_by="tests"
    )
    relay(env, TRIGGERED)
    relay(env, TRIGGERED)  # redelivered: deduped, no second wake
    events = env["durable"].instances[env["watch"]].get("events", [])
    assert [name for name, _ in events] == ["watch-wake-0"]
    [entry] = health_checks(env)
    assert entry.actor == "ninjarmm" and entry.data["source"] == "ninjarmm"
    assert entry.data["targets"] == [f"ninjarmm:device:{DEVICE}"] and entry.data["result"] == "fail"
    watch = WatchStore(env["runtime"].storage, env["runtime"].tenant_id, env["runtime"].services.sealer).load(
        env["watch"]
    )
    assert watch is not None and watch.wakes == 1


def test_an_alert_on_a_device_no_watch_names_wakes_nothing(env):
    PolicyStore(env["runtime"].storage, env["runtime"].tenant_id).publish(
        json.dumps(policy(["ninjarmm:device:999999"])), published_by="tests"
    )
    relay(env, TRIGGERED)
    assert env["durable"].instances[env["watch"]].get("events", []) == []
    assert health_checks(env) == []
