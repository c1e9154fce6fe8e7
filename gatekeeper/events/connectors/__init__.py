"""PSA/RMM connector queue messages → `PipelineEvent`: change approvals and device alerts.

A connector (a thin webhook receiver per vendor) verifies the vendor's signature and enqueues:

    {"connector": "connectwise" | "autotask" | "halopsa" | "ninjarmm" | "dattormm",
     "account": "<vendor account id>", "receivedAt": "<ISO 8601>", "payload": {<the vendor's own body>},
     "signature": "sha256=<hex HMAC-SHA256 of the rest of the envelope>"}

The signature covers the whole envelope (`gatekeeper.ingest.service.canonical_envelope`), so a message
cannot be re-addressed to another account or connector; the tenant's `connector` secret makes it.

Each vendor lives in its own module here (payload model, parser and identity hints in one `Connector`):
- `connectwise`: ConnectWise PSA
- `autotask`: Datto Autotask
- `halopsa`: HaloPSA
- `ninjarmm`: NinjaOne (NinjaRMM)
- `dattormm`: Datto RMM (alert webhooks).
Adding a vendor: its module, its entry in `CONNECTORS` and its name in `ConnectorName` (both here), and its
`EventSource` value.

Decisions carry status `approved`/`rejected`, alerts `triggered`/`resolved` (or the device status), so
policy matches one vocabulary whatever the vendor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gatekeeper.events.common import Ignored, validate
from gatekeeper.events.connectors import autotask, connectwise, dattormm, halopsa, ninjarmm
from gatekeeper.events.connectors.base import CONTEXT, Connector
from gatekeeper.events.connectors.envelope import ConnectorMessage, ConnectorName
from gatekeeper.events.model import EventSource, PipelineEvent

CONNECTORS: Mapping[str, Connector] = {
    c.name: c
    for c in (connectwise.CONNECTOR, autotask.CONNECTOR, halopsa.CONNECTOR, ninjarmm.CONNECTOR, dattormm.CONNECTOR)
}
"""connector name (the envelope's `connector`, also the `EventSource` value) -> the vendor's bundle."""

BY_SOURCE: Mapping[EventSource, Connector] = {c.source: c for c in CONNECTORS.values()}

__all__ = ["BY_SOURCE", "CONNECTORS", "Connector", "ConnectorMessage", "ConnectorName", "parse_connector_message"]


def parse_connector_message(message: Mapping[str, Any], *, tenant_id: str) -> PipelineEvent | Ignored:
    """Normalise one connector queue message. Raises `InvalidInput` naming the field (JSON path from
    the envelope, e.g. `payload.Entity.status.name`); returns `Ignored` for well-formed events we skip."""
    envelope = validate(ConnectorMessage, message, context=CONTEXT)
    return CONNECTORS[envelope.connector].parse(envelope, tenant_id)
