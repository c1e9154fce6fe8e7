"""What every gate step shares: the sealed event, the audit append, a notification that never fails a gate.

Every step appends to the tenant's audit log. Remote failures of notifications are results (audited), not
exceptions; a failed pipeline callback raises, so the orchestrator's retry policy applies.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from gatekeeper.events.codec import event_from_sealable
from gatekeeper.events.model import PipelineEvent
from gatekeeper.failures import record_integrity_failure
from gatekeeper.gates import once
from gatekeeper.integrations.notify import Notification
from gatekeeper.store.chunks import join_property
from gatekeeper.store.envelope import SealedDataUnreadable
from gatekeeper.store.tables import TablePurpose, tenant_table_name

if TYPE_CHECKING:
    from gatekeeper.gates.needs import GateNeeds

log = logging.getLogger("gatekeeper.gates")

SYSTEM_ACTOR = "gatekeeper"
EVENT_PARTITION = "event"  # the dispatcher's Events table layout


class CallbackFailed(RuntimeError):
    """The pipeline did not acknowledge the callback; raised so the orchestrator's retry policy applies.
    The message is the integration's scrubbed detail (never a token)."""


def at_or_now(at: datetime | None, services: GateNeeds) -> datetime:
    """The orchestrator's (deterministic) time of the step, or now when it sent none."""
    return at if at is not None else services.clock()


def load_event(services: GateNeeds, tenant_id: str, event_key: str) -> PipelineEvent:
    """The sealed event the dispatcher stored: Events table, PartitionKey "event", RowKey = key hash."""
    table = services.storage.tenant_table(tenant_id, TablePurpose.EVENTS)
    entity = table.get_entity(EVENT_PARTITION, event_key)
    try:
        document = services.cipher.open_json(
            tenant_id,
            tenant_table_name(tenant_id, TablePurpose.EVENTS),
            EVENT_PARTITION,
            event_key,
            join_property(entity, "sealed_event"),
        )
    except SealedDataUnreadable as exc:  # moved or tampered: named, logged and audited, then the gate fails
        record_integrity_failure(services.audit_for, exc, "activity:load_event")
        raise
    return event_from_sealable(document)


_CONTROL_RUNS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def one_line(text: str) -> str:
    """`text` with every run of control characters (line breaks, tabs, C1) as one space: titles from events
    become audit subjects and notification titles, which are single lines by contract."""
    return _CONTROL_RUNS.sub(" ", text).strip()


def gate_title(event: PipelineEvent) -> str:
    what = (event.action.value if event.action else event.kind.value).replace("_", " ")
    where = f" to {event.environment}" if event.environment else ""
    repo = f" of {event.repository}" if event.repository else ""
    ref = f" ({event.ref.removeprefix('refs/heads/')})" if event.ref else ""
    return one_line(event.summary or f"{what}{repo}{ref}{where}")[:200] or what


def append_audit(
    services: GateNeeds,
    tenant_id: str,
    kind: str,
    instance_id: str,
    subject: str,
    data: dict[str, Any],
    at: datetime,
    actor: str = SYSTEM_ACTOR,
) -> None:
    """Append the entry, then note its sequence number with the gate (`GateStore.note_audit`), so the approval
    view names the gate's audit entries without scanning the log. In an activity's run after an earlier run
    failed or died half-way (`gatekeeper.gates.once`), the entry that run appended is reused, not appended
    again."""
    seq: object = once.appended_before(kind, instance_id, at)
    if seq is None:
        entry = services.audit_for(tenant_id).append(kind, actor, instance_id, subject[:1000], data, at=at)
        seq = getattr(entry, "seq", None)
        if isinstance(seq, int):
            once.appended(seq)
    if instance_id and isinstance(seq, int):
        services.gates(tenant_id).note_audit(instance_id, seq, kind, at)


def notify_people(
    services: GateNeeds, tenant_id: str, instance_id: str, fields: dict[str, Any], at: datetime
) -> dict[str, Any]:
    """Send one notification and audit the result; a notifier failure is a result, never an exception."""
    recipients = tuple(fields.get("recipients") or ())
    if not recipients:
        outcome = {"ok": False, "detail": "no recipients configured", "kind": fields.get("kind")}
    else:
        try:
            notification = Notification.model_validate({**fields, "recipients": recipients})
            result = services.notifier.notify(tenant_id, notification)
            outcome = {"ok": result.ok, "detail": result.detail, "kind": notification.kind}
        except ValidationError as exc:
            outcome = {
                "ok": False,
                "detail": f"notification not sent: {exc.errors()[0]['msg']}",
                "kind": fields.get("kind"),
            }
        except Exception as exc:  # a notifier must not take the gate down; the failure is audited
            log.warning("notification for %s failed: %s", instance_id, type(exc).__name__)
            outcome = {"ok": False, "detail": f"notification failed: {type(exc).__name__}", "kind": fields.get("kind")}
    append_audit(
        services,
        tenant_id,
        "notification",
        instance_id,
        str(fields.get("title", ""))[:200],
        {**outcome, "recipients": len(recipients)},
        at,
    )
    return outcome
