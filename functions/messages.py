"""The Teams bot's messaging endpoint (public contract): `POST /api/messages`.

Anonymous at the Functions level on purpose: every activity must carry the Bot Connector's token, Bot
Framework- or Entra-issued, checked by `gatekeeper.teams.auth` (401 without it, with a wrong audience, issuer,
tenant or lifetime, or a serviceUrl other than the one it names; with GATEKEEPER_BOT_APP_ID unset, every
activity). The body is bounded like every
route (size, headers, depth, numbers, duplicate keys) before anything reads it. Then the Agents SDK runs the
turn and a card action is decided by the same `DecisionService` as `POST /api/approvals/{id}/decisions`;
its answer is the refreshed card (`gatekeeper.teams`). The SDK is imported on the first request here only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

import azure.durable_functions as df
import azure.functions as func

from functions.approvals import decision_service
from functions.durable_gateway import DurableClientGateway
from functions.http import failure_response, problem_response, services
from gatekeeper.errors import GatekeeperError, InputTooLarge
from gatekeeper.ingest.edge import IncomingRequest, parse_json_object, require_bounded_headers

if TYPE_CHECKING:
    from gatekeeper.gates.followup import FollowUpService

log = logging.getLogger("gatekeeper.bot")

bp = df.Blueprint()

MAX_ACTIVITY_BYTES = 256 * 1024  # a card action is a few KiB; Teams caps a message with cards at 28 KiB


def follow_ups(gateway: DurableClientGateway) -> FollowUpService:
    """L1 acknowledgements / rollback flags and L3 "done" from cards and Slack (imported on first use: cold
    start); a "done" with minutes starts the PSA time entry through `gateway` when the tenant has a PSA."""
    from gatekeeper.gates.followup import FollowUpService

    runtime = services()
    return FollowUpService(
        runtime.request_storage,
        runtime.sealer,
        entra_tenants_for=runtime.entra_tenants_for,
        operators_for=runtime.operators_for,
        audit_for=runtime.audit_for,
        base_url=runtime.approval_base_url,
        orchestrations=gateway,
        psa_configured=lambda tenant_id: runtime.tickets.settings_for(tenant_id) is not None,
    )


@bp.function_name("bot_messages")
@bp.route(route="messages", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def bot_messages(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        body = req.get_body() or b""
        headers = dict(req.headers)
        request = IncomingRequest.of(body, headers, req.url)
        require_bounded_headers(request)
        if len(body) > MAX_ACTIVITY_BYTES:
            raise InputTooLarge(f"At most {MAX_ACTIVITY_BYTES} bytes.", code="body-too-large")
        runtime = services()
        validator = runtime.bot_validator
        if validator.app_id is None:  # no bot configured: refuse before reading anything
            validator.validate(None, None)
        activity = parse_json_object(body, what="activity")
        service_url = activity.get("serviceUrl")
        claims = await asyncio.to_thread(
            validator.validate,
            request.headers.get("Authorization"),
            service_url if isinstance(service_url, str) else None,
        )
        gateway = DurableClientGateway(client, asyncio.get_running_loop())
        status, answer = await runtime.bot_host.process(
            activity, headers, claims, decision_service(gateway), runtime.user_directory, follow_ups(gateway)
        )
    except GatekeeperError as problem:
        log.info("refused /api/messages: %s", problem.code)
        return problem_response(problem, instance="/api/messages")
    except Exception as exc:
        return failure_response(req, exc)
    if answer is None:
        return func.HttpResponse(status_code=status)
    return func.HttpResponse(json.dumps(answer), status_code=status, mimetype="application/json")
