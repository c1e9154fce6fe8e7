"""Deployment watch control routes (public contract). Thin: the rules are `gatekeeper.rollback.control`.

    GET  /api/deployments/{id}            the watch: deployment, state and why, last probes, rollback -> 200
    POST /api/deployments/{id}/hold       {"hold": true|false, "reason": "..."} pause automatic rollback -> 200
    POST /api/deployments/{id}/rollback   {"reason": "..."} roll back now                              -> 202

Identified like approval decisions (Entra ID: App Service authentication or a bearer token); the caller must
be a tenant operator or an approver of the deployment. Errors are RFC 9457 problem+json.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import azure.durable_functions as df
import azure.functions as func

from functions.approvals import approver
from functions.http import handle, handle_with_client, services

if TYPE_CHECKING:
    from gatekeeper.rollback.control import DeploymentControl, WakeGateway

bp = df.Blueprint()


def control(gateway: WakeGateway) -> DeploymentControl:
    from gatekeeper.rollback.control import DeploymentControl

    runtime = services()
    return DeploymentControl(
        runtime.request_storage,
        runtime.sealer,
        gateway,
        entra_tenants_for=runtime.entra_tenants_for,
        operators_for=runtime.operators_for,
        policy_for=runtime.policy_for,
        audit_for=runtime.audit_for,
        clock=runtime.clock,
    )


class _NoGateway:
    def raise_event(self, instance_id: str, event_name: str, data: Any) -> None:
        raise RuntimeError("reading a watch raises no events")


@bp.function_name("deployment_state")
@bp.route(route="deployments/{instance_id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def deployment_state(req: func.HttpRequest) -> func.HttpResponse:
    instance_id = req.route_params.get("instance_id", "")
    return handle(req, lambda: control(_NoGateway()).state(instance_id, approver(req)))


@bp.function_name("deployment_hold")
@bp.route(route="deployments/{instance_id}/hold", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def deployment_hold(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance_id = req.route_params.get("instance_id", "")
    return await handle_with_client(
        req, client, lambda gateway: control(gateway).hold(instance_id, approver(req), req.get_body() or b"")
    )


@bp.function_name("deployment_rollback")
@bp.route(route="deployments/{instance_id}/rollback", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def deployment_rollback(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance_id = req.route_params.get("instance_id", "")
    return await handle_with_client(
        req, client, lambda gateway: control(gateway).rollback(instance_id, approver(req), req.get_body() or b"")
    )
