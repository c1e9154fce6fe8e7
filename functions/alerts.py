"""Azure Monitor alerts route (public contract). Thin: the rules are `gatekeeper.rollback.alerts`.

    POST /api/azure-monitor/alerts   common alert schema -> 202 {"status": "accepted" | "ignored", ...}

Authenticated per tenant like `POST /api/events`: an Entra bearer token (action group secure webhook) or
`X-Gatekeeper-Tenant` with the tenant's generic API key. Errors are RFC 9457 problem+json.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import azure.durable_functions as df
import azure.functions as func

from functions.http import handle_with_client, incoming, services

if TYPE_CHECKING:
    from gatekeeper.rollback.alerts import AlertRouter
    from gatekeeper.rollback.control import WakeGateway

bp = df.Blueprint()


def router(gateway: WakeGateway) -> AlertRouter:
    from gatekeeper.rollback.alerts import AlertRouter

    runtime = services()
    return AlertRouter(
        runtime.request_storage,
        runtime.sealer,
        gateway,
        policy_for=runtime.policy_for,
        audit_for=runtime.audit_for,
        clock=runtime.clock,
    )


@bp.function_name("azure_monitor_alert")
@bp.route(route="azure-monitor/alerts", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def azure_monitor_alert(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await handle_with_client(
        req, client, lambda gateway: router(gateway).receive(incoming(req), services().ingestion.generic_tenant)
    )
