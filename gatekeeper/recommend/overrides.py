"""Overrides: where a person's decision (or what happened next) set the system's recommendation aside.

The audit entry `override` (docs/telemetry.md, "Recommendations and overrides") records both sides:

- `approved_against_reject`: people approved an L2 gate the model recommended rejecting;
- `rejected_against_approve`: people rejected one it recommended approving;
- `flagged_for_rollback`: a person flagged an L1 change that ran automatically for rollback;
- `rolled_back_after_approval`: a rollback was dispatched for a change that had been approved.

"needs_attention" is no verdict to go against, so deciding either way after it is not an override. These
entries are also what the model learns from (a flagged or rolled-back change counts as a bad outcome).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

OverrideKind = Literal[
    "approved_against_reject", "rejected_against_approve", "flagged_for_rollback", "rolled_back_after_approval"
]


def decision_override(recommended: str | None, decided: str) -> OverrideKind | None:
    """The override a people's chain decision (`approved` / `rejected`) makes against a recommendation."""
    if recommended == "reject" and decided == "approved":
        return "approved_against_reject"
    if recommended == "approve" and decided == "rejected":
        return "rejected_against_approve"
    return None


def override_data(
    kind: OverrideKind,
    *,
    gate: str,
    rule: str | None,
    recommendation: Mapping[str, Any] | None,
    decided: str,
) -> dict[str, Any]:
    """The `override` entry's data: both sides (what was recommended by which model, what was decided)."""
    return {
        "kind": kind,
        "rule": rule or "(no rule)",
        "recommended": str(recommendation["verdict"]) if recommendation else None,
        "decided": decided,
        "model_version": str(recommendation["model_version"]) if recommendation else None,
        "gate": gate,
    }
