"""The gate decision: what `gatekeeper evaluate` prints and what the orchestrator acts on.

Small and JSON-serialisable on purpose: it travels through the Durable Functions history and into the
audit log, so it carries names and verdicts, never raw payloads or secrets.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gatekeeper.events.model import ActionKind
from gatekeeper.policy.approval import ApprovalStageSpec
from gatekeeper.policy.compliance import ComplianceMapping
from gatekeeper.policy.levels import GateLevel
from gatekeeper.quality.result import ObjectiveResult, QualityResult

__all__ = ["ApprovalPlan", "ComplianceMapping", "GateDecision", "ObjectiveResult", "QualityResult"]


class ApprovalPlan(BaseModel):
    """The approval chain the orchestrator runs for an L2 decision."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stages: list[ApprovalStageSpec] = Field(min_length=1)


class GateDecision(BaseModel):
    """The decision for one event. `blocked` means: reject the pipeline whatever the level."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    level: GateLevel
    action: ActionKind | None
    environment: str | None
    rule: str | None
    reasons: list[str]
    quality: QualityResult
    approval: ApprovalPlan | None
    blocked: bool = False
    compliance: tuple[ComplianceMapping, ...] = ()  # the matching rule's framework controls

    def to_public_json(self) -> dict[str, Any]:
        """The `gatekeeper evaluate` contract: level, action, environment, rule, reasons, quality
        (result, score, objectives), approval (null or stages) and blocked; `compliance` (framework and
        control of each mapping) only when the matching rule has mappings, so the output of policies without
        them keeps its exact shape."""
        document = self.model_dump(mode="json")
        if not self.compliance:
            del document["compliance"]
        return document
