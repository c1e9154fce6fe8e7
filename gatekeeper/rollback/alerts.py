"""Azure Monitor alerts (common alert schema) for the post-deploy watch: `POST /api/azure-monitor/alerts`.

Authenticated per tenant like the generic events API: an Entra bearer token (an action group's *secure
webhook*; the token's tenant must be registered) or the tenant header with the tenant's generic API key (a
Logic App or runbook relaying the alert). The tenant comes from the credential, never from the body.

The body is read with the bounded JSON reader and validated (essentials only; the alert context varies by
alert type and is not trusted for decisions). The alert's `alertTargetIDs` are matched, case-insensitively,
against the `alert_resources` of the tenant's watch settings: every running watch of a covered environment
gets the alert, audited as a `health_check`, and is woken to decide at once (a fired alert is unhealthy; a
resolved one is recorded only). An alert naming no registered resource is answered 202 with the reason it
was ignored, like an unknown event type.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gatekeeper.contracts.watch import wake_event_name
from gatekeeper.errors import InvalidInput
from gatekeeper.events.model import EventKind, PipelineEvent
from gatekeeper.ingest.edge import (
    IncomingRequest,
    parse_json_object,
    require_bounded_headers,
    require_json_content_type,
    require_size,
)
from gatekeeper.policy.document import PolicyDocument
from gatekeeper.rollback.control import WakeGateway
from gatekeeper.rollback.store import WatchRecord, WatchState, WatchStore
from gatekeeper.store.envelope import EnvelopeCipher
from gatekeeper.store.tables import StorageAccount

log = logging.getLogger("gatekeeper.rollback.alerts")
SCHEMA_ID = "azureMonitorCommonAlertSchema"
MAX_ALERT_BYTES = 262_144  # Azure Monitor caps a common-schema alert at 256 KB
OPEN_STATES = (WatchState.WATCHING, WatchState.INCONCLUSIVE, WatchState.UNHEALTHY)
ResourceId = Annotated[str, Field(min_length=1, max_length=1000)]


class Essentials(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")  # Microsoft adds fields; only these are read

    alertId: str = Field(min_length=1, max_length=1000)
    alertRule: str = Field(min_length=1, max_length=500)
    severity: str = Field(default="", max_length=20)
    signalType: str = Field(default="", max_length=50)
    monitorCondition: Literal["Fired", "Resolved"]
    monitoringService: str = Field(default="", max_length=100)
    alertTargetIDs: list[ResourceId] = Field(min_length=1, max_length=100)
    firedDateTime: str | None = Field(default=None, max_length=40)
    # An RMM alert's own id (Datto RMM alert uid, NinjaOne alert uid): resolved after a successful rollback.
    rmmAlertUid: str | None = Field(default=None, max_length=200)


class AlertData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    essentials: Essentials


class CommonAlert(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    schemaId: Literal["azureMonitorCommonAlertSchema"]
    data: AlertData


def parse_alert(request: IncomingRequest) -> Essentials:
    """The alert's essentials, or InvalidInput naming the field (size, content type and depth bounded first)."""
    require_size(request, MAX_ALERT_BYTES)
    require_bounded_headers(request)
    require_json_content_type(request)
    document = parse_json_object(request.body)
    try:
        essentials = CommonAlert.model_validate(document).data.essentials
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        detail = f"{field}: {first['msg']}"
        if field == "schemaId":
            detail = f"schemaId: must be '{SCHEMA_ID}' (enable the common alert schema on the action group)"
        raise InvalidInput(detail, field=field, errors=[{"field": field, "message": first["msg"]}]) from None
    # Only an RMM's own authenticated webhook names an RMM alert to resolve (connector_alert), never this route.
    return essentials.model_copy(update={"rmmAlertUid": None})


CONNECTOR_SOURCES = frozenset({"ninjarmm", "dattormm", "autotask", "connectwise", "halopsa"})


def connector_alert(event: PipelineEvent) -> Essentials | None:
    """An RMM (or PSA device) alert from a connector as the watch's alert essentials: its target is
    `<connector>:device:<id>`, which a watch names in the policy's `rmm_devices` (issue 15). None for any
    other event, or an alert that names no device."""
    if event.kind is not EventKind.ALERT or event.source.value not in CONNECTOR_SOURCES or not event.subject:
        return None
    fired = event.status != "resolved"
    severity = next(
        (label.split(":", 1)[1] for label in event.labels if label.startswith(("severity:", "priority:"))), ""
    )
    return Essentials(
        alertId=(event.run_id or event.delivery_id or event.subject)[:1000],
        alertRule=(event.summary or f"{event.source.value} alert")[:500],
        severity=severity[:20],
        signalType="rmm",
        monitorCondition="Fired" if fired else "Resolved",
        monitoringService=event.source.value,
        alertTargetIDs=[f"{event.source.value}:device:{event.subject}".lower()[:1000]],
        rmmAlertUid=_rmm_alert_uid(event),
    )


RMM_ALERT_LABEL = "alert:"


