"""The watch's RMM step (gatekeeper.rollback.rmm) with the real services over Azurite and the real `requests`
against the local NinjaOne and Datto RMM servers: an RMM alert from the vendor's webhook reaches the watch and
is kept by its id; maintenance goes on for the service's devices for the watch window and off at the end; after
a rollback the alert is reset/resolved; every action is audited; an RMM outage is retried, audited and
returned, never raised."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest

from devstack.dattormm import DattoRmmServer
from devstack.durable_api import DurableApiServer
from devstack.ninjaone import NinjaOneServer
from gatekeeper.contracts.watch import RmmInput
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.integrations.rmm import DeviceManagers
from gatekeeper.policy.store import PolicyStore
from gatekeeper.rollback.rmm import plan_flags, rmm_step
from gatekeeper.rollback.store import Deployment, WatchRecord, WatchStore
from gatekeeper.services import set_services
from gatekeeper.tenancy.rmm_settings import RmmSettings
from tests.conftest import ROOT
from tests.integration.test_dispatch import trigger
from tests.support.gatekeeper_env import http_function, make_env, signed_connector

pytestmark = pytest.mark.azurite

TRIGGERED = json.loads((ROOT / "tests/fixtures/connectors/ninjarmm.condition-triggered.json").read_text())
DEVICE = str(TRIGGERED["payload"]["deviceId"])
ALERT_UID = TRIGGERED["payload"]["seriesUid"]
SECRET = "ninja-client-secret-0123456789"
AT = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


@pytest.fixture
def ninja() -> Iterator[NinjaOneServer]:
    with NinjaOneServer("gatekeeper-client", SECRET) as server:
        server.add_device(DEVICE, "CONTOSO-WEB02")
        server.add_device("400", "CONTOSO-SQL01")
        server.add_alert(ALERT_UID)
        yield server


def configure(runtime: Any, settings: RmmSettings, environ: dict[str, str]) -> list[float]:
    """The tenant's `rmm:` settings and app settings; `GK_<NAME>` becomes the tenant's own `GK_<TENANT>_<NAME>`
    (a tenant's references name only its own settings, gatekeeper.tenancy.references)."""
    own = f"GK_{runtime.tenant_id.upper()}_"
    settings = settings.model_copy(update={"client_secret": settings.client_secret.replace("env:GK_", "env:" + own)})
    environ = {name.replace("GK_", own, 1): value for name, value in environ.items()}
    registry = runtime.services.registry
    record = registry.get(runtime.tenant_id)
    registry.import_records([record.model_copy(update={"rmm": settings})])
    slept: list[float] = []
    runtime.services.device_managers = DeviceManagers(
        runtime.services.rmm_settings_for,
        environ,
        policy=RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.02, jitter=0, sleep=slept.append),
        allow_loopback_http=True,  # the local servers speak http
    )
    return slept


@pytest.fixture
def env(azurite, tmp_path, ninja) -> Iterator[dict[str, Any]]:
    runtime = make_env(azurite.connection_string, tmp_path / "keys", extra_identities=("ninjarmm:org:42",))
    settings = RmmSettings.model_validate(
        {
            "vendor": "ninjaone",
            "api_url": ninja.url,
            "client_id": "gatekeeper-client",
            "client_secret": "env:GK_NINJA_SECRET",
            "maintenance_mode": True,
            "maintenance_margin_minutes": 15,
            "services": [{"name": "shop", "environments": ["prod*"], "devices": [DEVICE, "400"]}],
        }
    )
    slept = configure(runtime, settings, {"GK_NINJA_SECRET": SECRET})
    set_services(runtime.services)
    watch_id = "watch-" + uuid.uuid4().hex[:40]
    WatchStore(runtime.storage, runtime.tenant_id, runtime.services.sealer).save(
        WatchRecord(
            instance_id=watch_id,
            tenant_id=runtime.tenant_id,
            deployment=Deployment(source="github", repository="contoso/shop", environment="production"),
            started_at=AT,
            updated_at=AT,
            ends_at=AT + timedelta(minutes=30),
        )
    )
    with DurableApiServer() as durable:
        durable.instances[watch_id] = {"name": "post_deploy_watch", "runtimeStatus": "Running"}
        try:
            yield {"runtime": runtime, "watch": watch_id, "durable": durable, "slept": slept}
        finally:
            set_services(None)


