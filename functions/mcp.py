"""The MCP endpoint for AI agents (issue 20; docs/guard-an-ai-agent.md). Thin: the protocol is the official
`mcp` SDK's (gatekeeper/mcp/server.py), bridged into the HTTP trigger with `azure.functions.AsgiMiddleware`.

    POST|GET|DELETE /api/mcp                      MCP streamable HTTP (stateless, JSON responses)
    GET /api/.well-known/oauth-protected-resource  RFC 9728 protected-resource metadata (Entra ID)

Anonymous at the Functions level: every MCP request needs an Entra bearer token; a missing or refused one
gets the protocol's 401 with `WWW-Authenticate: Bearer resource_metadata="..."` before the SDK sees the
request. The SDK, Starlette and the tools are imported on the first MCP request only (cold start).
"""

from __future__ import annotations

import asyncio
import json
import threading

import azure.durable_functions as df
import azure.functions as func

from functions.durable_gateway import DurableClientGateway
from functions.http import failure_response, incoming, problem_response, services
from gatekeeper.errors import GatekeeperError, Unauthenticated
from gatekeeper.ingest.edge import require_bounded_headers

bp = df.Blueprint()

# Per event loop (the worker keeps one): the middleware and its started lifespan.
_bridges: dict[asyncio.AbstractEventLoop, tuple[func.AsgiMiddleware, asyncio.Task[bool]]] = {}
_bridge_lock = threading.Lock()


@bp.function_name("mcp_protected_resource")
@bp.route(route=".well-known/oauth-protected-resource", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def mcp_protected_resource(req: func.HttpRequest) -> func.HttpResponse:
    from gatekeeper.mcp.resource import protected_resource_metadata

    settings = services().settings
    document = protected_resource_metadata(
        services().approval_base_url, settings.entra_authority_host, settings.entra_audiences
    )
    return func.HttpResponse(
        json.dumps(document),
        status_code=200,
        mimetype="application/json",
        headers={"Cache-Control": "public, max-age=3600"},
    )


@bp.function_name("mcp")
@bp.route(route="mcp", methods=["GET", "POST", "DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def mcp(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from gatekeeper.mcp.resource import NoToken, agent_caller, challenge

    base_url = services().approval_base_url
    try:
        require_bounded_headers(incoming(req))
        await asyncio.to_thread(agent_caller, services().actions_authenticator, req.headers.get("Authorization"))
    except Unauthenticated as refused:
        invalid = not isinstance(refused, NoToken)
        body = {"error": "invalid_token" if invalid else "unauthorized", "error_description": refused.detail}
        return func.HttpResponse(
            json.dumps(body),
            status_code=401,
            mimetype="application/json",
            headers={"WWW-Authenticate": challenge(base_url, invalid=invalid)},
        )
    except GatekeeperError as problem:  # identity provider unreachable: 503 with Retry-After
        return problem_response(problem, instance=req.url.split("?")[0])
    except Exception as exc:
        return failure_response(req, exc)
    if req.method.upper() != "POST":
        # Stateless JSON mode: no server-to-client SSE stream to open (GET) and no session to end (DELETE);
        # the transport specification's answer for both is 405. A stream would hold a worker until timeout.
        body = {"error": "method_not_allowed", "error_description": "Use POST: this server is stateless."}
        return func.HttpResponse(
            json.dumps(body), status_code=405, mimetype="application/json", headers={"Allow": "POST"}
        )
    from gatekeeper.mcp.resource import refuse_body

    refused_body = refuse_body(req.get_body() or b"")
    if refused_body is not None:
        status, error = refused_body
        return func.HttpResponse(json.dumps(error), status_code=status, mimetype="application/json")
    try:
        middleware = await _middleware()
        from gatekeeper.mcp.server import GATEWAY

        token = GATEWAY.set(DurableClientGateway(client, asyncio.get_running_loop()))
        try:
            response: func.HttpResponse = await middleware.handle_async(req)
        finally:
            GATEWAY.reset(token)
    except Exception as exc:  # the SDK answers protocol errors itself; anything else as every route does
        return failure_response(req, exc)
    return response


async def _middleware() -> func.AsgiMiddleware:
    """The SDK's ASGI app behind `AsgiMiddleware`, its lifespan (the session manager's task group) started
    once on the worker's loop; concurrent first requests all wait for that one start. Its tools look the
    services up per call (`services()`)."""
    loop = asyncio.get_running_loop()
    with _bridge_lock:
        bridge = _bridges.get(loop)
        if bridge is None:
            from gatekeeper.mcp.server import ApprovalTools, build_asgi_app

            tools = ApprovalTools(lambda: services().actions, lambda: services().actions_authenticator)
            middleware = func.AsgiMiddleware(build_asgi_app(tools))
            bridge = (middleware, loop.create_task(middleware.notify_startup()))
            _bridges[loop] = bridge
    middleware, started = bridge
    if not await asyncio.shield(started):  # pragma: no cover - the SDK's lifespan does not fail
        raise RuntimeError("the MCP server did not start")
    return middleware
