"""Keptn-style scoring: weights, pass/warning/fail, key objectives, informative objectives."""

from __future__ import annotations

import pytest

from gatekeeper.quality import QualityEvidence, QualityPolicy, evaluate_quality


def _policy(objectives, **extra):
    return QualityPolicy.model_validate({"objectives": objectives, **extra})


def _evidence(**slo):
    return QualityEvidence.from_mapping(
        {
            "slo": [
                {"name": k, "value": v[0], "baseline": v[1]} if isinstance(v, tuple) else {"name": k, "value": v}
                for k, v in slo.items()
            ]
        }
    )


def test_weighted_total_and_thresholds():
    policy = _policy(
        [
            {"sli": "slo.rt", "pass": "<=+10%", "warning": "<=+20%", "weight": 2},  # warning: 1 of 2
            {"sli": "slo.errors", "pass": "<1"},  # pass: 1 of 1
            {"sli": "slo.cpu", "pass": "<80", "warning": "<90"},  # fail: 0 of 1
        ],
        total_score={"pass": "90%", "warning": 50},
    )
    result = evaluate_quality(policy, _evidence(rt=(115, 100), errors=0.5, cpu=95))
    assert [o.verdict for o in result.objectives] == ["warning", "pass", "fail"]
    assert [o.score for o in result.objectives] == [1.0, 1.0, 0.0]
    assert result.score == 50.0  # (1 + 1 + 0) / (2 + 1 + 1)
    assert result.result == "warning"  # 50 >= warning 50, below pass 90
    assert "failed: slo.cpu" in result.summary


@pytest.mark.parametrize(
    ("rt", "expected_result", "expected_score"),
    [((100, 100), "pass", 100.0), ((115, 100), "warning", 75.0), ((130, 100), "fail", 50.0)],
)
def test_result_thresholds(rt, expected_result, expected_score):
    policy = _policy(
        [{"sli": "slo.rt", "pass": "<=+10%", "warning": "<=+20%"}, {"sli": "slo.errors", "pass": "<1"}],
        total_score={"pass": 90, "warning": 75},
    )
    result = evaluate_quality(policy, _evidence(rt=rt, errors=0))
    assert (result.result, result.score) == (expected_result, expected_score)


def test_key_objective_failure_fails_a_high_total():
    objectives = [{"sli": f"slo.m{i}", "pass": "<1"} for i in range(9)]
    objectives.append({"sli": "slo.critical", "pass": "<=0", "key_sli": True})
    result = evaluate_quality(_policy(objectives), _evidence(critical=1, **{f"m{i}": 0 for i in range(9)}))
    assert result.score == 90.0  # would pass on score alone
    assert result.result == "fail"
    assert "key objective(s) failed: slo.critical" in result.summary
    assert result.objectives[-1].reason.endswith("[key objective]")


def test_key_objective_warning_does_not_fail():
    policy = _policy([{"sli": "slo.x", "pass": "<1", "warning": "<2", "key_sli": True}], total_score={"warning": 50})
    assert evaluate_quality(policy, _evidence(x=1.5)).result == "warning"


def test_informative_objective_is_reported_not_scored():
    policy = _policy([{"sli": "sarif.medium", "name": "medium"}, {"sli": "slo.errors", "pass": "<1"}])
    evidence = QualityEvidence.from_mapping({"sarif": {"medium": 4}, "slo": [{"name": "errors", "value": 0}]})
    result = evaluate_quality(policy, evidence)
    info = result.objectives[0]
    assert (info.verdict, info.value, info.weight, info.score) == ("info", 4.0, 0.0, 0.0)
    assert (result.result, result.score) == ("pass", 100.0)


def test_missing_indicator_fails_its_objective():
    policy = _policy([{"sli": "coverage.line_percent", "pass": ">=80"}, {"sli": "slo.errors", "pass": "<1"}])
    result = evaluate_quality(policy, _evidence(errors=0))
    assert result.objectives[0].verdict == "fail"
    assert result.objectives[0].reason == "no coverage.line_percent value in the evidence"
    assert result.score == 50.0


def test_relative_criterion_without_baseline_fails_with_reason():
    policy = _policy([{"sli": "slo.rt", "pass": "<=+10%"}])
    result = evaluate_quality(policy, _evidence(rt=100))
    assert result.objectives[0].verdict == "fail"
    assert "needs a baseline" in result.objectives[0].reason


def test_or_groups_let_an_absolute_limit_rescue_a_missing_baseline():
    policy = _policy([{"sli": "slo.rt", "pass": [{"criteria": ["<=+10%"]}, {"criteria": ["<200"]}]}])
    assert evaluate_quality(policy, _evidence(rt=150)).objectives[0].verdict == "pass"


@pytest.mark.parametrize(("setting", "expected"), [("pass", "pass"), ("warning", "warning"), ("fail", "fail")])
def test_missing_evidence_follows_policy(setting, expected):
    policy = _policy([{"sli": "slo.rt", "pass": "<1"}], missing_evidence=setting)
    for evidence in (None, QualityEvidence()):
        result = evaluate_quality(policy, evidence)
        assert (result.result, result.score, result.objectives) == (expected, None, ())
        assert "no quality evidence attached" in result.summary


def test_no_objectives_passes_without_score():
    result = evaluate_quality(QualityPolicy(), _evidence(rt=1))
    assert (result.result, result.score) == ("pass", None)


def test_tests_pass_rate_excludes_skipped():
    policy = _policy([{"sli": "tests.pass_rate", "pass": ">=99"}])
    evidence = QualityEvidence.from_mapping({"tests": {"passed": 99, "failed": 1, "skipped": 50}})
    objective = evaluate_quality(policy, evidence).objectives[0]
    assert (objective.value, objective.verdict) == (99.0, "pass")


def test_objective_result_public_shape():
    policy = _policy([{"sli": "slo.rt", "name": "p95", "pass": ["<=+10%", "<600"], "warning": "<=+20%"}])
    objective = evaluate_quality(policy, _evidence(rt=(105, 100))).objectives[0]
    assert objective.model_dump() == {
        "name": "p95",
        "kind": "slo",
        "value": 105.0,
        "baseline": 100.0,
        "criteria": {"pass": "<=+10% and <600", "warning": "<=+20%"},
        "verdict": "pass",
        "weight": 1.0,
        "score": 1.0,
        "reason": "105 is +5.00% against baseline 100, within <=+10% and 105 < 600",
    }


@pytest.mark.parametrize(
    ("objectives", "message"),
    [
        ([{"sli": "slo.x", "warning": "<1"}], "warning criteria need pass criteria"),
        ([{"sli": "slo.x", "key_sli": True}], "key objective needs pass criteria"),
        ([{"sli": "slo.x", "pass": "<=10%"}], "needs a sign"),
        ([{"sli": "slo.x", "pass": "<1"}, {"sli": "slo.x", "pass": "<2"}], "duplicate objective"),
        ([{"sli": "tests.ratio", "pass": "<1"}], "should match pattern"),
    ],
)
def test_invalid_quality_policies(objectives, message):
    with pytest.raises(ValueError, match=message):
        _policy(objectives)


def test_total_score_warning_above_pass_is_refused():
    with pytest.raises(ValueError, match="must not be above pass"):
        QualityPolicy.model_validate({"total_score": {"pass": 70, "warning": 80}})
