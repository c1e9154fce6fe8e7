"""Policy rules: what a rule matches on and the gate level it yields.

A rule's `match` lists conditions; all listed conditions must hold (AND), any value within one list may
match (OR), except `labels`, which must all be present. A missing or empty match matches every event.
Globs are compiled once, when the policy is loaded, so evaluating an event never compiles anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from gatekeeper.events.model import ActionKind, EventSource
from gatekeeper.policy.approval import ApprovalChainSpec
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


class RuleMatch(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sources: list[EventSource] | None = Field(default=None, min_length=1)
    actions: list[ActionKind] | None = Field(default=None, min_length=1)
    environments: list[str] | None = Field(default=None, min_length=1)  # globs, case-insensitive
    repositories: list[str] | None = Field(default=None, min_length=1)  # globs such as owner/*, case-insensitive
    branches: list[str] | None = Field(default=None, min_length=1)  # globs over the ref minus refs/heads/
    labels: list[str] | None = Field(default=None, min_length=1)  # all must be present, case-insensitive
    change_window: list[WindowCondition] | None = Field(default=None, min_length=1)  # any may hold

    _environments: GlobSet | None = PrivateAttr(default=None)
    _repositories: GlobSet | None = PrivateAttr(default=None)
    _branches: GlobSet | None = PrivateAttr(default=None)
    _labels: frozenset[str] = PrivateAttr(default=frozenset())

    def model_post_init(self, context: Any) -> None:
        if self.environments:
            self._environments = GlobSet(tuple(self.environments), case_sensitive=False)
        if self.repositories:
            self._repositories = GlobSet(tuple(self.repositories), case_sensitive=False)
        if self.branches:
            self._branches = GlobSet(tuple(self.branches), case_sensitive=True)
        self._labels = frozenset(label.lower() for label in self.labels or ())

    def matches(self, ctx: MatchContext) -> bool:
        if self.sources is not None and ctx.source not in self.sources:
            return False
        if self.actions is not None and ctx.action not in self.actions:
            return False
        if self._environments is not None and not self._environments.matches(ctx.environment):
            return False
        if self._repositories is not None and not self._repositories.matches(ctx.repository):
            return False
        if self._branches is not None and not self._branches.matches(ctx.branch):
            return False
        if self._labels and not self._labels <= ctx.labels:
            return False
        return not (self.change_window is not None and ctx.windows.isdisjoint(self.change_window))


class PolicyRule(BaseModel):
    """A named rule: when `match` holds, the gate level is `level` (then only raised, never lowered)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=RULE_NAME_PATTERN)
    match: RuleMatch = Field(default_factory=RuleMatch)
    level: GateLevel
    approval: ApprovalChainSpec | None = None  # used whenever the final level is L2
    reason: str | None = Field(default=None, max_length=500)
    on_freeze: WindowLevel | None = None  # overrides the freeze's own level for events this rule matched
