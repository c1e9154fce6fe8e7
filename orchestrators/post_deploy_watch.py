"""`post_deploy_watch`: one instance per finished deployment (instance id from the deployment's business key),
started by the dispatcher, linked to the gate that let it through.

start (deployment_finished) -> [initial delay] -> rounds of probes on durable timers, each raced against a
numbered wake event (control routes, alerts) -> by the pure verdict:
  healthy       close quietly: the deployment becomes the last known good one;
  inconclusive  / unhealthy but held / a rollback's own watch failed: tell people, wait for their call;
  unhealthy     plan the rollback (level from policy, one per environment):
                  L0/L1  dispatch, follow the run on timers, notify; a failed run escalates to L3 at once;
                  L2     the existing `approval_chain` decides first (sub-orchestration), then as L1;
                  L3     tell people what to do.
Deterministic: context time only; activities are called by reference with typed inputs
(`gatekeeper.contracts.watch`) and import their step modules on first use (cold start).
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from orchestrators.approval_chain import approval_chain
from orchestrators.blueprint import bp, call, call_with_retry, once

FOLLOW_POLL = timedelta(seconds=30)
ASK_WAIT = timedelta(hours=24)  # how long an unanswered "your call" keeps the watch open for a rollback request
# The RMM step retries storage hiccups; the RMM calls inside it already retry with backoff (bounded).
RMM_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=10_000, max_number_of_attempts=3)


@bp.orchestration_trigger(context_name="context")
def post_deploy_watch(context: Any) -> Generator[Any, Any, dict[str, Any]]:
    from gatekeeper.contracts import watch as c

    request = c.WatchInput.model_validate(context.get_input())
    ids = {"tenant_id": request.tenant_id, "instance_id": context.instance_id}

    def now() -> Any:
        return context.current_utc_datetime

    in_maintenance = [False]

    def rmm(action: Any) -> Generator[Any, Any, None]:
        """One RMM action (gatekeeper.rollback.rmm): retried, audited by the step, never deciding anything."""
        try:
            yield call_with_retry(context, watch_rmm, RMM_RETRY, c.RmmInput(**ids, action=action, at=now()))
        except Exception:  # the activity failed for good (storage down): the watch goes on, it was logged
            context.set_custom_status({"phase": "rmm_failed", "action": action})

    def close(outcome: Any, reason: str) -> Generator[Any, Any, Any]:
        if in_maintenance[0]:  # the judgement is over: the devices leave maintenance first
            in_maintenance[0] = False
            yield from rmm("maintenance_off")
        return (yield call(context, watch_close, c.WatchCloseInput(**ids, outcome=outcome, reason=reason, at=now())))

    context.set_custom_status({"phase": "starting"})
    plan = c.WatchPlan.model_validate((yield call(context, watch_start, request.model_copy(update={"at": now()}))))
    if not plan.watched:
        return {"outcome": "not_watched", "reason": plan.reason}
    if plan.maintenance:
        in_maintenance[0] = True
        yield from rmm("maintenance_on")
    begin = now()
    interval = timedelta(seconds=plan.interval_seconds)
    first = begin + timedelta(seconds=plan.initial_delay_seconds)
    n = 0
    if plan.failed:
        result = c.RoundResult.model_validate(
            (yield call(context, watch_round, c.RoundInput(**ids, round=0, probe=False, at=now())))
        )
    else:
        if first > begin:
            context.set_custom_status({"phase": "initial_delay"})
            yield context.create_timer(first)
        while True:
            context.set_custom_status({"phase": "watching", "round": n})
            result = c.RoundResult.model_validate(
                (yield call(context, watch_round, c.RoundInput(**ids, round=n, at=now())))
            )
            n += 1
            while result.action == "wait":
                timer = context.create_timer(first + interval * n)
                wake = context.wait_for_external_event(c.wake_event_name(result.wakes))
                winner = yield context.task_any([timer, wake])
                if winner is timer:
                    break
                timer.cancel()
                result = c.RoundResult.model_validate(
                    (yield call(context, watch_round, c.RoundInput(**ids, round=n, probe=False, at=now())))
                )
            if result.action != "wait":
                break
    if result.action == "close":
        yield from close("healthy", result.reason)
        return {"outcome": "healthy", "reason": result.reason}
    if result.action == "ask":  # people decide: tell them, then wait for a rollback request or let it be
        yield from close("asked", result.reason)
        context.set_custom_status({"phase": "asked", "reason": result.reason[:200]})
        deadline = now() + ASK_WAIT
        while result.action != "rollback":
            timer = context.create_timer(deadline)
            wake = context.wait_for_external_event(c.wake_event_name(result.wakes))
            winner = yield context.task_any([timer, wake])
            if winner is timer:
                return {"outcome": "asked", "reason": result.reason}
            timer.cancel()
            result = c.RoundResult.model_validate(
                (yield call(context, watch_round, c.RoundInput(**ids, round=n, probe=False, at=now())))
            )
    outcome, reason = yield from _roll_back(context, c, ids, result.reason, now)
    if outcome == "rolled_back" and plan.rmm:  # the RMM alert behind the rollback is resolved
        yield from rmm("resolve_alerts")
    yield from close(outcome, reason)
    if request.gate_id and outcome in ("rolled_back", "rollback_failed"):  # the gate's PSA ticket hears of it
        yield from _psa_rolled_back(context, request, outcome, reason, now())
    context.set_custom_status({"phase": "done", "outcome": outcome})
    return {"outcome": outcome, "reason": reason}


def _psa_rolled_back(context: Any, request: Any, outcome: str, reason: str, at: Any) -> Generator[Any, Any, None]:
    """A note and the rollback priority on the gate's PSA ticket, after the watch closed; never fails the watch."""
    from gatekeeper.contracts.psa import PsaTicketInput
    from orchestrators.psa_activities import psa_ticket

    told = PsaTicketInput(
        tenant_id=request.tenant_id,
        instance_id=request.gate_id,
        moment="rolled_back",
        at=at,
        watch_id=context.instance_id,
        reason=f"{outcome}: {reason}"[:500],
    )
    try:
        yield call(context, psa_ticket, told)
    except Exception:  # the activity audits its own failures; a bug here must not fail the watch
        return


