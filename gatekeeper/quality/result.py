"""The quality part of a gate decision: one verdict per objective and a weighted total."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Verdict = Literal["pass", "warning", "fail", "info"]


class ObjectiveResult(BaseModel):
    """How one objective fared, with the reason a person reads in the approval request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: str  # tests | coverage | sarif | slo
    value: float | None
    baseline: float | None
    criteria: dict[str, str | None]  # {"pass": "<=+10% and <600", "warning": "<=+20%" | None}
    verdict: Verdict
    weight: float
    score: float  # weight for pass, weight/2 for warning, 0 for fail and info
    reason: str


class QualityResult(BaseModel):
    """The Keptn-style total. `score` is None when nothing was scored (no evidence or no objectives)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    result: Literal["pass", "warning", "fail"]
    score: float | None = Field(default=None, ge=0, le=100)
    objectives: tuple[ObjectiveResult, ...] = ()
    # One line for the decision's reasons; derived, so left out of dumps and the public JSON.
    summary: str = Field(default="", exclude=True)
