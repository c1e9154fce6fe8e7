"""The watch's steps, one per activity of `post_deploy_watch`: start, a probe round, plan the rollback,
dispatch it, follow it, close. Each reads and writes the watch record (gatekeeper.rollback.store), appends
to the tenant's audit log (`deployment_finished`, `health_check`, `rollback`) and decides through the pure
core (gatekeeper.rollback.decide). Remote failures are results, audited; nothing here raises for them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from gatekeeper import mesh, telemetry
from gatekeeper.contracts.gate import GateStatus
from gatekeeper.contracts.watch import (
    FollowInput,
    FollowResult,
    RollbackDispatched,
    RollbackInput,
    RollbackPlan,
    RoundInput,
    RoundResult,
    WatchClosed,
    WatchCloseInput,
    WatchInput,
    WatchPlan,
    rollback_gate_id,
)
from gatekeeper.events.model import ActionKind, EventKind, PipelineEvent
from gatekeeper.gates import once
from gatekeeper.gates.common import append_audit, load_event, log, notify_people
from gatekeeper.gates.needs import GateNeeds
from gatekeeper.policy.levels import GateLevel
from gatekeeper.ports import RollbackOrder, RollbackStatus
from gatekeeper.rollback import decide
from gatekeeper.rollback.store import Deployment, RollbackRun, WatchRecord, WatchState, WatchStore

if TYPE_CHECKING:
    from gatekeeper.integrations.rollbacks import RollbackRunners
    from gatekeeper.policy.document import PolicyDocument
    from gatekeeper.policy.watch import ProbeSpec, WatchSpec
    from gatekeeper.rollback.probes import ProbeResult

FAILED_STATUSES = frozenset({"failure", "failed", "error"})
ROLLBACK_LABEL = "rollback"
LEASE_MARGIN = timedelta(minutes=10)


class HealthProbe(Protocol):
    def run(self, spec: ProbeSpec, tenant_id: str, deployed_at: datetime) -> ProbeResult: ...


class WatchNeeds(GateNeeds, Protocol):
    """What the watch steps need beyond the gate's: the policy, the watch store, the probe, the rollback runs."""

    def policy_for(self, tenant_id: str) -> PolicyDocument: ...

    def watches(self, tenant_id: str) -> WatchStore: ...

    @property
    def health_probe(self) -> HealthProbe: ...

    @property
    def rollback_runners(self) -> RollbackRunners: ...


def _spec(services: WatchNeeds, record: WatchRecord) -> WatchSpec | None:
    return services.policy_for(record.tenant_id).watch_for(record.deployment.environment)


def _title(record: WatchRecord) -> str:
    d = record.deployment
    what = f"{d.repository} " if d.repository else ""
    return f"{what}{d.environment} ({(d.commit or d.ref or d.run_id or '?')[:12]})"[:200]


def _people(services: WatchNeeds, record: WatchRecord, spec: WatchSpec | None) -> tuple[str, ...]:
    named = spec.rollback.notify if spec is not None else ()
    return tuple(dict.fromkeys((*named, *services.operators_for(record.tenant_id))))


def _audit(services: WatchNeeds, record: WatchRecord, kind: str, data: dict[str, Any], at: datetime) -> None:
    append_audit(services, record.tenant_id, kind, record.instance_id, _title(record), data, at)


LEVELS = frozenset({"L0", "L1", "L2", "L3"})
ROLLBACK_TARGETS = frozenset({"github", "azure-devops", "webhook"})


def _link(url: str | None) -> str | None:
    """A run URL for the event mesh: only a plain https link, anything else is left out."""
    return url if url and url.startswith("https://") and len(url) <= 2000 and " " not in url else None


def _publish(services: WatchNeeds, record: WatchRecord, kind: mesh.EventType, at: datetime, **data: Any) -> None:
    """One watch or rollback fact on the event mesh (`gatekeeper.mesh`): the watch's ids and the given fields."""
    tenant_id, watch_id = record.tenant_id, record.instance_id
    mesh.publish(
        services,
        tenant_id,
        lambda deployment: (
            mesh.build(kind, deployment, watch_id, at, tenant_id=tenant_id, watch_id=watch_id, **data),
        ),
        at,
    )


