"""The gate's callback step (gatekeeper/gates/callback.py): cases the hand sweeps of planted bugs found untested
(docs/mutation.md, second and third sweep). The rig is tests/e2e/test_vote_races.py's."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest

from gatekeeper import telemetry
from gatekeeper.events.model import EventKind, EventSource, PipelineEvent, WebhookCallback
from tests.e2e.test_vote_races import ANNA, DEV_OID, open_gate, rig, vote

__all__ = ["rig"]


def test_a_rejections_callback_is_audited_as_not_approved(rig):
    gates, issuer, receiver, audit, tenant_id = rig
    gate = open_gate(gates, receiver, tenant_id)
    assert vote(gates, issuer, gate, ANNA, "reject")[0] == 202
    gates.runner.run_until_complete(gate, horizon=timedelta(hours=2))
    callbacks = [r.data for r in audit.records() if r.instance_id == gate and r.kind == "callback"]
    assert callbacks and all(c["approved"] is False for c in callbacks)


def _gate(tenant_id: str, callback: WebhookCallback | None) -> PipelineEvent:
    return PipelineEvent(
        tenant_id=tenant_id,
        source=EventSource.GENERIC,
        kind=EventKind.GATE_REQUEST,
        environment="production",
        repository="contoso/webshop",
        actor="dev@contoso.com",
        requester_ids=(f"entra:oid:{DEV_OID}",),
        run_id=uuid.uuid4().hex,
        callback=callback,
    )


def _events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict]:
    found = (telemetry.parse(r.getMessage()) for r in caplog.records if r.name == telemetry.LOGGER_NAME)
    return [e for e in found if e is not None and e["name"] == name]


def test_a_gate_whose_event_names_no_callback_ends_with_the_callback_ok_and_alerts_nobody(rig, caplog):
    """Nothing to tell is not a failed callback: no failure audited or emitted, no operator alerted."""
    gates, issuer, _receiver, audit, tenant_id = rig
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER_NAME)
    gate = gates.submit(_gate(tenant_id, None))
    assert vote(gates, issuer, gate, ANNA, "approve")[0] == 202
    status = gates.runner.run_until_complete(gate, horizon=timedelta(hours=2))
    assert (status.output["status"], status.output["callback_ok"]) == ("approved", True)
    assert [r.data for r in audit.records() if r.instance_id == gate and r.kind == "callback"] == []
    [final] = [
        r.data for r in audit.records() if r.instance_id == gate and r.kind == "decision" and r.data.get("final")
    ]
    assert final["callback_ok"] is True
    assert _events(caplog, "CallbackFailed") == []


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port bound but not listening: every connection to it is refused (RST), and no other process
    can take the port while the socket holds it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_a_callback_target_refusing_the_connection_is_a_failed_attempt_emitted_without_a_status(
    rig, refusing_port, caplog
):
    """A refused connection has no status code, and is still a failed attempt: audited, emitted as
    CallbackFailed (not final) for every attempt, retried, and finally reported failed."""
    gates, issuer, _receiver, audit, tenant_id = rig
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER_NAME)
    gate = gates.submit(_gate(tenant_id, WebhookCallback(url=f"http://127.0.0.1:{refusing_port}/ci/hook")))
    assert vote(gates, issuer, gate, ANNA, "approve")[0] == 202
    status = gates.runner.run_until_complete(gate, horizon=timedelta(hours=6))
    assert (status.output["status"], status.output["callback_ok"]) == ("approved", False)
    attempts = [r.data for r in audit.records() if r.instance_id == gate and r.kind == "callback"]
    tried = [a for a in attempts if not a.get("final")]
    assert tried and all(a["ok"] is False and a["status_code"] is None for a in tried)
    failed = _events(caplog, "CallbackFailed")
    assert [e["final"] for e in failed] == [False] * len(tried) + [True]
    assert all(e["status_code"] is None and e["instance_id"] == gate for e in failed)
