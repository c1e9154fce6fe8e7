"""The dispatcher: deduplicate queued events on their business key and start gates.

GitHub re-sends the same delivery id on a manual redelivery and a new one on an automatic retry, so the
dedupe key is the business key (source, run id, environment, kind), never the delivery id. The record is
created first (create-only, so two workers racing on one key cannot both win) and only then is the
orchestration started, under an instance id derived from the same key. If starting fails, the message is
retried: the record stays "received", and the retry finishes the job instead of calling it a duplicate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
from azure.data.tables import TableClient, UpdateMode

from gatekeeper.events.codec import event_to_sealable
from gatekeeper.events.model import PipelineEvent
from gatekeeper.ingest.queue import Sealer
from gatekeeper.store.tables import StorageAccount, TablePurpose, tenant_table_name

log = logging.getLogger(__name__)

GATE_ORCHESTRATOR = "deployment_gate"
EVENT_PARTITION = "event"


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
        return self.event.instance_id if self.event.is_gate_request else None


def gate_input(event: PipelineEvent) -> dict[str, Any]:
    """The orchestration input: ids only; the sealed event stays in the tenant's Events table."""
    return {
        "tenant_id": event.tenant_id,
        "event_key": event.key_hash,
        "instance_id": event.instance_id,
        "requested_by": event.actor,
    }


class EventDispatcher:
    def __init__(self, storage: StorageAccount, sealer: Sealer, gateway: OrchestrationGateway):
        self._storage = storage
        self._sealer = sealer
        self._gateway = gateway

    def dispatch(self, event: PipelineEvent, event_id: str) -> DispatchResult:
        table = self._events_table(event.tenant_id)
        table_name = tenant_table_name(event.tenant_id, TablePurpose.EVENTS)
        now = datetime.now(UTC)
        entity = {
            "PartitionKey": EVENT_PARTITION,
            "RowKey": event.key_hash,
            "state": "received",
            "kind": event.kind.value,
            "source": event.source.value,
            "event_id": event_id,
            "delivery_id": event.delivery_id or "",
            "received_at": now,
            "sealed_event": self._sealer.seal_json(
                event.tenant_id, table_name, EVENT_PARTITION, event.key_hash, event_to_sealable(event)
            ),
        }
        try:
            etag = table.create_entity(entity)["etag"]
        except ResourceExistsError:
            existing = table.get_entity(EVENT_PARTITION, event.key_hash)
            if existing["state"] != "received" or not event.is_gate_request:
                log.info("duplicate event %s (key %s)", event_id, event.key_hash[:12])
                return DispatchResult(Disposition.DUPLICATE, event)
            etag = existing.metadata["etag"]  # an earlier attempt stored it but did not start the gate
        if not event.is_gate_request:
            self._mark(table, event.key_hash, etag, "recorded")
            return DispatchResult(Disposition.RECORDED, event)
        if self._gateway.exists(event.instance_id):
            self._mark(table, event.key_hash, etag, "started")
            return DispatchResult(Disposition.DUPLICATE, event)
        self._gateway.start(GATE_ORCHESTRATOR, event.instance_id, gate_input(event))
        self._mark(table, event.key_hash, etag, "started")
        log.info("started gate %s for event %s", event.instance_id, event_id)
        return DispatchResult(Disposition.STARTED, event)

    def _events_table(self, tenant_id: str) -> TableClient:
        return self._storage.ensure_table(tenant_table_name(tenant_id, TablePurpose.EVENTS))

    @staticmethod
    def _mark(table: TableClient, row_key: str, etag: str, state: str) -> None:
        """Advance the record's state; the ETag guard keeps a slower worker from moving it backwards."""
        update = {"PartitionKey": EVENT_PARTITION, "RowKey": row_key, "state": state}
        try:
            table.update_entity(update, mode=UpdateMode.MERGE, etag=etag, match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            log.info("event %s was advanced by another worker", row_key[:12])
