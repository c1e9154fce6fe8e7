"""Compliance mappings of a policy rule: which framework control a gated change is evidence for.

A rule may carry `compliance: [{framework: SOC2, control: CC8.1}, {framework: FedRAMP, control: CM-3}]`.
The decision carries the matching rule's mappings into the gate record (shown to approvers on every
channel), into the audit `decision` entry and from there into the OSCAL export (observation props). The
framework is a token (letters, digits, `.`, `-`, `_`; it becomes an OSCAL `class`), the control a short
identifier; both are bounded so a policy cannot smuggle a document into every approval request.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

FRAMEWORK_PATTERN = r"^[A-Za-z][A-Za-z0-9._-]{0,39}$"
CONTROL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._()/-]{0,63}$"
MAX_MAPPINGS = 20


class ComplianceMapping(BaseModel):
    """One framework control a rule's changes map to, e.g. SOC2 CC8.1 or FedRAMP CM-3."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    framework: Annotated[str, Field(pattern=FRAMEWORK_PATTERN)]
    control: Annotated[str, Field(pattern=CONTROL_PATTERN)]

    def label(self) -> str:
        return f"{self.framework} {self.control}"


def unique_mappings(value: list[ComplianceMapping] | None) -> list[ComplianceMapping] | None:
    """Refuse a mapping listed twice (case-insensitively): a typo or a merge error, never intended."""
    if value is None:
        return None
    seen: dict[tuple[str, str], int] = {}
    for index, mapping in enumerate(value):
        key = (mapping.framework.casefold(), mapping.control.casefold())
        if key in seen:
            raise ValueError(f"@[{index}]: {mapping.label()} is listed twice (also at [{seen[key]}])")
        seen[key] = index
    return value
