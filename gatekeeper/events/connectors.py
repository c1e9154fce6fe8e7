"""PSA/RMM connector queue messages → `PipelineEvent`: change approvals and device alerts.

A connector (a thin webhook receiver per vendor) verifies the vendor's signature and enqueues:

    {"connector": "connectwise" | "autotask" | "halopsa" | "ninjarmm",
     "account": "<vendor account id>", "receivedAt": "<ISO 8601>", "payload": {<the vendor's own body>},
     "signature": "sha256=<hex HMAC-SHA256 of the rest of the envelope>"}

The signature covers the whole envelope (`gatekeeper.ingest.service.canonical_envelope`), so a message
cannot be re-addressed to another account or connector; the tenant's `connector` secret makes it.

Each vendor body is modelled on the vendor's documented webhook shape, using only the fields we need:

- ConnectWise PSA callbacks: `MessageId, FromUrl, CompanyId, MemberId, Action (added|updated|deleted), Type,
  ID, Entity` where `Entity` is the record as a JSON *string*. `Type: ticket` with a status naming a decision
  ("Change Approved", "CAB Rejected") → CHANGE_APPROVED / CHANGE_REJECTED; `Type: configuration` (the
  device record RMM integrations keep current) → ALERT about that device.
- Datto Autotask webhooks: `Guid, EntityType, Id, Action (Create|Update|Delete), Fields{...}, PersonID,
  SequenceNumber, EventTime`. A Ticket's `ChangeApprovalStatus` (3 Approved, 4 Rejected) → decision; a ticket
  of `TicketType` 5 (Alert) naming a `ConfigurationItemID` → ALERT about that device. Both fields must be
  in the webhook's field list (mark them "display always").
- HaloPSA webhooks: `{id, webhook_id, event, ticket{id, summary, status_name, tickettype_name, ...}}` or
  `{..., asset{id, inventory_number, status_name}}`. Ticket status naming a decision → decision; asset → ALERT.
- NinjaOne (NinjaRMM) activity webhooks: `id, activityTime, deviceId, severity, priority, seriesUid,
  activityType, statusCode, status, sourceName, subject, message, userId, device{...}`. `CONDITION` with
  `TRIGGERED`/`RESET` → ALERT (status triggered/resolved); (`SOFTWARE_`)`PATCH_MANAGEMENT` with
  `…_PATCH_APPROVED`/`…_PATCH_REJECTED` → change decision (an infrastructure change).

Decisions carry status `approved`/`rejected`, alerts `triggered`/`resolved` (or the device status), so
policy matches one vocabulary whatever the vendor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from gatekeeper.events.common import (
    Ignored,
    Payload,
    action_from_text,
    ci_get,
    decision_from_text,
    normalise_status,
    number_to_text,
    parse_json_string,
    problem,
    shown,
    validate,
)
from gatekeeper.events.model import ActionKind, EventKind, EventSource, PipelineEvent

CONTEXT = "connector message"


class ConnectorMessage(BaseModel):
    """The queue envelope every connector writes."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, defer_build=True)

    connector: Literal["connectwise", "autotask", "halopsa", "ninjarmm"]
    account: Annotated[str, BeforeValidator(number_to_text), Field(min_length=1, max_length=200)]
    received_at: AwareDatetime = Field(alias="receivedAt")
    payload: dict[str, Any]


def _decision_kind(approved: bool) -> tuple[EventKind, str]:
    return (EventKind.CHANGE_APPROVED, "approved") if approved else (EventKind.CHANGE_REJECTED, "rejected")


def _event(envelope: ConnectorMessage, source: EventSource, tenant_id: str, **fields: Any) -> PipelineEvent:
    summary = fields.pop("summary", None)
    return PipelineEvent(
        tenant_id=tenant_id,
        source=source,
        received_at=envelope.received_at,
        summary=summary[:300] if isinstance(summary, str) else None,
        **fields,
    )


# --- ConnectWise PSA -------------------------------------------------------------------------------------


class _CwCallback(Payload):
    MessageId: str | None = None
    CompanyId: str | None = None
    MemberId: str | None = None
    Action: str
    Type: str
    ID: int
    Entity: Any = None


class _CwNamed(Payload):
    name: str | None = None


class _CwInfo(Payload):
    updatedBy: str | None = None


class _CwTicket(Payload):
    summary: str | None = None
    status: _CwNamed | None = None
    type: _CwNamed | None = None
    subType: _CwNamed | None = None
    item: _CwNamed | None = None
    info: _CwInfo | None = Field(default=None, alias="_info")


