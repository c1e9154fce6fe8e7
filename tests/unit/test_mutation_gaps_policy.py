"""Business hours with `outside_level: block` (issue 21): a mutant that ignored the block passed the suite.

Every existing business-hours test raises to L2; here the window blocks, raises to L3, and never lowers a level.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gatekeeper.events.model import EventKind, EventSource, PipelineEvent
from gatekeeper.policy import GateLevel, evaluate, load_policy

SATURDAY_10 = datetime(2025, 3, 29, 9, 0, tzinfo=UTC)  # 10:00 CET, a weekend
MONDAY_10 = datetime(2025, 3, 31, 8, 0, tzinfo=UTC)  # 10:00 CEST, within hours
HOURS = {"timezone": "Europe/Amsterdam", "start": "08:00", "end": "18:00"}
CHAIN = {"stages": [{"name": "leads", "approvers": ["a@contoso.com"], "timeout": "PT1H"}]}


def _event(environment: str = "production") -> PipelineEvent:
    return PipelineEvent(
        tenant_id="local", source=EventSource.GITHUB, kind=EventKind.GATE_REQUEST, environment=environment
    )


def _policy(outside_level: str, level: str = "L1", **hours):
    return load_policy(
        {
            "version": 1,
            "rules": [{"name": "prod", "level": level}],
            "defaults": {"approval": CHAIN},
            "change_windows": {"business_hours": {**HOURS, "outside_level": outside_level, **hours}},
        }
    )


def test_outside_business_hours_block_rejects_the_pipeline():
    decision = evaluate(_policy("block"), _event(), None, SATURDAY_10)
    assert decision.blocked is True
    assert decision.approval is None
    assert any("outside business hours" in r and "blocked" in r for r in decision.reasons), decision.reasons
    assert "blocked: the pipeline must be rejected whatever the level" in decision.reasons
    assert decision.to_public_json()["blocked"] is True


def test_block_does_not_apply_within_business_hours():
    decision = evaluate(_policy("block"), _event(), None, MONDAY_10)
    assert decision.blocked is False
    assert decision.level is GateLevel.L1
    assert not any("outside business hours" in r for r in decision.reasons)


def test_block_keeps_the_rule_level_it_does_not_lower_it():
    decision = evaluate(_policy("block", level="L2"), _event(), None, SATURDAY_10)
    assert decision.blocked is True
    assert decision.level is GateLevel.L2


def test_block_outside_hours_applies_only_in_scope():
    policy = _policy("block", environments=["production"])
    assert evaluate(policy, _event("dev"), None, SATURDAY_10).blocked is False
    assert evaluate(policy, _event("production"), None, SATURDAY_10).blocked is True


@pytest.mark.parametrize(
    ("rule_level", "outside", "expected"),
    [("L0", "L3", GateLevel.L3), ("L1", "L3", GateLevel.L3), ("L3", "L1", GateLevel.L3), ("L2", "L2", GateLevel.L2)],
)
def test_outside_level_only_raises(rule_level: str, outside: str, expected: GateLevel):
    decision = evaluate(_policy(outside, level=rule_level), _event(), None, SATURDAY_10)
    assert decision.blocked is False
    assert decision.level is expected


def test_l2_outside_hours_gets_the_default_chain_but_block_gets_none():
    raised = evaluate(_policy("L2"), _event(), None, SATURDAY_10)
    assert raised.level is GateLevel.L2 and raised.approval is not None
    blocked = evaluate(_policy("block", level="L2"), _event(), None, SATURDAY_10)
    assert blocked.approval is None


def test_a_policy_for_another_tenant_is_never_applied():
    policy = load_policy({"version": 1, "tenant": "tcontoso", "rules": [{"name": "any", "level": "L0"}]})
    with pytest.raises(ValueError, match="policy is for tenant 'tcontoso'"):
        evaluate(
            policy,
            PipelineEvent(tenant_id="tfabrikam", source=EventSource.GITHUB, kind=EventKind.GATE_REQUEST),
            None,
            MONDAY_10,
        )
    mine = PipelineEvent(tenant_id="tcontoso", source=EventSource.GITHUB, kind=EventKind.GATE_REQUEST)
    assert evaluate(policy, mine, None, MONDAY_10).level is GateLevel.L0
