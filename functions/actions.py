"""Action-approval routes (public contract, docs/openapi/actions.yaml). Thin: the logic is
`gatekeeper.actions.service.ActionService`.

    POST /api/actions                     request approval for one command   -> 202 pending | 200 decided
    GET  /api/actions/{action_id}?wait=N  state; long poll up to 25 s        -> 200
    POST /api/actions/{action_id}/cancel  the requester withdraws it         -> 200 | 409 decided
    POST /api/actions/{action_id}/report  executed | skipped                 -> 202 | 409 not-approved

Anonymous at the Functions level: the caller is authenticated by a GitHub Actions OIDC token, an Entra ID
bearer token or the tenant's API key. GET and cancel can end an approval chain (the request's own timeout,
a cancel), so they take the durable client binding; blocking storage calls run on a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import azure.durable_functions as df
import azure.functions as func

from functions.durable_gateway import DurableClientGateway
from functions.http import handle, incoming, json_response, services

bp = df.Blueprint()


@bp.function_name("action_request")
@bp.route(route="actions", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def action_request(req: func.HttpRequest) -> func.HttpResponse:
    location: list[str] = []

    def run() -> tuple[int, dict[str, Any]]:
        answer = services().actions.request(incoming(req))
        if answer.location:
            location.append(answer.location)
        return answer.status, answer.body

    response = handle(req, run)
    if location and response.status_code == 202:
        response.headers["Location"] = location[0]
    return response


@bp.function_name("action_status")
@bp.route(route="actions/{action_id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def action_status(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    action_id = req.route_params.get("action_id", "")
    gateway = DurableClientGateway(client, asyncio.get_running_loop())

    async def run() -> tuple[int, dict[str, Any]]:
        actions = services().actions
        tenant_id, seconds = await asyncio.to_thread(
            actions.begin_status, incoming(req), action_id, req.params.get("wait")
        )
        return 200, await actions.watch(tenant_id, action_id, seconds, gateway, asyncio.to_thread)

    return await _answer(req, run)


@bp.function_name("action_cancel")
@bp.route(route="actions/{action_id}/cancel", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def action_cancel(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    action_id = req.route_params.get("action_id", "")
    gateway = DurableClientGateway(client, asyncio.get_running_loop())

    def run() -> tuple[int, dict[str, Any]]:
        answer = services().actions.cancel(incoming(req), action_id, gateway)
        return answer.status, answer.body

    return await asyncio.to_thread(handle, req, run)


@bp.function_name("action_report")
@bp.route(route="actions/{action_id}/report", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def action_report(req: func.HttpRequest) -> func.HttpResponse:
    action_id = req.route_params.get("action_id", "")

    def run() -> tuple[int, dict[str, Any]]:
        answer = services().actions.report(incoming(req), action_id)
        return answer.status, answer.body

    return handle(req, run)


async def _answer(req: func.HttpRequest, run: Callable[[], Awaitable[tuple[int, dict[str, Any]]]]) -> func.HttpResponse:
    """`handle` for an async route: errors get exactly the answer `handle` gives them."""
    try:
        status, body = await run()
    except Exception as exc:  # handed to `handle`, which maps it as every route does
        return handle(req, _raising(exc))
    return json_response(status, body)


def _raising(exc: Exception) -> Callable[[], NoReturn]:
    def again() -> NoReturn:
        raise exc

    return again
