"""`deployment_gate`: one instance per gate request (instance id from the event's business key).

evaluate -> by level:
  L0  proceed (callback approve), log;
  L1  proceed, then notify;
  L2  run `approval_chain` as a sub-orchestration, then proceed or stop;
  L3  refuse to execute (callback reject), open a human task and notify;
  blocked (or L2 without a chain): stop.
Then the outcome is recorded; a callback that still fails after its retries is audited and alerted.
The tenant's PSA ticket hears about it (`psa_ticket`: request note, decision notes and status, the L3 ticket)
only alongside the approval chain or after the pipeline was answered, and a PSA failure never fails the gate.
Every activity appends to the audit log. Deterministic: context time only, no I/O here. Activities are
called by reference with typed inputs (`gatekeeper.contracts.gate`), imported on the first run, not when
the host indexes the app (cold start).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df

from orchestrators import gate_activities as step
from orchestrators.approval_chain import approval_chain
from orchestrators.blueprint import bp, call, call_with_retry
from orchestrators.psa_activities import psa_ticket

if TYPE_CHECKING:
    from gatekeeper.contracts.gate import EvaluationSummary
    from gatekeeper.contracts.psa import PsaMoment

# Durable retry for the pipeline callback: a durable timer between attempts, no sleeping in activities.
CALLBACK_FIRST_RETRY_MS = 5_000
CALLBACK_MAX_ATTEMPTS = 4


def callback_retry() -> df.RetryOptions:
    return df.RetryOptions(CALLBACK_FIRST_RETRY_MS, CALLBACK_MAX_ATTEMPTS)


RETRY = callback_retry()


def _first_line(exc: Exception, limit: int) -> str:
    return str(exc).splitlines()[0][:limit]


@bp.orchestration_trigger(context_name="context")
def deployment_gate(context: Any) -> Generator[Any, Any, dict[str, Any]]:
    from gatekeeper.contracts import gate as c

    S, gate_id = c.GateStatus, context.instance_id
    gate = c.GateInput.model_validate(context.get_input())
    ids = {"tenant_id": gate.tenant_id, "instance_id": gate_id}

    def now() -> datetime:
        return context.current_utc_datetime

    context.set_custom_status({"phase": "evaluating"})
    asked = c.EvaluateInput(**ids, event_key=gate.event_key, requested_by=gate.requested_by, at=now())
    summary = c.EvaluationSummary.model_validate((yield call(context, step.gate_evaluate, asked)))
    level, chain = summary.level, None
    # The PSA request note: raced with the approval chain (L2), else written after the callback.
    requested = _psa(context, ids, "requested", now())
    if summary.blocked:
        status, reason = S.REJECTED, "blocked by policy"
    elif level in ("L0", "L1"):
        status, reason = S.APPROVED, ("L0: fully automated" if level == "L0" else "L1: executed, people notified")
    elif level == "L2" and summary.plan is None:
        status, reason = S.REJECTED, "L2 without an approval chain in the policy"
    elif level == "L2" and summary.plan is not None:
        context.set_custom_status({"phase": "awaiting_approval"})
        plan = c.ChainInput(
            tenant_id=gate.tenant_id,
            gate_id=gate_id,
            plan=summary.plan,
            requester=summary.requester,
            title=summary.title,
            live_updates=True,
        )
        try:
            started = context.call_sub_orchestrator(
                approval_chain, plan.model_dump(mode="json"), c.chain_instance_id(gate_id), expected_type=dict
            )
            yield context.task_any([started, requested])  # whichever ends first; the chain never waits on it
            chain = c.ChainResult.model_validate((yield started))
            status = S.APPROVED if chain.status == "approved" else S.REJECTED
            reason = f"approval chain {chain.status} ({chain.reason})"
        except Exception as exc:  # a failed chain must still answer the pipeline: deny
            status, reason = S.REJECTED, f"approval chain failed: {_first_line(exc, 200)}"
    else:  # L3: human only
        yield call(context, step.gate_open_human_task, c.HumanTaskInput(**ids, at=now()))
        status, reason = S.HUMAN_TASK, "L3: human only, automation refused"

    context.set_custom_status({"phase": "calling_back", "status": status.value})
    approved = status is S.APPROVED
    told = c.CallbackInput(**ids, event_key=gate.event_key, approved=approved, comment=reason)
    try:
        answer = c.CallbackResult.model_validate((yield call_with_retry(context, step.gate_callback, RETRY, told)))
        callback = c.CallbackSummary(ok=answer.ok, detail=answer.detail)
    except Exception as exc:  # retries exhausted: record it, the outcome activity alerts
        callback = c.CallbackSummary(ok=False, detail=_first_line(exc, 300))

    if level == "L1" and approved and not summary.blocked:
        notice = c.NotifyInput(**ids, notification=_executed_notice(summary, gate_id), at=now())
        yield call(context, step.gate_notify, notice)

    outcome = c.OutcomeInput(**ids, status=status, reason=reason, level=level, at=now(), callback=callback, chain=chain)
    yield call(context, step.gate_record_outcome, outcome)
    context.set_custom_status({"phase": "done", "status": status.value})
    then: PsaMoment = "human_task" if level == "L3" else "decided"
    yield from _psa_after(context, requested, lambda: _psa(context, ids, then, now()))
    result = c.GateResult(
        instance_id=gate_id, level=level, status=status, reason=reason, callback_ok=callback.ok, chain=chain
    )
    return result.to_json()


def _psa(context: Any, ids: dict[str, Any], moment: PsaMoment, at: datetime) -> Any:
    """The `psa_ticket` task for one moment (created here, scheduled when yielded)."""
    from gatekeeper.contracts.psa import PsaTicketInput

    return call(context, psa_ticket, PsaTicketInput(**ids, moment=moment, at=at))


def _psa_after(context: Any, requested: Any, then: Callable[[], Any]) -> Generator[Any, Any, None]:
    """The PSA writes after the pipeline's answer: the request note (if the chain did not already outrun
    it), then the decision (or the L3 ticket), skipped for a tenant without a PSA. A failure is the
    activity's own audit entry (or a bug), never the gate's failure."""
    try:
        first = yield requested
    except Exception as exc:
        first = None
        context.set_custom_status({"phase": "done", "psa": _first_line(exc, 200)})
    if isinstance(first, dict) and first.get("configured") is False:
        return
    try:
        yield then()
    except Exception as exc:
        context.set_custom_status({"phase": "done", "psa": _first_line(exc, 200)})


def _executed_notice(summary: EvaluationSummary, gate_id: str) -> dict[str, Any]:
    return {
        "kind": "info",
        "recipients": list(summary.notify),
        "title": f"Executed: {summary.title}"[:200],
        "text": "Level L1: the change ran automatically; this is the notice that it did.",
        "instance_id": gate_id,
    }
