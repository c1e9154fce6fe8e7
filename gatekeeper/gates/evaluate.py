"""Step `evaluate` of the gate: policy, quality and the requester's identity decide the level.

The full decision goes to the Gates table and the audit log; the orchestrator gets the verdict only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gatekeeper import mesh, telemetry
from gatekeeper.approvals.chain import ChainPlan, StagePlan
from gatekeeper.contracts.gate import EvaluateInput, EvaluationSummary, GateStatus
from gatekeeper.events.model import PipelineEvent
from gatekeeper.gates.commit_time import deployed_commit_time
from gatekeeper.gates.common import append_audit, at_or_now, gate_title, load_event, log
from gatekeeper.gates.psa import linked_ticket, parse_ticket
from gatekeeper.gates.store import FailingObjective, GateRecord
from gatekeeper.policy.decision import QualityResult
from gatekeeper.security.requester import requester_claims

if TYPE_CHECKING:
    from datetime import datetime

    from gatekeeper.gates.needs import GateNeeds


def event_facts(event: PipelineEvent, requester: tuple[str, ...]) -> dict[str, Any]:
    """What triggered the gate, for the audit trail: who asked for which revision of what, and where.
    Callback handles (and the tokens inside them) stay out; only which kind of pipeline waits is kept."""
    return {
        "source": event.source.value,
        "kind": event.kind.value,
        "action": event.action.value if event.action else None,
        "environment": event.environment,
        "repository": event.repository,
        "ref": event.ref,
        "commit": event.commit,
        "requested_by": event.actor,
        "requester": list(requester),
        "run_id": event.run_id,
        "delivery_id": event.delivery_id,
        "labels": list(event.labels),
        "version_tags": list(event.version_tags),
        "artifacts": list(event.artifacts),
        "evidence": [e.kind for e in event.evidence],
        "business_key": event.business_key,
        "callback": event.callback.type if event.callback is not None else None,
        "received_at": event.received_at.isoformat(),
    }


def action_subject(event: PipelineEvent) -> dict[str, Any]:
    """An action-level request's exact command, plan, resource and ticket, for the sealed gate record (the
    approval view reads `command`, `plan_digest` and `plan_url` from it); nothing for other gates."""
    if event.command is None:
        return {}
    fields = {
        "command": event.command,
        "plan_digest": event.plan_digest,
        "plan_url": event.plan_url,
        "resource": event.resource,
        "ticket": event.ticket,
    }
    return {key: value for key, value in fields.items() if value is not None}


def evaluate(services: GateNeeds, request: EvaluateInput) -> EvaluationSummary:
    """Decide the level, store the full decision in the Gates table, index the gate, audit it."""
    tenant_id, instance_id = request.tenant_id, request.instance_id
    at = at_or_now(request.at, services)
    event = load_event(services, tenant_id, request.event_key)
    decision = services.decider.decide(event, at)
    plan = ChainPlan.from_policy(decision.approval) if decision.approval is not None else None
    who = services.requesters.resolve(
        tenant_id, requester_claims(event.source.value, event.actor, event.requester_ids), display=event.actor
    )
    requester = who.identities()
    blocked, reasons, raised_stage = decision.blocked, tuple(decision.reasons), None
    if plan is not None and not who.resolved and not blocked:
        if services.decider.unresolved_requester(tenant_id) == "deny":
            blocked = True
            reasons += (
                f"requester unresolved ({who.note}); the policy denies such gates (unresolved_requester: deny)",
            )
        else:
            raised = raise_quorum(plan)
            if raised is None:
                blocked = True
                reasons += (
                    f"requester unresolved ({who.note}); no approval stage can supply the extra distinct approver "
                    "that policy requires (unresolved_requester: raise)",
                )
            else:
                plan, raised_stage = raised
                reasons += (
                    f"requester unresolved ({who.note}): one extra distinct approver required at stage "
                    f"'{plan.stages[raised_stage].name}' (unresolved_requester: raise)",
                )
    title = gate_title(event)
    linked = linked_ticket(event)
    committed = deployed_commit_time(services.commit_lookup, tenant_id, event)
    facts = {
        **event_facts(event, requester),
        "requester_resolved": who.resolved,
        "requester_oid": who.oid,
        "commit_time": committed.isoformat() if committed is not None else None,  # report.metrics: lead time
    }
    public = decision.to_public_json()
    if blocked != decision.blocked or raised_stage is not None:
        public = {**public, "blocked": blocked, "reasons": list(reasons)}
        public["approval"] = plan.model_dump(mode="json") if plan is not None else None
    recommendation = recommend_for(services, tenant_id, facts, public, at) if str(decision.level) == "L2" else None
    if recommendation is not None:
        public = {**public, "recommendation": recommendation}
    record = GateRecord(
        instance_id=instance_id,
        tenant_id=tenant_id,
        status=GateStatus.EVALUATED,
        level=str(decision.level),
        blocked=blocked,
        rule=decision.rule,
        reasons=reasons,
        title=title,
        subject={
            "source": event.source.value,
            "repository": event.repository,
            "environment": event.environment,
            "ref": event.ref,
            "commit": event.commit,
            "run_id": event.run_id,
            "action": event.action.value if event.action else None,
            **action_subject(event),
        },
        requester=requester,
        requested_by=who,
        extra_approver_stage=raised_stage,
        created_at=at,
        updated_at=at,
        plan=plan,
        quality=decision.quality.result,
        quality_score=decision.quality.score,
        event_key=request.event_key,
        repository_url=event.repository_url,
        commit_url=event.commit_url,
        run_url=event.run_url,
        version_tags=event.version_tags,
        artifact_ids=event.artifacts,
        quality_failing=failing_objectives(decision.quality),
        compliance=decision.compliance,
        ticket=linked[0] if linked else None,
        ticket_via=linked[1] if linked else None,
        recommendation=recommendation,
    )
    services.index.put(instance_id, tenant_id)
    services.gates(tenant_id).save(record)
    append_audit(services, tenant_id, "event_received", instance_id, title, facts, at)
    if linked is not None:  # the ticket's change decision must find the gate (gatekeeper.gates.psa)
        source, ticket_id = parse_ticket(linked[0]) or (None, linked[0])
        services.gates(tenant_id).link_ticket(ticket_id, instance_id)
        linked_facts = {"action": "ticket_linked", "ticket": linked[0], "via": linked[1], "source": source}
        append_audit(services, tenant_id, "connector_event", instance_id, title, linked_facts, at)
    append_audit(services, tenant_id, "decision", instance_id, title, public, at)
    telemetry.emit(
        telemetry.Event.GATE_DECISION,
        tenant=tenant_id,
        instance_id=instance_id,
        level=str(decision.level),
        rule=decision.rule,
        source=event.source.value,
        environment=event.environment,
        action=event.action.value if event.action else None,
        blocked=blocked,
        quality=decision.quality.result,
        quality_score=decision.quality.score,
        approval_stages=len(plan.stages) if plan is not None else 0,
        commit_time=committed.isoformat() if committed is not None else None,
        commit_age_seconds=_age_seconds(committed, event.received_at),
    )
    _publish_requested(services, tenant_id, instance_id, str(decision.level), blocked, plan is not None, at)
    return EvaluationSummary(
        level=str(decision.level),
        blocked=blocked,
        rule=decision.rule,
        plan=plan,
        requester=requester,
        notify=services.operators_for(tenant_id),
        has_callback=event.callback is not None,
        title=title,
    )


def _age_seconds(committed: datetime | None, received: datetime) -> float | None:
    """Seconds from the commit to the gate request (build and test), the first part of the lead time."""
    if committed is None:
        return None
    return round(max(0.0, (received - committed).total_seconds()), 3)


def recommend_for(
    services: GateNeeds, tenant_id: str, facts: dict[str, Any], public: dict[str, Any], at: datetime
) -> dict[str, Any] | None:
    """The L2 recommendation from the tenant's current model (gatekeeper.recommend), for the audit entry, the
    gate record and the approvers. Advice only: it never changes the level, and a model that cannot be read
    leaves the gate without one (logged), never fails the gate."""
    from gatekeeper.recommend.features import gate_features

    try:
        features = gate_features(facts, public, at, 0)  # recent rollbacks: counted from the model's own record
        return services.recommender.recommend(tenant_id, features, at).to_audit()
    except Exception as exc:
        log.warning("no recommendation for a gate of %s: %s", tenant_id, type(exc).__name__)
        return None


def _publish_requested(
    services: GateNeeds, tenant_id: str, gate_id: str, level: str, blocked: bool, has_plan: bool, at: datetime
) -> None:
    """`gate.requested` on the event mesh: ids, level and the approval link only (`gatekeeper.mesh`)."""
    waits = level == "L2" and has_plan and not blocked
    mesh.publish(
        services,
        tenant_id,
        lambda deployment: (
            mesh.build(
                "gate.requested",
                deployment,
                gate_id,
                at,
                tenant_id=tenant_id,
                gate_id=gate_id,
                level=level,
                blocked=blocked,
                status="awaiting_approval" if waits else "evaluated",
                approval_url=services.approval_link(gate_id),
            ),
        ),
        at,
    )


def failing_objectives(quality: QualityResult) -> tuple[FailingObjective, ...]:
    """The objectives an approver must know about: failed ones first, then warnings, each with its reason."""
    order = {"fail": 0, "warning": 1}
    chosen = sorted((o for o in quality.objectives if o.verdict in order), key=lambda o: order[o.verdict])
    return tuple(FailingObjective(name=o.name[:200], verdict=o.verdict, detail=o.reason[:500]) for o in chosen[:50])


def raise_quorum(plan: ChainPlan) -> tuple[ChainPlan, int] | None:
    """The plan with one more approval required at the first stage that can still reach it (a group, or
    enough named people), and that stage's index; None when no stage can. One person counts once per chain,
    so one more approval anywhere is one more distinct approver."""
    for index, stage in enumerate(plan.stages):
        if stage.groups or len(stage.users) > stage.quorum:
            bumped = StagePlan.model_validate({**stage.model_dump(mode="json"), "quorum": stage.quorum + 1})
            stages = (*plan.stages[:index], bumped, *plan.stages[index + 1 :])
            return ChainPlan(stages=stages), index
    return None
