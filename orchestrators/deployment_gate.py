"""`deployment_gate`: one instance per gate request (instance id from the event's business key).

evaluate -> by level:
  L0  proceed (callback approve), log;
  L1  proceed, then notify;
  L2  run `approval_chain` as a sub-orchestration, then proceed or stop;
  L3  refuse to execute (callback reject), open a human task and notify;
  blocked (or L2 without a chain): stop.
Then the outcome is recorded; a callback that still fails after its retries is audited and alerted.
Every activity appends to the audit log. Deterministic: context time only, no I/O here.
The gate models are imported on the first run, not when the host indexes the app (cold start).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from orchestrators import names

# Durable retry for the pipeline callback: a durable timer between attempts, no sleeping in activities.
CALLBACK_FIRST_RETRY_MS = 5_000
CALLBACK_MAX_ATTEMPTS = 4


def callback_retry() -> df.RetryOptions:
    return df.RetryOptions(CALLBACK_FIRST_RETRY_MS, CALLBACK_MAX_ATTEMPTS)


def deployment_gate(context: Any) -> Generator[Any, Any, dict[str, Any]]:
    from gatekeeper.gates.model import EvaluationSummary, GateInput, GateStatus, chain_instance_id

    gate = GateInput.model_validate(context.get_input())
    gate_id = context.instance_id
    base = {"tenant_id": gate.tenant_id, "instance_id": gate_id}

    def now() -> str:
        return context.current_utc_datetime.isoformat()

    context.set_custom_status({"phase": "evaluating"})
    summary = EvaluationSummary.model_validate(
        (
            yield context.call_activity(
                names.EVALUATE,
                {
                    **base,
                    "event_key": gate.event_key,
                    "requested_by": gate.requested_by,
                    "at": now(),
                },
            )
        )
    )
    level = summary.level
    chain_result: dict[str, Any] | None = None
    if summary.blocked:
        status, reason = GateStatus.REJECTED, "blocked by policy"
    elif level == "L0":
        status, reason = GateStatus.APPROVED, "L0: fully automated"
    elif level == "L1":
        status, reason = GateStatus.APPROVED, "L1: executed, people notified"
    elif level == "L2" and summary.plan is None:
        status, reason = GateStatus.REJECTED, "L2 without an approval chain in the policy"
    elif level == "L2" and summary.plan is not None:
        context.set_custom_status({"phase": "awaiting_approval"})
        try:
            chain_result = yield context.call_sub_orchestrator(
                names.APPROVAL_CHAIN,
                {
                    "tenant_id": gate.tenant_id,
                    "gate_id": gate_id,
                    "plan": summary.plan.model_dump(mode="json"),
                    "requester": list(summary.requester),
                    "title": summary.title,
                },
                chain_instance_id(gate_id),
            )
            approved = chain_result["status"] == "approved"
            status = GateStatus.APPROVED if approved else GateStatus.REJECTED
            reason = f"approval chain {chain_result['status']} ({chain_result['reason']})"
        except Exception as exc:  # a failed chain must still answer the pipeline: deny
            status, reason = GateStatus.REJECTED, f"approval chain failed: {str(exc).splitlines()[0][:200]}"
    else:  # L3: human only
        yield context.call_activity(names.OPEN_HUMAN_TASK, {**base, "at": now()})
        status, reason = GateStatus.HUMAN_TASK, "L3: human only, automation refused"

    context.set_custom_status({"phase": "calling_back", "status": status.value})
    approved = status is GateStatus.APPROVED
    callback: dict[str, Any]
    try:
        callback = yield context.call_activity_with_retry(
            names.CALLBACK,
            callback_retry(),
            {
                **base,
                "event_key": gate.event_key,
                "approved": approved,
                "comment": reason,
            },
        )
    except Exception as exc:  # retries exhausted: record it, the outcome activity alerts
        callback = {"ok": False, "detail": str(exc).splitlines()[0][:300]}

    if level == "L1" and approved and not summary.blocked:
        yield context.call_activity(
            names.NOTIFY,
            {
                **base,
                "at": now(),
                "notification": {
                    "kind": "info",
                    "recipients": list(summary.notify),
                    "title": f"Executed: {summary.title}"[:200],
                    "text": "Level L1: the change ran automatically; this is the notice that it did.",
                    "instance_id": gate_id,
                },
            },
        )

    yield context.call_activity(
        names.RECORD_OUTCOME,
        {
            **base,
            "status": status.value,
            "reason": reason,
            "level": level,
            "at": now(),
            "callback": {"ok": bool(callback.get("ok")), "detail": callback.get("detail", "")},
            "chain": chain_result,
        },
    )
    context.set_custom_status({"phase": "done", "status": status.value})
    return {
        "instance_id": gate_id,
        "level": level,
        "status": status.value,
        "reason": reason,
        "callback_ok": bool(callback.get("ok")),
        "chain": chain_result,
    }
