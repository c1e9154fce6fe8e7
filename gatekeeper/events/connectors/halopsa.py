"""HaloPSA connector (payload model, parser, identity hints).

HaloPSA webhooks: `{id, webhook_id, event, ticket{id, summary, status_name, tickettype_name, ...}}` or
`{..., asset{id, inventory_number, status_name}}`. Ticket status naming a decision → decision; asset → ALERT.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gatekeeper.events.common import (
    Ignored,
    Payload,
    action_from_text,
    decision_from_text,
    normalise_status,
    shown,
    validate,
)
from gatekeeper.events.connectors.base import CONTEXT, Connector, connector_event, decision_kind
from gatekeeper.events.hints import envelope_body
from gatekeeper.events.model import EventKind, EventSource, PipelineEvent

if TYPE_CHECKING:
    from gatekeeper.events.connectors.envelope import ConnectorMessage


class _HaloTicket(Payload):
    id: int
    summary: str | None = None
    status_name: str | None = None
    tickettype_name: str | None = None
    agent_name: str | None = None
    client_id: int | None = None


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
        kind, status = decision_kind(approved)
        return connector_event(
            envelope,
            source,
            tenant_id,
            kind=kind,
            action=action_from_text(ticket.tickettype_name, ticket.summary),
            subject=str(ticket.id),
            status=status,
            company=str(ticket.client_id) if ticket.client_id is not None else None,
            actor=ticket.agent_name,
            delivery_id=hook.id,
            summary=f"HaloPSA ticket {ticket.id} {ticket.summary or ''}: {ticket.status_name}",
        )
    if hook.asset is not None:
        asset = hook.asset
        status = normalise_status(asset.status_name) or normalise_status(hook.event) or "updated"
        return connector_event(
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


def identity_hints(payload: Mapping[str, Any], _headers: Mapping[str, str] | None) -> Iterator[str]:
    account, _body = envelope_body(payload)
    if account:
        host = urlsplit(account).hostname if "://" in account else account
        if host:
            yield f"halopsa:instance:{host.rstrip('/')}"


CONNECTOR = Connector(source=EventSource.HALOPSA, payload=_HaloWebhook, parse=_halopsa, identity_hints=identity_hints)
