"""Slack's request URLs (public contract): `POST /api/slack/interactions` (buttons, the reject modal) and
`POST /api/slack/events` (Events API `url_verification`), and the `slack-interactions` queue trigger.

Anonymous at the Functions level on purpose: every request must carry Slack's v0 signature made with the
signing secret of the tenant that registered the workspace it names (`gatekeeper.slack.edge`); one 401 for
every failure. The route answers within Slack's 3 seconds: it queues the decision and the queue trigger does
the work (identity map, the decision service, which raises the vote to the orchestration, message updates).
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
from functions.messages import follow_ups
from gatekeeper.errors import GatekeeperError
from gatekeeper.ingest.edge import IncomingRequest, require_bounded_headers

if TYPE_CHECKING:
    from gatekeeper.slack.routes import SlackRoutes

SLACK_INTERACTIONS_QUEUE = "slack-interactions"  # literal (cold start); Bicep creates it
STORAGE = "AzureWebJobsStorage"

log = logging.getLogger("gatekeeper.slack")
bp = df.Blueprint()


def _routes() -> SlackRoutes:
    from gatekeeper.slack.routes import SlackRoutes, queue_sender

    runtime = services()
    return SlackRoutes(
        runtime.slack_tenants,
        runtime.slack,
        queue_sender(runtime.request_storage, SLACK_INTERACTIONS_QUEUE),
        runtime.edge_sealer,  # the tenant's transit key: no private-key operation on the request path
    )


def _answer(answer: dict[str, object] | None) -> func.HttpResponse:
    if answer is None:
        return func.HttpResponse(status_code=200)
    return func.HttpResponse(json.dumps(answer), status_code=200, mimetype="application/json")


@bp.function_name("slack_interactions")
@bp.route(route="slack/interactions", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def slack_interactions(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, "interactions")


@bp.function_name("slack_events")
@bp.route(route="slack/events", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def slack_events(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, "events")


def _serve(req: func.HttpRequest, kind: str) -> func.HttpResponse:
    """Both Slack routes: headers bounded, then the signed body to SlackRoutes.interactions / .events."""
    try:
        body = req.get_body() or b""
        require_bounded_headers(IncomingRequest.of(body, dict(req.headers), req.url))
        handle = _routes().interactions if kind == "interactions" else _routes().events
        return _answer(handle(body, dict(req.headers)))
    except GatekeeperError as problem:
        return problem_response(problem, instance=f"/api/slack/{kind}")
    except Exception as exc:
        return failure_response(req, exc)


@bp.function_name("slack_decisions")
@bp.queue_trigger(arg_name="msg", queue_name=SLACK_INTERACTIONS_QUEUE, connection=STORAGE)
@bp.durable_client_input(client_name="client")
async def slack_decisions(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    """One Slack decision: a refusal is told to the person; a dependency failure raises (the host retries)."""
    from functions.queues import deferred_copy
    from gatekeeper.ingest.redelivery import unwrap
    from gatekeeper.slack.edge import read_queue_message
    from gatekeeper.store.envelope import SealedDataUnreadable

    runtime = services()
    text = msg.get_body().decode("utf-8", errors="replace")
    inner = unwrap(text)  # a copy deferred after an outage carries the message as it was queued
    body = msg.get_body() if inner is None else inner.encode()
    try:
        tenant_id, interaction = read_queue_message(runtime.sealer, body)
    except SealedDataUnreadable as exc:  # tampered or moved: retrying cannot help
        runtime.record_integrity_failure(exc, f"queue:{SLACK_INTERACTIONS_QUEUE}")
        runtime.dead_letters.record(SLACK_INTERACTIONS_QUEUE, inner or text, f"integrity: does not open ({exc.reason})")
        return
    except (ValueError, GatekeeperError) as exc:
        runtime.dead_letters.record(SLACK_INTERACTIONS_QUEUE, inner or text, f"undecodable: {type(exc).__name__}")
        return
    except Exception:  # the key service down: back to the queue with a growing delay, not toward poison
        if not await asyncio.to_thread(deferred_copy, SLACK_INTERACTIONS_QUEUE, msg, text):
            raise
        return
    gateway = DurableClientGateway(client, asyncio.get_running_loop())
    try:
        outcome = await asyncio.to_thread(
            runtime.slack_votes.handle, tenant_id, interaction, decision_service(gateway), follow_ups(gateway)
        )
    except Exception:  # storage or the orchestration down (SlackVotes raises only those): retried later
        if not await asyncio.to_thread(deferred_copy, SLACK_INTERACTIONS_QUEUE, msg, text):
            raise
        return
    log.info("slack decision on %s: %s", interaction.instance_id, outcome)


@bp.function_name("slack_interactions_poison")
@bp.queue_trigger(arg_name="msg", queue_name=SLACK_INTERACTIONS_QUEUE + "-poison", connection=STORAGE)
def slack_interactions_poison(msg: func.QueueMessage) -> None:
    """A decision that failed five times (Slack or storage down): kept for `deadletters list`, sealed as it was."""
    text = msg.get_body().decode("utf-8", errors="replace")
    services().dead_letters.record(
        SLACK_INTERACTIONS_QUEUE,
        text,
        f"moved to poison after {msg.dequeue_count} attempts",
        dequeue_count=msg.dequeue_count,
    )
    log.error("message %s from %s dead-lettered after repeated failures", msg.id, SLACK_INTERACTIONS_QUEUE)
