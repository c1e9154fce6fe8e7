"""The action-approval API (gatekeeper/actions/service.py) through its registered routes, the local runner and
Azurite: cases a hand sweep of planted bugs found untested (docs/mutation.md, second sweep). The world is
tests/e2e/test_action_flows.py's."""

from __future__ import annotations

import pytest

from gatekeeper.contracts.gate import chain_instance_id
from tests.e2e.test_action_flows import (  # noqa: F401 - the fixtures are used by name
    ANNA,
    PIET,
    World,
    ask,
    body,
    entra,
    github,
    world,
)

pytestmark = pytest.mark.azurite


def _refused_as_not_approved(world: World, action_id: str) -> None:
    refused = world.report(action_id, {"outcome": "executed", "exit_code": 0}, world.agent())
    assert refused.status_code == 409 and body(refused)["type"].endswith("/not-approved")
    assert body(refused)["field"] == "outcome"
    reports = [r.data for r in world.audit(action_id) if r.kind == "action_reported"]
    assert reports and all(r["refused"] and not r["approved"] for r in reports)
    assert body(world.get(action_id, world.agent()))["outcome"] is None


def test_executed_is_refused_for_a_pending_action_not_only_a_denied_one(world: World):
    """The step client must never run a command that no one approved; a report of `executed` while the
    action still waits is an attempt, refused and audited, never recorded as the outcome."""
    action_id = body(world.post(ask(), world.agent()))["id"]
    world.pump()
    assert body(world.get(action_id, world.agent()))["status"] == "pending"
    _refused_as_not_approved(world, action_id)
    # approval afterwards does not turn the refused attempt into an outcome
    assert world.decide(action_id, ANNA, "approve")[0] == 202
    assert body(world.get(action_id, world.agent()))["outcome"] is None


@pytest.mark.parametrize("closing", ["cancelled", "human_only"])
def test_executed_is_refused_for_a_cancelled_or_human_only_action(world: World, closing: str):
    if closing == "human_only":
        action_id = body(world.post(ask(action="secret_access"), world.agent()))["id"]
    else:
        action_id = body(world.post(ask(), world.agent()))["id"]
        world.pump()
        world.durable.instances[chain_instance_id(action_id)] = {"name": "approval_chain", "runtimeStatus": "Running"}
        assert world.cancel(action_id, world.agent()).status_code == 200
    _refused_as_not_approved(world, action_id)


def test_an_outcome_is_reported_once(world: World):
    action_id = body(world.post(ask("dev"), world.agent()))["id"]  # L0: approved at once
    first = world.report(action_id, {"outcome": "executed", "exit_code": 0}, world.agent())
    assert first.status_code == 202
    again = world.report(action_id, {"outcome": "skipped", "detail": "changed my mind"}, world.agent())
    assert again.status_code == 409 and body(again)["type"].endswith("/already-reported")
    assert body(world.get(action_id, world.agent()))["outcome"] == "executed"
    assert [r.data["outcome"] for r in world.audit(action_id) if r.kind == "action_reported"] == ["executed"]


_ = PIET