def _load(services: WatchNeeds, tenant_id: str, instance_id: str) -> WatchRecord:
    record = services.watches(tenant_id).load(instance_id)
    if record is None:
        raise LookupError(f"watch {instance_id} has no record")
    return record


# --- start ---------------------------------------------------------------------------------------------------


def start(services: WatchNeeds, request: WatchInput, at: datetime) -> WatchPlan:
    """Record the finished deployment (`deployment_finished`) and say whether and how it is watched."""
    event = load_event(services, request.tenant_id, request.event_key)
    store = services.watches(request.tenant_id)
    spec = services.policy_for(request.tenant_id).watch_for(event.environment)
    is_rollback = (
        event.action is ActionKind.ROLLBACK
        or ROLLBACK_LABEL in (label.lower() for label in event.labels)
        or store.is_rollback_run(event.source.value, event.run_id)
    )
    failed = (event.status or "") in FAILED_STATUSES
    existing = store.load(request.instance_id)
    record = existing or WatchRecord(
        instance_id=request.instance_id,
        tenant_id=request.tenant_id,
        deployment=Deployment(
            source=event.source.value,
            repository=event.repository,
            environment=event.environment or "",
            ref=event.ref,
            commit=event.commit,
            run_id=event.run_id,
            status=event.status,
            actor=event.actor,
        ),
        gate_id=request.gate_id,
        is_rollback=is_rollback,
        started_at=at,
        updated_at=at,
        ends_at=(at + spec.initial_delay + spec.window) if spec is not None else None,
        state=WatchState.WATCHING if spec is not None else WatchState.HEALTHY,
        reasons=() if spec is not None else ("no watch configured for this environment",),
    )
    if existing is None:
        store.save(record)
        services.index.put(request.instance_id, request.tenant_id)
    reason = "watched" if spec is not None else f"environment {event.environment!r} has no watch in the policy"
    if spec is None and event.kind is EventKind.STAGE_STATUS:  # an unwatched Azure DevOps stage may be a build
        return WatchPlan(watched=False, reason=reason, failed=failed, is_rollback=is_rollback)
    _audit(
        services,
        record,
        "deployment_finished",
        {
            "environment": event.environment,
            "repository": event.repository,
            "ref": event.ref,
            "commit": event.commit,
            "commit_time": event.commit_time.isoformat() if event.commit_time is not None else None,  # lead time
            "run_id": event.run_id,
            "status": event.status,
            "gate_id": request.gate_id,
            "is_rollback": is_rollback,
            "watched": spec is not None,
            "reason": reason,
        },
        at,
    )
    if spec is None:
        return WatchPlan(watched=False, reason=reason, failed=failed, is_rollback=is_rollback)
    from gatekeeper.rollback.rmm import plan_flags

    maintenance, rmm = plan_flags(services, request.tenant_id, event.environment or "")
    return WatchPlan(
        watched=True,
        maintenance=maintenance,
        rmm=rmm,
        reason=reason,
        failed=failed,
        is_rollback=is_rollback,
        initial_delay_seconds=spec.initial_delay.total_seconds(),
        interval_seconds=spec.interval.total_seconds(),
        rounds=spec.rounds,
        probes=len(spec.probes),
    )


# --- a probe round -------------------------------------------------------------------------------------------


