"""`approval_chain`: the stages of one approval, driven by the pure state machine in
`gatekeeper.approvals.chain`.

Per stage: ask (activity), then race the next vote event against the stage's durable timer with
`task_any`; a vote goes through `chain.apply`, the timer through `chain.expire`; when a decision wins the
timer is cancelled. Deterministic: time only from `context.current_utc_datetime`, no I/O here; the history
carries vote events (ids and decisions) and small activity results. No `continue_as_new` while waiting
(the Python SDK drops events raised during it).

Vote events are numbered (`approval-vote-0`, `-1`, ...) by the decision route, and the chain waits for them
in order: the Python SDK keeps only the last early event per name and replays it to every later wait on
that name, so one shared event name would lose and repeat votes.

The chain and its models are imported inside the functions: the host indexes the app without them (cold
start) and the first run imports them once.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from orchestrators import gate_activities as step
from orchestrators.blueprint import bp, call

if TYPE_CHECKING:
    from gatekeeper.approvals.chain import ChainState
    from gatekeeper.contracts.gate import AuditInput, ChainInput, VoteEvent


def _iso(value: datetime) -> str:
    return value.isoformat()


@bp.orchestration_trigger(context_name="context")
def approval_chain(context: Any) -> Generator[Any, Any, dict[str, Any]]:
    from gatekeeper.approvals import chain
    from gatekeeper.contracts.gate import (
        WITHDRAW_EVENT,
        ApprovalRequest,
        AuditInput,
        ChainInput,
        ChainResult,
        UpdateMessagesInput,
        vote_event_name,
    )

    request = ChainInput.model_validate(context.get_input())
    state = chain.start(request.plan, request.requester, context.current_utc_datetime)
    consumed = 0  # vote events taken so far; the next one is vote_event_name(consumed)
    while not state.closed:
        stage = state.stage
        spec = state.current
        context.set_custom_status({"stage": stage, "stage_name": spec.name, "deadline": _iso(state.deadline)})
        opened = ApprovalRequest(
            tenant_id=request.tenant_id,
            gate_id=request.gate_id,
            chain_id=context.instance_id,
            stage=stage,
            started_at=state.stage_started_at,
            deadline=state.deadline,
            at=context.current_utc_datetime,
        )
        yield call(context, step.gate_request_approval, opened)
        timer = context.create_timer(state.deadline)
        outcome: chain.Outcome | None = None
        while not state.closed and state.stage == stage:
            vote_task = context.wait_for_external_event(vote_event_name(consumed))
            # A withdrawn request (an action cancelled or past its own timeout) ends the chain at once.
            withdrawn = context.wait_for_external_event(WITHDRAW_EVENT)
            winner = yield context.task_any([vote_task, timer, withdrawn])
            if winner is timer:
                state, outcome = chain.expire(state, context.current_utc_datetime)
                break
            if winner is withdrawn:
                state, outcome = chain.cancel(state, context.current_utc_datetime, _withdrawal(withdrawn.result))
                break
            consumed += 1
            event = _vote_event(vote_task.result)
            vote = chain.Vote(
                voter_id=event.voter_id,
                decision=event.decision,
                at=event.at,
                stage=event.stage,
                groups=frozenset(event.groups),
                aliases=frozenset(event.aliases),
            )
            state, outcome = chain.apply(state, vote, now=context.current_utc_datetime)
            if isinstance(outcome, chain.Refusal):  # the route checked first; this is a race it lost
                refused = AuditInput(
                    tenant_id=request.tenant_id,
                    kind="approval_decided",
                    instance_id=request.gate_id,
                    actor=event.voter_id,
                    subject=request.title,
                    at=context.current_utc_datetime,
                    data={"stage": stage, "vote": event.seq, "counted": False, "refusal": outcome.slug},
                )
                yield call(context, step.gate_audit, refused)
            elif request.live_updates and not state.closed and state.stage == stage:
                # Counted, still waiting: the messages that cannot refresh themselves (Slack) show the vote,
                # whichever channel it came from. After the vote was answered; bounded; never raises.
                changed = UpdateMessagesInput(
                    tenant_id=request.tenant_id, instance_id=request.gate_id, at=context.current_utc_datetime
                )
                yield call(context, step.gate_update_messages, changed)
        if not timer.is_completed:
            timer.cancel()
        yield call(context, step.gate_audit, _stage_audit(request, stage, spec.name, outcome, state, context))
    return ChainResult(
        status=state.status.value,
        reason=state.reason or "",
        stage=state.stage,
        votes=tuple({"voter_id": v.voter_id, "decision": v.decision.value, "stage": v.stage} for v in state.votes),
        escalations=state.escalations,
    ).model_dump(mode="json")


def _vote_event(data: Any) -> VoteEvent:
    """The SDK's `DurableOrchestrationClient.raise_event` JSON-encodes the data and then posts it as JSON,
    so the event arrives as a JSON string; a dict (other clients, the runner) is accepted as well."""
    from gatekeeper.contracts.gate import VoteEvent

    return VoteEvent.model_validate_json(data) if isinstance(data, str | bytes) else VoteEvent.model_validate(data)


def _withdrawal(data: Any) -> str:
    """The withdrawal's reason; a payload that does not parse still withdraws (as "cancelled")."""
    from gatekeeper.contracts.gate import Withdrawal

    try:
        parsed = (
            Withdrawal.model_validate_json(data) if isinstance(data, str | bytes) else Withdrawal.model_validate(data)
        )
    except ValueError:
        return "cancelled"
    return parsed.reason


def _stage_audit(
    request: ChainInput, stage: int, stage_name: str, outcome: Any, state: ChainState, context: Any
) -> AuditInput:
    from gatekeeper.approvals import chain
    from gatekeeper.contracts.gate import AuditInput

    kind = {chain.Escalated: "approval_escalated"}.get(type(outcome), "approval_decided")
    if isinstance(outcome, chain.ChainRejected) and outcome.reason == "timeout":
        kind = "approval_expired"
    elif isinstance(outcome, chain.ChainRejected) and outcome.reason in ("cancelled", "expired"):
        kind = "approval_withdrawn"
    return AuditInput(
        tenant_id=request.tenant_id,
        kind=kind,
        instance_id=request.gate_id,
        subject=request.title,
        at=context.current_utc_datetime,
        data={
            "stage": stage,
            "stage_name": stage_name,
            "outcome": type(outcome).__name__,
            "approvals": list(state.approvals(stage)),
            "chain_status": state.status.value,
            "next_stage": state.stage if not state.closed else None,
        },
    )
