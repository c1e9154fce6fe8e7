"""The quality part of a tenant's policy: objectives, total-score thresholds and what a failure does.

Modelled on Keptn quality gates (objectives with `pass`/`warning` criteria, weights, `key_sli`, a
weighted `total_score`), extended with what Gatekeeper does with the result: raise the gate level or
block the pipeline. Nothing here can lower a level.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from gatekeeper.quality.criteria import CriteriaError, CriteriaSet, parse_criteria
from gatekeeper.quality.evidence import (
    COVERAGE_INDICATORS,
    SARIF_INDICATORS,
    SLO_NAME_PATTERN,
    TEST_INDICATORS,
)

SLI_PATTERN = (
    rf"^(?:tests\.(?:{'|'.join(TEST_INDICATORS)})"
    rf"|coverage\.(?:{'|'.join(COVERAGE_INDICATORS)})"
    rf"|sarif\.(?:{'|'.join(SARIF_INDICATORS)})"
    rf"|slo\.{SLO_NAME_PATTERN[1:-1]})$"
)

FailAction = Literal["L2", "L3", "block"]
WarningAction = Literal["L1", "L2", "L3", "block"]


class Objective(BaseModel):
    """One indicator with its criteria. Without `pass` criteria it is informative only (verdict info)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    sli: str = Field(pattern=SLI_PATTERN)
    name: str | None = None  # defaults to the sli
    pass_: Any = Field(default=None, alias="pass")
    warning: Any = None
    weight: float = Field(default=1.0, ge=0)
    key_sli: bool = False

    _pass: CriteriaSet | None = PrivateAttr(default=None)
    _warning: CriteriaSet | None = PrivateAttr(default=None)

    @field_validator("pass_", "warning")
    @classmethod
    def _valid_criteria(cls, value: Any) -> Any:
        if value is not None:
            try:
                parse_criteria(value)
            except CriteriaError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _warning_needs_pass(self) -> Objective:
        if self.warning is not None and self.pass_ is None:
            raise ValueError(
                "@warning: warning criteria need pass criteria too (an objective without pass is info only)"
            )
        if self.key_sli and self.pass_ is None:
            raise ValueError("@key_sli: a key objective needs pass criteria")
        return self

    def model_post_init(self, context: Any) -> None:
        self._pass = parse_criteria(self.pass_) if self.pass_ is not None else None
        self._warning = parse_criteria(self.warning) if self.warning is not None else None

    @property
    def display_name(self) -> str:
        return self.name or self.sli

    @property
    def kind(self) -> str:
        return self.sli.split(".", 1)[0]

    @property
    def pass_criteria(self) -> CriteriaSet | None:
        return self._pass

    @property
    def warning_criteria(self) -> CriteriaSet | None:
        return self._warning


class TotalScore(BaseModel):
    """Thresholds on the weighted total, in percent (`>=`), as Keptn's total_score."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    pass_: float = Field(default=90.0, ge=0, le=100, alias="pass")
    warning: float = Field(default=75.0, ge=0, le=100)

    @field_validator("pass_", "warning", mode="before")
    @classmethod
    def _percent_string(cls, value: Any) -> Any:
        # Keptn writes "90%"; accept that spelling too.
        if isinstance(value, str) and value.strip().endswith("%"):
            return value.strip()[:-1]
        return value

    @model_validator(mode="after")
    def _ordered(self) -> TotalScore:
        if self.warning > self.pass_:
            raise ValueError(f"@warning: must not be above pass ({self.pass_:g})")
        return self


class QualityPolicy(BaseModel):
    """What good enough looks like, and what happens when evidence falls short."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    objectives: tuple[Objective, ...] = ()
    total_score: TotalScore = TotalScore()
    on_fail: FailAction = "L2"  # raise to this level, or block the pipeline
    on_warning: WarningAction | None = None  # None: a warning changes nothing
    missing_evidence: Literal["pass", "warning", "fail"] = "warning"  # result when objectives exist but no evidence

    @field_validator("objectives")
    @classmethod
    def _unique_names(cls, value: tuple[Objective, ...]) -> tuple[Objective, ...]:
        seen: dict[str, int] = {}
        for index, objective in enumerate(value):
            name = objective.display_name
            if name in seen:
                first = seen[name]
                raise ValueError(f"@[{index}].name: duplicate objective {name!r} (also at [{first}]); name them apart")
            seen[name] = index
        return value