def probe_round(services: WatchNeeds, request: RoundInput) -> RoundResult:
    """Run the environment's probes (when asked), audit them (`health_check`), then assess and decide.

    The probes run against the record as first read; the verdict and the action are decided inside an
    ETag-conditional change, against the record as stored right before the write, so a hold, a rollback
    request or an alert that a person or Azure Monitor stored while the probes ran is neither overwritten
    nor decided past (the wake they raised then finds the orchestration waiting on the next number)."""
    at = request.at
    store = services.watches(request.tenant_id)
    record = _load(services, request.tenant_id, request.instance_id)
    spec = _spec(services, record)
    result: str = "none"
    probes = record.probes
    if request.probe and spec is not None:
        outcomes = [services.health_probe.run(probe, record.tenant_id, record.started_at) for probe in spec.probes]
        result = decide.round_result([o.outcome for o in outcomes])
        probes = tuple(o.to_json() for o in outcomes)
        _audit(
            services,
            record,
            "health_check",
            {"round": request.round, "result": result, "probes": list(probes)},
            at,
        )
    limits = decide.Limits(
        window=spec.window if spec else timedelta(minutes=1),
        initial_delay=spec.initial_delay if spec else timedelta(0),
        failure_limit=spec.failure_limit if spec else 0,
        consecutive_error_limit=spec.consecutive_error_limit if spec else 0,
    )
    decided: list[tuple[decide.Verdict, str, decide.Action, str]] = []

    def assess(current: WatchRecord) -> dict[str, Any]:
        decided.clear()  # a lost race runs this again on the newer record
        rounds = (*current.rounds, result)[-1000:] if result != "none" else current.rounds
        verdict, why, action, because, state = _round_decision(current, rounds, limits, at)
        decided.append((verdict, why, action, because))
        return {
            "rounds": rounds,
            "probes": probes,
            "state": state,
            "reasons": (why, because),
            "updated_at": at,
            "failed_at": current.failed_at or (at if verdict is decide.Verdict.UNHEALTHY else None),
        }

    changed = store.change(request.instance_id, assess)
    if changed is None:
        raise LookupError(f"watch {request.instance_id} has no record")
    verdict, why, action, because = decided[0]
    return RoundResult(
        result=result,  # type: ignore[arg-type]
        verdict=verdict.value,
        action=action.value,
        reason=f"{why}; {because}",
        wakes=changed.wakes,
    )


def _round_decision(
    record: WatchRecord, rounds: tuple[str, ...], limits: decide.Limits, at: datetime
) -> tuple[decide.Verdict, str, decide.Action, str, WatchState]:
    """The verdict, the action and the watch's state after a round, from the record as stored (pure)."""
    counted: list[decide.RoundResult] = [r for r in rounds if r in ("pass", "fail", "error")]  # type: ignore[misc]
    assessment = decide.assess(counted, limits, record.started_at, at)
    verdict, why = assessment.verdict, assessment.reason
    if (record.deployment.status or "") in FAILED_STATUSES:
        verdict, why = decide.Verdict.UNHEALTHY, f"the CI reported the deployment {record.deployment.status}"
    elif record.alerts:
        verdict, why = decide.Verdict.UNHEALTHY, f"Azure Monitor alert fired: {record.alerts[-1]}"
    rolled_back = record.rollback is not None
    if record.requested_by and not rolled_back and not record.is_rollback:
        action, because = decide.Action.ROLLBACK, f"rollback requested by {record.requested_by}"
    else:
        action, because = decide.action_for(
            verdict, is_rollback=record.is_rollback, held=record.held, rolled_back=rolled_back
        )
    state = {
        decide.Verdict.CONTINUE: WatchState.WATCHING,
        decide.Verdict.HEALTHY: WatchState.HEALTHY,
        decide.Verdict.INCONCLUSIVE: WatchState.INCONCLUSIVE,
        decide.Verdict.UNHEALTHY: WatchState.UNHEALTHY,
    }[verdict]
    if action is decide.Action.WAIT and record.state is not WatchState.WATCHING:
        state = record.state  # asked people earlier: keep saying so
    return verdict, why, action, because, state


# --- rollback ------------------------------------------------------------------------------------------------


