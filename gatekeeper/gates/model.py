"""Small documents that cross the orchestration boundary: inputs, activity results, event payloads.

Everything here is ids, levels and decisions; the event itself, evidence and comments stay in tables, so
histories stay small and free of secrets.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gatekeeper.approvals.chain import ChainPlan, Decision
from gatekeeper.store.tables import TENANT_ID_PATTERN

VOTE_EVENT_PREFIX = "approval-vote-"
CHAIN_SUFFIX = ":approval"


def vote_event_name(seq: int) -> str:
    """One event name per vote, numbered per chain. The Python SDK keeps only the last buffered event per
    name and re-delivers it to every later wait on that name, so a shared name would lose and repeat votes."""
    return f"{VOTE_EVENT_PREFIX}{seq}"


def chain_instance_id(gate_instance_id: str) -> str:
    return gate_instance_id + CHAIN_SUFFIX


class GateStatus(StrEnum):
    EVALUATED = "evaluated"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"  # the pipeline was told to proceed
    REJECTED = "rejected"  # the pipeline was told to stop
    HUMAN_TASK = "human_task"  # L3: automation refused, a person carries the change out


class GateInput(BaseModel):
    """The `deployment_gate` input, written by the dispatcher (`gatekeeper.ingest.dispatcher.gate_input`).

    The sealed event lives in the tenant's Events table: PartitionKey "event", RowKey `event_key`,
    property `sealed_event`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN.pattern)
    event_key: str = Field(pattern=r"^[0-9a-f]{64}$")
    instance_id: str | None = None
    requested_by: str | None = Field(default=None, max_length=256)


class EvaluationSummary(BaseModel):
    """What `gate_evaluate` returns to the orchestrator: the verdict, not the evidence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    level: str
    blocked: bool
    rule: str | None = None
    plan: ChainPlan | None = None
    requester: tuple[str, ...] = ()
    notify: tuple[str, ...] = ()
    has_callback: bool = False
    title: str = ""


class ChainInput(BaseModel):
    """The `approval_chain` input."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN.pattern)
    gate_id: str
    plan: ChainPlan
    requester: tuple[str, ...] = ()
    title: str = ""


class VoteEvent(BaseModel):
    """The payload raised to the chain for one accepted vote: ids and the decision, no comment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = Field(ge=0)
    voter_id: str
    decision: Decision
    at: datetime
    stage: int = Field(ge=0)
    groups: tuple[str, ...] = ()  # only the voter's groups that the chain names
    aliases: tuple[str, ...] = ()


class ChainResult(BaseModel):
    """What `approval_chain` returns: the outcome and who decided, by id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: str  # approved | rejected
    reason: str
    stage: int
    votes: tuple[dict[str, Any], ...] = ()
    escalations: tuple[int, ...] = ()
