"""The dispatcher: deduplicate queued events on their business key and start gates, exactly once.

GitHub re-sends the same delivery id on a manual redelivery and a new one on an automatic retry, so the
dedupe key is the business key (source, run id, environment, kind), never the delivery id. Deliveries of
one event are processed concurrently by several workers, and `start_new` on an instance id that finished
replaces it, so "did anybody start it yet?" is decided by a small state machine on the event's row in the
tenant's Events table, never by asking the Durable client first:

    (create-only) received --ETag--> starting --ETag--> started      gate requests
                  received --ETag--> recorded                        status events
                  starting (lease expired) --ETag--> starting        a crashed claimer's row, reclaimed

Every transition is an update conditional on the ETag the worker read, so of any number of workers that
saw the same row exactly one moves it on; only the worker that moved it to `starting` calls the
orchestration gateway. A claim carries its owner and a lease; a claimer whose start fails hands the row
back (`starting -> received`) and raises, so the host's retry claims it again at once. One that dies
leaves `starting`, which another worker may take over once the lease has expired; it then asks whether the
instance exists before starting it, because the dead claimer may have started it already.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
from azure.data.tables import TableClient, UpdateMode

from gatekeeper.events.codec import event_to_sealable
from gatekeeper.events.model import EventKind, PipelineEvent
from gatekeeper.ingest.queue import Sealer
from gatekeeper.store.chunks import split_property
from gatekeeper.store.tables import StorageAccount, TablePurpose, tenant_table_name

log = logging.getLogger(__name__)

ORCHESTRATOR_FOR_KIND: Mapping[EventKind, str] = {
    EventKind.GATE_REQUEST: "deployment_gate",
    EventKind.DEPLOYMENT_STATUS: "post_deploy_watch",
    EventKind.STAGE_STATUS: "post_deploy_watch",
}
"""The one routing table: which orchestrator (by its registered function name, see `orchestrators/`) an
event kind starts. Kinds not listed are recorded for the gates and watchers that read them. A new flow
(the post-deploy watch, a rollback) plugs in here."""
WATCH = "post_deploy_watch"
FINISHED_STATUSES = frozenset({"success", "failure", "error"})
"""A deployment status starts a watch only when the deployment finished (and names its environment); while
it is queued or in progress it is recorded like any other status event."""
EVENT_PARTITION = "event"

CLAIM_LEASE = timedelta(minutes=5)
"""How long a claim on a business key holds before another worker may take it over.

A claimer does at most one `exists` and one `start` call, each bounded at 60 s by the Durable client
gateway (`functions.durable_gateway.CALL_TIMEOUT_SECONDS`), and two table writes: about two minutes in the
worst case. Five minutes leaves room for that, so a slow but live claimer is never overtaken (which would
start the gate twice), and stays below the Functions host's ten-minute lease on a queue message, so when a
claimer dies, its own message, delivered again after that lease, finds the claim expired and finishes."""


class State(StrEnum):
    """The states of an event's row; see the module docstring for the transitions."""

    RECEIVED = "received"
    STARTING = "starting"
    STARTED = "started"
    RECORDED = "recorded"


class ClaimHeld(Exception):
    """This message's own earlier attempt still holds the claim (it died, or failed and could not hand the
    claim back): the message must come back once the claim is finished or has expired (`until`), not be
    called a duplicate. The trigger sends it back with a delay past `until`: the host's own retries (every
    30 s, five times) would run into poison well within the lease."""

    def __init__(self, message: str, until: datetime) -> None:
        super().__init__(message)
        self.until = until


class OrchestrationGateway(Protocol):
    """Starts and inspects orchestrations: the Durable client in Azure, the local runner in development."""

    def exists(self, instance_id: str) -> bool: ...

    def start(self, orchestrator: str, instance_id: str, payload: dict[str, Any]) -> None: ...


class Disposition(StrEnum):
    STARTED = "started"  # a new gate orchestration is running
    RECORDED = "recorded"  # a status event, stored for the gates and watchers that need it
    DUPLICATE = "duplicate"  # the business key was seen before: nothing new happened


@dataclass(frozen=True)
class DispatchResult:
    disposition: Disposition
    event: PipelineEvent

    @property
    def instance_id(self) -> str | None:
        return instance_for(self.event) if orchestrator_for(self.event) is not None else None