def plan_rollback(services: WatchNeeds, request: RollbackInput) -> RollbackPlan:
    """The rollback's level from policy, the environment's lease, and (L2) the gate its chain decides."""
    at = request.at
    store = services.watches(request.tenant_id)
    record = _load(services, request.tenant_id, request.instance_id)
    spec = _spec(services, record)
    d = record.deployment
    title = f"Roll back {_title(record)}"[:200]
    holder = store.acquire_lease(
        d.repository,
        d.environment,
        record.instance_id,
        at,
        (spec.rollback.follow_timeout if spec else timedelta(minutes=30)) + LEASE_MARGIN,
    )
    decision = None
    if holder is None:
        level, reason, leased = GateLevel.L3, "another rollback of this environment is running: people decide", False
    else:
        leased = True
        configured = spec.rollback.level if spec else GateLevel.L3
        asked = PipelineEvent(
            tenant_id=record.tenant_id,
            source=d.source,  # type: ignore[arg-type]
            kind=EventKind.GATE_REQUEST,
            action=ActionKind.ROLLBACK,
            environment=d.environment,
            repository=d.repository,
            ref=d.ref,
            run_id=d.run_id,
            received_at=at,
        )
        try:
            decision = services.decider.decide(asked, at)
        except Exception as exc:  # a policy that cannot be read must not stop people hearing about it
            decision = None
            configured, reason = GateLevel.L3, f"policy unavailable ({type(exc).__name__})"
        # The audit and the people's notice name the real cause, not "from the watch settings".
        level, reason = (configured, reason) if decision is None else decide.rollback_level(configured, decision)
        if spec is None or spec.rollback.target is None:
            level, reason = GateLevel.L3, "no rollback target configured: people roll back"
        elif store.last_good(d.repository, d.environment) is None:
            level, reason = GateLevel.L3, "no last known good deployment recorded for this environment"
    chain = gate_id = None
    if level is GateLevel.L2:
        approval = (
            (spec.rollback.approval if spec else None)
            or (decision.approval if decision is not None else None)  # the rule that raised it to L2
            or services.policy_for(record.tenant_id).defaults.approval
        )
        if approval is None:
            level, reason = GateLevel.L3, "L2 rollback without an approval chain in the policy: people decide"
        else:
            chain, gate_id = _open_rollback_gate(services, record, approval, title, reason, at)
    _audit(
        services,
        record,
        "rollback",
        {
            "step": "decided",
            "result": f"decided at level {level.value}",
            "level": level.value,
            "reason": reason,
            "cause": request.reason,
            "leased": leased,
        },
        at,
    )
    run = RollbackRun(level=level.value, detail=reason)
    store.change(  # only this step's fields: a hold or an alert stored meanwhile stays
        record.instance_id,
        lambda r: {
            "state": WatchState.AWAITING_APPROVAL if level is GateLevel.L2 else r.state,
            "rollback": run,
            "updated_at": at,
        },
    )
    follow = (spec.rollback.follow_timeout if spec else timedelta(minutes=30)).total_seconds()
    return RollbackPlan(
        level=level.value,
        reason=reason,
        chain=chain,
        gate_id=gate_id,
        title=title,
        leased=leased,
        follow_seconds=follow,
    )


def _open_rollback_gate(
    services: WatchNeeds, record: WatchRecord, approval: Any, title: str, reason: str, at: datetime
) -> tuple[Any, str]:
    """An L2 rollback is a gate like any other: a gate record the approval page, the decision route and
    the existing `approval_chain` serve (by `rollback_gate_id`)."""
    from gatekeeper.approvals.chain import ChainPlan
    from gatekeeper.gates.store import GateRecord

    gate_id = rollback_gate_id(record.instance_id)
    plan = ChainPlan.from_policy(approval)
    services.gates(record.tenant_id).save(
        GateRecord(
            instance_id=gate_id,
            tenant_id=record.tenant_id,
            status=GateStatus.EVALUATED,
            level=GateLevel.L2.value,
            reasons=(reason,),
            title=title,
            subject={
                "action": ActionKind.ROLLBACK.value,
                "environment": record.deployment.environment,
                "repository": record.deployment.repository,
                "watch_id": record.instance_id,
            },
            created_at=at,
            updated_at=at,
            plan=plan,
        )
    )
    services.index.put(gate_id, record.tenant_id)
    return plan, gate_id


