"""The recommendation model: per-feature Bayesian approval rates shrunk to the tenant's own rate, combined
with weights chosen by a leave-one-out Brier score. Pure and small, so a person can check every number.

For each feature value (rule=staging-deploy, hour=night, ...) the model keeps two counts from the tenant's
own L2 history: gates that were approved and stayed (good, g) and gates that were rejected or approved and
then rolled back (bad, b). With the tenant rate P = (G + 1) / (G + B + 2) (G, B: the tenant's totals), each
value's rate is shrunk towards it, r = (g + k P) / (g + b + k) with k = SHRINK pseudo-gates, and for a new
gate with values x the log-odds of "good" are

    z = logit(P) + sum_i w_i * (logit(r_i) - logit(P))

Each summand is a factor: its weight is what it adds to the log-odds (a value never seen adds nothing: its
rate is the tenant's), and the top five by size are shown with their counts. The weights w_i >= 0 with
sum w_i <= 1 (features are not independent: rule, repository and environment move together, and counting
them all in full would be overconfident) are chosen at fit time by coordinate search over a grid, minimising
the leave-one-out Brier score, which is reported next to the Brier score of the tenant rate alone.

Invariants (tests/unit/test_recommend_model.py, hypothesis): probabilities lie in [0, 1]; for given weights,
one more approved gate that looks like x never lowers p_approve(x) and one more rejected or rolled-back one
never raises it: z = (1 - sum w_i) logit(P) + sum w_i logit(r_i) has non-negative coefficients, and P and
every r_i of x move in the direction of the new outcome. A refit may move the weights (calibration);
`model_fitted` records them. A rule with fewer than `MIN_RULE_EVIDENCE` decided gates gets "needs attention"
whatever the odds. Recommendations never change a gate's level: callers attach them to the decision only.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gatekeeper.recommend.features import FEATURES, rollback_bucket, service_key
from gatekeeper.recommend.history import GateHistory, recent_rollbacks

Verdict = Literal["approve", "reject", "needs_attention"]
MODEL_FORMAT: Literal[1] = 1
SHRINK = 5.0  # pseudo-gates at the tenant rate that every feature value's rate starts from
WEIGHT_GRID = tuple(i / 10 for i in range(11))  # 0.0 .. 1.0; the weights of one model sum to at most 1
SEARCH_PASSES = 4
MIN_SAMPLES = 10  # fewer decided L2 gates than this: the model says "needs attention" and why
APPROVE_AT = 0.8  # p_approve at or above: recommend approve
REJECT_AT = 0.35  # p_approve at or below: recommend reject
EVIDENCE_HALF = 10  # confidence is half of max(p, 1-p) when the rule has this many decided gates
MIN_RULE_EVIDENCE = 5  # fewer decided gates of the gate's own rule: "needs attention", whatever the odds
MAX_VALUES_PER_FEATURE = 500  # the most frequent values are kept; the model stays a small JSON document
MAX_LOO_SAMPLES = 20_000  # calibration is measured on the newest this many samples
TOP_FACTORS = 5


class Factor(BaseModel):
    """One reason behind a recommendation: the feature value, what it added to the log-odds, its counts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    weight: float
    detail: str


class Recommendation(BaseModel):
    """What an L2 request carries (audit `decision.data.recommendation`, the card and the page)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    verdict: Verdict
    confidence: float = Field(ge=0.0, le=1.0)
    p_approve: float = Field(ge=0.0, le=1.0)
    model_version: str
    factors: tuple[Factor, ...] = Field(default=(), max_length=TOP_FACTORS)

    def to_audit(self) -> dict[str, object]:
        return self.model_dump(mode="json")


class Model(BaseModel):
    """One tenant's fitted model: counts, totals, the feature weights, calibration, recent rollbacks per service."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal[1] = MODEL_FORMAT
    tenant_id: str
    version: str
    fitted_at: datetime
    samples: int = Field(ge=0)
    good: int = Field(ge=0)
    bad: int = Field(ge=0)
    weights: dict[str, float] = {}  # per feature name, >= 0 (monotonicity needs it)
    counts: dict[str, dict[str, tuple[int, int]]] = {}
    rollbacks: dict[str, list[datetime]] = {}
    brier: float | None = None
    base_rate_brier: float | None = None

    def rule_evidence(self, rule: str | None) -> int:
        good, bad = self.counts.get("rule", {}).get(rule or "", (0, 0))
        return good + bad


