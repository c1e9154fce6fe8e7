"""Vendor webhook routes (public contract): PSA and RMM tools post their own webhook bodies here.

    POST /api/connectors/{vendor}?tenant=<tenant id>   vendor: connectwise | autotask | halopsa | ninjaone | dattormm
    -> 202 {"status": "accepted" | "ignored", "eventId", ...}; problem+json otherwise (401 for any bad credential)

Authenticated the way each vendor signs or authenticates its webhooks (`gatekeeper.ingest.connector_webhooks`);
the accepted event goes the way the relays' queue messages go. The `connector-events` queue stays for relays.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from functions.http import handle, incoming, services

bp = df.Blueprint()


@bp.function_name("connector_webhook")
@bp.route(route="connectors/{vendor}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def connector_webhook(req: func.HttpRequest) -> func.HttpResponse:
    """One route per vendor; the vendor's own credential is checked, not a function key."""
    vendor = req.route_params.get("vendor", "")
    return handle(req, lambda: (202, services().ingestion.connector_webhook(vendor, incoming(req)).body()))
