"""Contracts of the gate flow (`deployment_gate` and its `approval_chain`): every activity's input and output.

The flow documents (the orchestration inputs, the evaluation verdict, vote events, the chain's result) live
here too, so a flow reads its whole contract from one module. Everything is ids, levels and decisions; the
event itself, evidence and comments stay in tables, so histories stay small and free of secrets.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gatekeeper.approvals.chain import ChainPlan, Decision
from gatekeeper.store.tables import TENANT_ID_PATTERN

__all__ = [
    "WITHDRAW_EVENT",
    "ApprovalRequest",
    "ApprovalRequested",
    "AuditInput",
    "AuditRecorded",
    "CallbackInput",
    "CallbackResult",
    "CallbackSummary",
    "ChainInput",
    "ChainResult",
    "EvaluateInput",
    "EvaluationSummary",
    "GateInput",
    "GateResult",
    "GateStatus",
    "HumanTaskInput",
    "HumanTaskOpened",
    "NotifyInput",
    "NotifyResult",
    "OutcomeInput",
    "OutcomeRecorded",
    "VoteEvent",
    "Withdrawal",
    "chain_instance_id",
    "vote_event_name",
]


VOTE_EVENT_PREFIX = "approval-vote-"
WITHDRAW_EVENT = "approval-withdrawn"
"""Raised to a chain when its request is withdrawn (an action cancelled by its requester, or past its own
timeout); the payload is a `Withdrawal`. The chain then closes rejected with that reason."""
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
    # After each counted vote that leaves the stage open, tell the channels that cannot refresh themselves
    # (`gate_update_messages`). False for chains started before it existed: their histories replay unchanged.
    live_updates: bool = False


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


class Withdrawal(BaseModel):
    """The payload of `WITHDRAW_EVENT`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str = Field(pattern=r"^(cancelled|expired)$")
    by: str | None = Field(default=None, max_length=256)


class ChainResult(BaseModel):
    """What `approval_chain` returns: the outcome and who decided, by id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: str  # approved | rejected
    reason: str
    stage: int
    votes: tuple[dict[str, Any], ...] = ()
    escalations: tuple[int, ...] = ()


_TENANT = Field(pattern=TENANT_ID_PATTERN.pattern)


class _Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json(self) -> dict[str, Any]:
        """The JSON document that crosses the orchestration boundary (history, activity input/output)."""
        return self.model_dump(mode="json")


class EvaluateInput(_Contract):
    """`gate_evaluate`: decide the level of the gate whose sealed event sits under `event_key`."""

    tenant_id: str = _TENANT
    instance_id: str
    event_key: str = Field(pattern=r"^[0-9a-f]{64}$")
    requested_by: str | None = Field(default=None, max_length=256)
    at: datetime | None = None


class ApprovalRequest(_Contract):
    """`gate_request_approval`: open one stage of the chain and tell its approvers and the pipeline."""

    tenant_id: str = _TENANT
    gate_id: str
    chain_id: str
    stage: int = Field(ge=0)
    started_at: datetime | None = None
    deadline: datetime
    at: datetime | None = None


class ApprovalRequested(_Contract):
    stage: int
    notified: bool


class NotifyInput(_Contract):
    """`gate_notify`: one notification. The fields stay a mapping here; the activity validates them as a
    `Notification` and audits a malformed one as not sent (a notice never fails the gate)."""

    tenant_id: str = _TENANT
    instance_id: str
    notification: dict[str, Any]
    at: datetime | None = None


class NotifyResult(_Contract):
    ok: bool
    detail: str
    kind: str | None = None


class UpdateMessagesInput(_Contract):
    """`gate_update_messages`: a vote was counted and the chain still waits; the live messages show it."""

    tenant_id: str = _TENANT
    instance_id: str
    at: datetime | None = None


class MessagesUpdated(_Contract):
    ok: bool


class CallbackInput(_Contract):
    """`gate_callback`: tell the waiting pipeline to proceed or stop."""

    tenant_id: str = _TENANT
    instance_id: str
    event_key: str = Field(pattern=r"^[0-9a-f]{64}$")
    approved: bool
    comment: str = ""


class CallbackResult(_Contract):
    ok: bool
    skipped: bool = False
    detail: str = ""
    status_code: int | None = None
    target: str | None = None


class HumanTaskInput(_Contract):
    """`gate_open_human_task`: L3, a person carries the change out (or drops it)."""

    tenant_id: str = _TENANT
    instance_id: str
    at: datetime | None = None
    recipients: tuple[str, ...] = ()


class HumanTaskOpened(_Contract):
    opened: bool
    notified: bool


class CallbackSummary(_Contract):
    """Whether the pipeline was told, as the outcome records it."""

    ok: bool
    detail: str = ""


class OutcomeInput(_Contract):
    """`gate_record_outcome`: the gate's final state."""

    tenant_id: str = _TENANT
    instance_id: str
    status: GateStatus
    reason: str
    level: str | None = None
    at: datetime | None = None
    callback: CallbackSummary
    chain: ChainResult | None = None


class OutcomeRecorded(_Contract):
    status: str
    alerted: bool | None = None


class AuditInput(_Contract):
    """`gate_audit`: an orchestrator step worth recording (stage passed, escalated, expired, chain decided)."""

    tenant_id: str = _TENANT
    kind: str
    instance_id: str = ""
    subject: str = ""
    actor: str | None = None
    at: datetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class AuditRecorded(_Contract):
    ok: bool = True


class GateResult(_Contract):
    """What `deployment_gate` returns."""

    instance_id: str
    level: str
    status: GateStatus
    reason: str
    callback_ok: bool
    chain: ChainResult | None = None
