"""Step `outcome` of the gate: the final state, the L1 notice, and orchestrator steps worth auditing.

A callback that finally failed is audited and alerted, never silent; telemetry never fails the gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gatekeeper import mesh, telemetry
from gatekeeper.contracts.gate import (
    AuditInput,
    AuditRecorded,
    GateStatus,
    MessagesUpdated,
    NotifyInput,
    NotifyResult,
    OutcomeInput,
    OutcomeRecorded,
    UpdateMessagesInput,
)
from gatekeeper.gates.common import SYSTEM_ACTOR, append_audit, at_or_now, log, notify_people
from gatekeeper.gates.store import GateRecord, GateStore
from gatekeeper.ports import GateChangedListener, GateClosedListener

if TYPE_CHECKING:
    from gatekeeper.gates.needs import GateNeeds


def close_live_messages(services: GateNeeds, tenant_id: str, instance_id: str) -> None:
    """Channels that show the gate's live state (Teams cards) show the outcome now; never fails the gate."""
    notifier = services.notifier
    if isinstance(notifier, GateClosedListener):
        try:
            notifier.gate_closed(tenant_id, instance_id)
        except Exception as exc:
            log.warning("closing the messages of %s failed: %s", instance_id, type(exc).__name__)


def update_live_messages(services: GateNeeds, request: UpdateMessagesInput) -> MessagesUpdated:
    """A vote was counted and the chain still waits: the channels that cannot refresh their messages
    themselves (Slack) show the votes so far. Runs after the vote was answered; never fails the chain (a
    retry would only repeat the same best-effort update), a failure is logged here and by the channel."""
    notifier = services.notifier
    if not isinstance(notifier, GateChangedListener):
        return MessagesUpdated(ok=True)
    try:
        notifier.gate_changed(request.tenant_id, request.instance_id)
    except Exception as exc:
        log.warning("updating the messages of %s failed: %s", request.instance_id, type(exc).__name__)
        return MessagesUpdated(ok=False)
    return MessagesUpdated(ok=True)


