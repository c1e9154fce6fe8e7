"""Datto Autotask connector (payload model, parser, identity hints).

Datto Autotask webhooks: `Guid, EntityType, Id, Action (Create|Update|Delete), Fields{...}, PersonID,
SequenceNumber, EventTime`. A Ticket's `ChangeApprovalStatus` (3 Approved, 4 Rejected) → decision; a ticket
of `TicketType` 5 (Alert) naming a `ConfigurationItemID` → ALERT about that device. Both fields must be
in the webhook's field list (mark them "display always").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from gatekeeper.events.common import (
    Ignored,
    Payload,
    action_from_text,
    ci_get,
    decision_from_text,
    shown,
    validate,
)
from gatekeeper.events.connectors.base import CONTEXT, Connector, connector_event, decision_kind
from gatekeeper.events.hints import clean, envelope_body
from gatekeeper.events.model import EventKind, EventSource, PipelineEvent

if TYPE_CHECKING:
    from gatekeeper.events.connectors.envelope import ConnectorMessage


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


def _company(fields: Mapping[str, Any]) -> str | None:
    """The ticket's `CompanyID` (the client company, what `psa.company` names), when the webhook sends it."""
    number = _as_int(ci_get(fields, "CompanyID"))
    return str(number) if number is not None else None


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
        kind, status = decision_kind(approved)
        return connector_event(
            envelope,
            source,
            tenant_id,
            kind=kind,
            action=action_from_text(title),
            subject=str(hook.Id),
            status=status,
            company=_company(fields),
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
        return connector_event(
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


def identity_hints(payload: Mapping[str, Any], _headers: Mapping[str, str] | None) -> Iterator[str]:
    account, body = envelope_body(payload)
    company = clean(ci_get(body.get("Fields"), "CompanyID", "AccountID"))
    for value in (account, company):
        if value:
            yield f"autotask:account:{value}"


CONNECTOR = Connector(source=EventSource.AUTOTASK, payload=_AtWebhook, parse=_autotask, identity_hints=identity_hints)
