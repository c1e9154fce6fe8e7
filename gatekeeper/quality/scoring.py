"""Keptn-style scoring: a verdict per objective, a weighted total, and pass/warning/fail.

Each objective with pass criteria scores its weight on pass, half its weight on warning and 0 on fail;
the total is the sum over the sum of those weights, in percent. The result is pass at or above the pass
threshold, warning at or above the warning threshold, else fail; a failing `key_sli` objective fails the
whole evaluation whatever the total. Objectives without pass criteria are informative (verdict `info`)
and do not count. A missing indicator fails its objective: absent evidence is never good evidence.
"""

from __future__ import annotations

from typing import Literal

from gatekeeper.quality.evidence import QualityEvidence
from gatekeeper.quality.policy import Objective, QualityPolicy
from gatekeeper.quality.result import ObjectiveResult, QualityResult, Verdict


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def evaluate_objective(objective: Objective, evidence: QualityEvidence) -> ObjectiveResult:
    value, baseline = evidence.indicator(objective.sli)
    pass_criteria, warning_criteria = objective.pass_criteria, objective.warning_criteria
    verdict: Verdict
    if pass_criteria is None:
        verdict = "info"
        reason = (
            f"informative only: {objective.sli} = {_fmt(value)}"
            if value is not None
            else (f"informative only: no {objective.sli} in the evidence")
        )
    elif value is None:
        verdict, reason = "fail", f"no {objective.sli} value in the evidence"
    else:
        met, why = pass_criteria.check(value, baseline)
        if met:
            verdict, reason = "pass", why
        elif warning_criteria is not None:
            warn_met, warn_why = warning_criteria.check(value, baseline)
            if warn_met:
                verdict, reason = "warning", f"missed pass ({why}) but met warning ({warn_why})"
            else:
                verdict, reason = "fail", f"missed pass ({why}) and warning ({warn_why})"
        else:
            verdict, reason = "fail", why
    scored = verdict != "info"
    points = {"pass": objective.weight, "warning": objective.weight / 2}.get(verdict, 0.0)
    if objective.key_sli and verdict == "fail":
        reason += " [key objective]"
    return ObjectiveResult(
        name=objective.display_name,
        kind=objective.kind,
        value=value,
        baseline=baseline,
        criteria={
            "pass": str(pass_criteria) if pass_criteria else None,
            "warning": str(warning_criteria) if warning_criteria else None,
        },
        verdict=verdict,
        weight=objective.weight if scored else 0.0,
        score=points,
        reason=reason,
    )


def evaluate_quality(policy: QualityPolicy, evidence: QualityEvidence | None) -> QualityResult:
    """The quality result of the evidence against the policy's objectives."""
    if not policy.objectives:
        return QualityResult(result="pass", score=None, summary="no quality objectives configured")
    if evidence is None or evidence.is_empty:
        outcome = policy.missing_evidence
        return QualityResult(
            result=outcome,
            score=None,
            summary=(
                f"no quality evidence attached: {len(policy.objectives)} objective(s) not evaluated, "
                f"quality result is {outcome} (policy quality.missing_evidence)"
            ),
        )
    results = tuple(evaluate_objective(o, evidence) for o in policy.objectives)
    max_points = sum(r.weight for r in results if r.verdict != "info")
    if max_points <= 0:
        return QualityResult(result="pass", score=None, objectives=results, summary="no scored quality objectives")
    total = round(sum(r.score for r in results) / max_points * 100.0, 6)
    thresholds = policy.total_score
    pairs = zip(policy.objectives, results, strict=True)
    key_failures = [r.name for o, r in pairs if o.key_sli and r.verdict == "fail"]
    failed = [r.name for r in results if r.verdict == "fail"]
    result: Literal["pass", "warning", "fail"]
    if key_failures:
        result = "fail"
        why = f"key objective(s) failed: {', '.join(key_failures)}"
    elif total >= thresholds.pass_:
        result, why = "pass", f"score {total:.2f} >= pass threshold {thresholds.pass_:g}"
    elif total >= thresholds.warning:
        result, why = "warning", f"score {total:.2f} below pass {thresholds.pass_:g}, >= warning {thresholds.warning:g}"
    else:
        result, why = "fail", f"score {total:.2f} below warning threshold {thresholds.warning:g}"
    if failed and not key_failures:
        why += f"; failed: {', '.join(failed)}"
    return QualityResult(result=result, score=round(total, 2), objectives=results, summary=f"quality {result}: {why}")
