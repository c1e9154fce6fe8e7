"""First-match lookup over many rules without testing every rule.

Precedence is rule order: the first rule whose match holds wins. An MSP policy has hundreds of rules,
mostly one block per customer (`repositories: [customer-x/*]`), so each rule is filed under ONE
condition every matching event must satisfy exactly:
1. a literal repository owner, when every repository glob starts with `owner/`;
2. else literal environment names, when every environment glob is literal;
3. else its actions; 4. else its sources; 5. else it is tested for every event.
A lookup merges the (already ordered) lists filed under the event's owner, environment, action and
source with the unfiled rules, and tests only those, in rule order. The result is exactly what a linear
scan returns; only the number of rules tested changes.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Sequence

from gatekeeper.policy.globs import is_literal
from gatekeeper.policy.rules import MatchContext, PolicyRule

Key = tuple[str, str]


def _owner(pattern: str) -> str | None:
    owner, slash, _ = pattern.partition("/")
    return owner.lower() if slash and owner and is_literal(owner) else None


def index_keys(rule: PolicyRule) -> list[Key] | None:
    """The keys a rule is filed under, or None when it must be tested for every event."""
    match = rule.match
    if match.repositories:
        owners = [_owner(p) for p in match.repositories]
        if all(owners):
            return sorted({("owner", o) for o in owners if o})
    if match.environments and all(is_literal(e) for e in match.environments):
        return sorted({("environment", e.lower()) for e in match.environments})
    if match.actions:
        return sorted({("action", a.value) for a in match.actions})
    if match.sources:
        return sorted({("source", s.value) for s in match.sources})
    return None


class RuleIndex:
    def __init__(self, rules: Sequence[PolicyRule]):
        self._rules = tuple(rules)
        self._matchers = tuple(rule.match.compiled for rule in self._rules)
        buckets: dict[Key, list[int]] = defaultdict(list)
        unfiled: list[int] = []
        for position, rule in enumerate(self._rules):
            keys = index_keys(rule)
            if keys is None:
                unfiled.append(position)
            else:
                for key in keys:
                    buckets[key].append(position)
        self._buckets = {key: tuple(positions) for key, positions in buckets.items()}
        self._unfiled = tuple(unfiled)

    def __eq__(self, other: object) -> bool:  # derived data: equal when built from equal rules
        return isinstance(other, RuleIndex) and self._rules == other._rules

    __hash__ = None  # type: ignore[assignment]

    def _keys(self, ctx: MatchContext) -> list[Key]:
        keys: list[Key] = [("source", ctx.source.value)]
        if ctx.action is not None:
            keys.append(("action", ctx.action.value))
        if ctx.environment is not None:
            keys.append(("environment", ctx.environment.lower()))
        if ctx.repository is not None:
            owner = _owner(ctx.repository)
            if owner:
                keys.append(("owner", owner))
        return keys

    def candidates(self, ctx: MatchContext) -> list[int]:
        """Positions of the rules that may match, in rule order."""
        lists = [self._buckets[k] for k in self._keys(ctx) if k in self._buckets]
        lists.append(self._unfiled)
        return list(heapq.merge(*lists))

    def first_match(self, ctx: MatchContext) -> PolicyRule | None:
        matchers = self._matchers
        for position in self.candidates(ctx):
            if matchers[position].matches(ctx):
                return self._rules[position]
        return None