def orchestrator_for(event: PipelineEvent) -> str | None:
    """The orchestrator this event starts (from ORCHESTRATOR_FOR_KIND), or None when it is only recorded."""
    name = ORCHESTRATOR_FOR_KIND.get(event.kind)
    if name == WATCH and not (event.environment and event.status in FINISHED_STATUSES):
        return None
    return name


def deployment_key(event: PipelineEvent) -> str:
    """The deployment a status is about, without its status: success and failure of one deployment are one
    watch (source, run, environment)."""
    return hashlib.sha256(
        "|".join(
            [event.tenant_id, event.source.value, event.run_id or event.subject or "", event.environment or ""]
        ).encode()
    ).hexdigest()


def instance_for(event: PipelineEvent) -> str:
    """Gates keep `event.instance_id`; a watch is `watch-` + its deployment key."""
    if orchestrator_for(event) == WATCH:
        return f"watch-{deployment_key(event)[:40]}"
    return event.instance_id


def gate_of(event: PipelineEvent) -> str | None:
    """The gate that let this deployment through, where its business key can be rebuilt: a generic run
    (same run id and environment) or a GitHub deployment (`<run>/deployments/<id>`, the id in `subject`)."""
    run = event.run_id
    if event.subject and event.subject.startswith("deployments/"):
        run = f"{event.run_id}/{event.subject}"
    if not run or event.source.value not in ("generic", "github"):
        return None
    gate = event.model_copy(update={"kind": EventKind.GATE_REQUEST, "run_id": run, "status": None})
    return gate.instance_id


def watch_input(event: PipelineEvent) -> dict[str, Any]:
    return {
        "tenant_id": event.tenant_id,
        "event_key": event.key_hash,
        "instance_id": instance_for(event),
        "gate_id": gate_of(event),
    }


def gate_input(event: PipelineEvent) -> dict[str, Any]:
    """The orchestration input: ids only; the sealed event stays in the tenant's Events table."""
    return {
        "tenant_id": event.tenant_id,
        "event_key": event.key_hash,
        "instance_id": event.instance_id,
        "requested_by": event.actor,
    }


