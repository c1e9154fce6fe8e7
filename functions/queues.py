"""Queue triggers: connector events, the dispatcher, and the poison queues that keep what failed."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import azure.durable_functions as df
import azure.functions as func

from functions.durable_gateway import DurableClientGateway
from functions.http import services, status_of
from gatekeeper import telemetry
from gatekeeper.errors import DependencyUnavailable, GatekeeperError

if TYPE_CHECKING:
    from gatekeeper.events.model import PipelineEvent

# Queue names are part of the deployment contract (Bicep creates them); kept literal so that
# indexing the app does not import the ingestion code.
CONNECTOR_EVENTS_QUEUE = "connector-events"
PIPELINE_EVENTS_QUEUE = "pipeline-events"

PSA_DECISION_KINDS = frozenset({"change_approved", "change_rejected"})  # EventKind values, kept literal (cold start)

log = logging.getLogger("gatekeeper.queues")
bp = df.Blueprint()
STORAGE = "AzureWebJobsStorage"


@bp.function_name("connector_events")
@bp.queue_trigger(arg_name="msg", queue_name=CONNECTOR_EVENTS_QUEUE, connection=STORAGE)
def connector_events(msg: func.QueueMessage) -> None:
    """PSA/RMM connector events. Permanently bad messages are dead-lettered; a dependency outage sends the
    message back with a growing delay (wrapped, the envelope stays as signed), else the host retries."""
    from gatekeeper.ingest.redelivery import unwrap

    queue_age(CONNECTOR_EVENTS_QUEUE, msg)
    text = msg.get_body().decode("utf-8", errors="replace")
    inner = unwrap(text)
    body = msg.get_body() if inner is None else inner.encode()
    try:
        outcome = services().ingestion.connector(body)
        log.info("connector message %s: %s", msg.id, outcome.status)
    except DependencyUnavailable:  # a passing outage, not a bad message: never dead-lettered for it
        if not deferred_copy(CONNECTOR_EVENTS_QUEUE, msg, text):
            raise
    except GatekeeperError as problem:
        services().dead_letters.record(
            CONNECTOR_EVENTS_QUEUE, inner or text, f"{status_of(problem)} {problem.code}: {problem.detail}"
        )
    except Exception:
        if not deferred_copy(CONNECTOR_EVENTS_QUEUE, msg, text):
            raise


def deferred_copy(queue_name: str, msg: func.QueueMessage, text: str) -> bool:
    """The message back on its queue, wrapped with a growing delay (gatekeeper/ingest/redelivery.py); False
    when it waited long enough or the copy could not be sent (the host's retries and poison apply)."""
    from gatekeeper.ingest.queue import QUEUE_MESSAGE_LIMIT, send_later
    from gatekeeper.ingest.redelivery import defer_wrapped

    deferral = defer_wrapped(text, datetime.now(UTC), msg.insertion_time, QUEUE_MESSAGE_LIMIT)
    if deferral is None:
        return False
    try:
        send_later(services().request_storage, queue_name, deferral.text, deferral.delay_seconds)
    except Exception as send_failed:
        log.error("%s message %s: could not be deferred (%s)", queue_name, msg.id, type(send_failed).__name__)
        return False
    log.warning(
        "%s message %s: deferred %d s (attempt %d, waiting %d s)",
        queue_name,
        msg.id,
        deferral.delay_seconds,
        deferral.attempt,
        int(deferral.waited.total_seconds()),
    )
    return True


@bp.function_name("dispatch_pipeline_events")
@bp.queue_trigger(arg_name="msg", queue_name=PIPELINE_EVENTS_QUEUE, connection=STORAGE)
@bp.durable_client_input(client_name="client")
async def dispatch_pipeline_events(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    """Dedupe on the business key and start the gate; raising here makes the host retry the message."""
    queue_age(PIPELINE_EVENTS_QUEUE, msg)
    gateway = DurableClientGateway(client, asyncio.get_running_loop())
    try:
        await asyncio.to_thread(_dispatch, msg.get_body(), gateway)
    except Exception as exc:
        if not await asyncio.to_thread(_deferred, msg, exc):
            raise


def _deferred(msg: func.QueueMessage, exc: Exception) -> bool:
    """An accepted event whose dispatch failed (a dependency down, a bug being fixed) goes back to the queue
    with a growing delay instead of toward poison (gatekeeper/ingest/redelivery.py); a copy that met its own
    earlier attempt's claim (ClaimHeld) comes back only after that claim expires. False: let the host retry
    as before (waited too long, or the copy could not be sent)."""
    from gatekeeper.ingest.dispatcher import ClaimHeld
    from gatekeeper.ingest.queue import QUEUE_MESSAGE_LIMIT
    from gatekeeper.ingest.redelivery import defer

    held = exc.until if isinstance(exc, ClaimHeld) else None  # back after the claim expired, never to poison
    text = msg.get_body().decode("utf-8", errors="replace")
    deferral = defer(text, datetime.now(UTC), msg.insertion_time, QUEUE_MESSAGE_LIMIT, until=held)
    if deferral is None:
        log.error("message %s: dispatch failed (%s); retried by the host", msg.id, type(exc).__name__)
        return False
    try:
        services().sink.send_later(deferral.text, deferral.delay_seconds)
    except Exception as send_failed:
        log.error("message %s: could not be deferred (%s); retried by the host", msg.id, type(send_failed).__name__)
        return False
    log.warning(
        "message %s: dispatch failed (%s); deferred %d s (attempt %d, waiting %d s)",
        msg.id,
        type(exc).__name__,
        deferral.delay_seconds,
        deferral.attempt,
        int(deferral.waited.total_seconds()),
    )
    return True


def queue_age(queue: str, msg: func.QueueMessage, now: datetime | None = None) -> None:
    """How long the message waited in its queue (each delivery): a growing age means the dispatcher falls
    behind or keeps failing (the `gatekeeper.queue.age` metric; nothing is recorded unconfigured)."""
    inserted = msg.insertion_time
    if inserted is None:
        return
    if inserted.tzinfo is None:
        inserted = inserted.replace(tzinfo=UTC)
    waited = ((now or datetime.now(UTC)) - inserted).total_seconds()
    telemetry.measure(telemetry.Metric.QUEUE_AGE, max(0.0, waited), queue=queue)


def _dispatch(body: bytes, gateway: DurableClientGateway) -> None:
    from gatekeeper.ingest.queue import decode_message
    from gatekeeper.store.envelope import SealedDataUnreadable

    rt = services()
    text = body.decode("utf-8", errors="replace")
    try:
        queued = decode_message(rt.sealer, text, rt.large_events)
    except ValueError as exc:  # kept with its claim-check blob, if any, for whoever looks at dead letters
        rt.dead_letters.record(PIPELINE_EVENTS_QUEUE, text, f"undecodable: {exc}")
        return
    except SealedDataUnreadable as exc:  # tampered, or moved from another message: retrying cannot help
        rt.record_integrity_failure(exc, f"queue:{PIPELINE_EVENTS_QUEUE}")
        rt.dead_letters.record(PIPELINE_EVENTS_QUEUE, text, f"integrity: sealed event does not open ({exc.reason})")
        return
    result = rt.dispatcher(gateway).dispatch(queued.event, queued.event_id)
    if result.event.kind.value in PSA_DECISION_KINDS:  # recorded or a redelivery: applying is idempotent
        from functions.approvals import decision_service

        for outcome in decision_service(gateway).psa_change(result.event):
            log.info("event %s: PSA change decision on gate %s: %s", queued.event_id, *_psa_line(outcome))
    if result.disposition.value == "recorded" and result.event.kind.value == "alert":  # a duplicate wakes nobody
        try:
            _rmm_alert(result.event, gateway)
        except Exception:  # recorded but not delivered: the retry must deliver it, not find a duplicate
            rt.dispatcher(gateway).release_recorded(result.event)
            raise
    if queued.blob is not None:  # dispatched (or a duplicate): the claim check has served its purpose
        rt.large_events.delete(queued.blob)
    log.info("event %s: %s", queued.event_id, result.disposition.value)


def _rmm_alert(event: PipelineEvent, gateway: DurableClientGateway) -> None:
    """An RMM alert on a device a running watch names (`rmm_devices`) counts against that watch and is
    audited there, as an Azure Monitor alert on its resources does (gatekeeper.rollback.alerts)."""
    from functions.alerts import router
    from gatekeeper.rollback.alerts import connector_alert

    essentials = connector_alert(event)
    if essentials is not None:
        _, answer = router(gateway).deliver(event.tenant_id, essentials)
        log.info("RMM alert %s: %s", essentials.alertId[:64], answer.get("status"))


def _psa_line(outcome: dict[str, object]) -> tuple[object, object]:
    return outcome.get("instance_id"), outcome.get("status")


@bp.function_name("connector_events_poison")
@bp.queue_trigger(arg_name="msg", queue_name=CONNECTOR_EVENTS_QUEUE + "-poison", connection=STORAGE)
def connector_events_poison(msg: func.QueueMessage) -> None:
    _keep_poison(CONNECTOR_EVENTS_QUEUE, msg)


@bp.function_name("pipeline_events_poison")
@bp.queue_trigger(arg_name="msg", queue_name=PIPELINE_EVENTS_QUEUE + "-poison", connection=STORAGE)
def pipeline_events_poison(msg: func.QueueMessage) -> None:
    _keep_poison(PIPELINE_EVENTS_QUEUE, msg)


def _keep_poison(queue: str, msg: func.QueueMessage) -> None:
    text = msg.get_body().decode("utf-8", errors="replace")
    services().dead_letters.record(
        queue, text, f"moved to poison after {msg.dequeue_count} attempts", dequeue_count=msg.dequeue_count
    )
    log.error("message %s from %s dead-lettered after repeated failures", msg.id, queue)
