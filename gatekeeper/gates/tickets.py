"""The gate's story in the tenant's PSA ticket (issue 15, outbound): one step per moment, run by the
`psa_ticket` activity after the pipeline has its answer, so a slow or absent PSA never holds a gate.

- requested: the linked ticket (the request's `ticket`, a `change-ticket:` label), once the PSA says it is a
  ticket of the tenant's `company` (checked before any moment writes to it), gets a note with the level,
  the reasons and the approval link, and moves to the tenant's `in_progress` status; a gate that names no
  ticket gets a change ticket opened when the tenant's `open_change_ticket` says so (production or always),
  remembered on the gate and linked, so a CAB decision on it in the PSA completes a `psa_change_approval`
  stage like a named ticket does.
- decided: one note per decision (who, when, which stage) and the outcome, then the `approved` or
  `rejected` status.
- human_task (L3): a ticket opened on the tenant's board for the person who carries the change out, and a
  note on the linked ticket pointing at it.
- rolled_back: a note (why, which watch), the rollback priority, the `rolled_back` status.
- done: a person marked the L3 task done with the time spent (`psa_follow_up`, started by the follow-up
  service): a time entry (`log_time`) on the L3 task ticket opened at human_task, with the person and their
  note (read from the sealed follow-up row, never carried through the history). No task ticket: nothing.

Every PSA call is audited (`psa_ticket`: vendor, operation, outcome, ticket; never a credential), failures
included; a failure is a result, never an exception into the flow. Retries happen inside the client
(`gatekeeper.psa.http`: backoff on 429/5xx). The activity runs once per input (`gatekeeper.gates.once`): run
again after it completed, it writes nothing; only a run that died before storing its result is redone, which
may write a note (or a time entry) twice but never opens a second ticket (it carries the gate's key and is
found again) nor audits a call twice.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from gatekeeper.contracts.gate import GateStatus
from gatekeeper.contracts.psa import PsaTicketInput, PsaTicketOutcome
from gatekeeper.gates.common import append_audit, at_or_now
from gatekeeper.gates.needs import GateNeeds
from gatekeeper.gates.psa import parse_ticket
from gatekeeper.ports import TicketNote, TicketRef, TicketResult, TicketSpec, TimeEntry
from gatekeeper.psa.http import PsaConfigError

if TYPE_CHECKING:
    from gatekeeper.gates.store import GateRecord, GateStore
    from gatekeeper.ports import TicketSystem
    from gatekeeper.psa.systems import TicketSystems

log = logging.getLogger("gatekeeper.gates.tickets")
AUDIT_KIND = "psa_ticket"


class TicketNeeds(GateNeeds, Protocol):
    @property
    def tickets(self) -> TicketSystems: ...


def ticket_key(instance_id: str, purpose: str) -> str:
    """Gatekeeper's reference written into a ticket it opens (ConnectWise/HaloPSA summary, Autotask
    externalID): short, free of LIKE wildcards, the same on every retry."""
    return f"GK-{hashlib.sha256(instance_id.encode()).hexdigest()[:16]}-{purpose}"


class _Writer:
    """Calls one tenant's PSA for one gate moment and audits every call."""

    def __init__(self, services: TicketNeeds, system: TicketSystem, request: PsaTicketInput, at: datetime):
        self.services, self.system, self.request, self.at = services, system, request, at
        self.writes = self.failures = 0
        self.gave_up = False

    def audit(self, result: TicketResult) -> TicketResult:
        if result.skipped:
            return result
        if result.ok:
            self.writes += 1
        else:
            self.failures += 1
        data = {
            "vendor": result.vendor,
            "operation": result.operation,
            "moment": self.request.moment,
            "ok": result.ok,
            "ticket": result.ref.id if result.ref else None,
            "opened": result.ref.opened if result.ref else None,
            "status_code": result.status_code,
            "attempts": result.attempts,
            "detail": result.detail[:300],
        }
        subject = f"{result.vendor} {result.operation}" + (f" ticket {result.ref.id}" if result.ref else "")
        try:
            request = self.request
            append_audit(self.services, request.tenant_id, AUDIT_KIND, request.instance_id, subject, data, self.at)
        except Exception as exc:  # the audit log down must not turn a PSA note into a failed gate
            log.warning("psa audit for %s failed: %s", self.request.instance_id, type(exc).__name__)
        return result

    def call(self, send: Any) -> TicketResult | None:
        """One PSA call, audited. After a call that failed for good (its retries spent) this moment's other
        writes are not tried: the PSA is down or refusing, and the next moment tries again."""
        if self.gave_up:
            return None
        result = self.audit(send())
        self.gave_up = not result.ok
        return result

    def find_or_open(self, spec: TicketSpec) -> TicketRef | None:
        result = self.call(lambda: self.system.find_or_open(spec))
        return result.ref if result is not None else None

    def note(self, ref: TicketRef, title: str, text: str) -> None:
        self.call(lambda: self.system.add_note(ref, TicketNote(title=title[:250], text=text[:4000])))

    def status(self, ref: TicketRef, status: Any) -> None:
        self.call(lambda: self.system.set_status(ref, status))


