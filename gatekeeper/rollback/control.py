"""People's control of a watch: see it, hold automatic rollback, roll back now. The routes
(`GET /api/deployments/{id}`, `POST .../hold`, `POST .../rollback`) are thin; the rules live here.

Who may: a person (never an app-only identity) from one of the tenant's Entra tenants who is a tenant
operator, or an approver named by the gate that let the deployment through or by the environment's rollback
chain (object id, UPN or group). Every change is audited (`rollback`, with the person's object id) and wakes
the orchestration with a numbered event (`watch-wake-<n>`), so it reassesses at once; the state itself lives
in the watch record, so a wake that arrives twice changes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gatekeeper import json_bounded
from gatekeeper.approvals.authenticate import require_person
from gatekeeper.audit.lookup import find_entry
from gatekeeper.contracts.watch import wake_event_name
from gatekeeper.errors import Conflict, DependencyUnavailable, Forbidden, Gone, InvalidInput, NotFound
from gatekeeper.gates.store import GateIndex, GateStore
from gatekeeper.policy.document import PolicyDocument
from gatekeeper.rollback.store import WatchRecord, WatchState, WatchStore
from gatekeeper.security.principal import Principal, wrong_tenant
from gatekeeper.store.envelope import EnvelopeCipher
from gatekeeper.store.tables import StorageAccount

MAX_BODY_BYTES = 4096
ENDED = frozenset({WatchState.HEALTHY, WatchState.ROLLED_BACK, WatchState.ROLLBACK_FAILED, WatchState.HUMAN_TASK})


class WakeGateway(Protocol):
    def raise_event(self, instance_id: str, event_name: str, data: Any) -> None: ...


class HoldRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    hold: bool = True  # false releases the hold
    reason: str = Field(default="", max_length=500)


class RollbackRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str = Field(default="", max_length=500)


def not_found() -> NotFound:
    return NotFound("No watched deployment with this id exists.", code="deployment-not-found", title="Not found")


def _parse(body: bytes, model: type[BaseModel]) -> Any:
    data = json_bounded.body_object(body, max_bytes=MAX_BODY_BYTES, empty_is_object=True)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(f"{field}: {first['msg']}", field=field) from None


def view(record: WatchRecord) -> dict[str, Any]:
    """What an on-call engineer sees: the deployment, the watch's state and why, the last probes, the
    rollback and its run."""
    run = record.rollback
    return {
        "id": record.instance_id,
        "deployment": record.deployment.model_dump(mode="json"),
        "gate_id": record.gate_id,
        "is_rollback": record.is_rollback,
        "state": record.state.value,
        "held": record.held,
        "held_by": record.held_by,
        "reasons": list(record.reasons),
        "rounds": len(record.rounds),
        "failed_rounds": record.rounds.count("fail"),
        "last_probes": list(record.probes),
        "alerts": list(record.alerts),
        "started_at": record.started_at.isoformat(),
        "ends_at": record.ends_at.isoformat() if record.ends_at else None,
        "rollback": run.model_dump(mode="json") if run is not None else None,
    }


def _still_watching(record: WatchRecord) -> None:
    if record.state in ENDED:
        raise Gone(f"The watch has ended ({record.state.value}).", code="watch-ended", title="Watch ended")


def _may_roll_back(record: WatchRecord) -> None:
    _still_watching(record)
    if record.is_rollback:
        raise Conflict(
            "This deployment is itself a rollback: it is not rolled back automatically; redeploy instead.",
            code="rollback-of-rollback",
            title="No rollback of a rollback",
        )
    if record.rollback is not None or record.requested_by:
        raise Conflict("A rollback of this deployment was already started.", code="rollback-started")


class DeploymentControl:
    def __init__(
        self,
        storage: StorageAccount,
        cipher: EnvelopeCipher,
        gateway: WakeGateway,
        *,
        entra_tenants_for: Callable[[str], Iterable[str]],
        operators_for: Callable[[str], tuple[str, ...]],
        policy_for: Callable[[str], PolicyDocument],
        audit_for: Callable[[str], Any],
        clock: Callable[[], datetime],
    ):
        self._storage = storage
        self._cipher = cipher
        self._gateway = gateway
        self._entra_tenants_for = entra_tenants_for
        self._operators_for = operators_for
        self._policy_for = policy_for
        self._audit_for = audit_for
        self._clock = clock
        self._index = GateIndex(storage)

    # ----- routes ----------------------------------------------------------------------------------------

    def state(self, watch_id: str, principal: Principal) -> tuple[int, dict[str, Any]]:
        _, record = self._watch(watch_id, principal)
        return 200, view(record)

    def hold(self, watch_id: str, principal: Principal, body: bytes) -> tuple[int, dict[str, Any]]:
        store, _ = self._watch(watch_id, principal)
        request: HoldRequest = _parse(body, HoldRequest)
        changes = {"held": request.hold, "held_by": principal.oid if request.hold else None}
        changed, before = self._change(store, watch_id, _still_watching, changes)
        self._wake(store, changed, before, {"kind": "hold" if request.hold else "release"})
        self._audit(changed, principal, "hold" if request.hold else "released", request.reason)
        return 200, view(changed)

    def rollback(self, watch_id: str, principal: Principal, body: bytes) -> tuple[int, dict[str, Any]]:
        store, record = self._watch(watch_id, principal)
        request: RollbackRequest = _parse(body, RollbackRequest)
        if record.requested_by == principal.oid and record.request_audit_from is not None:
            finished = self._audit_request(store, record, principal, request.reason, look=True)
            if finished is not None:  # this person's request was woken, its audit failed: audited now
                return 202, view(finished)
        noted = self._audit_for(record.tenant_id).head().size
        changes = {"requested_by": principal.oid, "request_audit_from": noted}
        changed, before = self._change(store, watch_id, _may_roll_back, changes)
        self._wake(store, changed, before, {"kind": "rollback"})
        self._audit_request(store, changed, principal, request.reason, look=False)
        return 202, view(changed)

    # ----- steps -------------------------------------------------------------------------------------------

    def _watch(self, watch_id: str, principal: Principal) -> tuple[WatchStore, WatchRecord]:
        principal = require_person(principal)
        if not watch_id.startswith("watch-") or len(watch_id) > 100 or not watch_id.replace("-", "").isalnum():
            raise not_found()
        tenant_id = self._index.tenant_of(watch_id)
        if tenant_id is None:
            raise not_found()
        allowed = {t.strip().lower() for t in self._entra_tenants_for(tenant_id)}
        if principal.tid.lower() not in allowed:
            raise wrong_tenant()
        store = WatchStore(self._storage, tenant_id, self._cipher)
        record = store.load(watch_id)
        if record is None:
            raise not_found()
        if not self._may_act(record, principal):
            raise Forbidden(
                "Only the tenant's operators and the approvers of this deployment may see or control its watch.",
                code="not-allowed",
                title="Not an operator or approver",
            )
        return store, record

    def _people(self, record: WatchRecord) -> set[str]:
        people = {p.strip().lower() for p in self._operators_for(record.tenant_id)}
        if record.gate_id:
            gate = GateStore(self._storage, record.tenant_id, self._cipher).load(record.gate_id)
            if gate is not None and gate.plan is not None:
                for stage in gate.plan.stages:
                    people |= set(stage.users) | {f"group:{g}" for g in stage.groups}
        spec = self._policy_for(record.tenant_id).watch_for(record.deployment.environment)
        if spec is not None and spec.rollback.approval is not None:
            for stage_spec in spec.rollback.approval.stages:
                people |= {a.strip().lower() for a in stage_spec.approvers}
        return people

    def _may_act(self, record: WatchRecord, principal: Principal) -> bool:
        people = self._people(record)
        mine = {principal.oid.lower(), *((principal.upn.lower(),) if principal.upn else ())}
        mine |= {f"group:{g.lower()}" for g in principal.groups}
        return not people.isdisjoint(mine)

    def _change(
        self, store: WatchStore, watch_id: str, allowed: Callable[[WatchRecord], None], changes: dict[str, Any]
    ) -> tuple[WatchRecord, dict[str, Any]]:
        """Apply `changes` and count one more wake, ETag-conditionally (a concurrent change retries). `allowed`
        judges the record as it is stored right before the write, not as the route first read it: a watch
        that ended meanwhile (its orchestration's last write) or a rollback another person started meanwhile
        refuses the request, and nothing is stored, audited or woken."""
        now = self._clock()
        before: dict[str, Any] = {}  # what the change replaced, as stored right before it (for `_undo`)

        def update(record: WatchRecord) -> dict[str, Any]:
            allowed(record)
            before.clear()
            before.update({name: getattr(record, name) for name in changes})
            return {**changes, "wakes": record.wakes + 1, "updated_at": now}

        try:
            changed = store.change(watch_id, update)
        except LookupError:
            raise Conflict("The watch is changing too fast; try again.", code="busy") from None
        if changed is None:
            raise not_found()
        return changed, before

    def _audit(self, record: WatchRecord, principal: Principal, step: str, reason: str) -> None:
        self._audit_for(record.tenant_id).append(
            "rollback",
            principal.oid,
            record.instance_id,
            f"{record.deployment.repository or ''} {record.deployment.environment}".strip()[:1000],
            {
                "step": step,
                "result": {"hold": "held", "released": "hold released"}.get(step, "rollback requested"),
                "reason": reason[:500] or "no reason given",
                "by": principal.oid,
            },
            at=self._clock(),
        )

    def _audit_request(
        self, store: WatchStore, record: WatchRecord, principal: Principal, reason: str, *, look: bool
    ) -> WatchRecord | None:
        """Audit a rollback request the orchestration was woken for, once. The request's row notes where the
        audit log stood (`request_audit_from`) until the entry is written: the wake cannot be undone, so if the
        append fails the note stays and the same person's retry audits it (`look`: after finding no entry of
        it from there). The note is taken ETag-conditionally first, so of a request and its concurrent retry
        one audits; None when another took it."""
        noted = record.request_audit_from
        taken: list[bool] = []

        def take(current: WatchRecord) -> dict[str, Any]:
            taken[:] = [noted is not None and current.request_audit_from == noted]
            return {"request_audit_from": None} if taken[0] else {}

        try:
            changed = store.change(record.instance_id, take)
        except LookupError:
            raise Conflict("The watch is changing too fast; try again.", code="busy") from None
        if changed is None or not taken[0] or noted is None:
            return None
        log = self._audit_for(record.tenant_id)

        def mine(data: Any) -> bool:
            return data.get("step") == "requested" and data.get("by") == principal.oid

        try:
            if not look or find_entry(log, noted, "rollback", record.instance_id, mine) is None:
                self._audit(record, principal, "requested", reason)
        except Exception:

            def put_back(current: WatchRecord) -> dict[str, Any]:
                return {"request_audit_from": noted} if current.request_audit_from is None else {}

            with contextlib.suppress(Exception):  # the person's retry audits it
                store.change(record.instance_id, put_back)
            raise
        return changed

    def _wake(self, store: WatchStore, record: WatchRecord, before: dict[str, Any], data: dict[str, Any]) -> None:
        """Raise the change's numbered wake. When the orchestration has ended (410) or cannot be reached (503),
        the change is undone (ETag-conditionally, unless another change followed it): a change whose wake
        never arrived would sit unseen (a rollback requested while people were asked is lost at the deadline),
        and its retry would be refused as already done or wake a number the orchestration is not waiting on."""
        try:
            self._gateway.raise_event(record.instance_id, wake_event_name(record.wakes - 1), data)
        except Exception as exc:
            # The SDK's texts for the extension's 410 ("... is gone: either completed or failed") and 404 ("No
            # instance with ID ... found."), besides the earlier "not running" and "not found".
            text = str(exc).lower()
            self._undo(store, record, before)  # an ended watch, like an unreachable one, keeps nothing
            if any(word in text for word in ("is gone", "no instance", "not running", "not found")):
                raise Gone("The watch has ended.", code="watch-ended", title="Watch ended") from None
            raise DependencyUnavailable(
                "The watch's orchestration could not be reached; your change was not kept. Try again.",
                code="orchestration-unavailable",
                title="Try again",
            ) from exc

    def _undo(self, store: WatchStore, record: WatchRecord, before: dict[str, Any]) -> None:
        """Put back what `_change` replaced, if the watch is still exactly as it left it. Best effort."""

        def update(current: WatchRecord) -> dict[str, Any]:
            if current.wakes != record.wakes or not before:  # changed again since: its own wake carries on
                return {}
            return {**before, "wakes": current.wakes - 1}

        with contextlib.suppress(Exception):
            store.change(record.instance_id, update)
