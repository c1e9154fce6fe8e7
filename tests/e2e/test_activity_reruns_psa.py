"""`psa_ticket` run again with the same input, as the Durable host does (at least once): the time a person
logged on an L3 task goes into the PSA once. Through the registered activity served the rig's services, the
local ConnectWise server, Azurite and the real audit log."""

from __future__ import annotations

import json

import pytest

from devstack.history import EventType
from gatekeeper.contracts.psa import follow_up_instance_id
from gatekeeper.events.model import ActionKind
from tests.e2e.test_psa_ticket_flows import OPS_OID, Rig, follow_ups, operator, rig, shared  # noqa: F401

pytestmark = pytest.mark.azurite


def test_a_completed_time_entry_write_run_again_logs_the_time_once(rig: Rig):
    linked = rig.server.add_ticket("Rotate the vault secret", company="ContosoLtd", board="Change Management")
    gate = rig.env.gates.submit(rig.env.event("production", ActionKind.SECRET_ACCESS, ticket=str(linked.id)))
    [task] = [t for t in rig.server.tickets.values() if t.id != linked.id]
    follow_ups(rig).act(gate, operator(), "mark_done", "secret rotated by hand", 45)
    rig.runner.run_until_idle()
    assert len(task.time) == 1
    history = rig.runner.history(follow_up_instance_id(gate, OPS_OID))
    (scheduled,) = [e for e in history if e["EventType"] == EventType.TASK_SCHEDULED and e["Name"] == "psa_ticket"]
    (completed,) = [e for e in history if e["EventType"] == EventType.TASK_COMPLETED]
    entries = [r.data for r in rig.psa_audit(gate)]

    again = rig.runner.activities["psa_ticket"](json.loads(scheduled["Input"]))

    assert again == json.loads(completed["Result"])
    assert len(task.time) == 1  # 45 minutes, not 90
    assert [r.data for r in rig.psa_audit(gate)] == entries
