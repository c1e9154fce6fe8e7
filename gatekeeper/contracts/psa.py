"""Contracts of the PSA write-back (issue 15): the one activity `psa_ticket` the gate and watch flows call
after the pipeline has its answer. Ids and the moment only; the step reads the gate record itself."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gatekeeper.store.tables import TENANT_ID_PATTERN

__all__ = ["PSA_FOLLOW_UP", "PsaMoment", "PsaTicketInput", "PsaTicketOutcome", "follow_up_instance_id"]

PsaMoment = Literal["requested", "decided", "human_task", "rolled_back", "done"]
PSA_FOLLOW_UP = "psa_follow_up"  # the orchestrator that runs `psa_ticket` for a person's "done" (its time)
MAX_MINUTES = 24 * 60  # `ports.TimeEntry`'s bound: one day on one ticket


def follow_up_instance_id(gate_instance_id: str, oid: str) -> str:
    """The `psa_follow_up` instance of one person's "done" on one gate: derived, so a retried start finds it."""
    digest = hashlib.sha256(f"{gate_instance_id}|{oid.lower()}".encode()).hexdigest()[:32]
    return f"psa-done-{digest}"


class _Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class PsaTicketInput(_Contract):
    """`psa_ticket`: write one moment of a gate into the tenant's PSA ticket. `instance_id` is the gate;
    `watch_id` and `reason` come with a rollback; `by` and `minutes` with a task marked done."""

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN.pattern)
    instance_id: str = Field(min_length=1, max_length=200)
    moment: PsaMoment
    at: datetime | None = None
    watch_id: str | None = Field(default=None, max_length=200)
    reason: str = Field(default="", max_length=500)
    # moment "done": who marked the L3 task done (object id) and the time they spent; the note stays sealed
    # in the follow-up row and is read by the step, never carried through the history
    by: str | None = Field(default=None, pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    minutes: int | None = Field(default=None, ge=1, le=MAX_MINUTES)


class PsaTicketOutcome(_Contract):
    """What happened: `writes` calls the PSA accepted, `failures` it refused after retries (each audited)."""

    ok: bool
    skipped: bool = False
    configured: bool = True  # False: the tenant has no PSA (the flow then skips its later moments)
    ticket: str | None = None  # vendor:id
    writes: int = 0
    failures: int = 0
    detail: str = ""
