"""Gate lifecycle facts as CloudEvents 1.0 for the event mesh (docs/integrations.md, "Event mesh").

Why a module of its own: the gate and watch steps already audit these facts; each step calls `publish` once
with events built here, so every fact is published from exactly one place and the content rules live in one
file. What an event may carry is an allow-list per type (`DATA_FIELDS`, enforced by strict models): ids,
level, status or outcome, booleans and links (the approval page, a rollback run's URL). Never titles,
repository names, refs, commits, comments, reasons, requester or approver addresses, probe details or
anything else from the sealed event: a subscriber follows the approval link and signs in for those.

Ids are deterministic (UUIDv5 over type, tenant and subject), and `time` is the step's orchestration time, so
a fact published again (an activity retried by Durable) is the same CloudEvent and subscribers deduplicate on
`source` + `id`. Publishing never fails a gate: a refused batch is audited (`event_publish_failed`) and sent
to telemetry (`EventPublishFailed`); the adapter already retried within its bound.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from gatekeeper import telemetry
from gatekeeper.ports import EventPublisher, MeshEvent

log = logging.getLogger("gatekeeper.mesh")

TYPE_PREFIX = "com.gatekeeper."
ID_NAMESPACE = uuid.UUID("6f1d3f0e-6a35-5d2b-9d0e-3c5b1f6a9e21")

EventType = Literal[
    "gate.requested",
    "gate.decided",
    "gate.completed",
    "deployment.watched",
    "rollback.dispatched",
    "rollback.finished",
    "rollback.escalated",
]

Level = Literal["L0", "L1", "L2", "L3"]
Id = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:@-]+$")
Link = Field(default=None, max_length=2000, pattern=r"^https?://\S+$")


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str = Id


class GateRequested(_Data):
    gate_id: str = Id
    level: Level
    blocked: bool
    status: Literal["awaiting_approval", "evaluated"]
    approval_url: str | None = Link


class GateDecided(_Data):
    gate_id: str = Id
    level: Level | None
    status: Literal["approved", "rejected", "human_task"]
    decided_by: Literal["automation", "approvers", "timeout", "person"]
    approval_url: str | None = Link


class GateCompleted(_Data):
    gate_id: str = Id
    level: Level | None
    status: Literal["approved", "rejected", "human_task"]
    callback_ok: bool | None
    approval_url: str | None = Link


class DeploymentWatched(_Data):
    watch_id: str = Id
    gate_id: str | None = Field(default=None, max_length=200, pattern=r"^[A-Za-z0-9._:@-]+$")
    outcome: Literal["healthy", "rolled_back", "rollback_failed", "human_task", "asked", "rejected", "not_watched"]
    is_rollback: bool


class RollbackDispatched(_Data):
    watch_id: str = Id
    ok: bool
    level: Level | None
    target: Literal["github", "azure-devops", "webhook"] | None
    run_url: str | None = Link


class RollbackFinished(_Data):
    watch_id: str = Id
    conclusion: str = Field(max_length=40, pattern=r"^[a-z_]+$")
    run_url: str | None = Link


class RollbackEscalated(_Data):
    watch_id: str = Id
    level: Level


DATA_MODELS: dict[str, type[_Data]] = {
    "gate.requested": GateRequested,
    "gate.decided": GateDecided,
    "gate.completed": GateCompleted,
    "deployment.watched": DeploymentWatched,
    "rollback.dispatched": RollbackDispatched,
    "rollback.finished": RollbackFinished,
    "rollback.escalated": RollbackEscalated,
}

DATA_FIELDS: dict[str, frozenset[str]] = {name: frozenset(model.model_fields) for name, model in DATA_MODELS.items()}


def event_source(deployment: str, tenant_id: str) -> str:
    """`/gatekeeper/<deployment>/tenants/<tenant>`: CloudEvents `source`, a URI-reference."""
    return f"/gatekeeper/{deployment}/tenants/{tenant_id}"


def event_id(kind: str, tenant_id: str, subject: str) -> str:
    """The same fact always gets the same id (one per type, tenant and gate or watch)."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{kind}\n{tenant_id}\n{subject}"))


def build(kind: EventType, deployment: str, subject: str, at: datetime, **data: Any) -> MeshEvent:
    """One event; `data` is checked against the type's allow-list (an extra field is a programming error)."""
    body = DATA_MODELS[kind].model_validate(data)
    tenant_id = body.tenant_id
    return MeshEvent(
        id=event_id(kind, tenant_id, subject),
        source=event_source(deployment, tenant_id),
        type=TYPE_PREFIX + kind,
        subject=subject,
        time=at if at.tzinfo else at.replace(tzinfo=UTC),
        data=body.model_dump(mode="json"),
        extensions={"tenantid": tenant_id},
    )


class MeshNeeds(Protocol):
    """What publishing needs from the process (`gatekeeper.services.Services` has this shape)."""

    @property
    def events(self) -> EventPublisher: ...

    @property
    def mesh_deployment(self) -> str: ...

    def audit_for(self, tenant_id: str) -> Any: ...


def publish(services: MeshNeeds, tenant_id: str, make: Callable[[str], tuple[MeshEvent, ...]], at: datetime) -> bool:
    """Build (with the deployment's name) and publish one step's events; never raises. A refused batch is
    audited and counted; True when the mesh took them or publishing is off."""
    kinds: list[str] = []
    instance_id: str | None = None
    try:
        events = make(services.mesh_deployment)
        kinds = [e.type for e in events]
        instance_id = events[0].subject if events else None
        result = services.events.publish(tenant_id, events)
    except Exception as exc:  # a bug or an adapter surprise must not fail the gate: record it like a refusal
        log.warning("event mesh: publishing for %s failed: %s", tenant_id, type(exc).__name__)
        status_code, detail, ok = None, f"publishing failed: {type(exc).__name__}", False
    else:
        status_code, detail, ok = result.status_code, result.detail, result.ok
    if ok:
        return True
    try:
        services.audit_for(tenant_id).append(
            "event_publish_failed",
            "gatekeeper",
            instance_id,
            ", ".join(kinds)[:200] or "event mesh",
            {"types": kinds, "status_code": status_code, "detail": detail[:300]},
            at=at,
        )
        telemetry.emit(
            telemetry.Event.EVENT_PUBLISH_FAILED,
            tenant=tenant_id,
            instance_id=instance_id,
            types=",".join(k.removeprefix(TYPE_PREFIX) for k in kinds),
            status_code=status_code,
        )
    except Exception as exc:
        log.warning("event mesh: the failure for %s could not be recorded: %s", tenant_id, type(exc).__name__)
    return False