def _order(record: WatchRecord, spec: WatchSpec | None, good: Deployment | None) -> RollbackOrder | None:
    target = spec.rollback.target if spec else None
    if target is None or good is None:
        return None
    return RollbackOrder(
        target=target.model_dump(mode="json"),
        watch_id=record.instance_id,
        repository=record.deployment.repository,
        environment=record.deployment.environment,
        to_ref=good.ref,
        to_commit=good.commit,
        to_run_id=good.run_id,
        ordered_at=record.dispatched_wall,
    )


def dispatch_rollback(services: WatchNeeds, request: RollbackInput) -> RollbackDispatched:
    """Start the rollback run on the configured target towards the last known good deployment."""
    at = request.at
    store = services.watches(request.tenant_id)
    record = _load(services, request.tenant_id, request.instance_id)
    spec = _spec(services, record)
    good = store.last_good(record.deployment.repository, record.deployment.environment)
    earlier = _dispatched_before(record, at)
    if earlier is None:
        record = record.model_copy(update={"dispatched_wall": datetime.now(UTC)})  # the CI's clock, not ours
    order = _order(record, spec, good)
    if earlier is not None:
        sent = earlier
    elif order is None:
        sent = RollbackStatus(ok=False, detail="no rollback target or no last known good deployment")
    else:
        sent = services.rollback_runners.dispatch(record.tenant_id, order)
    kind = str(order.target["type"]) if order else None
    run = (record.rollback or RollbackRun(level=request.level or "L1")).model_copy(
        update={
            "target": kind,
            "run_id": sent.run_id,
            "url": sent.url,
            "to_ref": good.ref if good else None,
            "to_commit": good.commit if good else None,
            "started_at": at,
            "detail": sent.detail[:300],
            "conclusion": None if sent.ok else "not_started",
        }
    )
    if sent.ok and sent.run_id:
        store.mark_rollback_run(record.deployment.source, sent.run_id, record.instance_id)
    if sent.ok:
        _override_approval(services, record, at)
    store.change(  # only this step's fields: a hold or an alert stored meanwhile stays
        record.instance_id,
        lambda _r: {
            "dispatched_wall": record.dispatched_wall,
            "state": WatchState.ROLLING_BACK if sent.ok else WatchState.ROLLBACK_FAILED,
            "rollback": run,
            "updated_at": at,
        },
    )
    _audit(
        services,
        record,
        "rollback",
        {
            "step": "dispatched",
            "result": "dispatched" if sent.ok else "could not be started",
            "reason": request.reason or "the watch decided to roll back",
            "ok": sent.ok,
            "target": kind,
            "run_id": sent.run_id,
            "to_ref": run.to_ref,
            "to_commit": run.to_commit,
            "detail": sent.detail[:300],
        },
        at,
    )
    _publish(
        services,
        record,
        "rollback.dispatched",
        at,
        ok=sent.ok,
        level=run.level if run.level in LEVELS else None,
        target=kind if kind in ROLLBACK_TARGETS else None,
        run_url=_link(sent.url),
    )
    return RollbackDispatched(ok=sent.ok, detail=sent.detail[:300], run_id=sent.run_id)


def _dispatched_before(record: WatchRecord, at: datetime) -> RollbackStatus | None:
    """In a run of the dispatch step after an earlier run died half-way (`gatekeeper.gates.once`): the rollback
    that run dispatched and recorded (its start time is this step's), which is not dispatched a second time."""
    run = record.rollback
    if not once.rerun() or run is None or run.started_at != at:
        return None
    return RollbackStatus(ok=run.conclusion != "not_started", run_id=run.run_id, url=run.url, detail=run.detail)


