"""What the gate orchestrators' activities do. Each takes the services and a small JSON input and returns
a small JSON result; `orchestrators/activities.py` only binds them to Functions activity triggers.

Every step appends to the tenant's audit log. Remote failures of notifications are results (audited),
not exceptions; a failed pipeline callback raises, so the orchestrator's retry policy applies.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from gatekeeper import telemetry
from gatekeeper.approvals.chain import ChainPlan, StagePlan
from gatekeeper.events.codec import event_from_sealable
from gatekeeper.events.model import PipelineEvent
from gatekeeper.failures import record_integrity_failure
from gatekeeper.gates.model import EvaluationSummary, GateStatus
from gatekeeper.gates.services import GateServices
from gatekeeper.gates.store import GateRecord, GateStore
from gatekeeper.integrations.notify import Notification
from gatekeeper.security.requester import requester_claims
from gatekeeper.store.chunks import join_property
from gatekeeper.store.envelope import SealedDataUnreadable
from gatekeeper.store.tables import TablePurpose, tenant_table_name

log = logging.getLogger("gatekeeper.gates")

SYSTEM_ACTOR = "gatekeeper"
EVENT_PARTITION = "event"  # the dispatcher's Events table layout


class CallbackFailed(RuntimeError):
    """The pipeline did not acknowledge the callback; raised so the orchestrator's retry policy applies.
    The message is the integration's scrubbed detail (never a token)."""


def _at(payload: dict[str, Any], services: GateServices) -> datetime:
    value = payload.get("at")
    return datetime.fromisoformat(value) if value else services.clock()


def load_event(services: GateServices, tenant_id: str, event_key: str) -> PipelineEvent:
    """The sealed event the dispatcher stored: Events table, PartitionKey "event", RowKey = key hash."""
    table = services.storage.tenant_table(tenant_id, TablePurpose.EVENTS)
    entity = table.get_entity(EVENT_PARTITION, event_key)
    try:
        document = services.cipher.open_json(
            tenant_id,
            tenant_table_name(tenant_id, TablePurpose.EVENTS),
            EVENT_PARTITION,
            event_key,
            join_property(entity, "sealed_event"),
        )
    except SealedDataUnreadable as exc:  # moved or tampered: named, logged and audited, then the gate fails
        record_integrity_failure(services.audit_for, exc, "activity:load_event")
        raise
    return event_from_sealable(document)


def _title(event: PipelineEvent) -> str:
    what = (event.action.value if event.action else event.kind.value).replace("_", " ")
    where = f" to {event.environment}" if event.environment else ""
    repo = f" of {event.repository}" if event.repository else ""
    ref = f" ({event.ref.removeprefix('refs/heads/')})" if event.ref else ""
    return (event.summary or f"{what}{repo}{ref}{where}")[:200]


def _audit(
    services: GateServices,
    tenant_id: str,
    kind: str,
    instance_id: str,
    subject: str,
    data: dict[str, Any],
    at: datetime,
    actor: str = SYSTEM_ACTOR,
) -> None:
    services.audit_for(tenant_id).append(kind, actor, instance_id, subject[:1000], data, at=at)


def _event_facts(event: PipelineEvent, requester: tuple[str, ...]) -> dict[str, Any]:
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
        "evidence": [e.kind for e in event.evidence],
        "business_key": event.business_key,
        "callback": event.callback.type if event.callback is not None else None,
        "received_at": event.received_at.isoformat(),
    }


def evaluate(services: GateServices, payload: dict[str, Any]) -> dict[str, Any]:
    """Decide the level, store the full decision in the Gates table, index the gate, audit it."""
    tenant_id, instance_id = payload["tenant_id"], payload["instance_id"]
    at = _at(payload, services)
    event = load_event(services, tenant_id, payload["event_key"])
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
    title = _title(event)
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
        },
        requester=requester,
        requested_by=who,
        extra_approver_stage=raised_stage,
        created_at=at,
        updated_at=at,
        plan=plan,
        quality=decision.quality.result,
        quality_score=decision.quality.score,
        event_key=payload["event_key"],
    )
    services.index.put(instance_id, tenant_id)
    services.gates(tenant_id).save(record)
    facts = {**_event_facts(event, requester), "requester_resolved": who.resolved, "requester_oid": who.oid}
    _audit(services, tenant_id, "event_received", instance_id, title, facts, at)
    public = decision.to_public_json()
    if blocked != decision.blocked or raised_stage is not None:
        public = {**public, "blocked": blocked, "reasons": list(reasons)}
        public["approval"] = plan.model_dump(mode="json") if plan is not None else None
    _audit(services, tenant_id, "decision", instance_id, title, public, at)
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
    )
    return EvaluationSummary(
        level=str(decision.level),
        blocked=blocked,
        rule=decision.rule,
        plan=plan,
        requester=requester,
        notify=services.operators_for(tenant_id),
        has_callback=event.callback is not None,
        title=title,
    ).model_dump(mode="json")


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


