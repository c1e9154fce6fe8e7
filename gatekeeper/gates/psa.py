"""PSA change tickets and gates (issue 15): which ticket a gate is linked to, and what a change decision in
the PSA does to the gates linked to it. Pure helpers; the I/O is the decision service's
(`DecisionService.psa_change`), which applies a decision exactly like a person's vote, through the chain.

A gate is linked to a ticket by the request itself: the event's `ticket` (the generic API and action
requests carry one), or a label `change-ticket:<id>` (a CI can turn a `Change-Ticket:` commit trailer or a
pull-request label into it). Optionally `<source>:<id>` (`autotask:7311`) pins the PSA; a bare id matches a
decision from any PSA the stage allows.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from gatekeeper.events.model import EventKind, EventSource, PipelineEvent

if TYPE_CHECKING:
    from gatekeeper.tenancy.model import TenantRecord

LABEL_PREFIX = "change-ticket:"
PSA_SOURCES = frozenset({EventSource.CONNECTWISE, EventSource.AUTOTASK, EventSource.HALOPSA})
_TICKET = re.compile(r"^(?:(connectwise|autotask|halopsa):)?([A-Za-z0-9][A-Za-z0-9._-]{0,63})$")


def parse_ticket(value: str | None) -> tuple[str | None, str] | None:
    """(`source` or None, ticket id) of a ticket reference, or None when it is not one."""
    match = _TICKET.match((value or "").strip().lower())
    return (match.group(1), match.group(2)) if match else None


def linked_ticket(event: PipelineEvent) -> tuple[str, str] | None:
    """(ticket reference as given, how it was named) for a gate request, or None."""
    if parse_ticket(event.ticket) is not None:
        return (event.ticket or "").strip().lower(), "event"
    for label in event.labels:
        if label.lower().startswith(LABEL_PREFIX) and parse_ticket(label[len(LABEL_PREFIX) :]) is not None:
            return label[len(LABEL_PREFIX) :].strip().lower(), "label"
    return None


def change_decision(event: PipelineEvent) -> tuple[str, str, bool] | None:
    """(source, ticket id, approved) when `event` is a PSA change decision; None for anything else."""
    if event.source not in PSA_SOURCES or event.kind not in (EventKind.CHANGE_APPROVED, EventKind.CHANGE_REJECTED):
        return None
    parsed = parse_ticket(event.subject)
    if parsed is None:
        return None
    return event.source.value, parsed[1], event.kind is EventKind.CHANGE_APPROVED


def ticket_matches(linked: str | None, source: str, ticket: str) -> bool:
    """True when the gate's linked ticket reference names this PSA ticket."""
    parsed = parse_ticket(linked)
    return parsed is not None and parsed[1] == ticket and parsed[0] in (None, source)


def company_refusal(event: PipelineEvent, tenant: TenantRecord | None) -> str | None:
    """Why a PSA change decision must not touch the tenant's gates, or None when it may.

    The PSA is the MSP's and holds every client's tickets, and a gate is linked to a ticket by the number the
    request names, so the ticket's company decides: the company the vendor's callback names
    (`PipelineEvent.company`) must be the tenant's `psa.company` for that vendor. A decision naming another
    company is refused always; one that cannot be compared (the tenant has no `psa:` settings for this vendor,
    or the callback names no company) only when the tenant has not opted in
    (`psa_decisions_without_company`). The reasons never name the other company."""
    if tenant is None:
        return "tenant-unknown"
    settings = tenant.psa
    named = (event.company or "").strip().casefold()
    if settings is not None and settings.vendor == event.source.value:
        if named and named != settings.company.strip().casefold():
            return "ticket-of-another-company"
        if named:
            return None
        return None if tenant.psa_decisions_without_company else "company-not-named"
    if tenant.psa_decisions_without_company:
        return None
    return "no-psa-company-configured"
