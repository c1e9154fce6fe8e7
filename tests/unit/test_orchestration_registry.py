"""Declarative orchestration: the blueprint's registrations are the only list of flows and activities."""

from __future__ import annotations

import ast
from pathlib import Path

import orchestrators
from devstack.runner import LocalOrchestrationRunner, registered_functions
from gatekeeper.contracts import gate as c
from gatekeeper.ingest.dispatcher import ORCHESTRATOR_FOR_KIND

ROOT = Path(__file__).resolve().parents[2]

# The names the host has in running histories: a rename would orphan in-flight gates.
ACTIVITY_NAMES = {
    "gate_evaluate",
    "gate_request_approval",
    "gate_open_human_task",
    "gate_callback",
    "gate_notify",
    "gate_record_outcome",
    "gate_audit",
    "watch_start",
    "watch_round",
    "watch_plan_rollback",
    "watch_dispatch_rollback",
    "watch_follow_rollback",
    "watch_close",
    "watch_rmm",  # issue 15: the RMM's maintenance window and alert resolution around the watch
    "psa_ticket",  # issue 15: the gate's PSA ticket notes, statuses and tickets
    "gate_update_messages",  # issue 19: the live messages (Slack) show each counted vote, from any channel
}


def test_the_runner_discovers_exactly_what_the_blueprint_registers():
    flows, activities = registered_functions(orchestrators.bp)
    assert set(flows) == {"deployment_gate", "approval_chain", "post_deploy_watch", "psa_follow_up"}
    assert set(activities) == ACTIVITY_NAMES
    runner = LocalOrchestrationRunner.from_blueprint(orchestrators.bp)
    assert set(runner.orchestrators) == set(flows) and set(runner.activities) == ACTIVITY_NAMES


def test_every_routed_event_kind_starts_a_registered_orchestrator():
    flows, _ = registered_functions(orchestrators.bp)
    assert ORCHESTRATOR_FOR_KIND and set(ORCHESTRATOR_FOR_KIND.values()) <= set(flows)


def test_flows_call_activities_by_reference_not_by_name():
    """No string literal names a function in a call_activity / call_sub_orchestrator call."""
    for path in sorted((ROOT / "orchestrators").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "").startswith(("call_activity", "call_sub")):
                first = node.args[0] if node.args else None
                assert not isinstance(first, ast.Constant), f"{path.name}:{node.lineno} calls a function by name"


def test_the_contracts_accept_the_inputs_running_histories_hold():
    """Inputs scheduled before the contracts existed (same keys, ISO times) still validate."""
    key = "ab" * 32
    at = "2030-01-01T09:00:00+00:00"
    c.EvaluateInput.model_validate(
        {"tenant_id": "tenant1", "instance_id": "g", "event_key": key, "requested_by": "dev", "at": at}
    )
    c.ApprovalRequest.model_validate(
        {
            "tenant_id": "tenant1",
            "gate_id": "g",
            "chain_id": "g:approval",
            "stage": 0,
            "started_at": at,
            "deadline": at,
            "at": at,
        }
    )
    c.CallbackInput.model_validate(
        {"tenant_id": "tenant1", "instance_id": "g", "event_key": key, "approved": True, "comment": "x"}
    )
    plan = {"stages": [{"name": "cab", "approvers": ["a@contoso.com"], "quorum": 1, "timeout": "PT1H"}]}
    old_chain = c.ChainInput.model_validate({"tenant_id": "tenant1", "gate_id": "g", "plan": plan, "title": "t"})
    assert old_chain.live_updates is False  # chains started before issue 19's live updates replay unchanged
    c.HumanTaskInput.model_validate({"tenant_id": "tenant1", "instance_id": "g", "at": at})
    c.NotifyInput.model_validate(
        {"tenant_id": "tenant1", "instance_id": "g", "at": at, "notification": {"kind": "info"}}
    )
    c.OutcomeInput.model_validate(
        {
            "tenant_id": "tenant1",
            "instance_id": "g",
            "status": "approved",
            "reason": "L0",
            "level": "L0",
            "at": at,
            "callback": {"ok": True, "detail": ""},
            "chain": None,
        }
    )
    c.AuditInput.model_validate(
        {
            "tenant_id": "tenant1",
            "kind": "approval_decided",
            "instance_id": "g",
            "actor": "a",
            "subject": "s",
            "at": at,
            "data": {},
        }
    )


def test_contracts_refuse_what_they_do_not_know():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        c.EvaluateInput.model_validate({"tenant_id": "tenant1", "instance_id": "g", "event_key": "not-a-hash"})
    with pytest.raises(ValidationError):
        c.CallbackInput.model_validate(
            {"tenant_id": "tenant1", "instance_id": "g", "event_key": "ab" * 32, "approved": True, "callback_url": "x"}
        )


def test_the_orchestrator_the_follow_up_service_starts_is_registered():
    """`FollowUpService` starts `PSA_FOLLOW_UP` by name for a task marked done with minutes."""
    from gatekeeper.contracts.psa import PSA_FOLLOW_UP

    flows, _ = registered_functions(orchestrators.bp)
    assert PSA_FOLLOW_UP in flows
