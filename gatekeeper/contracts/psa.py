"""Contracts of the PSA write-back (issue 15): the one activity `psa_ticket` the gate and watch flows call
after the pipeline has its answer. Ids and the moment only; the step reads the gate record itself."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gatekeeper.store.tables import TENANT_ID_PATTERN

__all__ = ["PsaMoment", "PsaTicketInput", "PsaTicketOutcome"]

PsaMoment = Literal["requested", "decided", "human_task", "rolled_back"]


class _Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class PsaTicketInput(_Contract):
    """`psa_ticket`: write one moment of a gate into the tenant's PSA ticket. `instance_id` is the gate;
    `watch_id` and `reason` come with a rollback."""

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN.pattern)
    instance_id: str = Field(min_length=1, max_length=200)
    moment: PsaMoment
    at: datetime | None = None
    watch_id: str | None = Field(default=None, max_length=200)
    reason: str = Field(default="", max_length=500)


class PsaTicketOutcome(_Contract):
    """What happened: `writes` calls the PSA accepted, `failures` it refused after retries (each audited)."""

    ok: bool
    skipped: bool = False
    configured: bool = True  # False: the tenant has no PSA (the flow then skips its later moments)
    ticket: str | None = None  # vendor:id
    writes: int = 0
    failures: int = 0
    detail: str = ""
