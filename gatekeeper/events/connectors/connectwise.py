"""ConnectWise PSA connector (payload model, parser, identity hints).

ConnectWise PSA callbacks: `MessageId, FromUrl, CompanyId, MemberId, Action (added|updated|deleted), Type,
ID, Entity` where `Entity` is the record as a JSON *string*. `Type: ticket` with a status naming a decision
("Change Approved", "CAB Rejected") → CHANGE_APPROVED / CHANGE_REJECTED; `Type: configuration` (the
device record RMM integrations keep current) → ALERT about that device.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field

from gatekeeper.events.common import (
    Ignored,
    Payload,
    action_from_text,
    decision_from_text,
    normalise_status,
    parse_json_string,
    problem,
    shown,
    validate,
)
from gatekeeper.events.connectors.base import CONTEXT, Connector, connector_event, decision_kind
from gatekeeper.events.hints import clean, envelope_body
from gatekeeper.events.model import EventKind, EventSource, PipelineEvent

if TYPE_CHECKING:
    from gatekeeper.events.connectors.envelope import ConnectorMessage


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


class _CwCompany(Payload):
    identifier: str | None = None


class _CwTicket(Payload):
    summary: str | None = None
    company: _CwCompany | None = None
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
        return connector_event(
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
    kind, status = decision_kind(approved)
    return connector_event(
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
        company=_company(ticket),
        actor=(ticket.info.updatedBy if ticket.info else None) or cb.MemberId,
        delivery_id=cb.MessageId,
        summary=f"ConnectWise ticket #{cb.ID} {ticket.summary or ''}: {status_name}",
    )


def _company(ticket: _CwTicket) -> str | None:
    """The ticket's client company (`company.identifier`, what `psa.company` names); `CompanyId` at the top of
    the callback is the MSP's own sign-in company, the same for every client's ticket."""
    value = ticket.company.identifier.strip() if ticket.company and ticket.company.identifier else ""
    return value[:100] or None


def identity_hints(payload: Mapping[str, Any], _headers: Mapping[str, str] | None) -> Iterator[str]:
    account, body = envelope_body(payload)
    for value in (account, clean(body.get("CompanyId"))):
        if value:
            yield f"connectwise:company:{value}"


CONNECTOR = Connector(
    source=EventSource.CONNECTWISE, payload=_CwCallback, parse=_connectwise, identity_hints=identity_hints
)