def step(env: dict[str, Any], action: str) -> Any:
    request = RmmInput(tenant_id=env["runtime"].tenant_id, instance_id=env["watch"], action=action, at=AT)
    return rmm_step(env["runtime"].services, request)


def record(env: dict[str, Any]) -> WatchRecord:
    runtime = env["runtime"]
    found = WatchStore(runtime.storage, runtime.tenant_id, runtime.services.sealer).load(env["watch"])
    assert found is not None
    return found


def outbound(env: dict[str, Any]) -> list[dict[str, Any]]:
    log = env["runtime"].services.audit_for(env["runtime"].tenant_id)
    return [
        r.data
        for r in log.records()
        if r.kind == "connector_event" and r.instance_id == env["watch"] and r.data.get("direction") == "outbound"
    ]


def relay(env: dict[str, Any], document: dict[str, Any]) -> None:
    http_function("connector_events")(func.QueueMessage(id="m", body=signed_connector(document)))
    for text in env["runtime"].drain():
        trigger(text.encode(), env["durable"])


def test_the_watch_plans_maintenance_only_where_the_tenant_has_devices(env):
    services, tenant = env["runtime"].services, env["runtime"].tenant_id
    assert plan_flags(services, tenant, "production") == (True, True)
    assert plan_flags(services, tenant, "staging") == (False, True)
    assert plan_flags(services, "nosuchtenant", "production") == (False, False)


def test_maintenance_alert_and_rollback_on_ninjaone_end_to_end(env, ninja):
    runtime = env["runtime"]
    PolicyStore(runtime.storage, runtime.tenant_id).publish(
        json.dumps(
            {
                "version": 1,
                "watch": [
                    {
                        "environments": ["production"],
                        "probes": [{"name": "health", "url": "https://shop.contoso.com/h"}],
                        "rmm_devices": [f"ninjarmm:device:{DEVICE}"],
                    }
                ],
            }
        ),
        published_by="tests",
    )
    on = step(env, "maintenance_on")
    assert on.ok, on.detail
    window = ninja.maintenance[DEVICE]
    assert window["disabledFeatures"] == ["PATCHING", "AVSCANS", "TASKS"]
    assert window["start"] == int(AT.timestamp())
    assert window["end"] == int((AT + timedelta(minutes=45)).timestamp())  # window + 15 min margin
    assert set(ninja.maintenance) == {DEVICE, "400"} and record(env).rmm_maintenance == (DEVICE, "400")
    assert step(env, "maintenance_on").detail == "already in maintenance"  # a retried activity does nothing twice

    relay(env, TRIGGERED)  # NinjaOne's webhook: the alert reaches the watch, kept by its uid
    assert [name for name, _ in env["durable"].instances[env["watch"]]["events"]] == ["watch-wake-0"]
    assert record(env).rmm_alerts == (f"ninjarmm:{ALERT_UID}",)

    resolved = step(env, "resolve_alerts")
    assert resolved.ok and ninja.alerts[ALERT_UID] == "RESET" and record(env).rmm_alerts == ()
    off = step(env, "maintenance_off")
    assert off.ok and ninja.maintenance == {} and record(env).rmm_maintenance == ()
    assert [(a["step"], a["ok"], a["source"]) for a in outbound(env)] == [
        ("maintenance_on", True, "ninjarmm"),
        ("resolve_alert", True, "ninjarmm"),
        ("maintenance_off", True, "ninjarmm"),
    ]
    assert len(ninja.requests_to("/ws/oauth/token")) == 1  # one token for the whole watch
    audit_text = json.dumps(outbound(env))
    assert SECRET not in audit_text and not any(token in audit_text for token in ninja.tokens)


