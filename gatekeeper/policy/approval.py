"""Approval chains as a policy states them: stages of approvers with a quorum and a timeout.

Validated here, where the policy is loaded, so the approvals state machine never meets an impossible
chain (a quorum larger than the people who could meet it, a timeout of "a month", a last stage that
escalates to nowhere).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
)

from gatekeeper.policy.durations import parse_duration

GUID = r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"
APPROVER_PATTERN = rf"^(?:{GUID}|group:{GUID}|[^@\s:]+@[^@\s]+\.[^@\s]+)$"
_APPROVER = re.compile(APPROVER_PATTERN)


def _approver(value: str) -> str:
    if not _APPROVER.match(value):
        raise ValueError("must be an Entra ID user object id, a UPN (name@domain) or 'group:<group object id>'")
    return value.lower()  # object ids and UPNs are case-insensitive; one spelling for comparisons


Approver = Annotated[str, AfterValidator(_approver)]


def _timeout(value: str) -> str:
    parse_duration(value)
    return value


PsaSource = Literal["connectwise", "autotask", "halopsa"]


class ApprovalStageSpec(BaseModel):
    """One stage: `quorum` of `approvers` must approve within `timeout`, else `on_timeout`. A stage of
    `kind: psa_change_approval` names no approvers: the gate's linked PSA change ticket decides it (the CAB's
    approval or rejection in the PSA, from `sources` if given)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    kind: Literal["people", "psa_change_approval"] = "people"
    approvers: list[Approver] = Field(default_factory=list, max_length=50)
    sources: list[PsaSource] = Field(default_factory=list, max_length=3)
    quorum: int = 1
    timeout: Annotated[str, AfterValidator(_timeout)]
    on_timeout: Literal["escalate", "reject"] = "reject"

    @field_validator("approvers")
    @classmethod
    def _distinct(cls, value: list[str], info: ValidationInfo) -> list[str]:
        psa = info.data.get("kind") == "psa_change_approval"
        if psa and value:
            raise ValueError("a psa_change_approval stage is decided by the PSA; it names no approvers")
        if not psa and not value:
            raise ValueError("at least one approver is needed (or kind: psa_change_approval)")
        seen: dict[str, int] = {}
        for index, approver in enumerate(value):
            if approver in seen:
                raise ValueError(f"@[{index}]: {approver!r} is listed twice (also at [{seen[approver]}])")
            seen[approver] = index
        return value

    @field_validator("quorum")
    @classmethod
    def _reachable(cls, value: int, info: ValidationInfo) -> int:
        approvers = info.data.get("approvers")
        if approvers is None:  # approvers already failed validation; that error is the one to report
            return value
        if info.data.get("kind") == "psa_change_approval":
            if value != 1:
                raise ValueError("a psa_change_approval stage has quorum 1 (the PSA decides once)")
            return value
        if any(a.startswith("group:") for a in approvers):
            if value < 1:
                raise ValueError("must be at least 1")
        elif not 1 <= value <= len(approvers):
            raise ValueError(f"must be between 1 and {len(approvers)}")
        return value

    @field_validator("sources")
    @classmethod
    def _sources_for_psa(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if value and info.data.get("kind") != "psa_change_approval":
            raise ValueError("only a psa_change_approval stage names PSA sources")
        return value

    @model_serializer(mode="wrap")
    def _people_stages_as_before(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A stage of people serialises as before PSA stages existed (no `kind`, no `sources`): the `evaluate`
        output and the fingerprint of every existing policy stay the same."""
        data: dict[str, Any] = handler(self)
        if self.kind == "people" and not self.sources:
            data.pop("kind", None)
            data.pop("sources", None)
        return data

    @property
    def timeout_delta(self) -> timedelta:
        return parse_duration(self.timeout)

    @property
    def has_group(self) -> bool:
        return any(a.startswith("group:") for a in self.approvers)


class ApprovalChainSpec(BaseModel):
    """Stages in order; a stage that times out with `escalate` hands over to the next stage."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stages: list[ApprovalStageSpec] = Field(min_length=1, max_length=10)

    @field_validator("stages")
    @classmethod
    def _coherent(cls, value: list[ApprovalStageSpec]) -> list[ApprovalStageSpec]:
        names: dict[str, int] = {}
        for index, stage in enumerate(value):
            if stage.name in names:
                first = names[stage.name]
                raise ValueError(f"@[{index}].name: duplicate stage name {stage.name!r} (also at [{first}])")
            names[stage.name] = index
        last = len(value) - 1
        if value[last].on_timeout == "escalate":
            raise ValueError(
                f"@[{last}].on_timeout: the last stage cannot escalate (there is no next stage); use reject"
            )
        return value
