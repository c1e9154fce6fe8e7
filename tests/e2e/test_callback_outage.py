"""The pipeline's callback target down while a gate finishes: the real gate and chain orchestrations in the local
runner, the callback to a signed webhook receiver that answers 502 every time. The attempts are bounded (the
orchestrator's durable retries), every failed attempt and the final failure are telemetry `CallbackFailed`
events and audit entries, the operators are alerted, the gate ends in a defined state (decided, callback not
acknowledged), and neither the signing secret nor the signature shows in what is recorded."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from gatekeeper import telemetry
from tests.e2e.test_vote_races import ANNA, SECRET, open_gate, rig, vote

pytestmark = pytest.mark.azurite

__all__ = ["rig"]  # the fixture, shared with the vote races


def callback_failed_events(caplog: pytest.LogCaptureFixture, gate: str) -> list[dict]:
    events = []
    for record in caplog.records:
        message = record.getMessage()
        if record.name == telemetry.LOGGER_NAME and message.startswith(telemetry.PREFIX):
            payload = json.loads(message[len(telemetry.PREFIX) :])
            if payload["name"] == "CallbackFailed" and payload["instance_id"] == gate:
                events.append(payload)
    return events


def test_a_callback_target_that_keeps_failing_is_bounded_recorded_and_ends_the_gate(rig, caplog):
    gates, issuer, receiver, audit, tenant_id = rig
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER_NAME)
    gate = open_gate(gates, receiver, tenant_id)
    receiver.fail_next(1000, status=502)
    assert vote(gates, issuer, gate, ANNA, "approve")[0] == 202
    status = gates.runner.run_until_complete(gate, horizon=timedelta(hours=2))

    assert status.runtime_status == "Completed"  # a defined end, not a hung or failed orchestration
    assert status.output["status"] == "approved" and status.output["callback_ok"] is False
    completions = [r for r in receiver.requests if r.status == 502]
    assert 2 <= len(completions) <= 10, "retried, and bounded"
    *attempts, summary = [r for r in audit.records() if r.instance_id == gate and r.kind == "callback"]
    assert [a.data["ok"] for a in attempts] == [False] * len(completions)  # each attempt, then the summary
    assert summary.data["final"] is True and summary.data["ok"] is False
    events = callback_failed_events(caplog, gate)
    assert [e["final"] for e in events] == [False] * len(completions) + [True]
    assert {e["target"] for e in events[:-1]} == {"webhook"} and {e["status_code"] for e in events[:-1]} == {502}
    [final] = [r for r in audit.records() if r.instance_id == gate and r.kind == "decision" and r.data.get("final")]
    assert final.data["callback_ok"] is False
    recorded = json.dumps([a.data for a in audit.records() if a.instance_id == gate], default=str)
    recorded += "\n".join(r.getMessage() for r in caplog.records)
    signatures = {r.headers.get("x-gatekeeper-signature-256", "") for r in receiver.requests} - {""}
    assert SECRET.decode() not in recorded
    assert not any(signature and signature in recorded for signature in signatures)