def unresolved_note(record: GateRecord) -> str:
    """What approvers are told about a requester without an Entra identity ("" when it is resolved)."""
    who = record.requested_by
    if who is None or who.resolved:
        return ""
    shown = who.display or ", ".join(who.seen_as) or "nobody named"
    extra = (
        f" One extra distinct approver is required at stage {record.extra_approver_stage + 1}."
        if record.extra_approver_stage is not None
        else ""
    )
    return f"Requester unresolved (seen as {shown}): it could not be matched to an Entra identity.{extra}"


def request_approval(services: GateServices, payload: dict[str, Any]) -> dict[str, Any]:
    """Open a stage: the gate record says which stage, who and until when; the approvers are notified."""
    tenant_id, gate_id, stage = payload["tenant_id"], payload["gate_id"], int(payload["stage"])
    at = _at(payload, services)
    store = services.gates(tenant_id)
    record = store.load(gate_id)
    if record is None or record.plan is None:
        raise RuntimeError(f"gate {gate_id} has no evaluated approval plan")
    spec = record.plan.stages[stage]
    deadline = datetime.fromisoformat(payload["deadline"])
    started = datetime.fromisoformat(payload["started_at"]) if payload.get("started_at") else at
    store.save(
        record.model_copy(
            update={  # the route rebuilds the deadline from start + timeout: same as here
                "status": GateStatus.AWAITING_APPROVAL,
                "chain_instance_id": payload["chain_id"],
                "stage": stage,
                "stage_started_at": started,
                "deadline": deadline,
                "updated_at": at,
                "approval_requested_at": record.approval_requested_at or started,  # the first stage's start
            }
        )
    )
    result = _notify(
        services,
        tenant_id,
        gate_id,
        {
            "kind": "approval_request",
            "recipients": spec.approvers,
            "title": f"Approval needed: {record.title}"[:200],
            "text": (
                f"Stage '{spec.name}': {spec.quorum} approval(s) needed before {deadline.isoformat()}. "
                + unresolved_note(record)
            ).strip()[:2000],
            "link": services.approval_link(gate_id),
            "instance_id": gate_id,
        },
        at,
    )
    told = _tell_pipeline_it_waits(
        services,
        tenant_id,
        record,
        (
            f"Gatekeeper: waiting for approval, stage '{spec.name}' needs {spec.quorum} of "
            f"{len(spec.approvers)} approver(s) before {deadline:%Y-%m-%d %H:%M} UTC. {services.approval_link(gate_id)}"
            + (f" {unresolved_note(record)}" if unresolved_note(record) else "")
        ),
    )
    _audit(
        services,
        tenant_id,
        "approval_requested",
        gate_id,
        record.title,
        {
            "stage": stage,
            "stage_name": spec.name,
            "approvers": list(spec.approvers),
            "quorum": spec.quorum,
            "deadline": deadline.isoformat(),
            "requester_resolved": record.requested_by.resolved if record.requested_by else None,
            "notified": result["ok"],
            "pipeline_told": told,
        },
        at,
    )
    telemetry.emit(
        telemetry.Event.APPROVAL_REQUESTED,
        tenant=tenant_id,
        instance_id=gate_id,
        stage=stage,
        approvers=len(spec.approvers),
        quorum=spec.quorum,
        notified=bool(result["ok"]),
    )
    return {"stage": stage, "notified": result["ok"]}


def _tell_pipeline_it_waits(services: GateServices, tenant_id: str, record: GateRecord, comment: str) -> bool:
    """A progress note on the waiting pipeline (GitHub deployment comment, Azure DevOps check console, a
    `gate.progress` webhook), so nobody stares at a silent pipeline. Best effort: the gate goes on without."""
    if record.event_key is None:
        return False
    try:
        event = load_event(services, tenant_id, record.event_key)
        if event.callback is None:
            return False
        return bool(services.callbacks.progress(tenant_id, event.callback, comment[:1024]).ok)
    except Exception:
        log.warning("progress note for gate %s could not be delivered", record.instance_id, exc_info=True)
        return False


def notify(services: GateServices, payload: dict[str, Any]) -> dict[str, Any]:
    """Send one notification; the result (ok or not) is audited and returned, never raised."""
    at = _at(payload, services)
    return _notify(services, payload["tenant_id"], payload["instance_id"], payload["notification"], at)