class _CwConfiguration(Payload):
    name: str | None = None
    status: _CwNamed | None = None
    info: _CwInfo | None = Field(default=None, alias="_info")


def _cw_entity(callback: _CwCallback) -> dict[str, Any]:
    field = "payload.Entity"
    if callback.Entity is None:
        return {}
    if isinstance(callback.Entity, str):
        return parse_json_string(callback.Entity, context=CONTEXT, field=field) if callback.Entity.strip() else {}
    if isinstance(callback.Entity, dict):
        return callback.Entity
    raise problem(CONTEXT, field, "must be the record as a JSON string")


def _connectwise(envelope: ConnectorMessage, tenant_id: str) -> PipelineEvent | Ignored:
    cb = validate(_CwCallback, envelope.payload, context=CONTEXT, root="payload")
    kind_name, action = cb.Type.strip().lower(), cb.Action.strip().lower()
    if kind_name not in ("ticket", "configuration"):
        return Ignored(f"ConnectWise callback type '{shown(cb.Type)}' is not handled")
    if action == "deleted":
        return Ignored(f"ConnectWise {kind_name} {cb.ID} was deleted; nothing to act on")
    entity = _cw_entity(cb)
    source = EventSource.CONNECTWISE
    if kind_name == "configuration":
        device = validate(_CwConfiguration, entity, context=CONTEXT, root="payload.Entity")
        status = normalise_status(device.status.name if device.status else None) or action
        return _event(
            envelope,
            source,
            tenant_id,
            kind=EventKind.ALERT,
            subject=str(cb.ID),
            status=status,
            actor=(device.info.updatedBy if device.info else None) or cb.MemberId,
            delivery_id=cb.MessageId,
            summary=f"ConnectWise configuration {cb.ID} ({device.name or 'unnamed'}) is {status}",
        )
    ticket = validate(_CwTicket, entity, context=CONTEXT, root="payload.Entity")
    status_name = ticket.status.name if ticket.status else None
    approved = decision_from_text(status_name)
    if approved is None:
        return Ignored(f"ConnectWise ticket {cb.ID} status '{shown(status_name)}' is not an approval decision")
    kind, status = _decision_kind(approved)
    return _event(
        envelope,
        source,
        tenant_id,
        kind=kind,
        action=action_from_text(
            ticket.type.name if ticket.type else None,
            ticket.subType.name if ticket.subType else None,
            ticket.item.name if ticket.item else None,
            ticket.summary,
        ),
        subject=str(cb.ID),
        status=status,
        actor=(ticket.info.updatedBy if ticket.info else None) or cb.MemberId,
        delivery_id=cb.MessageId,
        summary=f"ConnectWise ticket #{cb.ID} {ticket.summary or ''}: {status_name}",
    )


# --- Datto Autotask --------------------------------------------------------------------------------------


class _AtWebhook(Payload):
    Guid: str | None = None
    EntityType: str
    Id: int
    Action: str
    Fields: dict[str, Any] = {}
    PersonID: int | None = None
    SequenceNumber: int | None = None


