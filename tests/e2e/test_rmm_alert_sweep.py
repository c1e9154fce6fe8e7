"""RMM alerts on a watched device (gatekeeper/rollback/alerts.py `_record`): cases a hand sweep of planted bugs
found untested (docs/mutation.md, third sweep). The rig is tests/e2e/test_rmm_rollback_flows.py's: the real watch
orchestrator through the local runner, Azurite, the local NinjaOne."""

from __future__ import annotations

from typing import Any

import pytest

from gatekeeper.events.connectors import parse_connector_message
from gatekeeper.rollback.alerts import connector_alert
from tests.e2e.test_rmm_rollback_flows import (  # noqa: F401 - the fixtures are used by name
    ALERT_UID,
    TRIGGERED,
    Env,
    app_key,
    env,
    outbound,
    rmm,
    shared,
)

pytestmark = pytest.mark.azurite


def _ninja_activity(env: Env, activity_id: int) -> dict[str, Any]:
    """NinjaOne's condition webhook for one activity of the fixture's alert series, delivered as the queue
    trigger does (functions/queues.py `_rmm_alert`): the dispatcher's business key is the activity, so two
    activities of one series both arrive here."""
    envelope = {**TRIGGERED, "account": "42", "payload": {**TRIGGERED["payload"], "id": activity_id}}
    event = parse_connector_message(envelope, tenant_id=env.tenant_id)
    essentials = connector_alert(event)  # type: ignore[arg-type]
    assert essentials is not None and essentials.rmmAlertUid == ALERT_UID
    code, body = env.alerts.deliver(env.tenant_id, essentials)
    assert code == 202
    return body


def test_one_ninjaone_alert_series_triggered_twice_is_reset_once_after_the_rollback(rmm):
    """NinjaOne raises a condition again as a new activity (a new id, the same `seriesUid`): the dispatcher
    records both (different business keys), both count against the watch, but the RMM alert behind them is
    kept once and reset once after the rollback, not reset a second time and reported failed or doubled."""
    env, ninja = rmm
    good = env.deploy(env.deployment(ref="refs/tags/v1", commit="c0ffee000001"))
    assert env.finish(good)["outcome"] == "healthy"
    watch = env.deploy(env.deployment(ref="refs/tags/v2", commit="badbad000002"))
    assert _ninja_activity(env, 1187344)["watches"] == [watch]
    assert _ninja_activity(env, 1187345)["watches"] == [watch]
    record = env.gates.services.watches(env.tenant_id).load(watch)
    assert record is not None and record.rmm_alerts == (f"ninjarmm:{ALERT_UID}",) and record.wakes == 2
    assert env.finish(watch)["outcome"] == "rolled_back"
    assert len(ninja.requests_to(f"/v2/alert/{ALERT_UID}/reset")) == 1
    resolved = [e for e in env.entries(watch, "connector_event") if e.get("step") == "resolve_alert"]
    assert [(e["ok"], e.get("detail")) for e in resolved] == [(True, "1 done")], resolved
    assert outbound(env, watch)[-2:] == [("resolve_alert", True), ("maintenance_off", True)]
