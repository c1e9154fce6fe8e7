"""Policy rules: what a rule matches on and the gate level it yields.

A rule's `match` lists conditions; all listed conditions must hold (AND), any value within one list may
match (OR), except `labels`, which must all be present. A missing or empty match matches every event.
Globs are compiled once, when the policy is loaded, so evaluating an event never compiles anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from gatekeeper.events.model import ActionKind, EventSource
from gatekeeper.policy.approval import ApprovalChainSpec
from gatekeeper.policy.compliance import MAX_MAPPINGS, ComplianceMapping, unique_mappings
from gatekeeper.policy.globs import GlobSet
from gatekeeper.policy.levels import GateLevel
from gatekeeper.policy.windows import WindowLevel

WindowCondition = Literal["in_freeze", "outside_business_hours", "within_business_hours"]
RULE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._:/()-]{0,99}$"


@dataclass(frozen=True)
class MatchContext:
    """The facts of one event a rule can test, computed once per evaluation."""

    source: EventSource
    action: ActionKind | None
    environment: str | None
    repository: str | None
    branch: str | None  # `ref` with refs/heads/ stripped; None for tags and other refs
    labels: frozenset[str]  # lower case
    windows: frozenset[str]  # the WindowConditions that hold now


def _matcher(globs: list[str] | None, *, case_sensitive: bool) -> Callable[[str], Any] | None:
    return GlobSet(tuple(globs), case_sensitive).regex.match if globs else None


class CompiledMatch:
    """A RuleMatch reduced to plain sets and compiled regular expressions.

    Evaluation tests hundreds of rules per event; going through pydantic attribute access for each
    condition would cost more than the tests themselves, so the hot path uses this instead.
    """

    __slots__ = ("actions", "branches", "environments", "labels", "repositories", "sources", "spec", "windows")

    def __init__(self, match: RuleMatch):
        self.spec = tuple(tuple(v) if v is not None else None for v in match.model_dump().values())
        self.sources = frozenset(match.sources) if match.sources else None
        self.actions = frozenset(match.actions) if match.actions else None
        self.environments = _matcher(match.environments, case_sensitive=False)
        self.repositories = _matcher(match.repositories, case_sensitive=False)
        self.branches = _matcher(match.branches, case_sensitive=True)
        self.labels = frozenset(label.lower() for label in match.labels) if match.labels else None
        self.windows = frozenset(match.change_window) if match.change_window else None

    def __eq__(self, other: object) -> bool:  # derived data: equal when compiled from equal matches
        return isinstance(other, CompiledMatch) and self.spec == other.spec

    def __hash__(self) -> int:
        return hash(self.spec)

    def matches(self, ctx: MatchContext) -> bool:
        if self.sources is not None and ctx.source not in self.sources:
            return False
        if self.actions is not None and ctx.action not in self.actions:
            return False
        if self.environments is not None and (ctx.environment is None or self.environments(ctx.environment) is None):
            return False
        if self.repositories is not None and (ctx.repository is None or self.repositories(ctx.repository) is None):
            return False
        if self.branches is not None and (ctx.branch is None or self.branches(ctx.branch) is None):
            return False
        if self.labels is not None and not self.labels <= ctx.labels:
            return False
        return not (self.windows is not None and self.windows.isdisjoint(ctx.windows))


class RuleMatch(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sources: list[EventSource] | None = Field(default=None, min_length=1)
    actions: list[ActionKind] | None = Field(default=None, min_length=1)
    environments: list[str] | None = Field(default=None, min_length=1)  # globs, case-insensitive
    repositories: list[str] | None = Field(default=None, min_length=1)  # globs such as owner/*, case-insensitive
    branches: list[str] | None = Field(default=None, min_length=1)  # globs over the ref minus refs/heads/
    labels: list[str] | None = Field(default=None, min_length=1)  # all must be present, case-insensitive
    change_window: list[WindowCondition] | None = Field(default=None, min_length=1)  # any may hold

    _compiled: CompiledMatch | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        self._compiled = CompiledMatch(self)

    @property
    def compiled(self) -> CompiledMatch:
        assert self._compiled is not None
        return self._compiled

    def matches(self, ctx: MatchContext) -> bool:
        return self.compiled.matches(ctx)


class PolicyRule(BaseModel):
    """A named rule: when `match` holds, the gate level is `level` (then only raised, never lowered)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=RULE_NAME_PATTERN)
    match: RuleMatch = Field(default_factory=RuleMatch)
    level: GateLevel
    approval: ApprovalChainSpec | None = None  # used whenever the final level is L2
    reason: str | None = Field(default=None, max_length=500)
    on_freeze: WindowLevel | None = None  # overrides the freeze's own level for events this rule matched
    # Framework controls this rule's changes are evidence for; None (not []) when absent, so fingerprints of
    # policies written before the field existed do not change.
    compliance: list[ComplianceMapping] | None = Field(default=None, min_length=1, max_length=MAX_MAPPINGS)

    @field_validator("compliance")
    @classmethod
    def _unique_compliance(cls, value: list[ComplianceMapping] | None) -> list[ComplianceMapping] | None:
        return unique_mappings(value)