def _override_approval(services: WatchNeeds, record: WatchRecord, at: datetime) -> None:
    """A rollback of a change its gate approved: an `override` entry on that gate, both sides (what was
    recommended, what people or automation decided), so the model learns the approval went badly."""
    if record.gate_id is None or record.is_rollback:
        return
    gate = services.gates(record.tenant_id).load(record.gate_id)
    if gate is None or gate.status is not GateStatus.APPROVED:
        return
    from gatekeeper.recommend.overrides import override_data

    data = override_data(
        "rolled_back_after_approval",
        gate=gate.instance_id,
        rule=gate.rule,
        recommendation=gate.recommendation,
        decided="rolled_back",
    )
    append_audit(services, record.tenant_id, "override", gate.instance_id, gate.title or _title(record), data, at)


def follow_rollback(services: WatchNeeds, request: FollowInput) -> FollowResult:
    """Ask the target how the rollback run is doing; record its conclusion when it has one."""
    at = request.at
    store = services.watches(request.tenant_id)
    record = _load(services, request.tenant_id, request.instance_id)
    run = record.rollback
    order = _order(
        record, _spec(services, record), store.last_good(record.deployment.repository, record.deployment.environment)
    )
    if run is None or order is None:
        return FollowResult(done=True, conclusion="unknown", detail="the rollback run cannot be followed")
    if run.to_ref or run.to_commit:  # follow towards what was dispatched, even if last good moved since
        order = order.model_copy(update={"to_ref": run.to_ref, "to_commit": run.to_commit})
    seen = services.rollback_runners.follow(record.tenant_id, order, run.run_id)
    if not seen.ok:  # the CI could not be asked: ask again at the next poll
        return FollowResult(done=False, detail=seen.detail[:300])
    run_id = seen.run_id or run.run_id
    if run_id and run_id != run.run_id:
        store.mark_rollback_run(record.deployment.source, run_id, record.instance_id)
    update: dict[str, Any] = {"run_id": run_id, "url": seen.url or run.url}
    if seen.done:
        update |= {"conclusion": seen.conclusion or "unknown", "finished_at": at}
    followed = run.model_copy(update=update)
    store.change(record.instance_id, lambda _r: {"rollback": followed, "updated_at": at})
    if not seen.done:
        return FollowResult(done=False, detail=seen.detail[:300])
    conclusion = seen.conclusion or "unknown"
    _audit(
        services,
        record,
        "rollback",
        {
            "step": "finished",
            "result": f"run finished: {conclusion}",
            "run_id": run_id,
            "url": update["url"],
            "conclusion": conclusion,
        },
        at,
    )
    word = conclusion.lower()
    _publish(
        services,
        record,
        "rollback.finished",
        at,
        conclusion=word if word.replace("_", "").isalpha() and len(word) <= 40 else "unknown",
        run_url=_link(update["url"]),
    )
    return FollowResult(done=True, conclusion=conclusion, detail=seen.detail[:300])


# --- close ---------------------------------------------------------------------------------------------------

_FINAL_STATE = {
    "healthy": WatchState.HEALTHY,
    "rolled_back": WatchState.ROLLED_BACK,
    "rollback_failed": WatchState.ROLLBACK_FAILED,
    "human_task": WatchState.HUMAN_TASK,
    "asked": None,  # keep INCONCLUSIVE / UNHEALTHY
    "rejected": WatchState.UNHEALTHY,
    "not_watched": WatchState.HEALTHY,
}


