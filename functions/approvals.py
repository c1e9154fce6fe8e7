"""Approval routes (public contract). Thin: the logic is `gatekeeper.gates.decisions.DecisionService`.

    POST /api/approvals/{instance_id}/decisions   {"decision": "approve"|"reject", "comment": "..."} -> 202
    GET  /api/approvals/{instance_id}                                                               -> 200

Anonymous at the Functions level on purpose: the caller is identified by Entra ID (App Service
authentication's X-MS-CLIENT-PRINCIPAL, or a bearer token validated against the tenant's keys).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import azure.durable_functions as df
import azure.functions as func

from functions.http import handle, handle_with_client, services

if TYPE_CHECKING:
    from gatekeeper.gates.decisions import DecisionService, OrchestrationGateway
    from gatekeeper.security.principal import Principal

bp = df.Blueprint()


def decision_service(gateway: OrchestrationGateway) -> DecisionService:
    # Imported on the first request, not when the host indexes the app (cold start).
    from gatekeeper.gates.decisions import DecisionService

    runtime = services()
    return DecisionService(
        runtime.request_storage,  # bounded budgets: storage down is a 503 within 2 s, not a minute's wait
        runtime.sealer,
        gateway,
        entra_tenants_for=runtime.entra_tenants_for,
        audit_for=runtime.audit_for,
        group_membership=runtime.group_membership,
        directory=runtime.user_directory,
        base_url=runtime.approval_base_url,
        clock=runtime.clock,
        tenant_for=runtime.registry.get,
    )


def approver(req: func.HttpRequest) -> Principal:
    """The deciding person, authenticated once here (401/403), so the decision service never sees headers."""
    from gatekeeper.approvals.authenticate import approver_from_headers

    runtime = services()
    return approver_from_headers(
        dict(req.headers), runtime.token_validator, trust_easyauth=runtime.settings.trust_easyauth_header
    )


class _NoGateway:
    def raise_event(self, instance_id: str, event_name: str, data: Any) -> None:
        raise RuntimeError("reading a gate raises no events")


@bp.function_name("approval_decision")
@bp.route(route="approvals/{instance_id}/decisions", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def approval_decision(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    # The durable client binding wraps the function in an async middleware, so this must be async.
    instance_id = req.route_params.get("instance_id", "")
    return await handle_with_client(
        req, client, lambda gateway: decision_service(gateway).decide(instance_id, approver(req), req.get_body() or b"")
    )


@bp.function_name("approval_state")
@bp.route(route="approvals/{instance_id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def approval_state(req: func.HttpRequest) -> func.HttpResponse:
    instance_id = req.route_params.get("instance_id", "")
    return handle(req, lambda: decision_service(_NoGateway()).state(instance_id, approver(req)))
