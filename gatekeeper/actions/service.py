"""The action-approval API (docs/openapi/actions.yaml): request, status (long poll), cancel, report.

An action is a gate of kind action. `request` authenticates the caller (`actions.caller`), validates the
strict body, decides the level with the same policy the gate uses (so L0/L1 and L3 answer at once), claims
the idempotency key create-only, and hands the same normalised event to the same queue as every gate
request: the dispatcher starts `deployment_gate`, whose chain, decision route, notifications and audit are
the gates'. The action's own row (`actions.store`) adds what a gate has no place for: who may cancel, the
request's timeout, and whether the step then ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from gatekeeper import telemetry
from gatekeeper.actions.caller import ActionAuthenticator, ActionCaller
from gatekeeper.actions.model import ActionRequest, ReportRequest, parse_model
from gatekeeper.actions.state import (
    ActionState,
    action_state,
    immediate_answer,
    parse_wait,
)
from gatekeeper.actions.store import ANNOUNCE_LEASE, CLOSE_AUDIT_LEASE, ActionRecord, ActionStore, action_key
from gatekeeper.actions.tool import command_tool
from gatekeeper.audit.lookup import find_entry
from gatekeeper.contracts.gate import WITHDRAW_EVENT, GateStatus, Withdrawal
from gatekeeper.errors import Conflict, Forbidden, NotFound, foreign_target
from gatekeeper.events.codec import event_from_sealable, event_to_sealable
from gatekeeper.events.model import EventKind, EventSource, PipelineEvent
from gatekeeper.ingest.edge import (
    IncomingRequest,
    parse_json_object,
    require_bounded_headers,
    require_json_content_type,
    require_size,
)
from gatekeeper.ingest.service import EventSink, require_event_size

if TYPE_CHECKING:
    from gatekeeper.audit.log import AuditLog
    from gatekeeper.gates.effects import Decider
    from gatekeeper.gates.store import GateIndex, GateStore

log = logging.getLogger(__name__)

POLL_STEPS = (0.25, 0.5, 1.0, 2.0)  # then every 2 s: two table reads per step, never a busy loop
RESUBMIT_AFTER = timedelta(seconds=30)  # a claim whose request died before queueing is re-queued by a re-request
MAX_ACTION_BODY = 65_536
MAX_PENDING_LISTED = 50  # list_my_pending_approvals: enough for an agent, bounded for storage
MAX_OPEN_SCANNED = 500  # open action rows read per listing (a tenant's unclosed actions, newest kept)


class Gateway(Protocol):
    """Raises events to orchestrations (the Durable client, or the local runner)."""

    def raise_event(self, instance_id: str, event_name: str, data: Any) -> None: ...


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    location: str | None = None


class ActionService:
    def __init__(
        self,
        authenticator: ActionAuthenticator,
        actions: Callable[[str], ActionStore],
        gates: Callable[[str], GateStore],
        index: GateIndex,
        sink: EventSink,
        decider: Decider,
        audit_for: Callable[[str], AuditLog],
        *,
        base_url: str,
        approval_link: Callable[[str], str],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        max_body_bytes: int = MAX_ACTION_BODY,
    ) -> None:
        self._auth = authenticator
        self._actions = actions
        self._gates = gates
        self._index = index
        self._sink = sink
        self._decider = decider
        self._audit_for = audit_for
        self._base_url = base_url.rstrip("/")
        self._approval_link = approval_link
        self._clock = clock
        self._monotonic = monotonic
        self._max_body = min(max_body_bytes, MAX_ACTION_BODY)

    # -- POST /api/actions ------------------------------------------------------------------------

    def request(self, incoming: IncomingRequest) -> Answer:
        require_size(incoming, self._max_body)
        require_bounded_headers(incoming)
        require_json_content_type(incoming)
        caller = self._auth.authenticate(incoming)
        return self.request_for(caller, parse_json_object(incoming.body))

    def request_for(self, caller: ActionCaller, document: dict[str, Any]) -> Answer:
        """`POST /api/actions` for a caller already authenticated (the route above, the MCP server's tools)."""
        asked: ActionRequest = parse_model(ActionRequest, document)
        tenant_id = caller.tenant.tenant_id
        now = self._clock()
        event = self._event(caller, asked, now)
        action_id = event.instance_id
        decision = self._decider.decide(event, now)
        level = str(decision.level)
        immediate, reason = immediate_answer(level, decision.blocked, tuple(decision.reasons))
        span = asked.timeout_span
        record = ActionRecord(
            action_id=action_id,
            tenant_id=tenant_id,
            idempotency_key=asked.idempotency_key,
            fingerprint=fingerprint(asked),
            command=asked.text,
            argv=tuple(asked.command) if isinstance(asked.command, list) else None,
            action=asked.action.value,
            environment=asked.target.environment,
            resource=asked.target.resource,
            credential=caller.credential,
            caller_key=caller.caller_key,
            requester_ids=caller.requester_ids,
            requested_by=caller.display,
            agent=caller.agent,
            level=level,
            immediate=immediate,
            reason=reason,
            created_at=now,
            expires_at=now + span if span else None,
            event=event_to_sealable(event),
        )
        store = self._actions(tenant_id)
        audit_from = self._audit_for(tenant_id).head().size
        claim = store.claim(record, audit_from=audit_from)
        if claim.record.fingerprint != record.fingerprint:
            raise Conflict(
                "This idempotency key was used for a different command, action or target.",
                field="idempotency_key",
                code="idempotency-key-reused",
                title="The idempotency key was used for another request",
            )
        existing = claim.record
        if claim.created:
            # Within its lease the key is the creator's alone: no `action_requested` of it can be in the log yet.
            # A creator slower than its lease looks first: a re-request may have taken over and announced it.
            lease_until = existing.created_at + ANNOUNCE_LEASE
            late = self._clock() >= lease_until
            self._announce(store, existing, caller, audit_from if late else None, lease_until)
        elif not claim.announced and store.take_over(existing, now):
            self._announce(store, existing, caller, claim.audit_from, now + ANNOUNCE_LEASE)
        elif not claim.announced:  # its creator is still at it: the status route must find what we answer
            self._index.put(existing.action_id, tenant_id)
        if not claim.submitted and (claim.created or claim.failed or now - existing.created_at >= RESUBMIT_AFTER):
            # A duplicate submission is harmless: the dispatcher claims the business key exactly once.
            try:
                self._sink.submit(event_from_sealable(existing.event), existing.action_id)
            except Exception:
                with contextlib.suppress(Exception):  # best effort: the caller's retry queues it either way
                    store.mark_submitted(existing, ok=False)
                raise
            store.mark_submitted(existing)
        if claim.created:
            return self._answer(existing)
        view = self._view(tenant_id, existing.action_id, None)
        if view["status"] == "pending":
            return self._answer(existing.model_copy(update={"immediate": None}))
        status_url = f"{self._base_url}/api/actions/{existing.action_id}"
        keys = ("id", "status", "level", "decision", "reason")
        return Answer(200, {**{k: view[k] for k in keys}, "status_url": status_url})

    def _announce(
        self,
        store: ActionStore,
        record: ActionRecord,
        caller: ActionCaller,
        audit_from: int | None,
        lease_until: datetime,
    ) -> None:
        """Index the claimed action (its status route finds it) and audit `action_requested`, once: by the
        request that claimed the key, or by the one re-request that took over from a creator that failed or
        died in between (`ActionStore.take_over`). A failure hands it back, so the retry finishes it. The entry
        is looked for first by one taking over (from `audit_from`, the log's size when the key was claimed; None:
        not looked for): a creator whose last write (`mark_announced`) failed had appended it already."""
        try:
            self._index.put(record.action_id, record.tenant_id)
            if (
                audit_from is None
                or find_entry(self._audit_for(record.tenant_id), audit_from, "action_requested", record.action_id)
                is None
            ):
                self._requested(record, event_from_sealable(record.event), caller)
        except Exception:
            with contextlib.suppress(Exception):  # best effort: the lease expires on its own otherwise
                store.hand_back(record, lease_until)  # only the lease this call holds
            raise
        try:
            store.mark_announced(record)
        except Exception as exc:  # indexed and audited: announced; a take-over after the lease finds the entry
            log.warning("action %s: could not be marked announced (%s)", record.action_id, type(exc).__name__)

    def _requested(self, record: ActionRecord, event: PipelineEvent, caller: ActionCaller) -> None:
        """Audit the new action (the command verbatim, in the sealed entry) and count it (never the command: only
        its tool name, `command_tool`, and the agent, so analytics can count requests per agent and tool)."""
        self._audit(
            record,
            "action_requested",
            caller.display or caller.credential,
            {
                "action_id": record.action_id,
                "command": record.command,
                "command_sha256": hashlib.sha256(record.command.encode()).hexdigest(),
                "action": record.action,
                "environment": record.environment,
                "resource": record.resource,
                "level": record.level,
                "answer": record.immediate or "pending",
                "auth": record.credential,
                "requester": list(record.requester_ids),
                "requested_by": record.requested_by,
                "plan_digest": event.plan_digest,
                "ticket": event.ticket,
                "version_tags": list(event.version_tags),
                "artifacts": list(event.artifacts),
                "expires_at": record.expires_at.isoformat() if record.expires_at else None,
                **({"via": caller.via} if caller.via else {}),
                **({"agent": caller.agent} if caller.agent else {}),
            },
        )
        telemetry.emit(
            telemetry.Event.ACTION_REQUESTED,
            tenant=record.tenant_id,
            instance_id=record.action_id,
            level=record.level,
            action=record.action,
            environment=record.environment,
            auth=record.credential,
            via=caller.via,
            agent=caller.agent,
            tool=command_tool(record.command),
        )

    def _event(self, caller: ActionCaller, asked: ActionRequest, now: datetime) -> PipelineEvent:
        context = asked.context
        repository = context.repository
        if caller.repository is not None:  # a GitHub job asks for its own repository only
            if repository is not None and repository.lower() != caller.repository.lower():
                raise foreign_target("context.repository", "is not the repository of the workflow's OIDC token")
            repository = caller.repository
        tenant_id = caller.tenant.tenant_id
        event = PipelineEvent(
            tenant_id=tenant_id,
            source=EventSource.GENERIC,
            kind=EventKind.GATE_REQUEST,
            action=asked.action,
            environment=asked.target.environment,
            repository=repository,
            ref=context.ref,
            commit=context.commit,
            actor=caller.display,
            requester_ids=caller.requester_ids,
            run_id=action_key(tenant_id, asked.idempotency_key),
            labels=("action",),
            run_url=context.run_url,
            version_tags=tuple(context.version_tags),
            artifacts=tuple(context.artifacts),
            summary=action_title(asked, repository),
            command=asked.text,
            plan_digest=context.plan_digest,
            plan_url=context.plan_url,
            resource=asked.target.resource,
            ticket=context.ticket,
            received_at=now,
        )
        require_event_size(event)
        return event

    # -- GET /api/actions/{id}[?wait=N] -----------------------------------------------------------

    def begin_status(self, incoming: IncomingRequest, action_id: str, wait: str | None) -> tuple[str, int]:
        """Authenticate, check the action is the caller's (404 otherwise) and read `wait`: the tenant and the
        seconds to wait. The waiting itself is `watch`, so no thread is held while nothing changes."""
        require_bounded_headers(incoming)
        caller = self._auth.authenticate(incoming)
        seconds = parse_wait(wait)
        return self.tenant_of(caller, action_id), seconds

    def tenant_of(self, caller: ActionCaller, action_id: str) -> str:
        """The action's tenant when it is the caller's tenant's action; 404 otherwise (other tenants' alike)."""
        record, _ = self._own(caller, action_id)
        return record.tenant_id

    def pending_for(self, caller: ActionCaller, limit: int = MAX_PENDING_LISTED) -> list[dict[str, Any]]:
        """The caller's own actions still waiting for a decision (same credential that asked), newest first."""
        tenant_id = caller.tenant.tenant_id
        mine = [r for r in self._actions(tenant_id).open_records(MAX_OPEN_SCANNED) if r.caller_key == caller.caller_key]
        views = (self._view(tenant_id, r.action_id, None) for r in mine if r.immediate is None)
        return [v for v in views if v["status"] == "pending"][:limit]

    def current(self, tenant_id: str, action_id: str, gateway: Gateway | None) -> dict[str, Any]:
        """The action's state now (one read of its row and its gate)."""
        return self._view(tenant_id, action_id, gateway)

    async def watch(
        self,
        tenant_id: str,
        action_id: str,
        seconds: int,
        gateway: Gateway | None,
        run_sync: Callable[[Callable[[], dict[str, Any]]], Awaitable[dict[str, Any]]],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> dict[str, Any]:
        """Long poll: the state as soon as it leaves `pending`, or when `seconds` have passed. Reads back off
        (0.25 s, 0.5 s, 1 s, then every 2 s) and the wait between them is an async sleep, not a thread."""
        started = self._monotonic()
        step = 0
        while True:
            view = await run_sync(lambda: self.current(tenant_id, action_id, gateway))
            remaining = seconds - (self._monotonic() - started)
            if view["status"] != "pending" or remaining <= 0:
                return view
            await sleep(min(POLL_STEPS[min(step, len(POLL_STEPS) - 1)], remaining))
            step += 1

    # -- POST /api/actions/{id}/cancel ------------------------------------------------------------

    def cancel(self, incoming: IncomingRequest, action_id: str, gateway: Gateway) -> Answer:
        require_bounded_headers(incoming)
        caller = self._auth.authenticate(incoming)
        record, etag = self._own(caller, action_id)
        if caller.caller_key != record.caller_key:
            raise Forbidden(
                "Only the credential that requested the action may cancel it.",
                code="not-the-requester",
                title="Only the requester may cancel",
            )
        if self._finish_close(record, etag, gateway) and record.closed == "cancelled":  # this cancel's retry: audited
            return Answer(200, self._view(record.tenant_id, action_id, gateway))
        view = self._view(record.tenant_id, action_id, gateway)
        if view["status"] != "pending":
            raise already_decided(view["status"])
        if not self._withdraw(record, etag, "cancelled", caller.display or caller.credential, gateway):
            raise already_decided(self._view(record.tenant_id, action_id, gateway)["status"])
        return Answer(200, self._view(record.tenant_id, action_id, gateway))

    # -- POST /api/actions/{id}/report ------------------------------------------------------------

    def report(self, incoming: IncomingRequest, action_id: str) -> Answer:
        require_size(incoming, self._max_body)
        require_bounded_headers(incoming)
        require_json_content_type(incoming)
        caller = self._auth.authenticate(incoming)
        return self.report_for(caller, action_id, parse_json_object(incoming.body))

    def report_for(self, caller: ActionCaller, action_id: str, document: dict[str, Any]) -> Answer:
        """`POST /api/actions/{id}/report` for a caller already authenticated."""
        told: ReportRequest = parse_model(ReportRequest, document)
        record, etag = self._own(caller, action_id)
        view = self._view(record.tenant_id, action_id, None)
        who = caller.display or caller.credential
        data: dict[str, Any] = {
            "outcome": told.outcome,
            "exit_code": told.exit_code,
            "detail": told.detail,
            "status": view["status"],
        }
        if caller.via:
            data["via"] = caller.via
        if caller.agent:
            data["agent"] = caller.agent
        if told.outcome == "executed" and view["status"] != "approved":
            self._audit(record, "action_reported", who, {**data, "refused": True, "approved": False})
            self._resolved(record, view["status"], told.outcome, refused=True)
            raise Conflict(
                f"The action is {view['status']}, not approved: it must not run.",
                field="outcome",
                code="not-approved",
                title="The action was not approved",
            )
        if record.outcome is not None:
            raise Conflict(
                f"The action's outcome was already reported ({record.outcome}).",
                field="outcome",
                code="already-reported",
                title="The outcome was already reported",
            )
        updated = record.model_copy(
            update={"outcome": told.outcome, "exit_code": told.exit_code, "reported_at": self._clock()}
        )
        store = self._actions(record.tenant_id)
        written = store.replace(updated, etag)
        if not written:
            raise Conflict("The action changed meanwhile; report again.", code="conflict", title="Conflict")
        try:
            self._audit(
                record, "action_reported", who, {**data, "refused": False, "approved": view["status"] == "approved"}
            )
        except Exception:  # not audited, not kept: the client's retry reports (and audits) it again
            with contextlib.suppress(Exception):
                store.replace(record, written)
            raise
        self._resolved(record, view["status"], told.outcome, refused=False)
        return Answer(202, {"id": action_id, "status": view["status"], "outcome": told.outcome})

    # -- shared -----------------------------------------------------------------------------------

    def _own(self, caller: ActionCaller, action_id: str) -> tuple[ActionRecord, str]:
        """The caller's tenant's action; 404 for unknown ids and other tenants' alike."""
        tenant_id = self._index.tenant_of(action_id) if action_id.startswith("gate-") else None
        found = self._actions(tenant_id).load(action_id) if tenant_id == caller.tenant.tenant_id else None
        if found is None:
            raise NotFound("No such action.", code="not-found", title="Not found")
        return found

    def _view(self, tenant_id: str, action_id: str, gateway: Gateway | None) -> dict[str, Any]:
        loaded = self._actions(tenant_id).load(action_id)
        if loaded is None:  # pragma: no cover - _own found it; rows are never deleted
            raise NotFound("No such action.")
        record, etag = loaded
        if record.close_audit_from is not None:  # a close whose audit failed or whose closer died: finish it
            try:
                self._finish_close(record, etag, gateway)
            except Exception as exc:  # the state is answered anyway; the next reader audits it
                log.warning("action %s: its close is not audited yet (%s)", action_id, type(exc).__name__)
        gate = self._gates(tenant_id).load(action_id)
        state = action_state(record, gate, self._clock())
        if state.status == "expiring" and gateway is not None:  # past the request's own timeout: withdraw it
            self._withdraw(record, etag, "expired", "system", gateway)
            return self._view(tenant_id, action_id, gateway)
        if state.status == "expiring":
            state = ActionState("pending", None, "awaiting approval")
        decided_by = None
        if gate is not None and state.status in ("approved", "denied") and record.immediate is None:
            decided_by = self._decided_by(tenant_id, action_id)
        return {
            "id": action_id,
            "status": state.status,
            "level": record.level,
            "decision": state.decision,
            "reason": state.reason,
            "decided_by": decided_by,
            "decided_at": state.decided_at.isoformat() if state.decided_at else None,
            "approval_url": self._approval_link(action_id) if record.level in ("L2", "L3") else None,
            "command": record.command,
            "action": record.action,
            "environment": record.environment,
            "outcome": record.outcome,
        }

    def _decided_by(self, tenant_id: str, action_id: str) -> str | None:
        """Who cast the deciding vote, as their token named them (UPN), else their object id: the gate's last
        counted vote in the audit log. None when no person decided (a timeout, a policy block)."""
        refs = [r for r in self._gates(tenant_id).audit_refs(action_id) if r.kind == "approval_decided"]
        log = self._audit_for(tenant_id)
        for ref in reversed(refs):
            for entry in log.records(ref.seq, ref.seq + 1):
                data = entry.data
                if "vote" in data and data.get("counted") is not False:
                    return str(data.get("upn") or entry.actor)[:256]
        return None

    def _withdraw(self, record: ActionRecord, etag: str, reason: str, by: str, gateway: Gateway) -> bool:
        """Close a pending action as cancelled or expired (ETag-conditional: one closer wins), end its
        approval chain, audit it. False when somebody changed the row first. The closed row notes where the
        audit log stood (`close_audit_from`) until the entry is written: a close that ended the chain cannot be
        undone, so if its audit fails (or its closer dies) the next reader of the action audits it, once
        (`_finish_close`)."""
        at = self._clock()
        closed = record.model_copy(
            update={
                "closed": reason,
                "closed_at": at,
                "closed_by": by,
                "close_audit_from": self._audit_for(record.tenant_id).head().size,
                "close_audit_until": at + CLOSE_AUDIT_LEASE,
            }
        )
        store = self._actions(record.tenant_id)
        written = store.replace(closed, etag)
        if not written:
            return False
        ended = self._end_chain(record, reason, by, gateway)
        try:
            self._audit(record, f"action_{reason}", by, {"reason": reason, "chain_ended": ended, "level": record.level})
        except Exception:
            with contextlib.suppress(Exception):
                if not ended:  # nothing else happened yet: reopened, so the retry closes (and audits) it again
                    store.replace(record, written)
                else:  # the chain has ended: kept closed, handed to the next reader to audit at once
                    store.replace(closed.model_copy(update={"close_audit_until": None, "chain_ended": True}), written)
            raise
        with contextlib.suppress(Exception):  # audited; left noted, the next reader finds the entry, adds none
            store.replace(closed.model_copy(update={"close_audit_from": None, "close_audit_until": None}), written)
        self._resolved(record, reason, None, refused=False)
        return True

    def _end_chain(self, record: ActionRecord, reason: str, by: str, gateway: Gateway) -> bool:
        """Withdraw the action's approval chain if it still runs (the gate awaits approval): True when told."""
        gate = self._gates(record.tenant_id).load(record.action_id)
        if gate is None or not gate.chain_instance_id or gate.status is not GateStatus.AWAITING_APPROVAL:
            return False
        try:
            payload = Withdrawal(reason=reason, by=by[:256]).model_dump(mode="json")
            gateway.raise_event(gate.chain_instance_id, WITHDRAW_EVENT, payload)
        except Exception as exc:  # recorded; the action stays closed and must not run
            log.warning("action %s: could not end the approval chain (%s)", record.action_id, type(exc).__name__)
            return False
        return True

    def _finish_close(self, record: ActionRecord, etag: str, gateway: Gateway | None) -> bool:
        """Audit a close whose closer could not (its append failed after the chain ended, or it died): once,
        by the one reader that takes it over ETag-conditionally after the closer's lease, and only if its
        `action_<closed>` entry is not in the log already. A closer that died left unknown whether it ended
        the approval chain (`chain_ended` None): the one taking over ends it first, as the live close does, so
        the entry says what happened; a reader without a gateway (the request and report routes) leaves that
        to the status and cancel routes. True when this call finished it."""
        if record.closed is None or record.close_audit_from is None:
            return False
        now = self._clock()
        if record.close_audit_until is not None and record.close_audit_until > now:
            return False  # its closer may still be at it
        if record.chain_ended is None and gateway is None:
            return False  # the chain may still run: finished by a reader that can end it
        store = self._actions(record.tenant_id)
        taken = record.model_copy(update={"close_audit_until": now + CLOSE_AUDIT_LEASE})
        written = store.replace(taken, etag)
        if not written:
            return False  # another reader took it, or it changed
        if record.chain_ended is None and gateway is not None:
            by = record.closed_by or "system"
            taken = taken.model_copy(update={"chain_ended": self._end_chain(record, record.closed, by, gateway)})
            with contextlib.suppress(Exception):  # noted, so a retry after a failed append does not tell it again
                written = store.replace(taken, written) or written
        kind = f"action_{record.closed}"
        if find_entry(self._audit_for(record.tenant_id), record.close_audit_from, kind, record.action_id) is None:
            data = {"reason": record.closed, "chain_ended": taken.chain_ended, "level": record.level}
            try:
                self._audit(record, kind, record.closed_by or "system", data)
            except Exception:
                with contextlib.suppress(Exception):  # handed back: the next reader tries at once
                    store.replace(taken.model_copy(update={"close_audit_until": None}), written)
                raise
            self._resolved(record, record.closed, None, refused=False)
        with contextlib.suppress(Exception):  # audited; left noted, the next reader finds the entry, adds none
            store.replace(taken.model_copy(update={"close_audit_from": None, "close_audit_until": None}), written)
        return True

    def _audit(self, record: ActionRecord, kind: str, actor: str, data: dict[str, Any]) -> None:
        """Append to the tenant's audit log and note the entry with the gate (the approval view lists it)."""
        at = self._clock()
        title = f"{record.action.replace('_', ' ')} on {record.environment} (action)"
        entry = self._audit_for(record.tenant_id).append(kind, actor[:256], record.action_id, title, data, at=at)
        seq = getattr(entry, "seq", None)
        if isinstance(seq, int):
            self._gates(record.tenant_id).note_audit(record.action_id, seq, kind, at)

    def _resolved(self, record: ActionRecord, status: str, outcome: str | None, *, refused: bool) -> None:
        telemetry.emit(
            telemetry.Event.ACTION_RESOLVED,
            tenant=record.tenant_id,
            instance_id=record.action_id,
            level=record.level,
            status=status,
            outcome=outcome,
            refused=refused,
            agent=record.agent,
            tool=command_tool(record.command),
        )

    def _answer(self, record: ActionRecord) -> Answer:
        status_url = f"{self._base_url}/api/actions/{record.action_id}"
        body: dict[str, Any] = {"id": record.action_id, "level": record.level, "status_url": status_url}
        if record.immediate == "approved":
            return Answer(200, {**body, "status": "approved", "decision": "approved"})
        if record.immediate is not None:
            return Answer(200, {**body, "status": record.immediate, "decision": "denied", "reason": record.reason})
        body |= {"status": "pending", "approval_url": self._approval_link(record.action_id)}
        return Answer(202, body, location=status_url)


def fingerprint(asked: ActionRequest) -> str:
    """What an idempotency key stands for: the same key with another command, kind or target is a conflict."""
    document = [asked.text, asked.action.value, asked.target.environment, asked.target.resource]
    return hashlib.sha256(json.dumps(document, separators=(",", ":")).encode()).hexdigest()


def action_title(asked: ActionRequest, repository: str | None) -> str:
    """The approver's one-line title; never the command (it is shown verbatim, separately)."""
    where = f" of {repository}" if repository else ""
    what = asked.target.resource or asked.target.environment
    return f"Action: {asked.action.value.replace('_', ' ')}{where} on {what} ({asked.target.environment})"[:200]


def already_decided(status: str) -> Conflict:
    return Conflict(f"The action is already {status}.", code="already-decided", title="The action was already decided")
