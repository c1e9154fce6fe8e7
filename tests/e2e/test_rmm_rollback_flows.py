"""The tenant's RMM around a real post-deploy watch, end to end through the local runner (the fixtures of
tests/e2e/test_rollback_flows.py: the real orchestrator, activities and SDK replay, Azurite, the local GitHub
for the rollback) with the local NinjaOne: maintenance on for the watch and off at its end; a NinjaOne alert on
a watched device (its webhook parsed by the real connector) rolls the deployment back, and after the successful
rollback the alert is reset; an RMM outage is retried, audited and changes nothing in the outcome."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from devstack.ninjaone import NinjaOneServer
from gatekeeper.events.connectors import parse_connector_message
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.integrations.rmm import DeviceManagers
from gatekeeper.policy.store import PolicyStore
from gatekeeper.rollback.alerts import connector_alert
from gatekeeper.tenancy.rmm_settings import RmmSettings
from tests.conftest import ROOT
from tests.e2e.test_rollback_flows import Env, app_key, env, shared, watch_entry  # noqa: F401 - the fixtures

pytestmark = pytest.mark.azurite

TRIGGERED = json.loads((ROOT / "tests/fixtures/connectors/ninjarmm.condition-triggered.json").read_text())
DEVICE = str(TRIGGERED["payload"]["deviceId"])
ALERT_UID = TRIGGERED["payload"]["seriesUid"]
SECRET = "ninja-client-secret-e2e-0123456789"


@pytest.fixture
def rmm(env: Env) -> Iterator[tuple[Env, NinjaOneServer]]:
    with NinjaOneServer("gatekeeper-e2e", SECRET) as ninja:
        ninja.add_device(DEVICE, "CONTOSO-WEB02")
        ninja.add_alert(ALERT_UID)
        services = env.gates.services
        registry = services.registry
        record = registry.get(env.tenant_id)
        settings = RmmSettings.model_validate(
            {
                "vendor": "ninjaone",
                "api_url": ninja.url,
                "client_id": "gatekeeper-e2e",
                "client_secret": f"env:GK_{env.tenant_id.upper()}_NINJA",  # the tenant's own app setting
                "maintenance_mode": True,
                "services": [{"name": "webshop", "environments": ["production"], "devices": [DEVICE]}],
            }
        )
        registry.import_records([record.model_copy(update={"rmm": settings})])
        services.device_managers = DeviceManagers(
            services.rmm_settings_for,
            {f"GK_{env.tenant_id.upper()}_NINJA": SECRET},
            policy=RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.02, jitter=0),
            allow_loopback_http=True,
        )
        health = env.health.health_url
        entry = watch_entry(["production"], health, rmm_devices=[f"ninjarmm:device:{DEVICE}"])
        PolicyStore(services.storage, env.tenant_id).publish(
            json.dumps({"version": 1, "watch": [entry]}), published_by="tests"
        )
        yield env, ninja


def deliver_ninja_alert(env: Env) -> dict[str, Any]:
    """NinjaOne's condition webhook as the connector parses it, delivered to the watches as the queue trigger
    does (functions/queues.py `_rmm_alert`)."""
    envelope = {**TRIGGERED, "account": "42"}
    event = parse_connector_message(envelope, tenant_id=env.tenant_id)
    essentials = connector_alert(event)  # type: ignore[arg-type]
    assert essentials is not None and essentials.rmmAlertUid == ALERT_UID
    code, body = env.alerts.deliver(env.tenant_id, essentials)
    env.gates.runner.run_until_idle()
    assert code == 202
    return body


def outbound(env: Env, watch: str) -> list[tuple[str, bool]]:
    return [(e["step"], e["ok"]) for e in env.entries(watch, "connector_event") if e.get("direction") == "outbound"]


def test_a_ninjaone_alert_rolls_back_and_is_reset_with_maintenance_around_the_watch(rmm):
    env, ninja = rmm
    good = env.deploy(env.deployment(ref="refs/tags/v1", commit="c0ffee000001"))
    assert env.finish(good)["outcome"] == "healthy"
    assert outbound(env, good) == [("maintenance_on", True), ("maintenance_off", True)]
    assert ninja.maintenance == {}

    watch = env.deploy(env.deployment(ref="refs/tags/v2", commit="badbad000002"))
    env.gates.runner.advance(timedelta(minutes=1))  # probes pass; the device is in maintenance meanwhile
    assert ninja.maintenance[DEVICE]["disabledFeatures"] == ["PATCHING", "AVSCANS", "TASKS"]
    assert deliver_ninja_alert(env)["watches"] == [watch]
    assert env.finish(watch)["outcome"] == "rolled_back"
    assert [d["body"]["ref"] for d in env.github.dispatches] == ["refs/tags/v1"]
    assert ninja.alerts[ALERT_UID] == "RESET"  # the alert behind the rollback, reset after it succeeded
    assert ninja.maintenance == {}
    assert outbound(env, watch) == [("maintenance_on", True), ("resolve_alert", True), ("maintenance_off", True)]
    kinds = env.kinds(watch)
    assert kinds.index("rollback") < len(kinds) - 1 - kinds[::-1].index("connector_event")  # resolved after
    assert len(ninja.requests_to("/ws/oauth/token")) == 1  # one token for both watches


def test_an_rmm_outage_is_audited_and_changes_nothing_in_the_outcome(rmm):
    env, ninja = rmm
    good = env.deploy(env.deployment(ref="refs/tags/v1", commit="c0ffee000001"))
    assert env.finish(good)["outcome"] == "healthy"
    ninja.fail_next(1000, 503)  # NinjaOne down from here on
    watch = env.deploy(env.deployment(ref="refs/tags/v2", commit="badbad000002"))
    env.gates.runner.advance(timedelta(minutes=1))
    deliver_ninja_alert(env)
    assert env.finish(watch)["outcome"] == "rolled_back"  # the rollback went ahead regardless
    # tried and audited; nothing went into maintenance, so there is nothing to end
    assert outbound(env, watch) == [("maintenance_on", False), ("resolve_alert", False)]
    assert ninja.alerts[ALERT_UID] == "TRIGGERED"
    for entry in [e for e in env.entries(watch, "connector_event") if e.get("direction") == "outbound"]:
        assert entry["attempts"] == 3 and entry["status_code"] == 503 and SECRET not in json.dumps(entry)