def test_an_rmm_outage_is_retried_audited_and_returned(env, ninja):
    ninja.fail_next(100, 503, path_contains="/maintenance", retry_after=0)
    on = step(env, "maintenance_on")
    assert not on.ok and "retries exhausted" in on.detail
    [entry] = outbound(env)
    assert entry["step"] == "maintenance_on" and entry["ok"] is False
    assert entry["failed"] == [DEVICE, "400"] and entry["attempts"] == 6 and entry["status_code"] == 503
    assert record(env).rmm_maintenance == ()  # nothing to take out of maintenance later
    assert step(env, "maintenance_off").skipped


def test_a_missing_secret_is_audited_not_raised(env):
    runtime = env["runtime"]
    configure(runtime, runtime.services.rmm_settings_for(runtime.tenant_id), {})
    on = step(env, "maintenance_on")
    assert not on.ok and "resolves to no secret" in on.detail
    assert outbound(env)[0]["failed"] == [DEVICE, "400"]


def test_datto_rmm_resolves_the_alert_behind_the_rollback(env):
    runtime = env["runtime"]
    with DattoRmmServer("APIKEY-1", "datto-secret-0123") as datto:
        datto.add_alert("9f4c2a7e-5d1b-4c3a-8e6f-0b2d7a1c9e35")
        settings = RmmSettings.model_validate(
            {"vendor": "dattormm", "api_url": datto.url, "client_id": "APIKEY-1", "client_secret": "env:GK_DATTO"}
        )
        configure(runtime, settings, {"GK_DATTO": "datto-secret-0123"})
        store = WatchStore(runtime.storage, runtime.tenant_id, runtime.services.sealer)
        store.change(env["watch"], lambda r: {"rmm_alerts": ("dattormm:9f4c2a7e-5d1b-4c3a-8e6f-0b2d7a1c9e35",)})
        assert step(env, "maintenance_on").skipped  # Datto RMM: no maintenance mode configured
        done = step(env, "resolve_alerts")
        assert done.ok and datto.alerts["9f4c2a7e-5d1b-4c3a-8e6f-0b2d7a1c9e35"] is True
        assert [(a["step"], a["source"]) for a in outbound(env)] == [("resolve_alert", "dattormm")]


def test_the_rmm_probe_reads_device_status_for_the_watch(env, ninja):
    from gatekeeper.policy.watch import RmmProbeSpec

    services, tenant = env["runtime"].services, env["runtime"].tenant_id
    probe = services.health_probe  # the process's probes: http, kql and rmm by type
    healthy = probe.run(RmmProbeSpec(type="rmm", name="devices", devices=(DEVICE, "400")), tenant, AT)
    assert healthy.outcome == "pass" and "2 device(s) online" in healthy.detail
    ninja.devices["400"]["offline"] = True
    down = probe.run(RmmProbeSpec(type="rmm", name="devices", devices=(DEVICE, "400")), tenant, AT)
    assert down.outcome == "fail" and down.detail == "device 400 (CONTOSO-SQL01) is offline in ninjaone"
    unknown = probe.run(RmmProbeSpec(type="rmm", name="devices", devices=("999",)), tenant, AT)
    assert unknown.outcome == "error" and "404" in unknown.detail
    ninja.fail_next(100, 503, path_contains="/v2/device/")
    outage = probe.run(RmmProbeSpec(type="rmm", name="devices", devices=(DEVICE,)), tenant, AT)
    assert outage.outcome == "error" and "503" in outage.detail
    other = probe.run(RmmProbeSpec(type="rmm", name="devices", devices=(DEVICE,)), "nosuchtenant", AT)
    assert other.outcome == "error" and "no RMM configured" in other.detail
