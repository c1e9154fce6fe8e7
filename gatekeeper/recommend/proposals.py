"""`policy recommend`: policy changes the tenant's own evidence supports, each with its numbers and interval.

Per rule of the current policy, from the gates it decided in the window:
- an L2 rule whose gates people approved and kept so consistently that the 95% Wilson interval of its good
  rate starts at `LOWER_AT` or above (and at least `MIN_GATES` gates): propose L1 (run, then notify);
- an L0/L1 rule whose changes were flagged for rollback or rolled back so often that the interval of its
  bad rate starts at `RAISE_AT` or above: propose L2 (approval first), when the policy has a chain for it;
- any rule whose decisions went against the recommendation (overrides) in `REVIEW_AT` or more of its
  decided gates: "review the rule" (no automatic edit: people and model disagree, one of them is wrong).
Never proposed: lowering an L3 rule, or lowering any rule with a compliance mapping (its changes are evidence
for a framework control; removing the human step is the auditor's call, not the model's). Such a rule that
would otherwise qualify is listed as refused, with the reason.

The edit is the policy document with only the proposed `level`s changed, for `policy publish`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gatekeeper.policy.document import PolicyDocument
from gatekeeper.recommend.history import GateHistory

MIN_GATES = 30
LOWER_AT = 0.95  # lower bound of the good rate's 95% interval needed to propose L2 -> L1
MIN_RAISE_GATES = 10
RAISE_AT = 0.10  # lower bound of the bad rate's interval needed to propose L0/L1 -> L2
MIN_REVIEW_GATES = 10
REVIEW_AT = 0.20  # share of decided gates overridden from which a rule is flagged for review
Z95 = 1.959964
DECISION_OVERRIDES = frozenset({"approved_against_reject", "rejected_against_approve"})


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default); (0, 1) with no observations."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class RuleEvidence:
    """What one rule's gates did in the window."""

    rule: str
    level: str
    compliance: tuple[str, ...] = ()
    gates: int = 0
    approvals: int = 0  # approved and kept (people at L2, automation at L0/L1, a person's task at L3)
    rejections: int = 0  # rejected by people
    rollbacks: int = 0  # approved, then rolled back or flagged for rollback
    overridden: int = 0  # people decided against the recommendation

    @property
    def decided(self) -> int:
        return self.approvals + self.rejections + self.rollbacks


@dataclass(frozen=True)
class Proposal:
    rule: str
    action: Literal["lower", "raise", "review", "refused"]
    summary: str
    from_level: str | None = None
    to_level: str | None = None


@dataclass
class Recommendations:
    proposals: list[Proposal] = field(default_factory=list)
    evidence: dict[str, RuleEvidence] = field(default_factory=dict)

    @property
    def changes(self) -> list[Proposal]:
        return [p for p in self.proposals if p.action in ("lower", "raise")]


def rule_evidence(policy: PolicyDocument, history: Sequence[GateHistory]) -> dict[str, RuleEvidence]:
    """Counts per rule of the current policy (gates of rules no longer in it are left out)."""
    found = {
        r.name: RuleEvidence(rule=r.name, level=r.level.value, compliance=tuple(c.label() for c in r.compliance or ()))
        for r in policy.rules
    }
    for gate in history:
        evidence = found.get(gate.rule or "")
        if evidence is None or gate.blocked:
            continue
        evidence.gates += 1
        outcome = gate.outcome
        if gate.status == "human_task":  # L3: a person did it; it counts as good unless it was rolled back
            outcome = "rolled_back" if gate.rolled_back else "approved"
        if outcome == "approved":
            evidence.approvals += 1
        elif outcome == "rejected":
            evidence.rejections += 1
        elif outcome == "rolled_back":
            evidence.rollbacks += 1
        if any(kind in DECISION_OVERRIDES for kind in gate.overrides):
            evidence.overridden += 1
    return found


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _numbers(e: RuleEvidence, days: int) -> str:
    return f"{e.approvals} approvals, {e.rejections} rejections, {e.rollbacks} rollbacks in {days} days"


def recommend_policy(
    policy: PolicyDocument, history: Sequence[GateHistory], days: int, *, has_default_chain: bool | None = None
) -> Recommendations:
    """The proposals for `policy` from `history` (the tenant's gates of the last `days` days)."""
    evidence = rule_evidence(policy, history)
    out = Recommendations(evidence=evidence)
    chains = {r.name: r.approval is not None for r in policy.rules}
    default_chain = policy.defaults.approval is not None if has_default_chain is None else has_default_chain
    for name, e in evidence.items():
        good_low, good_high = wilson(e.approvals, e.decided)
        if e.level in ("L2", "L3") and e.decided >= MIN_GATES and good_low >= LOWER_AT:
            numbers = (
                f"{_numbers(e, days)} (good rate {_pct(e.approvals / e.decided)}, "
                f"95% Wilson interval {_pct(good_low)}-{_pct(good_high)})"
            )
            if e.level == "L3":
                out.proposals.append(
                    Proposal(name, "refused", f"rule {name}: {numbers} -> not proposed: L3 rules are never lowered")
                )
            elif e.compliance:
                out.proposals.append(
                    Proposal(
                        name,
                        "refused",
                        f"rule {name}: {numbers} -> not proposed: it maps to {', '.join(e.compliance)}; rules "
                        "with a compliance mapping are never lowered",
                    )
                )
            else:
                out.proposals.append(Proposal(name, "lower", f"rule {name}: {numbers} -> propose L1", "L2", "L1"))
        bad = e.rollbacks + e.rejections
        bad_low, bad_high = wilson(bad, e.decided)
        if e.level in ("L0", "L1") and e.decided >= MIN_RAISE_GATES and bad_low >= RAISE_AT:
            numbers = (
                f"{_numbers(e, days)} (rolled back or flagged {_pct(bad / e.decided)}, "
                f"95% Wilson interval {_pct(bad_low)}-{_pct(bad_high)})"
            )
            if chains.get(name) or default_chain:
                out.proposals.append(Proposal(name, "raise", f"rule {name}: {numbers} -> propose L2", e.level, "L2"))
            else:
                out.proposals.append(
                    Proposal(
                        name,
                        "review",
                        f"rule {name}: {numbers} -> review the rule (L2 would need an approval chain; "
                        "the policy has none for it)",
                    )
                )
        if e.decided >= MIN_REVIEW_GATES:
            low, high = wilson(e.overridden, e.decided)
            share = e.overridden / e.decided
            if share >= REVIEW_AT:
                out.proposals.append(
                    Proposal(
                        name,
                        "review",
                        f"rule {name}: {share:.0%} overridden ({e.overridden} of {e.decided} decided gates went "
                        f"against the recommendation; 95% Wilson interval {_pct(low)}-{_pct(high)}) -> review the rule",
                    )
                )
    return out


def apply_changes(document: Mapping[str, Any], changes: Sequence[Proposal]) -> dict[str, Any]:
    """A copy of the parsed policy `document` with each changed rule's `level` set, nothing else touched."""
    edited = copy.deepcopy(dict(document))
    targets = {p.rule: p.to_level for p in changes if p.to_level}
    for rule in edited.get("rules") or ():
        if isinstance(rule, dict) and rule.get("name") in targets:
            rule["level"] = targets[rule["name"]]
    return edited