def _notify(
    services: GateServices, tenant_id: str, instance_id: str, fields: dict[str, Any], at: datetime
) -> dict[str, Any]:
    recipients = tuple(fields.get("recipients") or ())
    if not recipients:
        outcome = {"ok": False, "detail": "no recipients configured", "kind": fields.get("kind")}
    else:
        try:
            notification = Notification.model_validate({**fields, "recipients": recipients})
            result = services.notifier.notify(tenant_id, notification)
            outcome = {"ok": result.ok, "detail": result.detail, "kind": notification.kind}
        except ValidationError as exc:
            outcome = {
                "ok": False,
                "detail": f"notification not sent: {exc.errors()[0]['msg']}",
                "kind": fields.get("kind"),
            }
        except Exception as exc:  # a notifier must not take the gate down; the failure is audited
            log.warning("notification for %s failed: %s", instance_id, type(exc).__name__)
            outcome = {"ok": False, "detail": f"notification failed: {type(exc).__name__}", "kind": fields.get("kind")}
    _audit(
        services,
        tenant_id,
        "notification",
        instance_id,
        str(fields.get("title", ""))[:200],
        {**outcome, "recipients": len(recipients)},
        at,
    )
    return outcome


def callback(services: GateServices, payload: dict[str, Any]) -> dict[str, Any]:
    """Tell the pipeline. Each attempt is audited; a failed attempt raises CallbackFailed for the retry."""
    tenant_id, instance_id = payload["tenant_id"], payload["instance_id"]
    approved, comment = bool(payload["approved"]), str(payload.get("comment") or "")[:1000]
    at = services.clock()
    event = load_event(services, tenant_id, payload["event_key"])
    if event.callback is None:
        return {"ok": True, "skipped": True, "detail": "the event names no callback"}
    result = services.callbacks.complete(tenant_id, event.callback, approved, comment, {"instance_id": instance_id})
    _audit(
        services,
        tenant_id,
        "callback",
        instance_id,
        _title(event),
        {
            "approved": approved,
            "ok": result.ok,
            "status_code": result.status_code,
            "target": result.target,
            "detail": result.detail[:300],
        },
        at,
    )
    if not result.ok:
        telemetry.emit(
            telemetry.Event.CALLBACK_FAILED,
            tenant=tenant_id,
            instance_id=instance_id,
            target=result.target,
            status_code=result.status_code,
            final=False,
        )
        raise CallbackFailed(result.detail[:300] or "the pipeline did not acknowledge the callback")
    return {"ok": True, "status_code": result.status_code, "target": result.target}


def open_human_task(services: GateServices, payload: dict[str, Any]) -> dict[str, Any]:
    """L3: automation refuses; a person is asked to carry out (or drop) the change by hand."""
    tenant_id, instance_id = payload["tenant_id"], payload["instance_id"]
    at = _at(payload, services)
    store = services.gates(tenant_id)
    record = store.load(instance_id)
    title = record.title if record else instance_id
    if record is not None:
        store.save(record.model_copy(update={"status": GateStatus.HUMAN_TASK, "updated_at": at}))
    recipients = tuple(payload.get("recipients") or ()) or services.operators_for(tenant_id)
    result = _notify(
        services,
        tenant_id,
        instance_id,
        {
            "kind": "human_task",
            "recipients": recipients,
            "title": f"Human-only change: {title}"[:200],
            "text": "Automation refused this change (level L3). A person must review and carry it out.",
            "link": services.approval_link(instance_id),
            "instance_id": instance_id,
        },
        at,
    )
    _audit(
        services,
        tenant_id,
        "human_task_opened",
        instance_id,
        title,
        {"reasons": list(record.reasons) if record else [], "notified": result["ok"]},
        at,
    )
    return {"opened": True, "notified": result["ok"]}