def _rate(good: float, bad: float) -> float:
    """The tenant rate, Laplace-smoothed."""
    return (good + 1) / (good + bad + 2)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _term(g: float, b: float, prior: float) -> float:
    """logit of the value's rate shrunk towards `prior`, minus logit(prior): 0 for a value never seen."""
    return _logit((g + SHRINK * prior) / (g + b + SHRINK)) - _logit(prior)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _labelled(history: Sequence[GateHistory]) -> list[tuple[dict[str, str], int]]:
    """(features, 1 good / 0 bad) of every L2 gate people decided or that was rolled back."""
    samples = []
    for gate in history:
        outcome = gate.outcome
        if gate.level != "L2" or outcome is None:
            continue
        samples.append((gate.features(), 1 if outcome == "approved" else 0))
    return samples


def fit(tenant_id: str, history: Sequence[GateHistory], at: datetime) -> Model:
    """Count, choose the feature weights by leave-one-out Brier score, and version the result."""
    samples = _labelled(history)
    counts: dict[str, dict[str, list[int]]] = {name: {} for name in FEATURES}
    good = sum(y for _, y in samples)
    bad = len(samples) - good
    for features, y in samples:
        for name, value in features.items():
            pair = counts.setdefault(name, {}).setdefault(value, [0, 0])
            pair[0 if y else 1] += 1
    kept = {
        name: dict(sorted(values.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))[:MAX_VALUES_PER_FEATURE])
        for name, values in counts.items()
        if values
    }
    weights, brier, base = _calibrate(samples[-MAX_LOO_SAMPLES:], kept, good, bad)
    frozen = {name: {v: (c[0], c[1]) for v, c in values.items()} for name, values in kept.items()}
    digest = hashlib.sha256(
        json.dumps([tenant_id, frozen, weights], sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    return Model(
        tenant_id=tenant_id,
        version=f"{at:%Y%m%dT%H%M%SZ}-{digest[:8]}",
        fitted_at=at,
        samples=len(samples),
        good=good,
        bad=bad,
        weights=weights,
        counts=frozen,
        rollbacks={s: [datetime.fromisoformat(t) for t in ts] for s, ts in recent_rollbacks(history).items()},
        brier=brier,
        base_rate_brier=base,
    )


def _calibrate(
    samples: Sequence[tuple[dict[str, str], int]], counts: Mapping[str, Mapping[str, list[int]]], good: int, bad: int
) -> tuple[dict[str, float], float | None, float | None]:
    """Weights (each >= 0, summing to at most 1) with the lowest leave-one-out Brier score, by coordinate
    search over WEIGHT_GRID from "the tenant rate alone"; that score, and the tenant rate's own."""
    weights = dict.fromkeys(FEATURES, 0.0)
    if len(samples) < 2:
        return weights, None, None
    labels: list[int] = []
    columns: dict[str, list[float]] = {name: [] for name in FEATURES}
    z: list[float] = []
    base = 0.0
    for features, y in samples:  # every count without the sample itself: leave one out
        prior = _rate(good - y, bad - (1 - y))
        for name in FEATURES:
            pair = counts.get(name, {}).get(features.get(name, ""))
            columns[name].append(0.0 if pair is None else _term(pair[0] - y, pair[1] - (1 - y), prior))
        labels.append(y)
        z.append(_logit(prior))
        base += (prior - y) ** 2
    n = len(samples)

    def brier(values: list[float]) -> float:
        return sum((_sigmoid(v) - y) ** 2 for v, y in zip(values, labels, strict=True)) / n

    best = brier(z)
    for _ in range(SEARCH_PASSES):
        changed = False
        for name in FEATURES:  # the named features first: among equal fits, rule and repository get the weight
            column = columns[name]
            if not any(column):
                continue
            room = 1.0 - sum(w for other, w in weights.items() if other != name)
            for candidate in WEIGHT_GRID:
                delta = candidate - weights[name]
                if delta == 0 or candidate > room + 1e-9:
                    continue
                trial = [v + delta * c for v, c in zip(z, column, strict=True)]
                score = brier(trial)
                if score < best - 1e-9:
                    best, z, weights[name], changed = score, trial, candidate, True
        if not changed:
            break
    return weights, round(best, 6), round(base / n, 6)


def live_features(model: Model | None, features: Mapping[str, str], at: datetime) -> dict[str, str]:
    """`features` with `recent_rollbacks` counted from the model's record of rollbacks per service (the
    caller knows only the gate; the incidents come from the history the model was fitted on)."""
    from datetime import timedelta

    from gatekeeper.recommend.features import ROLLBACK_LOOKBACK_DAYS

    out = dict(features)
    if model is not None:
        times = model.rollbacks.get(service_key(features.get("repository"), features.get("environment")), [])
        cutoff = at - timedelta(days=ROLLBACK_LOOKBACK_DAYS)
        out["recent_rollbacks"] = rollback_bucket(sum(1 for t in times if cutoff <= t <= at))
    return out


def predict(model: Model, features: Mapping[str, str]) -> tuple[float, list[Factor]]:
    """p_approve for `features` and every factor, largest contribution first."""
    factors = []
    prior = _rate(model.good, model.bad)
    z = _logit(prior)
    for name in FEATURES:
        value = features.get(name)
        if value is None:
            continue
        g, b = model.counts.get(name, {}).get(value, (0, 0))
        weight = model.weights.get(name, 0.0) * _term(g, b, prior)
        z += weight
        if g + b:
            detail = f"{g} approved and kept, {b} rejected or rolled back ({g / (g + b):.0%} good)"
        else:
            detail = f"not seen in the {model.samples} decided L2 gates of the history"
        factors.append(Factor(name=f"{name}={value}"[:200], weight=round(weight, 4), detail=detail))
    factors = sorted((f for f in factors if f.weight != 0), key=lambda f: -abs(f.weight))
    if not factors:
        rate = f"{model.good} of {model.samples} decided L2 gates approved and kept"
        factors = [Factor(name="tenant base rate", weight=round(_logit(prior), 4), detail=rate)]
    return _sigmoid(z), factors


def recommend(model: Model | None, features: Mapping[str, str], at: datetime) -> Recommendation:
    """The recommendation for a gate with `features` at `at`; with no or too little history, "needs
    attention" with the reason as its only factor."""
    if model is None or model.samples < MIN_SAMPLES:
        seen = model.samples if model is not None else 0
        return Recommendation(
            verdict="needs_attention",
            confidence=0.0,
            p_approve=0.5 if model is None else round((model.good + 1) / (model.samples + 2), 4),
            model_version=model.version if model is not None else "none",
            factors=(
                Factor(
                    name="history",
                    weight=0.0,
                    detail=f"{seen} decided L2 gate(s) in this tenant's history; at least {MIN_SAMPLES} needed",
                ),
            ),
        )
    live = live_features(model, features, at)
    p, factors = predict(model, live)
    verdict: Verdict = "approve" if p >= APPROVE_AT else "reject" if p <= REJECT_AT else "needs_attention"
    evidence = model.rule_evidence(live.get("rule"))
    confidence = max(p, 1 - p) * evidence / (evidence + EVIDENCE_HALF)
    if evidence < MIN_RULE_EVIDENCE:  # the odds come from other rules' gates: not enough to advise on this one
        verdict = "needs_attention"
        note = f"{evidence} decided L2 gate(s) of this rule; at least {MIN_RULE_EVIDENCE} needed to recommend"
        factors = [Factor(name=f"rule={live.get('rule')}"[:200], weight=0.0, detail=note), *factors]
    return Recommendation(
        verdict=verdict,
        confidence=round(min(1.0, max(0.0, confidence)), 4),
        p_approve=round(min(1.0, max(0.0, p)), 4),
        model_version=model.version,
        factors=tuple(factors[:TOP_FACTORS]),
    )
