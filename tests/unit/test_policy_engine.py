"""Rule evaluation: each matcher, precedence, the safe default, change windows, quality raising levels."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gatekeeper.events.model import ActionKind, EventKind, EventSource, PipelineEvent
from gatekeeper.policy import GateLevel, PolicyError, evaluate, infer_action, load_policy
from gatekeeper.policy.engine import branch_of
from gatekeeper.quality import QualityEvidence, load_evidence

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
# A Monday, 10:00 in Amsterdam (CEST): inside business hours, outside the year-end freeze.
MONDAY_10 = datetime(2025, 3, 31, 8, 0, tzinfo=UTC)

CHAIN = {"stages": [{"name": "leads", "approvers": ["a@contoso.com"], "timeout": "PT1H"}]}


def event(**fields) -> PipelineEvent:
    base = {"tenant_id": "local", "source": EventSource.GITHUB, "kind": EventKind.GATE_REQUEST}
    return PipelineEvent(**{**base, **fields})


def policy_with(rules, **extra):
    return load_policy({"version": 1, "rules": rules, **extra})


def decide(policy, ev, evidence=None, at=MONDAY_10):
    return evaluate(policy, ev, evidence, at)


# --- matchers ------------------------------------------------------------------------------------------------

MATCHER_CASES = [
    ({"sources": ["azure-devops"]}, {"source": EventSource.AZURE_DEVOPS}, {"source": EventSource.GITHUB}),
    ({"actions": ["rollback"]}, {"action": ActionKind.ROLLBACK}, {"action": ActionKind.DEPLOY}),
    ({"environments": ["prod-*"]}, {"environment": "PROD-EU"}, {"environment": "production"}),
    ({"environments": ["prod-*"]}, {"environment": "prod-eu"}, {}),
    ({"repositories": ["contoso/*"]}, {"repository": "Contoso/web"}, {"repository": "contoso-labs/web"}),
    ({"repositories": ["contoso/*"]}, {"repository": "contoso/web"}, {"repository": None}),
    ({"branches": ["main"]}, {"ref": "refs/heads/main"}, {"ref": "refs/tags/main"}),
    ({"branches": ["release/*"]}, {"ref": "release/2.1"}, {"ref": "refs/heads/release/2.1/fix"}),
    ({"branches": ["release/**"]}, {"ref": "refs/heads/release/2.1/fix"}, {"ref": "refs/heads/releases/2"}),
    ({"labels": ["pci", "customer:fabrikam"]}, {"labels": ("PCI", "customer:fabrikam", "x")}, {"labels": ("pci",)}),
    ({"change_window": ["outside_business_hours"]}, {"at": datetime(2025, 3, 29, 10, tzinfo=UTC)}, {}),
]


@pytest.mark.parametrize(("match", "hit", "miss"), MATCHER_CASES)
def test_each_matcher(match, hit, miss):
    hours = {"timezone": "Europe/Amsterdam"}
    policy = policy_with([{"name": "r", "match": match, "level": "L0"}], change_windows={"business_hours": hours})
    base = {"action": ActionKind.DEPLOY, "environment": "dev", "repository": "contoso/web", "ref": "main"}

    def run(overrides):
        fields = {**base, **overrides}
        at = fields.pop("at", MONDAY_10)
        return decide(policy, event(**fields), at=at)

    assert run(hit).rule == "r"
    assert run(miss).rule is None


def test_all_conditions_must_hold():
    policy = policy_with(
        [{"name": "r", "match": {"environments": ["production"], "branches": ["main"]}, "level": "L1"}]
    )
    assert decide(policy, event(environment="production", ref="main")).rule == "r"
    assert decide(policy, event(environment="production", ref="develop")).rule is None


def test_empty_match_is_a_catch_all():
    policy = policy_with([{"name": "everything", "level": "L1"}])
    assert decide(policy, event(kind=EventKind.ALERT, source=EventSource.NINJARMM)).level is GateLevel.L1


def test_first_match_wins():
    policy = policy_with(
        [
            {"name": "hotfix", "match": {"environments": ["production"], "labels": ["hotfix"]}, "level": "L3"},
            {"name": "prod", "match": {"environments": ["production"]}, "level": "L2", "approval": CHAIN},
            {"name": "prod-again", "match": {"environments": ["production"]}, "level": "L0"},
        ]
    )
    assert decide(policy, event(environment="production", labels=("hotfix",))).rule == "hotfix"
    decision = decide(policy, event(environment="production"))
    assert (decision.rule, decision.level) == ("prod", GateLevel.L2)


def test_no_match_is_l2_with_the_default_chain():
    policy = policy_with(
        [{"name": "dev", "match": {"environments": ["dev"]}, "level": "L0"}], defaults={"approval": CHAIN}
    )
    decision = decide(policy, event(environment="production"))
    assert (decision.level, decision.rule) == (GateLevel.L2, None)
    assert decision.reasons[1] == "no rule matched: safe default level L2"
    assert [s.name for s in decision.approval.stages] == ["leads"]
    assert any("the default chain" in r for r in decision.reasons)


def test_l2_without_any_chain_says_it_will_be_refused():
    decision = decide(policy_with([]), event(environment="production"))
    assert decision.level is GateLevel.L2 and decision.approval is None
    assert any("the gate will be refused" in r for r in decision.reasons)


def test_defaults_can_be_stricter_but_not_looser():
    assert decide(policy_with([], defaults={"level": "L3"}), event(environment="x")).level is GateLevel.L3
    with pytest.raises(PolicyError) as caught:
        policy_with([], defaults={"level": "L0"})
    assert caught.value.field == "defaults.level"


# --- actions -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "action", "inferred"),
    [
        ({"action": ActionKind.ROLLBACK, "environment": "production"}, ActionKind.ROLLBACK, False),
        ({"environment": "production"}, ActionKind.DEPLOY, True),
        ({"kind": EventKind.RUN_STATUS}, ActionKind.BUILD, True),
        ({"kind": EventKind.JOB_STATUS}, ActionKind.BUILD, True),
        ({"kind": EventKind.ALERT}, None, True),
    ],
)
def test_action_inference(fields, action, inferred):
    found, reason = infer_action(event(**fields))
    assert found == action
    assert (reason is not None) is inferred


def test_inferred_action_is_matched_and_explained():
    policy = policy_with([{"name": "deploys", "match": {"actions": ["deploy"]}, "level": "L1"}])
    decision = decide(policy, event(environment="production"))
    assert (decision.rule, decision.action) == ("deploys", ActionKind.DEPLOY)
    assert decision.reasons[0] == "action inferred as deploy: the event targets environment 'production'"


@pytest.mark.parametrize(
    ("ref", "branch"),
    [
        ("refs/heads/main", "main"),
        ("main", "main"),
        ("refs/heads/feature/x", "feature/x"),
        ("refs/tags/v1", None),
        ("refs/pull/4/merge", None),
        (None, None),
    ],
)
def test_branch_of(ref, branch):
    assert branch_of(ref) == branch


# --- change windows ------------------------------------------------------------------------------------------

FREEZE = {
    "name": "year-end",
    "start": "2025-12-19T17:00:00+01:00",
    "end": "2026-01-05T08:00:00+01:00",
    "environments": ["production"],
}
IN_FREEZE = datetime(2025, 12, 23, 10, tzinfo=UTC)


def test_freeze_raises_to_l3_by_default_only_in_scope_and_period():
    policy = policy_with([{"name": "any", "level": "L1"}], change_windows={"freezes": [FREEZE]})
    frozen = decide(policy, event(environment="production"), at=IN_FREEZE)
    assert frozen.level is GateLevel.L3
    assert any("change freeze 'year-end'" in r and "raised from L1 to L3" in r for r in frozen.reasons)
    assert decide(policy, event(environment="staging"), at=IN_FREEZE).level is GateLevel.L1
    assert decide(policy, event(environment="production"), at=datetime(2026, 1, 5, 7, tzinfo=UTC)).level is (
        GateLevel.L1
    )  # 08:00 +01:00 is the end, exclusive


def test_freeze_level_rule_override_and_block():
    freeze = {**FREEZE, "level": "L2"}
    policy = policy_with(
        [
            {"name": "hotfix", "match": {"labels": ["hotfix"]}, "level": "L1", "on_freeze": "block"},
            {"name": "any", "level": "L1", "approval": CHAIN},
        ],
        change_windows={"freezes": [freeze]},
    )
    normal = decide(policy, event(environment="production"), at=IN_FREEZE)
    assert (normal.level, normal.blocked) == (GateLevel.L2, False)
    hotfix = decide(policy, event(environment="production", labels=("hotfix",)), at=IN_FREEZE)
    assert hotfix.blocked is True and hotfix.approval is None
    assert any("the pipeline is blocked" in r for r in hotfix.reasons)


def test_rule_matching_on_freeze_condition():
    policy = policy_with(
        [
            {"name": "frozen-prod", "match": {"change_window": ["in_freeze"]}, "level": "L3"},
            {"name": "any", "level": "L0"},
        ],
        change_windows={"freezes": [FREEZE]},
    )
    assert decide(policy, event(environment="production"), at=IN_FREEZE).rule == "frozen-prod"
    assert decide(policy, event(environment="production"), at=MONDAY_10).rule == "any"


HOURS = {
    "timezone": "Europe/Amsterdam",
    "days": ["mon", "tue", "wed", "thu", "fri"],
    "start": "08:00",
    "end": "18:00",
    "outside_level": "L2",
}


@pytest.mark.parametrize(
    ("at", "within"),
    [
        # Friday 28 March 2025, CET (UTC+1)
        (datetime(2025, 3, 28, 6, 30, tzinfo=UTC), False),  # 07:30 local
        (datetime(2025, 3, 28, 7, 30, tzinfo=UTC), True),  # 08:30 local
        (datetime(2025, 3, 28, 16, 30, tzinfo=UTC), True),  # 17:30 local
        (datetime(2025, 3, 28, 17, 0, tzinfo=UTC), False),  # 18:00 local, end is exclusive
        # Sunday 30 March 2025: clocks go forward at 02:00 local
        (datetime(2025, 3, 30, 9, 0, tzinfo=UTC), False),  # weekend
        # Monday 31 March 2025, CEST (UTC+2): the same UTC times now fall an hour later locally
        (datetime(2025, 3, 31, 6, 30, tzinfo=UTC), True),  # 08:30 local
        (datetime(2025, 3, 31, 5, 30, tzinfo=UTC), False),  # 07:30 local
        (datetime(2025, 3, 31, 16, 30, tzinfo=UTC), False),  # 18:30 local
        (datetime(2025, 3, 31, 15, 59, tzinfo=UTC), True),  # 17:59 local
        # Monday 27 October 2025, back on CET after the change on Sunday 26 October
        (datetime(2025, 10, 27, 7, 0, tzinfo=UTC), True),  # 08:00 local
        (datetime(2025, 10, 27, 6, 59, tzinfo=UTC), False),  # 07:59 local
    ],
)
def test_business_hours_across_dst(at, within):
    policy = policy_with([{"name": "staging", "level": "L1"}], change_windows={"business_hours": HOURS})
    decision = decide(policy, event(environment="staging"), at=at)
    assert decision.level is (GateLevel.L1 if within else GateLevel.L2)
    assert any("outside business hours" in r for r in decision.reasons) is (not within)


def test_business_hours_over_midnight():
    night = {**HOURS, "start": "22:00", "end": "06:00", "days": ["fri"]}
    policy = policy_with([{"name": "any", "level": "L0"}], change_windows={"business_hours": night})
    saturday_3am = datetime(2025, 3, 29, 2, 0, tzinfo=UTC)  # 03:00 CET, the Friday shift
    thursday_3am = datetime(2025, 3, 27, 2, 0, tzinfo=UTC)
    assert decide(policy, event(environment="x"), at=saturday_3am).level is GateLevel.L0
    assert decide(policy, event(environment="x"), at=thursday_3am).level is GateLevel.L2


def test_business_hours_scope():
    hours = {**HOURS, "environments": ["production"], "actions": ["deploy"]}
    policy = policy_with([{"name": "any", "level": "L0"}], change_windows={"business_hours": hours})
    saturday = datetime(2025, 3, 29, 10, tzinfo=UTC)
    assert decide(policy, event(environment="dev"), at=saturday).level is GateLevel.L0
    assert decide(policy, event(environment="production"), at=saturday).level is GateLevel.L2
    rollback = event(environment="production", action=ActionKind.ROLLBACK)
    assert decide(policy, rollback, at=saturday).level is GateLevel.L0


# --- quality -------------------------------------------------------------------------------------------------

QUALITY = {
    "objectives": [{"sli": "slo.errors", "pass": "<1", "warning": "<2", "key_sli": True}],
    "total_score": {"pass": 90, "warning": 50},
}


def slo(errors: float) -> QualityEvidence:
    return QualityEvidence.from_mapping({"slo": [{"name": "errors", "value": errors}]})


@pytest.mark.parametrize(
    ("rule_level", "on_fail", "expected"),
    [("L0", "L2", "L2"), ("L1", "L3", "L3"), ("L3", "L2", "L3"), ("L2", "L2", "L2")],
)
def test_failing_quality_raises_never_lowers(rule_level, on_fail, expected):
    policy = policy_with(
        [{"name": "r", "level": rule_level, "approval": CHAIN}], quality={**QUALITY, "on_fail": on_fail}
    )
    decision = decide(policy, event(environment="x"), slo(5))
    assert decision.quality.result == "fail"
    assert decision.level is GateLevel(expected)


@pytest.mark.parametrize("rule_level", ["L0", "L1", "L2", "L3"])
def test_passing_quality_never_lowers(rule_level):
    policy = policy_with([{"name": "r", "level": rule_level, "approval": CHAIN}], quality=QUALITY)
    decision = decide(policy, event(environment="x"), slo(0))
    assert decision.quality.result == "pass"
    assert decision.level is GateLevel(rule_level)


def test_quality_block_rejects_even_at_l0():
    policy = policy_with([{"name": "r", "level": "L0"}], quality={**QUALITY, "on_fail": "block"})
    decision = decide(policy, event(environment="dev"), slo(5))
    assert decision.blocked is True and decision.level is GateLevel.L0
    assert "blocked: the pipeline must be rejected whatever the level" in decision.reasons


def test_quality_warning_uses_on_warning_and_then_the_rules_chain():
    policy = policy_with([{"name": "r", "level": "L1", "approval": CHAIN}], quality={**QUALITY, "on_warning": "L2"})
    decision = decide(policy, event(environment="staging"), slo(1.5))
    assert (decision.quality.result, decision.level) == ("warning", GateLevel.L2)
    assert decision.approval is not None and decision.approval.stages[0].name == "leads"
    no_raise = policy_with([{"name": "r", "level": "L1"}], quality=QUALITY)
    assert decide(no_raise, event(environment="staging"), slo(1.5)).level is GateLevel.L1


# --- guards and the example policy ---------------------------------------------------------------------------


def test_time_must_be_aware_and_tenant_must_match():
    policy = policy_with([])
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(policy, event(), None, datetime(2025, 3, 31, 10))
    with pytest.raises(ValueError, match="tenant 'contoso'"):
        evaluate(load_policy({"version": 1, "tenant": "contoso"}), event(), None, MONDAY_10)


@pytest.mark.parametrize(
    ("fields", "rule", "level"),
    [
        ({"action": ActionKind.SECRET_ACCESS, "environment": "dev"}, "secret-access", "L3"),
        ({"action": ActionKind.PRIVILEGE_ESCALATION}, "privilege-escalation", "L3"),
        ({"action": ActionKind.DATA_EXPORT, "environment": "production"}, "data-export", "L3"),
        ({"action": ActionKind.INFRASTRUCTURE_CHANGE, "environment": "prod-eu"}, "production-infrastructure", "L2"),
        ({"action": ActionKind.INFRASTRUCTURE_CHANGE, "environment": "dev"}, None, "L2"),
        ({"action": ActionKind.ROLLBACK, "environment": "production"}, "production-rollback", "L1"),
        ({"environment": "production", "ref": "refs/heads/main"}, "production-deploy", "L2"),
        ({"environment": "production", "ref": "refs/heads/feature/x"}, "production-deploy-other-branch", "L3"),
        ({"environment": "staging"}, "staging", "L1"),
        ({"environment": "Test"}, "dev-test-deploys", "L0"),
        ({"kind": EventKind.RUN_STATUS}, "builds-and-tests", "L0"),
    ],
)
def test_example_policy_levels(fields, rule, level):
    policy = load_policy(EXAMPLES / "policy.yaml")
    decision = decide(policy, event(**fields))
    assert (decision.rule, decision.level) == (rule, GateLevel(level))


def test_example_policy_with_failing_evidence_goes_to_l3():
    policy = load_policy(EXAMPLES / "policy.yaml")
    decision = decide(
        policy, event(environment="production", ref="main"), load_evidence(EXAMPLES / "evidence" / "failing.json")
    )
    assert decision.quality.result == "fail" and decision.level is GateLevel.L3
    assert decision.approval is None
    verdicts = {o.name: o.verdict for o in decision.quality.objectives}
    assert verdicts["critical-findings"] == "fail" and verdicts["medium-findings"] == "info"


def test_decision_survives_a_json_round_trip():
    """Decisions travel through the Durable Functions history as JSON."""
    from gatekeeper.policy import GateDecision

    policy = load_policy(EXAMPLES / "policy.yaml")
    decision = decide(
        policy, event(environment="production", ref="main"), load_evidence(EXAMPLES / "evidence" / "warning.json")
    )
    public = decision.to_public_json()
    assert list(public) == [
        "level",
        "action",
        "environment",
        "rule",
        "reasons",
        "quality",
        "approval",
        "blocked",
        "compliance",  # the matching rule's mappings: only present when the rule has some
    ]
    again = GateDecision.model_validate(public)
    assert again.to_public_json() == public
    assert again.approval.stages[1].timeout_delta.total_seconds() == 8 * 3600