def write(services: TicketNeeds, request: PsaTicketInput) -> PsaTicketOutcome:
    """Write one moment of the gate into the tenant's PSA. Never raises for the PSA's sake."""
    at = at_or_now(request.at, services)
    tenant_id = request.tenant_id
    try:
        system = services.tickets.for_tenant(tenant_id)
    except PsaConfigError as exc:
        append_audit(
            services,
            tenant_id,
            AUDIT_KIND,
            request.instance_id,
            "psa settings unusable",
            {"moment": request.moment, "ok": False, "operation": "configure", "detail": str(exc)[:300]},
            at,
        )
        return PsaTicketOutcome(ok=False, failures=1, detail=str(exc)[:300])
    if system is None:
        return PsaTicketOutcome(ok=True, skipped=True, configured=False, detail="the tenant has no PSA configured")
    settings = services.tickets.settings_for(tenant_id)
    store = services.gates(tenant_id)
    record = store.load(request.instance_id)
    if record is None or settings is None:
        return PsaTicketOutcome(ok=True, skipped=True, detail="no such gate")
    writer = _Writer(services, system, request, at)
    if request.moment == "done":  # only the L3 task ticket: no check or write on the linked ticket
        task = _done(writer, store, record, request)
        if writer.writes == 0 and writer.failures == 0:
            return PsaTicketOutcome(ok=True, skipped=True, ticket=task, detail="no L3 task ticket or no time to log")
        return PsaTicketOutcome(ok=writer.failures == 0, ticket=task, writes=writer.writes, failures=writer.failures)
    ref = _known_ticket(store, record, system.vendor)
    saved = store.psa_ticket(record.instance_id)
    if ref is not None and request.moment != "requested" and (saved is None or saved[0] != system.vendor):
        ref = _checked(writer, store, record, ref)  # named by the request, never checked yet: check it first
    if request.moment == "requested":
        ref = _requested(writer, store, record, ref, settings, services.approval_link(record.instance_id))
    elif ref is not None and request.moment == "decided":
        _decided(writer, store, record, ref)
    elif request.moment == "human_task":
        _human_task(writer, store, record, ref, settings)
    elif ref is not None and request.moment == "rolled_back":
        _rolled_back(writer, ref, request)
    label = ref.label if ref is not None else None
    if writer.writes == 0 and writer.failures == 0:
        return PsaTicketOutcome(ok=True, skipped=True, ticket=label, detail="nothing to write for this gate")
    return PsaTicketOutcome(ok=writer.failures == 0, ticket=label, writes=writer.writes, failures=writer.failures)


def _known_ticket(store: GateStore, record: GateRecord, vendor: str) -> TicketRef | None:
    """The ticket this gate writes to: the one remembered for it, else the linked one when it is (or may be)
    this tenant's PSA's (`autotask:7311` or a bare `7311`)."""
    saved = store.psa_ticket(record.instance_id)
    if saved is not None and saved[0] == vendor:
        return TicketRef(vendor=vendor, id=saved[1], opened=saved[2])  # type: ignore[arg-type]
    parsed = parse_ticket(record.ticket)
    if parsed is None or parsed[0] not in (None, vendor) or not parsed[1].isdigit():
        return None
    return TicketRef(vendor=vendor, id=parsed[1])  # type: ignore[arg-type]


def _requested(
    writer: _Writer, store: GateStore, record: GateRecord, ref: TicketRef | None, settings: Any, link: str
) -> TicketRef | None:
    environment = record.subject.get("environment")
    if ref is None:
        if not settings.opens_change_ticket(environment):
            return None
        spec = TicketSpec(
            key=ticket_key(record.instance_id, "change"),
            kind="change",
            summary=f"Change: {record.title}"[:100],
            description=_request_text(record, link),
        )
        ref = writer.find_or_open(spec)
        if ref is None:
            return None
        store.save_psa_ticket(record.instance_id, ref.vendor, ref.id, opened=True)
        store.link_ticket(ref.id, record.instance_id)  # a CAB decision on it finds the gate
    elif not ref.opened:  # the linked ticket: check it exists and is the tenant's company's before writing
        ref = _checked(writer, store, record, ref)
        if ref is None:
            return None
    writer.note(ref, f"Gatekeeper: {record.level} gate requested", _request_text(record, link))
    writer.status(ref, "in_progress")
    return ref


def _checked(writer: _Writer, store: GateStore, record: GateRecord, ref: TicketRef) -> TicketRef | None:
    """The ticket the request named, once the PSA says it exists and belongs to the tenant's `company` (the
    request names it, so it may be another client's ticket in the MSP's PSA); remembered for the next moments."""
    key, summary = ticket_key(record.instance_id, "change"), record.title[:100] or "change"
    checked = writer.find_or_open(TicketSpec(key=key, kind="change", summary=summary, ticket_id=ref.id))
    if checked is not None:
        store.save_psa_ticket(record.instance_id, checked.vendor, checked.id, opened=False)
    return checked