class EventDispatcher:
    def __init__(
        self,
        storage: StorageAccount,
        sealer: Sealer,
        gateway: OrchestrationGateway,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._storage = storage
        self._sealer = sealer
        self._gateway = gateway
        self._clock = clock

    def dispatch(self, event: PipelineEvent, event_id: str) -> DispatchResult:
        table = self._events_table(event.tenant_id)
        table_name = tenant_table_name(event.tenant_id, TablePurpose.EVENTS)
        now = self._clock()
        owner = f"{event_id}/{uuid.uuid4().hex}"  # this attempt: two copies of one message are two owners
        entity = {
            "PartitionKey": EVENT_PARTITION,
            "RowKey": event.key_hash,
            "state": State.RECEIVED.value,
            "claim_owner": owner,
            "lease_until": now + CLAIM_LEASE,
            "kind": event.kind.value,
            "source": event.source.value,
            "event_id": event_id,
            "delivery_id": event.delivery_id or "",
            "received_at": now,
            **split_property(  # long events (inline evidence, big job tokens) span several properties
                "sealed_event",
                self._sealer.seal_json(
                    event.tenant_id, table_name, EVENT_PARTITION, event.key_hash, event_to_sealable(event)
                ),
            ),
        }
        try:
            row: dict[str, Any] = entity
            etag = table.create_entity(entity)["etag"]
        except ResourceExistsError:
            existing = table.get_entity(EVENT_PARTITION, event.key_hash)
            row, etag = dict(existing), existing.metadata["etag"]
        state = row.get("state")
        orchestrator = orchestrator_for(event)
        if orchestrator is None:
            if state == State.RECEIVED and self._move(table, event.key_hash, etag, State.RECORDED) is not None:
                return DispatchResult(Disposition.RECORDED, event)
            log.info("duplicate event %s (key %s)", event_id, event.key_hash[:12])
            return DispatchResult(Disposition.DUPLICATE, event)
        if state == State.STARTING and not self._expired(row, now):
            if str(row.get("claim_owner", "")).startswith(f"{event_id}/"):
                until = row.get("lease_until")
                raise ClaimHeld(
                    f"event {event_id}: an earlier attempt still holds the claim",
                    until if isinstance(until, datetime) else now + CLAIM_LEASE,
                )
            log.info("event %s is being started by another worker (key %s)", event_id, event.key_hash[:12])
            return DispatchResult(Disposition.DUPLICATE, event)
        if state not in (State.RECEIVED, State.STARTING):
            log.info("duplicate event %s (key %s)", event_id, event.key_hash[:12])
            return DispatchResult(Disposition.DUPLICATE, event)
        reclaimed = state == State.STARTING
        claimed = self._move(table, event.key_hash, etag, State.STARTING, owner=owner, now=now)
        if claimed is None:  # another worker moved the row first: it starts the gate
            return DispatchResult(Disposition.DUPLICATE, event)
        if reclaimed:
            log.warning("event %s: reclaimed key %s from an expired claim", event_id, event.key_hash[:12])
        try:
            started = self._start(event, orchestrator)
        except Exception:
            self._release(table, event.key_hash, claimed)
            raise
        if self._move(table, event.key_hash, claimed, State.STARTED) is None:
            log.warning(
                "event %s: the claim on %s expired before the gate was marked started", event_id, event.key_hash[:12]
            )
        if not started:
            return DispatchResult(Disposition.DUPLICATE, event)
        log.info("started %s %s for event %s", orchestrator, instance_for(event), event_id)
        return DispatchResult(Disposition.STARTED, event)

    def release_recorded(self, event: PipelineEvent) -> None:
        """Hand a recorded status event's key back (`recorded` -> `received`) when what follows the recording
        failed (an RMM alert's delivery to the watches): the message's retry then records it and delivers it
        again instead of finding a duplicate, so a failure signal is not lost to a passing error. Best effort
        and ETag-conditional: a key moved meanwhile is left as it is."""
        table = self._events_table(event.tenant_id)
        try:
            row = table.get_entity(EVENT_PARTITION, event.key_hash)
            if row.get("state") == State.RECORDED:
                self._move(table, event.key_hash, str(row.metadata["etag"]), State.RECEIVED)
        except Exception as exc:  # the delivery's own error is the one worth raising
            log.warning("key %s: could not hand back the recorded event (%s)", event.key_hash[:12], type(exc).__name__)

    def _start(self, event: PipelineEvent, orchestrator: str) -> bool:
        """Start the flow unless its instance exists (a dead claimer may have started it). False if it did."""
        instance_id = instance_for(event)
        if self._gateway.exists(instance_id):
            return False
        payload = watch_input(event) if orchestrator == WATCH else gate_input(event)
        try:
            self._gateway.start(orchestrator, instance_id, payload)
        except Exception as exc:
            if "already exists" in str(exc):  # the extension refuses to replace a running instance
                return False
            raise
        return True

    def _release(self, table: TableClient, row_key: str, etag: str) -> None:
        """Hand a claim back after a failed start, so the host's retry claims it at once rather than after
        the lease. Best effort: if the table cannot be written either, the lease expires on its own."""
        try:
            self._move(table, row_key, etag, State.RECEIVED)
        except Exception:  # the start's own error is the one worth raising
            log.warning("event %s: could not hand back the claim; it expires after the lease", row_key[:12])

    def _events_table(self, tenant_id: str) -> TableClient:
        return self._storage.ensure_table(tenant_table_name(tenant_id, TablePurpose.EVENTS))

    @staticmethod
    def _expired(row: dict[str, Any], now: datetime) -> bool:
        lease_until = row.get("lease_until")
        return not isinstance(lease_until, datetime) or lease_until <= now

    @staticmethod
    def _move(
        table: TableClient,
        row_key: str,
        etag: str,
        state: State,
        *,
        owner: str | None = None,
        now: datetime | None = None,
    ) -> str | None:
        """Move the row to `state` if nobody changed it since `etag` was read: the new ETag, or None when
        another worker moved it first. A claim (`owner`) also renews the lease."""
        update: dict[str, Any] = {"PartitionKey": EVENT_PARTITION, "RowKey": row_key, "state": state.value}
        if owner is not None and now is not None:
            update |= {"claim_owner": owner, "lease_until": now + CLAIM_LEASE}
        try:
            result = table.update_entity(
                update, mode=UpdateMode.MERGE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except ResourceModifiedError:
            log.info("event %s was moved on by another worker", row_key[:12])
            return None
        return str(result["etag"])
