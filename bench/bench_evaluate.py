"""Throughput of `gatekeeper.policy.evaluate` with a 1,000-rule policy.

The policy is what an MSP with 200 customers writes: five rules per customer repository owner
(production deploy from main -> L2 with a two-stage chain, production from other branches -> L3,
production infrastructure -> L2, staging -> L1, dev/test -> L0). The event is a production deploy of
customer 150, whose rules sit at positions 750-754, so a linear scan tests ~750 rules first.

Baselines, measured in the same run and alternately with the figure they anchor:
- the same full decision with a 1-rule policy: what the 999 extra rules cost. The rule index
  (gatekeeper/policy/index.py) should make rule count nearly free (target >= 0.7);
- a trivial first-match loop over the same 1,000 rules (fnmatch per pattern, no windows, no quality,
  no decision object): what the obvious implementation of rule lookup alone costs. The full indexed
  evaluation should still be faster (target >= 1.0);
- informative only: a 1,000-rule policy that cannot be indexed (every rule keyed on environment and
  repository globs, the match at the end), i.e. the index's worst case, against the 1-rule policy;
- informative only: the same decision with evidence scored against 7 quality objectives.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from bench.common import Ratio, rate
from gatekeeper.events.model import ActionKind, EventKind, EventSource, PipelineEvent
from gatekeeper.policy import GateDecision, PolicyDocument, evaluate, load_policy
from gatekeeper.quality import load_evidence

CUSTOMERS = 200
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
AT = datetime(2025, 3, 31, 8, 0, tzinfo=UTC)
CHAIN = {
    "stages": [
        {
            "name": "release-managers",
            "approvers": ["lisa.devries@contoso.com", "tom.mulder@contoso.com"],
            "quorum": 1,
            "timeout": "PT4H",
            "on_timeout": "escalate",
        },
        {
            "name": "change-advisory-board",
            "approvers": ["anna.jansen@contoso.com", "piet.bakker@contoso.com", "sara.visser@contoso.com"],
            "quorum": 2,
            "timeout": "PT8H",
            "on_timeout": "reject",
        },
    ]
}


def msp_rules(customers: int = CUSTOMERS) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    prod = ["production", "prod-*"]
    for i in range(customers):
        repos = [f"customer{i:03d}/*"]
        rules += [
            {
                "name": f"c{i:03d}-prod-deploy",
                "level": "L2",
                "approval": CHAIN,
                "match": {
                    "repositories": repos,
                    "actions": ["deploy"],
                    "environments": prod,
                    "branches": ["main", "release/**"],
                },
            },
            {
                "name": f"c{i:03d}-prod-other",
                "level": "L3",
                "match": {"repositories": repos, "actions": ["deploy"], "environments": prod},
            },
            {
                "name": f"c{i:03d}-prod-infra",
                "level": "L2",
                "approval": CHAIN,
                "match": {"repositories": repos, "actions": ["infrastructure_change"], "environments": prod},
            },
            {
                "name": f"c{i:03d}-staging",
                "level": "L1",
                "match": {"repositories": repos, "environments": ["staging", "staging-*"]},
            },
            {
                "name": f"c{i:03d}-dev",
                "level": "L0",
                "match": {"repositories": repos, "environments": ["dev", "dev-*", "test", "test-*"]},
            },
        ]
    return rules


def unindexable_rules(count: int = 1000) -> list[dict[str, Any]]:
    """Rules keyed only on globs: nothing to file them under, so every event tests all of them."""
    return [
        {
            "name": f"g{i:04d}",
            "level": "L1",
            "match": {"environments": [f"prod-{i:04d}-*"], "repositories": [f"*/service-{i:04d}"]},
        }
        for i in range(count)
    ]


def policy_of(rules: list[dict[str, Any]]) -> PolicyDocument:
    return load_policy({"version": 1, "defaults": {"approval": CHAIN}, "rules": rules})


def production_deploy(owner: str, environment: str = "production", repo: str = "portal") -> PipelineEvent:
    return PipelineEvent(
        tenant_id="local",
        source=EventSource.GITHUB,
        kind=EventKind.GATE_REQUEST,
        action=ActionKind.DEPLOY,
        environment=environment,
        repository=f"{owner}/{repo}",
        ref="refs/heads/main",
        run_id="4747967848",
    )


def first_match_loop(rules: list[dict[str, Any]], event: PipelineEvent) -> str | None:
    """The trivial implementation: test every rule in order with fnmatch, return the first name."""
    branch = (event.ref or "").removeprefix("refs/heads/")
    env = (event.environment or "").lower()
    repo = (event.repository or "").lower()
    action = event.action.value if event.action else None
    for rule in rules:
        match = rule.get("match", {})
        if "actions" in match and action not in match["actions"]:
            continue
        if "environments" in match and not any(fnmatchcase(env, p.lower()) for p in match["environments"]):
            continue
        if "repositories" in match and not any(fnmatchcase(repo, p.lower()) for p in match["repositories"]):
            continue
        if "branches" in match and not any(fnmatchcase(branch, p) for p in match["branches"]):
            continue
        return rule["name"]
    return None


def _paired(a: Callable[[], Any], b: Callable[[], Any], count: int, rounds: int = 5) -> tuple[float, float]:
    """Rates of a and b (calls/s), measured alternately so that load on a shared machine hits both alike.
    The first round warms caches and is dropped; the median of the others is kept."""
    rates_a: list[float] = []
    rates_b: list[float] = []
    for _ in range(rounds + 1):
        rates_a.append(rate(a, count))
        rates_b.append(rate(b, count))
    return statistics.median(rates_a[1:]), statistics.median(rates_b[1:])


def _decide(policy: PolicyDocument, event: PipelineEvent, evidence: Any = None) -> GateDecision:
    return evaluate(policy, event, evidence, AT)


def run() -> list[Ratio]:
    rules = msp_rules()
    assert len(rules) == 1000
    big = policy_of(rules)
    event = production_deploy("customer150")
    one = policy_of([r for r in rules if r["name"] == "c150-prod-deploy"])
    glob_rules = unindexable_rules()
    worst = policy_of(glob_rules)
    worst_event = production_deploy("customer999", environment="prod-0999-weu", repo="service-0999")
    worst_one = policy_of(glob_rules[-1:])
    evidence = load_evidence(EXAMPLES / "evidence" / "passing.json")
    example = load_policy(EXAMPLES / "policy.yaml")
    example_event = production_deploy("contoso")

    # The figures compare like with like only if every variant reaches the same decision.
    expected = "c150-prod-deploy"
    assert _decide(big, event).rule == _decide(one, event).rule == first_match_loop(rules, event) == expected
    assert _decide(worst, worst_event).rule == _decide(worst_one, worst_event).rule == "g0999"
    assert _decide(example, example_event, evidence).quality.result == "pass"

    n = 2000
    big_rate, one_rate = _paired(lambda: _decide(big, event), lambda: _decide(one, event), n)
    big_rate_2, loop_rate = _paired(lambda: _decide(big, event), lambda: first_match_loop(rules, event), 200)
    worst_rate, worst_one_rate = _paired(
        lambda: _decide(worst, worst_event), lambda: _decide(worst_one, worst_event), 200
    )
    evidence_rate, no_evidence_rate = _paired(
        lambda: _decide(example, example_event, evidence), lambda: _decide(example, example_event), n
    )
    unit = "decisions/s"
    return [
        Ratio("evaluate, 1,000-rule MSP policy vs 1-rule policy", big_rate, one_rate, unit, ">= 0.7"),
        Ratio(
            "evaluate (full decision), 1,000 rules vs trivial first-match loop (lookup only)",
            big_rate_2,
            loop_rate,
            unit,
            ">= 1.0",
        ),
        Ratio(
            "evaluate, 1,000 unindexable glob rules (worst case) vs 1-rule policy", worst_rate, worst_one_rate, unit, ""
        ),
        Ratio(
            "evaluate with 7 quality objectives vs without evidence (example policy)",
            evidence_rate,
            no_evidence_rate,
            unit,
            "",
        ),
    ]
