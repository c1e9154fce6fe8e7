"""Step `callback` of the gate: tell the waiting pipeline to proceed or stop.

Each attempt is audited; a failed one raises `CallbackFailed` so the orchestrator's durable retry applies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gatekeeper import telemetry
from gatekeeper.contracts.gate import CallbackInput, CallbackResult
from gatekeeper.gates.common import CallbackFailed, append_audit, gate_title, load_event

if TYPE_CHECKING:
    from gatekeeper.gates.needs import GateNeeds

__all__ = ["CallbackFailed", "callback"]


def callback(services: GateNeeds, request: CallbackInput) -> CallbackResult:
    """Tell the pipeline. Each attempt is audited; a failed attempt raises CallbackFailed for the retry."""
    tenant_id, instance_id = request.tenant_id, request.instance_id
    approved, comment = request.approved, request.comment[:1000]
    at = services.clock()
    event = load_event(services, tenant_id, request.event_key)
    if event.callback is None:
        return CallbackResult(ok=True, skipped=True, detail="the event names no callback")
    result = services.callbacks.complete(tenant_id, event.callback, approved, comment, {"instance_id": instance_id})
    append_audit(
        services,
        tenant_id,
        "callback",
        instance_id,
        gate_title(event),
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
    return CallbackResult(ok=True, status_code=result.status_code, target=result.target)
