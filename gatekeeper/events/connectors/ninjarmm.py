"""NinjaOne (NinjaRMM) connector (payload model, parser, identity hints).

NinjaOne (NinjaRMM) activity webhooks: `id, activityTime, deviceId, severity, priority, seriesUid,
activityType, statusCode, status, sourceName, subject, message, userId, device{...}`. `CONDITION` with
`TRIGGERED`/`RESET` → ALERT (status triggered/resolved); (`SOFTWARE_`)`PATCH_MANAGEMENT` with
`…_PATCH_APPROVED`/`…_PATCH_REJECTED` → change decision (an infrastructure change).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from gatekeeper.events.common import (
    Ignored,
    Payload,
    problem,
    shown,
    validate,
)
from gatekeeper.events.connectors.base import CONTEXT, Connector, connector_event, decision_kind
from gatekeeper.events.hints import clean, envelope_body, get_path
from gatekeeper.events.model import ActionKind, EventKind, EventSource, PipelineEvent

if TYPE_CHECKING:
    from gatekeeper.events.connectors.envelope import ConnectorMessage


class _NinjaDevice(Payload):
    id: int | None = None
    systemName: str | None = None
    displayName: str | None = None


class _NinjaActivity(Payload):
    id: int
    deviceId: int | None = None
    severity: str | None = None
    priority: str | None = None
    seriesUid: str | None = None
    activityType: str
    statusCode: str
    sourceName: str | None = None
    subject: str | None = None
    message: str | None = None
    userId: int | None = None
    device: _NinjaDevice | None = None


_NINJA_ALERT = {"TRIGGERED": "triggered", "RESET": "resolved"}
_NINJA_PATCH_TYPES = {"PATCH_MANAGEMENT", "SOFTWARE_PATCH_MANAGEMENT"}


def _ninjarmm(envelope: ConnectorMessage, tenant_id: str) -> PipelineEvent | Ignored:
    act = validate(_NinjaActivity, envelope.payload, context=CONTEXT, root="payload")
    activity_type, code = act.activityType.strip().upper(), act.statusCode.strip().upper()
    device_id = act.deviceId if act.deviceId is not None else (act.device.id if act.device else None)
    text = act.message or act.subject or act.sourceName
    source = EventSource.NINJARMM
    if activity_type == "CONDITION" and code in _NINJA_ALERT:
        if device_id is None:
            raise problem(CONTEXT, "payload.deviceId", "is required for a condition alert")
        labels = tuple(
            f"{name}:{value.strip().lower()}"
            for name, value in (("severity", act.severity), ("priority", act.priority))
            if value and value.strip().upper() != "NONE"
        ) + ((f"alert:{act.seriesUid.strip()[:200]}",) if act.seriesUid and act.seriesUid.strip() else ())
        status = _NINJA_ALERT[code]
        return connector_event(
            envelope,
            source,
            tenant_id,
            kind=EventKind.ALERT,
            subject=str(device_id),
            run_id=str(act.id),  # the activity: one device can raise many alerts
            status=status,
            labels=labels,
            delivery_id=str(act.id),
            summary=f"NinjaOne device {device_id}: {text or act.statusCode} ({status})",
        )
    if activity_type in _NINJA_PATCH_TYPES and code.endswith(("_PATCH_APPROVED", "_PATCH_REJECTED")):
        kind, status = decision_kind(code.endswith("_APPROVED"))
        return connector_event(
            envelope,
            source,
            tenant_id,
            kind=kind,
            action=ActionKind.INFRASTRUCTURE_CHANGE,
            subject=act.seriesUid or str(act.id),
            status=status,
            actor=str(act.userId) if act.userId is not None else None,
            delivery_id=str(act.id),
            summary=f"NinjaOne patch {status}"
            + (f" on device {device_id}" if device_id is not None else "")
            + (f": {text}" if text else ""),
        )
    return Ignored(f"NinjaOne activity {shown(act.activityType)}/{shown(act.statusCode)} is not handled")


def identity_hints(payload: Mapping[str, Any], _headers: Mapping[str, str] | None) -> Iterator[str]:
    account, body = envelope_body(payload)
    org = clean(get_path(body, "device", "organizationId")) or clean(body.get("organizationId"))
    for value in (account, org):
        if value:
            yield f"ninjarmm:org:{value}"


CONNECTOR = Connector(
    source=EventSource.NINJARMM, payload=_NinjaActivity, parse=_ninjarmm, identity_hints=identity_hints
)