def close(services: WatchNeeds, request: WatchCloseInput) -> WatchClosed:
    """The watch's end: last known good on a clean window (quietly), people told of everything else."""
    at = request.at
    store = services.watches(request.tenant_id)
    record = _load(services, request.tenant_id, request.instance_id)
    spec = _spec(services, record)
    d = record.deployment
    if request.outcome == "healthy":
        moved = store.record_good(record, at)
        _audit(services, record, "health_check", {"final": True, "verdict": "healthy", "last_known_good": moved}, at)
    if request.outcome in ("rolled_back", "rollback_failed", "human_task", "rejected"):
        store.release_lease(d.repository, d.environment, record.instance_id)
    if request.outcome == "rollback_failed":
        level, why = decide.escalate_after_failed_rollback()
        _audit(
            services,
            record,
            "rollback",
            {"step": "escalated", "result": "escalated to L3", "level": level.value, "reason": why},
            at,
        )
        _publish(services, record, "rollback.escalated", at, level=level.value)
    final = _FINAL_STATE[request.outcome]
    stored = store.change(record.instance_id, lambda r: {"state": final or r.state, "updated_at": at})
    state = stored.state if stored is not None else final or record.state  # what was stored, not the first read
    _emit_outcome(record, request, at)
    _publish(
        services,
        record,
        "deployment.watched",
        at,
        gate_id=record.gate_id,
        outcome=request.outcome,
        is_rollback=record.is_rollback,
    )
    notified = None
    if request.outcome not in ("healthy", "not_watched"):
        notified = bool(
            notify_people(services, record.tenant_id, record.instance_id, _notice(services, record, spec, request), at)[
                "ok"
            ]
        )
    return WatchClosed(state=state.value, notified=notified)


def _emit_outcome(record: WatchRecord, request: WatchCloseInput, at: datetime) -> None:
    """WatchOutcome: change failure rate (unhealthy deployments) and time to restore (unhealthy verdict to a
    successful rollback run). Telemetry never fails the watch."""
    run = record.rollback
    restored = request.outcome == "rolled_back" and record.failed_at is not None
    finished = (run.finished_at if run is not None else None) or at
    try:
        telemetry.emit(
            telemetry.Event.WATCH_OUTCOME,
            tenant=record.tenant_id,
            instance_id=record.instance_id,
            gate_id=record.gate_id,  # DORA lead time: the gate's GateDecision joins on it
            environment=record.deployment.environment,
            outcome=request.outcome,
            change_failed=record.failed_at is not None,
            rolled_back=request.outcome == "rolled_back",
            time_to_restore_seconds=(
                round((finished - record.failed_at).total_seconds(), 3) if restored and record.failed_at else None
            ),
            duration_seconds=round((at - record.started_at).total_seconds(), 3),
        )
    except Exception as exc:
        log.warning("telemetry for %s failed: %s", record.instance_id, type(exc).__name__)


def _notice(
    services: WatchNeeds, record: WatchRecord, spec: WatchSpec | None, request: WatchCloseInput
) -> dict[str, Any]:
    run = record.rollback
    what_failed = "; ".join(f"{p.get('name')}: {p.get('detail')}" for p in record.probes if p.get("outcome") != "pass")
    lines = [
        f"Deployment: {_title(record)} (status {record.deployment.status or '?'})",
        f"Why: {request.reason}",
        f"Failing probes: {what_failed}" if what_failed else "",
        f"Rollback: {run.target or 'none'} to {run.to_ref or run.to_commit or '?'}, run {run.url or run.run_id or '-'} "
        f"({run.conclusion or 'running'})"
        if run is not None and run.started_at is not None
        else "",
    ]
    headline = {
        "rolled_back": "Rolled back",
        "rollback_failed": "Rollback FAILED, act now",
        "human_task": "Roll back by hand",
        "asked": "Your call",
        "rejected": "Rollback rejected",
    }.get(request.outcome, "Watch")
    kind = "info" if request.outcome == "rolled_back" else "alert"
    return {
        "kind": kind if request.outcome != "human_task" else "human_task",
        "recipients": _people(services, record, spec),
        "title": f"{headline}: {_title(record)}"[:200],
        "text": "\n".join(line for line in lines if line)[:4000],
        "link": services.approval_link(record.instance_id).replace("/api/approvals/", "/api/deployments/"),
        "instance_id": record.instance_id,
    }


def now_or(at: datetime | None, clock: Callable[[], datetime]) -> datetime:
    return at if at is not None else clock()
