"""The recommendation model's invariants and its pure parts (gatekeeper.recommend): probabilities in [0, 1],
more approvals of a kind never lower p_approve for it, more bad outcomes never raise it; top factors; the
Wilson interval; what counts as an override. Property tests are seeded and bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.recommend.features import gate_features, hour_bucket, window_of
from gatekeeper.recommend.history import GateHistory, read_history
from gatekeeper.recommend.model import MIN_SAMPLES, fit, predict, recommend
from gatekeeper.recommend.overrides import decision_override
from gatekeeper.recommend.proposals import wilson

NOW = datetime(2030, 6, 3, 12, 0, tzinfo=UTC)
RULES = ("alpha", "beta", "gamma")
ENVS = ("staging", "production")


def gate(rule: str, env: str, outcome: str, at: datetime = NOW, quality: str = "pass") -> GateHistory:
    g = GateHistory(
        instance_id=f"{rule}-{env}-{outcome}-{at.timestamp()}",
        at=at,
        level="L2",
        rule=rule,
        facts={"repository": f"contoso/{rule}", "environment": env, "source": "generic", "received_at": at.isoformat()},
        decision={"rule": rule, "action": "deploy", "quality": {"result": quality}, "reasons": []},
        status="rejected" if outcome == "rejected" else "approved",
        human=True,
    )
    g.rolled_back = outcome == "rolled_back"
    return g


kinds = st.tuples(
    st.sampled_from(RULES), st.sampled_from(ENVS), st.sampled_from(("approved", "rejected", "rolled_back"))
)


def _history(specs: list[tuple[str, str, str]]) -> list[GateHistory]:
    return [gate(r, e, o, NOW - timedelta(days=i)) for i, (r, e, o) in enumerate(specs)]  # same hour: no signal


@settings(derandomize=True, max_examples=60, deadline=None)
@given(st.lists(kinds, max_size=60), kinds, st.integers(min_value=1, max_value=5))
def test_probabilities_stay_in_range_and_approvals_never_lower_p_approve(specs, probe, extra):
    """For one calibration (the feature weights a fit chose), more approved gates that look like x never lower
    p_approve(x) and more rejected ones never raise it; a refit may then move the weights (reported as
    `model_fitted`), which is calibration, not evidence."""
    rule, env, _ = probe
    features = gate(rule, env, "approved").features()
    before = fit("acme", _history(specs), NOW)
    same = {"weights": before.weights}
    more = fit("acme", _history(specs + [(rule, env, "approved")] * extra), NOW).model_copy(update=same)
    worse = fit("acme", _history(specs + [(rule, env, "rejected")] * extra), NOW).model_copy(update=same)
    p_before, _ = predict(before, features)
    p_more, _ = predict(more, features)
    p_worse, _ = predict(worse, features)
    assert 0.0 <= p_before <= 1.0 and 0.0 <= p_more <= 1.0 and 0.0 <= p_worse <= 1.0
    assert p_more >= p_before >= p_worse
    for model in (before, more, worse):
        advice = recommend(model, features, NOW)
        assert 0.0 <= advice.confidence <= 1.0 and 0.0 <= advice.p_approve <= 1.0
        assert len(advice.factors) <= 5
        weights = [abs(f.weight) for f in advice.factors if f.weight != 0]  # notes (weight 0) come first
        assert weights == sorted(weights, reverse=True)


def test_the_always_approved_rule_is_recommended_and_the_rolled_back_ones_are_not():
    specs = [("alpha", "staging", "approved")] * 40 + [("beta", "production", "approved")] * 12
    specs += [("beta", "production", "rolled_back")] * 18
    specs += [("gamma", "production", "approved")] * 2 + [("gamma", "production", "rolled_back")] * 20
    model = fit("acme", _history(specs), NOW)
    good = recommend(model, gate("alpha", "staging", "approved").features(), NOW)
    often = recommend(model, gate("beta", "production", "approved").features(), NOW)
    mostly = recommend(model, gate("gamma", "production", "approved").features(), NOW)
    assert good.verdict == "approve" and good.p_approve > 0.9 and good.confidence > 0.7
    assert often.verdict == "needs_attention" and abs(often.p_approve - 12 / 30) < 0.15  # 40% kept: calibrated
    assert mostly.verdict == "reject" and mostly.p_approve < 0.2
    assert often.factors[0].weight < 0 and often.factors[0].name.split("=")[0] in ("rule", "repository", "environment")
    assert "12 approved and kept, 18 rejected or rolled back" in " ".join(f.detail for f in often.factors)
    assert model.brier is not None and model.base_rate_brier is not None and model.brier < model.base_rate_brier


def test_a_rule_with_too_few_decided_gates_needs_attention_whatever_the_odds():
    specs = [("alpha", "staging", "approved")] * 40 + [("beta", "staging", "approved")] * 3
    model = fit("acme", _history(specs), NOW)
    advice = recommend(model, gate("beta", "staging", "approved").features(), NOW)
    assert advice.p_approve > 0.8 and advice.verdict == "needs_attention"
    assert advice.factors[0].name == "rule=beta" and "3 decided L2 gate(s) of this rule" in advice.factors[0].detail


def test_too_little_history_needs_attention_and_says_why():
    model = fit("acme", _history([("alpha", "staging", "approved")] * (MIN_SAMPLES - 1)), NOW)
    advice = recommend(model, gate("alpha", "staging", "approved").features(), NOW)
    assert advice.verdict == "needs_attention" and advice.confidence == 0.0
    assert advice.factors[0].name == "history" and f"{MIN_SAMPLES - 1} decided L2 gate(s)" in advice.factors[0].detail
    assert recommend(None, {}, NOW).model_version == "none"


def test_only_people_decided_l2_gates_and_rollbacks_are_learned():
    timed_out = gate("alpha", "staging", "rejected")
    timed_out.human = False  # a chain that timed out: nobody decided
    l1 = gate("alpha", "staging", "approved")
    l1.level = "L1"
    model = fit("acme", [timed_out, l1, gate("alpha", "staging", "rolled_back")], NOW)
    assert (model.samples, model.good, model.bad) == (1, 0, 1)


def test_history_joins_rollbacks_and_overrides_to_their_gate():
    class E:
        def __init__(self, kind, iid, at, data):
            self.kind, self.instance_id, self.at, self.data = kind, iid, at, data

    at = NOW - timedelta(days=3)
    decision = {"level": "L2", "rule": "beta", "reasons": [], "quality": {"result": "pass"}}
    entries = [
        E("event_received", "g1", at, {"repository": "contoso/web", "environment": "production"}),
        E("decision", "g1", at, decision),
        E(
            "decision",
            "g1",
            at,
            {"final": True, "status": "approved", "chain": {"status": "approved", "reason": "quorum"}},
        ),
        E("deployment_finished", "w1", at, {"gate_id": "g1"}),
        E("rollback", "w1", at + timedelta(hours=1), {"step": "dispatched", "ok": True}),
        E("event_received", "g2", at + timedelta(days=1), {"repository": "contoso/web", "environment": "production"}),
        E("decision", "g2", at + timedelta(days=1), decision),
        E("override", "g2", at + timedelta(days=1), {"kind": "approved_against_reject", "gate": "g2"}),
    ]
    first, second = read_history(entries)
    assert first.outcome == "rolled_back" and first.rolled_back_at == at + timedelta(hours=1)
    assert second.recent_rollbacks == 1 and second.features()["recent_rollbacks"] == "1"
    assert second.overrides == ["approved_against_reject"] and second.outcome is None  # not decided yet
    assert [g.instance_id for g in read_history(entries, since=at + timedelta(hours=12))] == ["g2"]


def test_features_read_the_window_hour_and_quality_and_leave_out_what_the_event_lacks():
    features = gate_features(
        {"source": "github", "received_at": "2030-06-03T23:10:00+00:00"},
        {"rule": "Prod", "reasons": ["outside business hours (Mon-Fri 08:00-18:00)"], "quality": {"result": "fail"}},
        NOW,
        2,
    )
    assert features == {
        "rule": "prod",
        "source": "github",
        "hour": "evening",
        "window": "outside_hours",
        "quality": "fail",
        "recent_rollbacks": "2+",
    }
    assert hour_bucket(NOW.replace(hour=3)) == "night" and window_of(["change freeze 'x' until ..."]) == "in_freeze"


def test_overrides_are_decisions_against_a_verdict_not_against_needs_attention():
    assert decision_override("reject", "approved") == "approved_against_reject"
    assert decision_override("approve", "rejected") == "rejected_against_approve"
    assert decision_override("approve", "approved") is None
    assert decision_override("needs_attention", "rejected") is None and decision_override(None, "approved") is None


def test_wilson_interval():
    low, high = wilson(212, 212)
    assert 0.98 < low < 0.985 and high == 1.0
    low, high = wilson(3, 10)
    assert 0.10 < low < 0.11 and 0.60 < high < 0.61
    assert wilson(0, 0) == (0.0, 1.0)


def test_odd_audit_data_is_read_without_failing_the_refit():
    class E:
        def __init__(self, kind, iid, data):
            self.kind, self.instance_id, self.at, self.data = kind, iid, NOW, data

    odd = {"level": "L2", "rule": 7, "reasons": 5, "compliance": 3, "quality": "pass", "recommendation": "x"}
    entries = [
        E("event_received", "g1", {"received_at": "not a time", "repository": {"a": 1}, "environment": "x" * 500}),
        E("decision", "g1", odd),
        E("override", "g1", {"kind": 5, "gate": ["g1"]}),
        E("decision", "g1", {"final": True, "status": "approved", "chain": "quorum"}),
    ]
    (gate_,) = read_history(entries)
    features = gate_.features()
    assert features["rule"] == "7" and features["window"] == "normal" and "repository" not in features
    assert len(features["environment"]) == 120 and gate_.compliance == () and gate_.overrides == []
    assert fit("acme", [gate_], NOW).samples == 1