def record_outcome(services: GateServices, payload: dict[str, Any]) -> dict[str, Any]:
    """The gate's final state; a callback that finally failed is audited and alerted, never silent."""
    tenant_id, instance_id = payload["tenant_id"], payload["instance_id"]
    at = _at(payload, services)
    store = services.gates(tenant_id)
    record = store.load(instance_id)
    status = GateStatus(payload["status"])
    cb = payload.get("callback") or {}
    title = record.title if record else instance_id
    if record is not None:
        store.save(
            record.model_copy(
                update={
                    "status": status,
                    "decided_at": at,
                    "updated_at": at,
                    "outcome_reason": payload.get("reason"),
                    "callback_ok": cb.get("ok"),
                }
            )
        )
    _audit(
        services,
        tenant_id,
        "decision",
        instance_id,
        title,
        {
            "final": True,
            "status": status.value,
            "level": payload.get("level"),
            "reason": payload.get("reason"),
            "callback_ok": cb.get("ok"),
            "chain": payload.get("chain"),
        },
        at,
    )
    try:  # telemetry must never fail the gate: the outcome is already stored and audited
        _emit_outcome(store, record, tenant_id, instance_id, payload, status, at)
    except Exception as exc:
        log.warning("telemetry for %s failed: %s", instance_id, type(exc).__name__)
    alerted = None
    if cb.get("ok") is False:
        telemetry.emit(
            telemetry.Event.CALLBACK_FAILED,
            tenant=tenant_id,
            instance_id=instance_id,
            target=None,
            status_code=None,
            final=True,
        )
        _audit(
            services,
            tenant_id,
            "callback",
            instance_id,
            title,
            {"final": True, "ok": False, "detail": str(cb.get("detail", ""))[:300]},
            at,
        )
        recipients = services.operators_for(tenant_id) or (
            record.plan.stages[0].approvers if record and record.plan else ()
        )
        alerted = _notify(
            services,
            tenant_id,
            instance_id,
            {
                "kind": "alert",
                "recipients": recipients,
                "title": f"Pipeline not told: {title}"[:200],
                "text": (
                    f"The gate decided '{status.value}' but the pipeline callback failed after all retries: "
                    f"{str(cb.get('detail', ''))[:300]}. Tell the pipeline by hand."
                ),
                "link": services.approval_link(instance_id),
                "instance_id": instance_id,
            },
            at,
        )["ok"]
    return {"status": status.value, "alerted": alerted}


def _emit_outcome(
    store: GateStore,
    record: GateRecord | None,
    tenant_id: str,
    instance_id: str,
    payload: dict[str, Any],
    status: GateStatus,
    at: datetime,
) -> None:
    """GateOutcome; for a closed approval chain also ApprovalDecided (latency from the first approval request
    to the deciding vote, or to the deadline on timeout) and HitlOverride when people went against the
    quality verdict (`telemetry.override_kind`)."""
    level = payload.get("level") or (record.level if record else None)
    chain = payload.get("chain") if isinstance(payload.get("chain"), dict) else None
    closed = chain is not None and chain.get("status") in ("approved", "rejected")
    if closed and chain is not None:
        decided_by = "timeout" if chain.get("reason") == "timeout" else "approvers"
    else:
        decided_by = "person" if status is GateStatus.HUMAN_TASK else "automation"
    cb = payload.get("callback") or {}
    telemetry.emit(
        telemetry.Event.GATE_OUTCOME,
        tenant=tenant_id,
        instance_id=instance_id,
        level=level,
        status=status.value,
        decided_by=decided_by,
        callback_ok=cb.get("ok"),
        duration_seconds=round((at - record.created_at).total_seconds(), 3) if record else None,
    )
    if not closed or chain is None or record is None:
        return
    if decided_by == "timeout":
        decided = record.deadline or at
    else:
        counted = {str(v.get("voter_id", "")).strip().lower() for v in chain.get("votes") or ()}
        decided = max((v.at for v in store.votes(instance_id) if v.voter_id in counted), default=at)
    requested = record.approval_requested_at or record.created_at
    telemetry.emit(
        telemetry.Event.APPROVAL_DECIDED,
        tenant=tenant_id,
        instance_id=instance_id,
        level=level,
        outcome=chain["status"],
        decided_by=decided_by,
        stage=chain.get("stage"),
        votes=len(chain.get("votes") or ()),
        escalations=len(chain.get("escalations") or ()),
        quality=record.quality,
        latency_seconds=round(max(0.0, (decided - requested).total_seconds()), 3),
    )
    kind = telemetry.override_kind(
        chain["status"] if decided_by == "approvers" else None, record.quality, record.quality_score
    )
    if kind is not None:
        telemetry.emit(
            telemetry.Event.HITL_OVERRIDE,
            tenant=tenant_id,
            instance_id=instance_id,
            level=level,
            kind=kind,
            decision=chain["status"],
            quality=record.quality,
            quality_score=record.quality_score,
        )


def audit(services: GateServices, payload: dict[str, Any]) -> dict[str, Any]:
    """An orchestrator step worth recording (stage passed, escalated, expired, chain decided)."""
    tenant_id = payload["tenant_id"]
    at = _at(payload, services)
    _audit(
        services,
        tenant_id,
        payload["kind"],
        payload.get("instance_id", ""),
        payload.get("subject", ""),
        payload.get("data") or {},
        at,
        payload.get("actor") or SYSTEM_ACTOR,
    )
    return {"ok": True}