def record_outcome(services: GateNeeds, request: OutcomeInput) -> OutcomeRecorded:
    """The gate's final state; a callback that finally failed is audited and alerted, never silent."""
    tenant_id, instance_id = request.tenant_id, request.instance_id
    at = at_or_now(request.at, services)
    store = services.gates(tenant_id)
    record = store.load(instance_id)
    status = request.status
    cb = request.callback.to_json()
    chain = request.chain.model_dump(mode="json") if request.chain is not None else None
    title = record.title if record else instance_id
    if record is not None:
        store.save(
            record.model_copy(
                update={
                    "status": status,
                    "decided_at": at,
                    "updated_at": at,
                    "outcome_reason": request.reason,
                    "callback_ok": cb.get("ok"),
                }
            )
        )
    append_audit(
        services,
        tenant_id,
        "decision",
        instance_id,
        title,
        {
            "final": True,
            "status": status.value,
            "level": request.level,
            "reason": request.reason,
            "callback_ok": cb.get("ok"),
            "chain": chain,
        },
        at,
    )
    _record_override(services, record, chain, title, at)
    close_live_messages(services, tenant_id, instance_id)
    ended = Ended(tenant_id, instance_id, request.level or (record.level if record else None), chain, cb, status, at)
    _publish_outcome(services, ended)
    try:  # telemetry must never fail the gate: the outcome is already stored and audited
        _emit_outcome(store, record, ended)
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
        append_audit(
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
        alerted = notify_people(
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
    return OutcomeRecorded(status=status.value, alerted=alerted)


def _record_override(
    services: GateNeeds, record: GateRecord | None, chain: dict[str, Any] | None, title: str, at: datetime
) -> None:
    """An `override` entry when the approvers decided against the gate's recommendation (both sides:
    gatekeeper.recommend.overrides). Timeouts and withdrawals are no human decision."""
    if record is None or chain is None or not record.recommendation:
        return
    if decided_by_of(chain, record.status) != "approvers" or chain.get("reason") in ("cancelled", "expired"):
        return
    from gatekeeper.recommend.overrides import decision_override, override_data

    decided = str(chain.get("status"))
    kind = decision_override(str(record.recommendation.get("verdict")), decided)
    if kind is not None:
        data = override_data(
            kind, gate=record.instance_id, rule=record.rule, recommendation=record.recommendation, decided=decided
        )
        append_audit(services, record.tenant_id, "override", record.instance_id, title, data, at)


def decided_by_of(chain: dict[str, Any] | None, status: GateStatus) -> str:
    """Who decided: the approvers, a chain's timeout, a person (L3 human task) or automation (policy)."""
    if chain is not None and chain.get("status") in ("approved", "rejected"):
        return "timeout" if chain.get("reason") == "timeout" else "approvers"
    return "person" if status is GateStatus.HUMAN_TASK else "automation"


@dataclass(frozen=True)
class Ended:
    """How a gate ended, as its outcome's facts (mesh events, telemetry) report it."""

    tenant_id: str
    gate_id: str
    level: str | None  # the level asked for, else the gate's own
    chain: dict[str, Any] | None
    callback: dict[str, Any]
    status: GateStatus
    at: datetime


def _publish_outcome(services: GateNeeds, ended: Ended) -> None:
    """`gate.decided` and `gate.completed` on the event mesh, in one batch (`gatekeeper.mesh`)."""
    gate_id, at, ok = ended.gate_id, ended.at, ended.callback.get("ok")
    link = services.approval_link(gate_id)
    common: dict[str, Any] = {
        "tenant_id": ended.tenant_id,
        "gate_id": gate_id,
        "level": ended.level,
        "status": ended.status.value,
    }
    callback_ok = ok if isinstance(ok, bool) else None
    mesh.publish(
        services,
        ended.tenant_id,
        lambda deployment: (
            mesh.build(
                "gate.decided",
                deployment,
                gate_id,
                at,
                **common,
                decided_by=decided_by_of(ended.chain, ended.status),
                approval_url=link,
            ),
            mesh.build("gate.completed", deployment, gate_id, at, **common, callback_ok=callback_ok, approval_url=link),
        ),
        at,
    )


def _emit_outcome(store: GateStore, record: GateRecord | None, ended: Ended) -> None:
    """GateOutcome; for a closed approval chain also ApprovalDecided (latency from the first approval request
    to the deciding vote, or to the deadline on timeout) and HitlOverride when people went against the
    quality verdict (`telemetry.override_kind`)."""
    tenant_id, instance_id, level, chain, at = ended.tenant_id, ended.gate_id, ended.level, ended.chain, ended.at
    closed = chain is not None and chain.get("status") in ("approved", "rejected")
    decided_by = decided_by_of(chain, ended.status)
    telemetry.emit(
        telemetry.Event.GATE_OUTCOME,
        tenant=tenant_id,
        instance_id=instance_id,
        level=level,
        status=ended.status.value,
        decided_by=decided_by,
        callback_ok=ended.callback.get("ok"),
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


def notify(services: GateNeeds, request: NotifyInput) -> NotifyResult:
    """Send one notification; the result (ok or not) is audited and returned, never raised."""
    at = at_or_now(request.at, services)
    return NotifyResult.model_validate(
        notify_people(services, request.tenant_id, request.instance_id, request.notification, at)
    )


def audit(services: GateNeeds, request: AuditInput) -> AuditRecorded:
    """An orchestrator step worth recording (stage passed, escalated, expired, chain decided)."""
    append_audit(
        services,
        request.tenant_id,
        request.kind,
        request.instance_id,
        request.subject,
        dict(request.data),
        at_or_now(request.at, services),
        request.actor or SYSTEM_ACTOR,
    )
    return AuditRecorded()
