"""The rule index returns exactly what a linear first-match scan returns, while testing fewer rules."""

from __future__ import annotations

import random

from gatekeeper.events.model import ActionKind, EventSource
from gatekeeper.policy import load_policy
from gatekeeper.policy.index import RuleIndex, index_keys
from gatekeeper.policy.rules import MatchContext

OWNERS = ["contoso", "fabrikam", "northwind", "tailspin"]
ENVIRONMENTS = ["production", "staging", "dev", "prod-eu", "test"]


def _random_match(rng: random.Random) -> dict:
    match: dict = {}
    if rng.random() < 0.5:
        match["repositories"] = rng.choice(
            [
                [f"{rng.choice(OWNERS)}/*"],
                [f"{rng.choice(OWNERS)}/web", f"{rng.choice(OWNERS)}/**"],
                ["*/web"],
                ["**"],
                [rng.choice(OWNERS)],
            ]
        )
    if rng.random() < 0.5:
        match["environments"] = rng.choice([[rng.choice(ENVIRONMENTS)], ["prod*"], ["Production", "dev"]])
    if rng.random() < 0.4:
        match["actions"] = rng.sample([a.value for a in ActionKind], rng.randint(1, 2))
    if rng.random() < 0.2:
        match["sources"] = [rng.choice(["github", "azure-devops"])]
    if rng.random() < 0.2:
        match["labels"] = [rng.choice(["pci", "hotfix"])]
    if rng.random() < 0.2:
        match["branches"] = [rng.choice(["main", "release/*"])]
    return match


def _random_context(rng: random.Random) -> MatchContext:
    repository = rng.choice([f"{rng.choice(OWNERS)}/{rng.choice(['web', 'api'])}", "Contoso/Web", "solo", None])
    return MatchContext(
        source=rng.choice([EventSource.GITHUB, EventSource.AZURE_DEVOPS, EventSource.GENERIC]),
        action=rng.choice([*ActionKind, None]),
        environment=rng.choice([*ENVIRONMENTS, "PRODUCTION", None]),
        repository=repository,
        branch=rng.choice(["main", "release/1", "feature/x", None]),
        labels=frozenset(rng.sample(["pci", "hotfix", "x"], rng.randint(0, 2))),
        windows=frozenset(),
    )


def test_index_equals_linear_scan():
    rng = random.Random(20250331)
    for _ in range(20):
        rules = [
            {"name": f"r{i}", "match": _random_match(rng), "level": rng.choice(["L0", "L1", "L2", "L3"])}
            for i in range(rng.randint(1, 60))
        ]
        policy = load_policy({"version": 1, "rules": rules})
        for _ in range(200):
            ctx = _random_context(rng)
            linear = next((r for r in policy.rules if r.match.matches(ctx)), None)
            assert policy.first_match(ctx) == linear


def test_filing_keys():
    policy = load_policy(
        {
            "version": 1,
            "rules": [
                {"name": "owner", "match": {"repositories": ["Contoso/*", "fabrikam/api"]}, "level": "L0"},
                {
                    "name": "mixed-owner",
                    "match": {"repositories": ["contoso/*", "*/web"], "environments": ["dev"]},
                    "level": "L0",
                },
                {"name": "env-glob", "match": {"environments": ["prod-*"], "actions": ["deploy"]}, "level": "L0"},
                {"name": "source", "match": {"sources": ["github"], "labels": ["x"]}, "level": "L0"},
                {"name": "catch-all", "match": {"branches": ["main"]}, "level": "L0"},
            ],
        }
    )
    assert [index_keys(r) for r in policy.rules] == [
        [("owner", "contoso"), ("owner", "fabrikam")],
        [("environment", "dev")],
        [("action", "deploy")],
        [("source", "github")],
        None,
    ]


def test_only_candidate_rules_are_tested():
    rules = [
        {
            "name": f"customer-{i}",
            "match": {"repositories": [f"customer{i}/*"], "environments": ["production"]},
            "level": "L2",
        }
        for i in range(500)
    ]
    rules.append({"name": "fallback", "level": "L1"})
    policy = load_policy({"version": 1, "rules": rules})
    index = RuleIndex(policy.rules)
    ctx = MatchContext(
        source=EventSource.GITHUB,
        action=ActionKind.DEPLOY,
        environment="production",
        repository="customer321/portal",
        branch="main",
        labels=frozenset(),
        windows=frozenset(),
    )
    assert index.candidates(ctx) == [321, 500]
    assert index.first_match(ctx).name == "customer-321"