def _rmm_alert_uid(event: PipelineEvent) -> str | None:
    """The id the RMM resolves the alert by: Datto RMM's alert uid (the event's run id), NinjaOne's alert uid
    (the condition's `seriesUid`, carried as the `alert:<uid>` label)."""
    if event.source.value == "dattormm":
        return (event.run_id or "")[:200] or None
    if event.source.value == "ninjarmm":
        found = next((label for label in event.labels if label.startswith(RMM_ALERT_LABEL)), None)
        return found[len(RMM_ALERT_LABEL) :][:200] or None if found else None
    return None


def _normal(resource_id: str) -> str:
    return resource_id.strip().lower().rstrip("/")


class AlertRouter:
    """Delivers one authenticated tenant's alert to the watches it concerns."""

    def __init__(
        self,
        storage: StorageAccount,
        cipher: EnvelopeCipher,
        gateway: WakeGateway,
        *,
        policy_for: Callable[[str], PolicyDocument],
        audit_for: Callable[[str], Any],
        clock: Callable[[], datetime],
    ):
        self._storage = storage
        self._cipher = cipher
        self._gateway = gateway
        self._policy_for = policy_for
        self._audit_for = audit_for
        self._clock = clock

    def receive(
        self, request: IncomingRequest, authenticate: Callable[[IncomingRequest], str]
    ) -> tuple[int, dict[str, Any]]:
        """The route: bound the request, authenticate the tenant (401 before the body is read), parse, deliver."""
        require_size(request, MAX_ALERT_BYTES)
        require_bounded_headers(request)
        tenant_id = authenticate(request)
        return self.deliver(tenant_id, parse_alert(request))

    def deliver(self, tenant_id: str, alert: Essentials) -> tuple[int, dict[str, Any]]:
        policy = self._policy_for(tenant_id)
        targets = {_normal(t) for t in alert.alertTargetIDs}
        store = WatchStore(self._storage, tenant_id, self._cipher)
        matched = [w for w in self._open_watches(store) if self._concerns(policy, w, targets)]
        if not matched:
            return 202, {
                "status": "ignored",
                "reason": "no running watch of an environment that registers these alert target resources",
            }
        line = f"{alert.alertRule} ({alert.severity or 'no severity'}) {alert.monitorCondition.lower()}"
        delivered = []
        for record in matched:
            fired = alert.monitorCondition == "Fired"
            rmm_alert = f"{alert.monitoringService}:{alert.rmmAlertUid}" if alert.rmmAlertUid else None
            changed = self._record(store, record.instance_id, line if fired else None, rmm_alert)
            source = alert.monitoringService if alert.monitoringService in CONNECTOR_SOURCES else "azure-monitor"
            self._audit_for(tenant_id).append(
                "health_check",
                source,
                record.instance_id,
                f"{record.deployment.repository or ''} {record.deployment.environment}".strip()[:1000],
                {
                    "source": source,
                    "alert_rule": alert.alertRule[:200],
                    "severity": alert.severity,
                    "condition": alert.monitorCondition,
                    "signal": alert.signalType,
                    "targets": sorted(targets)[:10],
                    "result": "fail" if fired else "recorded",
                },
                at=self._clock(),
            )
            if fired and changed is not None:
                try:
                    self._gateway.raise_event(
                        changed.instance_id, wake_event_name(changed.wakes - 1), {"kind": "alert"}
                    )
                except Exception as exc:  # recorded and audited; the next probe round reads it
                    _unwake(store, changed)
                    log.info(
                        "alert for %s not delivered to the orchestration: %s", changed.instance_id, type(exc).__name__
                    )
            delivered.append(record.instance_id)
        return 202, {"status": "accepted", "watches": delivered, "condition": alert.monitorCondition}

    def _open_watches(self, store: WatchStore) -> Iterable[WatchRecord]:
        return store.in_states(OPEN_STATES)

    @staticmethod
    def _concerns(policy: PolicyDocument, record: WatchRecord, targets: set[str]) -> bool:
        spec = policy.watch_for(record.deployment.environment)
        return spec is not None and not targets.isdisjoint({*spec.alert_resources, *spec.rmm_devices})

    def _record(
        self, store: WatchStore, watch_id: str, line: str | None, rmm_alert: str | None = None
    ) -> WatchRecord | None:
        """Add the alert to the watch (a fired one counts one more wake), ETag-conditionally; an RMM alert's id
        is kept to resolve it after a successful rollback."""
        if line is None:
            return None
        now = self._clock()

        def update(r: WatchRecord) -> dict[str, Any]:
            changes: dict[str, Any] = {"alerts": (*r.alerts, line[:300])[-50:], "wakes": r.wakes + 1, "updated_at": now}
            if rmm_alert and rmm_alert not in r.rmm_alerts:
                changes["rmm_alerts"] = (*r.rmm_alerts, rmm_alert[:250])[-50:]
            return changes

        try:
            return store.change(watch_id, update)
        except LookupError:
            return None


def _unwake(store: WatchStore, changed: WatchRecord) -> None:
    """Take back the wake an alert counted but could not raise (the task hub unreachable, or the watch ended),
    unless another change counted one after it: a number never raised would leave the orchestration waiting
    on it, deaf to every later wake (a person's hold or rollback request) until its next timer. Best effort."""

    def update(current: WatchRecord) -> dict[str, Any]:
        return {"wakes": current.wakes - 1} if current.wakes == changed.wakes else {}

    with contextlib.suppress(Exception):
        store.change(changed.instance_id, update)
