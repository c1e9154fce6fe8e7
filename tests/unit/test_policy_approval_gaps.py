"""The approval stage model's own checks. Policy files meet the JSON Schema first, but every approval block
also passes through `ApprovalStageSpec` where no schema ran (the decision's `approval` read back from a gate
record or a contract), so the model must refuse the same stages itself, naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gatekeeper.policy import ApprovalStageSpec
from gatekeeper.policy.decision import ApprovalPlan

GROUP = "group:5f0c7a52-3b8e-4c1d-9a6f-2e4b8d7c1a90"


def stage(**fields: Any) -> dict[str, Any]:
    return {"name": "cab", "approvers": ["a@contoso.com"], "timeout": "PT1H", **fields}


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"approvers": ["alice"]}, ("approvers", 0), "must be an Entra ID user object id, a UPN"),
        ({"approvers": ["a@contoso.com", "group:not-a-guid"]}, ("approvers", 1), "must be an Entra ID user object id"),
        ({"kind": "psa_change_approval"}, ("approvers",), "decided by the PSA; it names no approvers"),
        ({"approvers": []}, ("approvers",), "at least one approver is needed"),
        ({"kind": "psa_change_approval", "approvers": [], "quorum": 2}, ("quorum",), "has quorum 1"),
        ({"approvers": [GROUP], "quorum": 0}, ("quorum",), "must be at least 1"),
        ({"sources": ["halopsa"]}, ("sources",), "only a psa_change_approval stage names PSA sources"),
    ],
)
def test_a_stage_the_schema_never_saw_is_refused_naming_the_field(fields, field, message):
    with pytest.raises(ValidationError) as caught:
        ApprovalStageSpec.model_validate(stage(**fields))
    [error] = caught.value.errors()
    assert error["loc"] == field and message in error["msg"]


def test_the_same_refusal_holds_inside_a_decisions_approval_block():
    with pytest.raises(ValidationError) as caught:
        ApprovalPlan.model_validate({"stages": [stage(approvers=["alice"])]})
    assert caught.value.errors()[0]["loc"] == ("stages", 0, "approvers", 0)


def test_what_the_model_accepts_is_normalised():
    psa = ApprovalStageSpec.model_validate(
        stage(kind="psa_change_approval", approvers=[], sources=["autotask"], quorum=1)
    )
    assert (psa.quorum, psa.approvers, psa.sources) == (1, [], ["autotask"])
    group = ApprovalStageSpec.model_validate(stage(approvers=[GROUP.upper().replace("GROUP", "group")], quorum=5))
    assert group.approvers == [GROUP] and group.quorum == 5  # a group lifts the quorum limit; ids lower-cased
    people = ApprovalStageSpec.model_validate(stage(approvers=["A@Contoso.com"]))
    assert people.approvers == ["a@contoso.com"]
