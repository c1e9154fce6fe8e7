"""Approval chains as a pure state machine: stages, quorum, separation of duties, escalation.

The decision route and the `approval_chain` orchestrator both call this module, so the answer a person
gets at the door (403/409/410) and the outcome the orchestration records can never disagree. No I/O and
no clock: every transition takes the time it happens at, which keeps orchestrator replay deterministic.

Rules (see docs/orchestration.md):
- Stages run in order; every stage must pass unless it times out with `on_timeout: escalate`, which
  hands the decision to the next stage (a last stage that escalates rejects: nobody is left to ask).
- An approver entry is a user (Entra object id or UPN, case-insensitive) or `group:<object id>`; a group
  entry is satisfied by any member.
- Quorum counts distinct eligible people: two members of one group fill two slots, and a person
  listed both by name and through a group still counts once.
- One person counts once per chain: a second vote, in the same stage or a later one, is refused.
- The requester can never decide on their own request (approve or reject).
- Any eligible rejection ends the chain at once.
- A vote at or after the stage deadline, or cast for a stage that is no longer current, is refused;
  the timeout itself is applied with `expire`, driven by the orchestrator's durable timer.
- A stage of kind `psa_change_approval` is decided by the PSA, not by a person: the change ticket linked to
  the gate was approved (or rejected) by the tenant's change advisory board, and the connector event is
  raised to the chain as a vote whose voter is `psa:<source>:<ticket>`. Only such votes count there (from
  the stage's `sources`, when it names any), and no PSA vote ever counts on a people stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from gatekeeper.errors import Conflict, Forbidden, GatekeeperError, Gone, MalformedInput
from gatekeeper.policy.durations import format_duration, parse_duration

GROUP_PREFIX = "group:"
PSA_PREFIX = "psa:"  # the voter id of a PSA change decision: psa:<source>:<ticket>


def psa_voter(source: str, ticket: str) -> str:
    """The voter id a PSA change decision on `ticket` counts as (one ticket counts once per chain)."""
    return f"{PSA_PREFIX}{source.strip().lower()}:{ticket.strip().lower()}"


class StageKind(StrEnum):
    PEOPLE = "people"  # approvers vote (Teams, Slack, the page, the API)
    PSA_CHANGE_APPROVAL = "psa_change_approval"  # the linked PSA change ticket's CAB decision


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class OnTimeout(StrEnum):
    ESCALATE = "escalate"
    REJECT = "reject"


class ChainStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


def _norm(value: str) -> str:
    return value.strip().lower()


class StagePlan(BaseModel):
    """One stage: who may decide, how many must approve, and what a timeout does."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    approvers: tuple[str, ...] = Field(default=(), max_length=100)
    quorum: int = Field(default=1, ge=1, le=1000)
    timeout: timedelta
    on_timeout: OnTimeout = OnTimeout.REJECT
    kind: StageKind = StageKind.PEOPLE
    sources: tuple[str, ...] = Field(default=(), max_length=10)  # psa stages: the PSAs that may decide; () any

    @field_validator("approvers")
    @classmethod
    def _approvers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned: list[str] = []
        for index, entry in enumerate(value):
            text = _norm(entry) if isinstance(entry, str) else ""
            if not text or len(text) > 256 or any(c.isspace() for c in text):
                raise ValueError(f"approvers[{index}]: must be a user id, a UPN or group:<object id>")
            if text.startswith(GROUP_PREFIX) and len(text) == len(GROUP_PREFIX):
                raise ValueError(f"approvers[{index}]: group entries need an id after 'group:'")
            if text not in cleaned:
                cleaned.append(text)
        return tuple(cleaned)

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_duration(value)
        if isinstance(value, timedelta) and value <= timedelta(0):
            raise ValueError("must be longer than zero")
        return value

    @field_serializer("timeout")
    def _timeout_iso(self, value: timedelta) -> str:
        return format_duration(value)

    @model_serializer(mode="wrap")
    def _people_stages_as_before(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A stage of people serialises exactly as before PSA stages existed (no `kind`, no `sources`), so the
        `evaluate` output, audit `decision` entries and stored plans keep their shape; PSA stages say so."""
        data: dict[str, Any] = handler(self)
        if self.kind is StageKind.PEOPLE and not self.sources:
            data.pop("kind", None)
            data.pop("sources", None)
        return data

    @model_validator(mode="after")
    def _quorum_reachable(self) -> StagePlan:
        if self.kind is StageKind.PSA_CHANGE_APPROVAL:
            if self.approvers or self.quorum != 1:
                raise ValueError(
                    "approvers: a psa_change_approval stage is decided by the PSA (no approvers, quorum 1)"
                )
            return self
        if self.sources:
            raise ValueError("sources: only a psa_change_approval stage names PSA sources")
        if not self.approvers:
            raise ValueError("approvers: a stage of people needs at least one approver")
        if not self.groups and self.quorum > len(self.users):
            raise ValueError(
                f"quorum: {self.quorum} approvals can never be reached with {len(self.users)} named approver(s)"
            )
        return self

    @property
    def groups(self) -> frozenset[str]:
        return frozenset(a[len(GROUP_PREFIX) :] for a in self.approvers if a.startswith(GROUP_PREFIX))

    @property
    def users(self) -> frozenset[str]:
        return frozenset(a for a in self.approvers if not a.startswith(GROUP_PREFIX))

    def admits(self, identities: frozenset[str], groups: frozenset[str]) -> bool:
        """True when a person with these identities and group memberships is an approver here; on a PSA
        stage, when the voter is a PSA change decision from one of the stage's sources."""
        psa = {i for i in identities if i.startswith(PSA_PREFIX)}
        if self.kind is StageKind.PSA_CHANGE_APPROVAL:
            sources = {s.strip().lower() for s in self.sources}
            return any(not sources or i.split(":")[1] in sources for i in psa)
        if psa:
            return False
        return not self.users.isdisjoint(identities) or not self.groups.isdisjoint(groups)


class ChainPlan(BaseModel):
    """The ordered stages of one approval chain (a copy of the policy's `approval` block)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stages: tuple[StagePlan, ...] = Field(min_length=1, max_length=10)

    @classmethod
    def from_policy(cls, approval: Any) -> ChainPlan:
        """Accept the policy engine's approval block (a model with `.stages`, or its JSON)."""
        if isinstance(approval, ChainPlan):
            return approval
        if hasattr(approval, "model_dump"):
            approval = approval.model_dump(mode="json")
        stages = approval.get("stages") if isinstance(approval, dict) else getattr(approval, "stages", None)
        return cls.model_validate({"stages": [_stage_dict(s) for s in stages or ()]})


def _stage_dict(stage: Any) -> Any:
    if hasattr(stage, "model_dump"):
        stage = stage.model_dump(mode="json")
    if isinstance(stage, dict):
        keys = ("name", "approvers", "quorum", "timeout", "on_timeout", "kind", "sources")
        return {k: stage[k] for k in keys if k in stage}
    return stage


class Vote(BaseModel):
    """One person's decision. `voter_id` is the Entra object id; `aliases` (UPN, ...) match named approvers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    voter_id: str = Field(min_length=1, max_length=128)
    decision: Decision
    at: datetime
    groups: frozenset[str] = frozenset()
    aliases: frozenset[str] = frozenset()
    comment: str = Field(default="", max_length=2000)
    stage: int | None = None  # the stage the vote was accepted for; None = the current one

    @property
    def identities(self) -> frozenset[str]:
        return frozenset({_norm(self.voter_id), *(_norm(a) for a in self.aliases if a)})

    @property
    def group_ids(self) -> frozenset[str]:
        return frozenset(_norm(g) for g in self.groups)


class RecordedVote(BaseModel):
    """What the chain keeps of a counted vote: ids and decisions, never comments."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    voter_id: str
    decision: Decision
    stage: int
    at: datetime


class ChainState(BaseModel):
    """Where a chain stands. Immutable: every transition returns a new state."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    plan: ChainPlan
    requester: frozenset[str] = frozenset()
    status: ChainStatus = ChainStatus.PENDING
    stage: int = 0
    stage_started_at: datetime
    votes: tuple[RecordedVote, ...] = ()
    decided_at: datetime | None = None
    reason: str | None = None  # approved: "quorum"; rejected: "rejected" or "timeout"
    escalations: tuple[int, ...] = ()  # stages that timed out and escalated

    @property
    def current(self) -> StagePlan:
        return self.plan.stages[self.stage]

    @property
    def deadline(self) -> datetime:
        return self.stage_started_at + self.current.timeout

    @property
    def closed(self) -> bool:
        return self.status is not ChainStatus.PENDING

    def approvals(self, stage: int | None = None) -> tuple[str, ...]:
        wanted = self.stage if stage is None else stage
        return tuple(v.voter_id for v in self.votes if v.stage == wanted and v.decision is Decision.APPROVE)

    def has_voted(self, voter_id: str) -> bool:
        key = _norm(voter_id)
        return any(_norm(v.voter_id) == key for v in self.votes)


def start(plan: ChainPlan, requester: frozenset[str] | set[str] | tuple[str, ...], at: datetime) -> ChainState:
    """A new chain waiting on its first stage, which starts (and whose deadline counts) from `at`."""
    return ChainState(plan=plan, requester=frozenset(_norm(r) for r in requester if r), stage_started_at=at)


# ----- outcomes -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoteCounted:
    """An approval was counted; the stage still needs more."""

    stage: int
    approvals: int
    quorum: int


@dataclass(frozen=True)
class StagePassed:
    stage: int
    next_stage: int


@dataclass(frozen=True)
class ChainApproved:
    stage: int


@dataclass(frozen=True)
class ChainRejected:
    stage: int
    reason: str  # "rejected", "timeout", or (withdrawn) "cancelled" / "expired"
    by: str | None = None


@dataclass(frozen=True)
class Escalated:
    from_stage: int
    to_stage: int


@dataclass(frozen=True)
class Refusal:
    """A vote that changes nothing. `kind` is the error the decision route raises for it; each kind of refusal
    names its error kind, slug and title in its class line (`class X(Refusal, kind=..., slug=..., title=...)`)."""

    detail: str
    kind: ClassVar[type[GatekeeperError]] = MalformedInput
    slug: ClassVar[str] = "refused"
    title: ClassVar[str] = "Refused"

    def __init_subclass__(cls, *, kind: type[GatekeeperError], slug: str, title: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.kind, cls.slug, cls.title = kind, slug, title


@dataclass(frozen=True)
class NotAnApprover(Refusal, kind=Forbidden, slug="not-an-approver", title="Not an approver of the current stage"):
    pass


@dataclass(frozen=True)
class SelfApproval(
    Refusal, kind=Forbidden, slug="self-approval", title="The requester cannot decide on their own deployment"
):
    pass


@dataclass(frozen=True)
class DuplicateVote(Refusal, kind=Conflict, slug="duplicate-vote", title="This person has already voted on this gate"):
    pass


@dataclass(frozen=True)
class ChainClosed(Refusal, kind=Gone, slug="gate-decided", title="The gate has already been decided"):
    pass


@dataclass(frozen=True)
class PastDeadline(Refusal, kind=Gone, slug="past-deadline", title="The deadline for this stage has passed"):
    pass


Outcome = VoteCounted | StagePassed | ChainApproved | ChainRejected | Escalated | Refusal


# ----- transitions ----------------------------------------------------------------------------------------


def check(state: ChainState, vote: Vote) -> Refusal | None:
    """Why this vote would be refused, or None if it would count. Order: closed, late, self, twice, who."""
    if state.closed:
        return closed_refusal(state)
    if vote.stage is not None and vote.stage != state.stage:
        return PastDeadline(f"the vote was cast for stage {vote.stage}, which is no longer current")
    if vote.at >= state.deadline:
        return PastDeadline(f"stage '{state.current.name}' closed at {_iso(state.deadline)}")
    if not state.requester.isdisjoint(vote.identities):
        return SelfApproval("the requester of a deployment cannot approve or reject it")
    if state.has_voted(vote.voter_id):
        return DuplicateVote("one person counts once per approval chain")
    if not state.current.admits(vote.identities, vote.group_ids):
        return NotAnApprover(f"the caller is not an approver of stage '{state.current.name}'")
    return None


def apply(state: ChainState, vote: Vote, now: datetime | None = None) -> tuple[ChainState, Outcome]:
    """Count one vote. Refusals leave the state unchanged; a passing stage starts the next at `now`
    (the orchestrator's time), or at the vote's time when `now` is not given."""
    refusal = check(state, vote)
    if refusal is not None:
        return state, refusal
    at = now or vote.at
    recorded = RecordedVote(voter_id=_norm(vote.voter_id), decision=vote.decision, stage=state.stage, at=vote.at)
    counted = state.model_copy(update={"votes": (*state.votes, recorded)})
    if vote.decision is Decision.REJECT:
        closed = counted.model_copy(update={"status": ChainStatus.REJECTED, "decided_at": at, "reason": "rejected"})
        return closed, ChainRejected(stage=state.stage, reason="rejected", by=recorded.voter_id)
    approvals = len(counted.approvals())
    if approvals < state.current.quorum:
        return counted, VoteCounted(stage=state.stage, approvals=approvals, quorum=state.current.quorum)
    if state.stage + 1 < len(state.plan.stages):
        moved = counted.model_copy(update={"stage": state.stage + 1, "stage_started_at": at})
        return moved, StagePassed(stage=state.stage, next_stage=state.stage + 1)
    approved = counted.model_copy(update={"status": ChainStatus.APPROVED, "decided_at": at, "reason": "quorum"})
    return approved, ChainApproved(stage=state.stage)


def expire(state: ChainState, now: datetime) -> tuple[ChainState, Outcome]:
    """The current stage's timer fired: escalate to the next stage or reject, as the stage says."""
    if state.closed:
        return state, ChainClosed(f"the gate was already {state.status.value}")
    if now < state.deadline:
        raise ValueError(f"stage {state.stage} does not expire before {_iso(state.deadline)}")
    has_next = state.stage + 1 < len(state.plan.stages)
    if state.current.on_timeout is OnTimeout.ESCALATE and has_next:
        moved = state.model_copy(
            update={"stage": state.stage + 1, "stage_started_at": now, "escalations": (*state.escalations, state.stage)}
        )
        return moved, Escalated(from_stage=state.stage, to_stage=state.stage + 1)
    closed = state.model_copy(update={"status": ChainStatus.REJECTED, "decided_at": now, "reason": "timeout"})
    return closed, ChainRejected(stage=state.stage, reason="timeout")


def cancel(state: ChainState, now: datetime, reason: str = "cancelled") -> tuple[ChainState, Outcome]:
    """The request was withdrawn (action approvals: the requester cancelled, or the request's own timeout
    passed): the chain closes rejected with that reason; votes after it are refused as for any closed chain."""
    if state.closed:
        return state, ChainClosed(f"the gate was already {state.status.value}")
    closed = state.model_copy(update={"status": ChainStatus.REJECTED, "decided_at": now, "reason": reason})
    return closed, ChainRejected(stage=state.stage, reason=reason)


def closed_refusal(state: ChainState) -> ChainClosed:
    """The refusal of any vote on a closed chain, saying how and when it closed."""
    return ChainClosed(f"the gate was {state.status.value} at {_iso(state.decided_at)}")


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else "an earlier time"