def _roll_back(context: Any, c: Any, ids: dict[str, Any], cause: str, now: Any) -> Generator[Any, Any, tuple[str, str]]:
    from gatekeeper.contracts.gate import ChainInput, ChainResult, chain_instance_id

    context.set_custom_status({"phase": "planning_rollback"})
    plan = c.RollbackPlan.model_validate(
        (yield call(context, watch_plan_rollback, c.RollbackInput(**ids, at=now(), reason=cause[:500])))
    )
    if plan.level == "L3" or not plan.leased:
        return "human_task", plan.reason
    if plan.level == "L2" and plan.chain is not None and plan.gate_id is not None:
        context.set_custom_status({"phase": "awaiting_approval", "gate_id": plan.gate_id})
        asked = ChainInput(tenant_id=ids["tenant_id"], gate_id=plan.gate_id, plan=plan.chain, title=plan.title)
        try:
            decided = ChainResult.model_validate(
                (
                    yield context.call_sub_orchestrator(
                        approval_chain,
                        asked.model_dump(mode="json"),
                        chain_instance_id(plan.gate_id),
                        expected_type=dict,
                    )
                )
            )
        except Exception as exc:  # a failed chain never rolls back on its own
            return "human_task", f"approval chain failed: {str(exc).splitlines()[0][:200]}"
        if decided.status != "approved":
            return "rejected", f"rollback approval {decided.status} ({decided.reason})"
    context.set_custom_status({"phase": "rolling_back", "level": plan.level})
    sent = c.RollbackDispatched.model_validate(
        (yield call(context, watch_dispatch_rollback, c.RollbackInput(**ids, at=now(), level=plan.level)))
    )
    if not sent.ok:
        return "rollback_failed", f"the rollback could not be started: {sent.detail}"
    timeout_at = now() + timedelta(seconds=plan.follow_seconds)
    while now() < timeout_at:
        yield context.create_timer(now() + FOLLOW_POLL)
        followed = c.FollowResult.model_validate(
            (yield call(context, watch_follow_rollback, c.FollowInput(**ids, at=now())))
        )
        if followed.done:
            if followed.conclusion == "success":
                return "rolled_back", f"rolled back ({plan.level}): {followed.detail}"
            return "rollback_failed", f"the rollback run ended {followed.conclusion}: {followed.detail}"
    return "rollback_failed", f"the rollback run did not finish within {plan.follow_seconds / 60:g} minutes"


# --- activities --------------------------------------------------------------------------------------------


@bp.activity_trigger(input_name="payload")
def watch_start(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.watch import WatchInput
    from gatekeeper.rollback.steps import start

    request = WatchInput.model_validate(payload)
    return once("watch_start", request, request.instance_id, lambda s: start(s, request, request.at or s.clock()))


@bp.activity_trigger(input_name="payload")
def watch_round(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.watch import RoundInput
    from gatekeeper.rollback.steps import probe_round

    request = RoundInput.model_validate(payload)
    return once("watch_round", request, request.instance_id, lambda s: probe_round(s, request))


@bp.activity_trigger(input_name="payload")
def watch_plan_rollback(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.watch import RollbackInput
    from gatekeeper.rollback.steps import plan_rollback

    request = RollbackInput.model_validate(payload)
    return once("watch_plan_rollback", request, request.instance_id, lambda s: plan_rollback(s, request))


@bp.activity_trigger(input_name="payload")
def watch_dispatch_rollback(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.watch import RollbackInput
    from gatekeeper.rollback.steps import dispatch_rollback

    request = RollbackInput.model_validate(payload)
    return once("watch_dispatch_rollback", request, request.instance_id, lambda s: dispatch_rollback(s, request))


@bp.activity_trigger(input_name="payload")
def watch_follow_rollback(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.watch import FollowInput
    from gatekeeper.rollback.steps import follow_rollback

    request = FollowInput.model_validate(payload)
    return once("watch_follow_rollback", request, request.instance_id, lambda s: follow_rollback(s, request))


@bp.activity_trigger(input_name="payload")
def watch_close(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.watch import WatchCloseInput
    from gatekeeper.rollback.steps import close

    request = WatchCloseInput.model_validate(payload)
    return once("watch_close", request, request.instance_id, lambda s: close(s, request))


@bp.activity_trigger(input_name="payload")
def watch_rmm(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.watch import RmmInput
    from gatekeeper.rollback.rmm import rmm_step

    request = RmmInput.model_validate(payload)
    return once("watch_rmm", request, request.instance_id, lambda s: rmm_step(s, request))
