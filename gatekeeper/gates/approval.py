"""Step `approval` of the gate: open a stage of the chain (L2), or hand the change to a person (L3).

Approvers are notified with a link to the decision page; the waiting pipeline gets a progress note.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gatekeeper import telemetry
from gatekeeper.contracts.gate import ApprovalRequest, ApprovalRequested, GateStatus, HumanTaskInput, HumanTaskOpened
from gatekeeper.gates.common import append_audit, at_or_now, load_event, log, notify_people
from gatekeeper.gates.store import GateRecord, GateStore
from gatekeeper.gates.view import build_view, notification_details
from gatekeeper.ports import NotificationDetail

if TYPE_CHECKING:
    from gatekeeper.gates.needs import GateNeeds


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


def request_approval(services: GateNeeds, request: ApprovalRequest) -> ApprovalRequested:
    """Open a stage: the gate record says which stage, who and until when; the approvers are notified."""
    tenant_id, gate_id, stage = request.tenant_id, request.gate_id, request.stage
    at = at_or_now(request.at, services)
    store = services.gates(tenant_id)
    record = store.load(gate_id)
    if record is None or record.plan is None:
        raise RuntimeError(f"gate {gate_id} has no evaluated approval plan")
    spec = record.plan.stages[stage]
    deadline = request.deadline
    started = request.started_at or at
    waiting = record.model_copy(
        update={  # the route rebuilds the deadline from start + timeout: same as here
            "status": GateStatus.AWAITING_APPROVAL,
            "chain_instance_id": request.chain_id,
            "stage": stage,
            "stage_started_at": started,
            "deadline": deadline,
            "updated_at": at,
            "approval_requested_at": record.approval_requested_at or started,  # the first stage's start
        }
    )
    store.save(waiting)
    details = _context_lines(store, waiting)
    result = notify_people(
        services,
        tenant_id,
        gate_id,
        {
            "kind": "approval_request",
            "recipients": spec.approvers,
            # The gate's own title: "Approval needed" is the channel's to say (mail subject, Teams template).
            "title": record.title[:200] or gate_id,
            "text": (
                f"Stage '{spec.name}': {spec.quorum} approval(s) needed before {deadline.isoformat()}. "
                + unresolved_note(record)
            ).strip()[:2000],
            "link": services.approval_link(gate_id),
            "instance_id": gate_id,
            "details": details,
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
    append_audit(
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
        deadline_seconds=max(0, round((deadline - at).total_seconds())),  # the stuck-gate alert's clock
    )
    return ApprovalRequested(stage=stage, notified=bool(result["ok"]))


def _context_lines(store: GateStore, record: GateRecord) -> tuple[NotificationDetail, ...]:
    """The mail shows the context the card and the page show: the same view, from the stored record. The
    context is worth a retry of nothing: if votes or audit references cannot be read, the approvers are still
    asked, with the link to the page that shows it all."""
    try:
        view = build_view(record, store.votes(record.instance_id), audit=store.audit_refs(record.instance_id))
        return notification_details(view)
    except Exception:
        log.warning("gate %s: approval request sent without its context lines", record.instance_id, exc_info=True)
        return ()


def _tell_pipeline_it_waits(services: GateNeeds, tenant_id: str, record: GateRecord, comment: str) -> bool:
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


def open_human_task(services: GateNeeds, request: HumanTaskInput) -> HumanTaskOpened:
    """L3: automation refuses; a person is asked to carry out (or drop) the change by hand."""
    tenant_id, instance_id = request.tenant_id, request.instance_id
    at = at_or_now(request.at, services)
    store = services.gates(tenant_id)
    record = store.load(instance_id)
    title = record.title if record else instance_id
    if record is not None:
        store.save(record.model_copy(update={"status": GateStatus.HUMAN_TASK, "updated_at": at}))
    recipients = request.recipients or services.operators_for(tenant_id)
    result = notify_people(
        services,
        tenant_id,
        instance_id,
        {
            "kind": "human_task",
            "recipients": recipients,
            "title": title[:200] or instance_id,
            "text": "Human-only change: automation refused it (level L3). A person must review and carry it out.",
            "link": services.approval_link(instance_id),
            "instance_id": instance_id,
        },
        at,
    )
    append_audit(
        services,
        tenant_id,
        "human_task_opened",
        instance_id,
        title,
        {"reasons": list(record.reasons) if record else [], "notified": result["ok"]},
        at,
    )
    return HumanTaskOpened(opened=True, notified=bool(result["ok"]))
