"""What every connector shares: the registry entry and the event builder (the queue envelope,
`ConnectorMessage`, lives with the table in `gatekeeper.events.connectors`).

A connector is one module per vendor (`gatekeeper.events.connectors.<vendor>`) that exposes `CONNECTOR`, a
`Connector` bundling the vendor's payload model, its parser and its tenant identity hints; the table in
`gatekeeper.events.connectors` lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gatekeeper.events.common import Ignored, Payload
from gatekeeper.events.model import EventKind, EventSource, PipelineEvent

CONTEXT = "connector message"

if TYPE_CHECKING:
    from gatekeeper.events.connectors.envelope import ConnectorMessage

    Parser = Callable[[ConnectorMessage, str], PipelineEvent | Ignored]
    """(envelope, tenant id) -> the event, or `Ignored` with the reason; raises `InvalidInput` naming
    the field for a malformed body."""

IdentityHints = Callable[[Mapping[str, Any], Mapping[str, str] | None], Iterator[str]]
"""(unverified body or envelope, headers) -> tenant lookup hints, most specific first. Never trusted for
anything but finding the secret to check the signature with (see `gatekeeper.events.identity`)."""


@dataclass(frozen=True)
class Connector:
    """One vendor: its `EventSource`, the payload model its webhook body is validated against, the parser
    and the identity hints."""

    source: EventSource
    payload: type[Payload]
    parse: Parser
    identity_hints: IdentityHints

    @property
    def name(self) -> str:
        return self.source.value


def decision_kind(approved: bool) -> tuple[EventKind, str]:
    return (EventKind.CHANGE_APPROVED, "approved") if approved else (EventKind.CHANGE_REJECTED, "rejected")


def connector_event(envelope: ConnectorMessage, source: EventSource, tenant_id: str, **fields: Any) -> PipelineEvent:
    summary = fields.pop("summary", None)
    return PipelineEvent(
        tenant_id=tenant_id,
        source=source,
        received_at=envelope.received_at,
        summary=summary[:300] if isinstance(summary, str) else None,
        **fields,
    )