_AT_APPROVAL = {3: True, 4: False}  # Ticket.changeApprovalStatus picklist: 1 Assigned, 2 Requested, 3, 4
_AT_ALERT_TYPE = 5  # Ticket.ticketType picklist: 1 Service Request, 2 Incident, 3 Problem, 4 Change Request, 5 Alert
_AT_COMPLETE = 5  # Ticket.status "Complete" is a system status with id 5


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _autotask(envelope: ConnectorMessage, tenant_id: str) -> PipelineEvent | Ignored:
    hook = validate(_AtWebhook, envelope.payload, context=CONTEXT, root="payload")
    if hook.EntityType.strip().lower() != "ticket":
        return Ignored(f"Autotask entity type '{shown(hook.EntityType)}' is not handled")
    if hook.Action.strip().lower() == "delete":
        return Ignored(f"Autotask ticket {hook.Id} was deleted; nothing to act on")
    fields = hook.Fields
    title = ci_get(fields, "Title")
    title = title if isinstance(title, str) else None
    source = EventSource.AUTOTASK
    approval = ci_get(fields, "ChangeApprovalStatus")
    if approval is not None:
        number = _as_int(approval)
        approved = _AT_APPROVAL.get(number) if number is not None else decision_from_text(str(approval))
        if approved is None:
            return Ignored(f"Autotask ticket {hook.Id} change approval status '{shown(approval)}' is not a decision")
        kind, status = _decision_kind(approved)
        return _event(
            envelope,
            source,
            tenant_id,
            kind=kind,
            action=action_from_text(title),
            subject=str(hook.Id),
            status=status,
            actor=str(hook.PersonID) if hook.PersonID is not None else None,
            delivery_id=hook.Guid,
            summary=f"Autotask ticket {hook.Id} {title or ''}: change {status}",
        )
    if _as_int(ci_get(fields, "TicketType")) == _AT_ALERT_TYPE:
        device = _as_int(ci_get(fields, "ConfigurationItemID"))
        if device is None:
            return Ignored(f"Autotask alert ticket {hook.Id} names no ConfigurationItemID (device)")
        resolved = _as_int(ci_get(fields, "Status")) == _AT_COMPLETE
        status = "resolved" if resolved else "triggered"
        return _event(
            envelope,
            source,
            tenant_id,
            kind=EventKind.ALERT,
            subject=str(device),
            run_id=str(hook.Id),  # the alert ticket: one device can raise many alerts
            status=status,
            delivery_id=hook.Guid,
            summary=f"Autotask alert ticket {hook.Id} on device {device}: {title or status}",
        )
    return Ignored(
        f"Autotask ticket {hook.Id} carries neither ChangeApprovalStatus nor an alert TicketType with a device"
    )


# --- HaloPSA ---------------------------------------------------------------------------------------------


class _HaloTicket(Payload):
    id: int
    summary: str | None = None
    status_name: str | None = None
    tickettype_name: str | None = None
    agent_name: str | None = None


class _HaloAsset(Payload):
    id: int
    inventory_number: str | None = None
    status_name: str | None = None


class _HaloWebhook(Payload):
    id: str | None = None
    event: str | None = None
    ticket: _HaloTicket | None = None
    asset: _HaloAsset | None = None


def _halopsa(envelope: ConnectorMessage, tenant_id: str) -> PipelineEvent | Ignored:
    hook = validate(_HaloWebhook, envelope.payload, context=CONTEXT, root="payload")
    source = EventSource.HALOPSA
    if hook.ticket is not None:
        ticket = hook.ticket
        approved = decision_from_text(ticket.status_name)
        if approved is None:
            status_name = shown(ticket.status_name)
            return Ignored(f"HaloPSA ticket {ticket.id} status '{status_name}' is not an approval decision")
        kind, status = _decision_kind(approved)
        return _event(
            envelope,
            source,
            tenant_id,
            kind=kind,
            action=action_from_text(ticket.tickettype_name, ticket.summary),
            subject=str(ticket.id),
            status=status,
            actor=ticket.agent_name,
            delivery_id=hook.id,
            summary=f"HaloPSA ticket {ticket.id} {ticket.summary or ''}: {ticket.status_name}",
        )
    if hook.asset is not None:
        asset = hook.asset
        status = normalise_status(asset.status_name) or normalise_status(hook.event) or "updated"
        return _event(
            envelope,
            source,
            tenant_id,
            kind=EventKind.ALERT,
            subject=str(asset.id),
            status=status,
            delivery_id=hook.id,
            summary=f"HaloPSA asset {asset.id} ({asset.inventory_number or 'no inventory number'}) is {status}",
        )
    return Ignored(f"HaloPSA webhook '{shown(hook.event)}' carries neither a ticket nor an asset")


# --- NinjaOne (NinjaRMM) ---------------------------------------------------------------------------------


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
        )
        status = _NINJA_ALERT[code]
        return _event(
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
        kind, status = _decision_kind(code.endswith("_APPROVED"))
        return _event(
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


_VENDORS: dict[str, Callable[[ConnectorMessage, str], PipelineEvent | Ignored]] = {
    "connectwise": _connectwise,
    "autotask": _autotask,
    "halopsa": _halopsa,
    "ninjarmm": _ninjarmm,
}


def parse_connector_message(message: Mapping[str, Any], *, tenant_id: str) -> PipelineEvent | Ignored:
    """Normalise one connector queue message. Raises `InvalidInput` naming the field (JSON path from
    the envelope, e.g. `payload.Entity.status.name`); returns `Ignored` for well-formed events we skip."""
    envelope = validate(ConnectorMessage, message, context=CONTEXT)
    return _VENDORS[envelope.connector](envelope, tenant_id)