def _request_text(record: GateRecord, link: str) -> str:
    subject = record.subject
    lines = [
        f"{record.title}",
        f"Level: {record.level}" + (" (blocked by policy)" if record.blocked else ""),
        f"Environment: {subject.get('environment') or '-'}; repository: {subject.get('repository') or '-'}; "
        f"commit: {subject.get('commit') or '-'}",
    ]
    if record.rule:
        lines.append(f"Policy rule: {record.rule}")
    lines += [f"Reason: {reason}" for reason in record.reasons[:10]]
    if record.level == "L2" and not record.blocked:
        lines.append(f"Approve or reject: {link}")
    else:
        lines.append(f"Details: {link}")
    lines.append(f"Gate: {record.instance_id}")
    return "\n".join(lines)


def _who(voter_id: str) -> str:
    if voter_id.startswith("psa:"):
        _, source, ticket = voter_id.split(":", 2)
        return f"the change approval in {source} ticket {ticket}"
    return voter_id


def _decided(writer: _Writer, store: GateStore, record: GateRecord, ref: TicketRef) -> None:
    for vote in store.votes(record.instance_id):
        verb = "Approved" if vote.decision.value == "approve" else "Rejected"
        writer.note(
            ref,
            f"Gatekeeper: {verb.lower()} by {_who(vote.voter_id)}"[:250],
            f"{verb} by {_who(vote.voter_id)} at {vote.at.isoformat()} (stage {vote.stage + 1}).\n"
            f"Gate: {record.instance_id}",
        )
    approved = record.status is GateStatus.APPROVED
    when = (record.decided_at or record.updated_at).isoformat()
    by = "the approvers" if record.plan is not None and record.level == "L2" else f"policy ({record.level})"
    text = f"{'Approved' if approved else 'Rejected'} by {by} at {when}: {record.outcome_reason or '-'}"
    if record.callback_ok is False:
        text += "\nThe pipeline could not be told; operators were alerted."
    title = f"Gatekeeper: change {'approved' if approved else 'rejected'}"
    writer.note(ref, title, f"{text}\nGate: {record.instance_id}")
    if record.status in (GateStatus.APPROVED, GateStatus.REJECTED):
        writer.status(ref, "approved" if approved else "rejected")


def _human_task(writer: _Writer, store: GateStore, record: GateRecord, ref: TicketRef | None, settings: Any) -> None:
    if not settings.human_task_tickets:
        return
    spec = TicketSpec(
        key=ticket_key(record.instance_id, "task"),
        kind="task",
        summary=f"Carry out by hand (L3): {record.title}"[:100],
        description=_request_text(record, writer.services.approval_link(record.instance_id))
        + "\nAutomation was refused: a person carries this change out (or drops it) and marks the task done.",
    )
    task = writer.find_or_open(spec)
    if task is None:
        return
    store.save_psa_task(record.instance_id, task.vendor, task.id)
    if ref is None:
        store.save_psa_ticket(record.instance_id, task.vendor, task.id, opened=True)
    else:
        writer.note(ref, "Gatekeeper: L3, human task opened", f"A person carries this change out: ticket {task.id}.")


def _rolled_back(writer: _Writer, ref: TicketRef, request: PsaTicketInput) -> None:
    text = f"The deployment was rolled back: {request.reason or '-'}\nWatch: {request.watch_id or '-'}"
    writer.note(ref, "Gatekeeper: deployment rolled back", text)
    writer.call(lambda: writer.system.raise_priority(ref))
    writer.status(ref, "rolled_back")


def _done(writer: _Writer, store: GateStore, record: GateRecord, request: PsaTicketInput) -> str | None:
    """The time a person spent on the L3 task, logged on the task ticket; the ticket's label, or None."""
    from gatekeeper.gates.followup import done_entry
    from gatekeeper.gates.store import GateRepository

    saved = store.psa_task(record.instance_id)
    if saved is None or saved[0] != writer.system.vendor or not request.minutes or not request.by:
        return None
    ref = TicketRef(vendor=writer.system.vendor, id=saved[1], opened=True)
    services = writer.services
    repo = GateRepository(services.storage, record.tenant_id, services.cipher)
    entry = done_entry(repo, record.instance_id, request.by) or {}
    who = entry.get("upn") or request.by
    notes = f"Marked done in Gatekeeper by {who}: {entry.get('note') or '-'}\nGate: {record.instance_id}"
    started = writer.at - timedelta(minutes=request.minutes)
    time = TimeEntry(minutes=request.minutes, started_at=started, notes=notes[:2000])
    writer.call(lambda: writer.system.log_time(ref, time))
    return ref.label
