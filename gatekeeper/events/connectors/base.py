"""What every connector shares: the queue envelope, the registry entry, and the event builder.

A connector is one module per vendor (`gatekeeper.events.connectors.<vendor>`) that exposes `CONNECTOR`, a
`Connector` bundling the vendor's payload model, its parser and its tenant identity hints; the table in
`gatekeeper.events.connectors` lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from gatekeeper.events.common import Ignored, Payload, number_to_text
from gatekeeper.events.model import EventKind, EventSource, PipelineEvent

CONTEXT = "connector message"

ConnectorName = Literal["connectwise", "autotask", "halopsa", "ninjarmm"]
"""The `connector` values a queue message may carry (one per module in this package)."""


class ConnectorMessage(BaseModel):
    """The queue envelope every connector writes."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, defer_build=True)

    connector: ConnectorName
    account: Annotated[str, BeforeValidator(number_to_text), Field(min_length=1, max_length=200)]
    received_at: AwareDatetime = Field(alias="receivedAt")
    payload: dict[str, Any]


Parser = Callable[[ConnectorMessage, str], PipelineEvent | Ignored]
"""(envelope, tenant id) -> the event, or `Ignored` with the reason; raises `ValidationProblem` naming the
field for a malformed body."""

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
