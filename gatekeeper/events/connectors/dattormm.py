"""Datto RMM connector (payload model, parser, identity hints).

Datto RMM alert webhooks have no fixed body: the admin writes the JSON of the "alert triggered" and the
optional "alert resolved" payload in the monitor's (or the global) webhook response, with variables in
square brackets that Datto RMM fills in
(https://rmm.datto.com/help/en/Content/3NEWUI/Monitors/Webhooks.htm, read 2026-12-05). docs/integrations.md
gives the body Gatekeeper reads:

    {"alertUid": "[alert_uid]", "alertMessage": "[alert_message]", "siteName": "[sitename]",
     "siteUid": "<the site's uid, typed in>", "deviceUid": "...", "hostname": "...", "priority": "...",
     "resolved": false}     (the resolved payload says "resolved": true)

→ ALERT about the device (status triggered/resolved), keyed on the alert uid so a redelivery is deduped and
the resolution is a separate event. A variable left unfilled (`[alert_uid]` verbatim) is refused naming the
field, because such a body cannot say which alert it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BeforeValidator, Field

from gatekeeper.events.common import Payload, number_to_text, problem, validate
from gatekeeper.events.connectors.base import CONTEXT, Connector, connector_event
from gatekeeper.events.hints import clean, envelope_body
from gatekeeper.events.model import EventKind, EventSource, PipelineEvent

if TYPE_CHECKING:
    from gatekeeper.events.common import Ignored
    from gatekeeper.events.connectors.envelope import ConnectorMessage

_Text = Annotated[str, BeforeValidator(number_to_text), Field(min_length=1, max_length=200)]
_UNFILLED = re.compile(r"^\[[a-z_]+\]$")
_PRIORITIES = frozenset({"critical", "high", "moderate", "low", "information"})


class _DattoAlert(Payload):
    alertUid: _Text
    alertMessage: str | None = Field(default=None, max_length=2000)
    siteUid: _Text | None = None
    siteName: str | None = Field(default=None, max_length=200)
    deviceUid: _Text | None = None
    hostname: str | None = Field(default=None, max_length=200)
    priority: str | None = Field(default=None, max_length=40)
    resolved: bool = False


def _dattormm(envelope: ConnectorMessage, tenant_id: str) -> PipelineEvent | Ignored:
    alert = validate(_DattoAlert, envelope.payload, context=CONTEXT, root="payload")
    for name in ("alertUid", "siteUid", "deviceUid"):
        value = getattr(alert, name)
        if value is not None and _UNFILLED.match(value.strip().lower()):
            raise problem(CONTEXT, f"payload.{name}", f"is the unfilled variable {value[:40]}")
    status = "resolved" if alert.resolved else "triggered"
    device = alert.deviceUid or alert.hostname
    priority = (alert.priority or "").strip().lower()
    labels = (f"priority:{priority}",) if priority in _PRIORITIES else ()
    where = f" on {alert.hostname or alert.deviceUid}" if device else ""
    return connector_event(
        envelope,
        EventSource.DATTORMM,
        tenant_id,
        kind=EventKind.ALERT,
        subject=device,
        run_id=alert.alertUid,  # one device raises many alerts; the alert uid is the vendor's event id
        status=status,
        labels=labels,
        delivery_id=alert.alertUid,
        summary=f"Datto RMM alert {alert.alertUid}{where}: {alert.alertMessage or status} ({status})",
    )


def identity_hints(payload: Mapping[str, Any], _headers: Mapping[str, str] | None) -> Iterator[str]:
    account, body = envelope_body(payload)
    site = clean(body.get("siteUid"))
    for value in (account, site):
        if value:
            yield f"dattormm:site:{value}"


CONNECTOR = Connector(source=EventSource.DATTORMM, payload=_DattoAlert, parse=_dattormm, identity_hints=identity_hints)
