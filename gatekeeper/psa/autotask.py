"""Datto Autotask PSA tickets through the Autotask REST API (v1.0).

Documented at https://ww1.autotask.net/help/DeveloperHelp/Content/APIs/REST/REST_API_Home.htm (auth
headers, zone discovery), .../APIs/REST/Entities/TicketsEntity.htm and
.../APIs/REST/Entities/TicketNotesEntity.htm (the `Tickets` and `TicketNotes` entities); checked 2026-12-05.

- Zone discovery: `GET {url}/v1.0/zoneInformation?user={API user name}` answers `{"url": "https://
  webservicesN.autotask.net/ATServicesRest/", ...}`; every later call goes to `{zone url}v1.0/...`. The
  zone must be https under autotask.net (or the configured host itself), so the credentials are never sent
  where an answer points them.
- Auth: headers `ApiIntegrationCode` (the API tracking identifier), `UserName`, `Secret` (an API-only user).
- `GET /Tickets/{id}` (a linked ticket: `{"item": {...}}`, its `companyID` must be the tenant's `company`);
  `GET /Tickets/query?search={"filter": [{"op": "eq", "field": "externalID", "value": key}]}` finds the ticket
  this gate opened before; `POST /Tickets` opens one (`companyID`, `queueID`, `title`, `status`, `priority`,
  `dueDateTime`, `externalID`) and answers `{"itemId": n}`; `POST /Tickets/{id}/Notes` adds a `TicketNotes`
  child (`noteType` 1, `publish` 1: all Autotask users, never the client portal); `PATCH /Tickets` (`{"id",
  "status"}` or `priority`) updates; `POST /TimeEntries` logs time for the configured resource.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.ports import PsaVendor, TicketNote, TicketRef, TicketResult, TicketSpec, TicketStatus, TimeEntry
from gatekeeper.psa.http import OTHER_COMPANY, PsaConfigError, PsaHttp, base_url, body_of, ticket_id
from gatekeeper.tenancy.psa_settings import AutotaskSettings, check_url

ZONE_HOST_SUFFIX = ".autotask.net"
DEFAULT_STATUS_NEW = 1  # the "New" picklist value every Autotask instance has
DUE_AFTER = timedelta(days=2)


class AutotaskTickets:
    """The `TicketSystem` of one tenant on Autotask."""

    def __init__(
        self,
        settings: AutotaskSettings,
        username: str,
        secret: str,
        integration_code: str,
        *,
        policy: RetryPolicy,
        allow_loopback_http: bool = False,
        session: Any = None,
        clock: Any = None,
    ) -> None:
        self._settings = settings
        self._username = username
        self._loopback = allow_loopback_http
        self._discovery = base_url(settings.url, allow_loopback_http, "psa.url")
        self._zone = base_url(settings.zone_url, allow_loopback_http, "psa.zone_url") if settings.zone_url else None
        self._zone_lock = threading.Lock()
        self._headers = {
            "ApiIntegrationCode": integration_code,
            "UserName": username,
            "Secret": secret,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        self._clock = clock
        self._http = PsaHttp(
            "autotask", policy, (secret, integration_code), session, allow_loopback_http=allow_loopback_http
        )

    def __repr__(self) -> str:
        return f"AutotaskTickets(url={self._settings.url!r})"

    @property
    def vendor(self) -> PsaVendor:
        return "autotask"

    def _zone_base(self) -> str | TicketResult:
        """The zone's REST base (`.../ATServicesRest`), discovered once per client."""
        with self._zone_lock:
            if self._zone is not None:
                return self._zone
            outcome = self._http.send(
                "GET",
                f"{self._discovery}/v1.0/zoneInformation",
                headers=lambda: {"Accept": "application/json"},
                operation="zone discovery",
                params={"user": self._username},
            )
            body = body_of(outcome)
            if not outcome.ok or not isinstance(body, dict) or not isinstance(body.get("url"), str):
                return (
                    self._http.result("find_or_open", outcome, "zone discovery")
                    if not outcome.ok
                    else (self._http.failed("find_or_open", "zone discovery: the answer named no zone url"))
                )
            try:
                zone = check_url(body["url"])
            except ValueError:
                return self._http.failed("find_or_open", "zone discovery: the zone url is not an https URL")
            host = urlsplit(zone).hostname or ""
            if not (host.endswith(ZONE_HOST_SUFFIX) or host == urlsplit(self._discovery).hostname):
                return self._http.failed("find_or_open", f"zone discovery: {host[:80]} is not an Autotask zone")
            try:
                self._zone = base_url(zone, self._loopback, "zoneInformation.url")
            except PsaConfigError as exc:
                return self._http.failed("find_or_open", str(exc))
            return self._zone

    def _send(self, method: str, path: str, operation: Any, **kwargs: Any) -> Any:
        zone = self._zone_base()
        if isinstance(zone, TicketResult):
            return zone
        url = f"{zone}/v1.0{path}"
        return self._http.send(method, url, headers=lambda: self._headers, operation=operation, **kwargs)

    def find_or_open(self, ticket: TicketSpec) -> TicketResult:
        if ticket.ticket_id is not None:
            outcome = self._send("GET", f"/Tickets/{ticket.ticket_id}", "find")
            if isinstance(outcome, TicketResult):
                return outcome
            item = (body_of(outcome) or {}).get("item") if isinstance(body_of(outcome), dict) else None
            if outcome.ok and not isinstance(item, dict):
                return self._http.failed("find_or_open", f"ticket {ticket.ticket_id}: not found")
            if outcome.ok and str(item.get("companyID") if isinstance(item, dict) else "") != self._settings.company:
                return self._http.failed("find_or_open", f"ticket {ticket.ticket_id}: {OTHER_COMPANY}")
            ref = TicketRef(vendor="autotask", id=ticket.ticket_id) if outcome.ok else None
            return self._http.result("find_or_open", outcome, f"ticket {ticket.ticket_id}", ref)
        search = {"filter": [{"op": "eq", "field": "externalID", "value": ticket.key}]}
        found = self._send("GET", "/Tickets/query", "find", params={"search": json.dumps(search)})
        if isinstance(found, TicketResult):
            return found
        if not found.ok:
            return self._http.result("find_or_open", found, "ticket search")
        items = (body_of(found) or {}).get("items") if isinstance(body_of(found), dict) else None
        if isinstance(items, list) and items and isinstance(items[0], dict) and ticket_id(items[0].get("id")):
            ref = TicketRef(vendor="autotask", id=str(items[0]["id"]), opened=True)
            return self._http.result("find_or_open", found, f"ticket {ref.id} (opened before)", ref)
        status = self._settings.statuses.in_progress or str(DEFAULT_STATUS_NEW)
        now = self._clock() if self._clock is not None else None
        body: dict[str, Any] = {
            "companyID": int(self._settings.company),
            "queueID": int(self._settings.board),
            "title": ticket.summary,
            "description": ticket.description or ticket.summary,
            "status": int(status),
            "priority": int(self._settings.new_ticket_priority),
            "externalID": ticket.key,
        }
        if now is not None:
            body["dueDateTime"] = (now + DUE_AFTER).strftime("%Y-%m-%dT%H:%M:%SZ")
        opened = self._send("POST", "/Tickets", "open", json=body)
        if isinstance(opened, TicketResult):
            return opened
        answer = body_of(opened)
        new_id = ticket_id(answer.get("itemId")) if isinstance(answer, dict) else None
        if opened.ok and new_id is None:
            return self._http.failed("find_or_open", "ticket opened but the answer named no itemId")
        ref = TicketRef(vendor="autotask", id=new_id, opened=True) if new_id else None
        return self._http.result("find_or_open", opened, f"ticket opened in queue {self._settings.board}", ref)

    def add_note(self, ref: TicketRef, note: TicketNote) -> TicketResult:
        body = {
            "ticketID": int(ref.id),
            "title": note.title,
            "description": note.text,
            "noteType": 1,
            "publish": 1,
        }
        outcome = self._send("POST", f"/Tickets/{ref.id}/Notes", "note", json=body)
        if isinstance(outcome, TicketResult):
            return outcome.model_copy(update={"operation": "add_note", "ref": ref})
        return self._http.result("add_note", outcome, f"note on ticket {ref.id}", ref)

    def _patch(self, ref: TicketRef, operation: Any, field: str, value: str, what: str) -> TicketResult:
        outcome = self._send("PATCH", "/Tickets", operation, json={"id": int(ref.id), field: int(value)})
        if isinstance(outcome, TicketResult):
            return outcome.model_copy(update={"operation": operation, "ref": ref})
        return self._http.result(operation, outcome, what, ref)

    def set_status(self, ref: TicketRef, status: TicketStatus) -> TicketResult:
        value = getattr(self._settings.statuses, status)
        if not value:
            return self._http.skipped("set_status", f"no status mapped for {status}", ref)
        return self._patch(ref, "set_status", "status", value, f"ticket {ref.id} status {value}")

    def raise_priority(self, ref: TicketRef) -> TicketResult:
        value = self._settings.rollback_priority
        if not value:
            return self._http.skipped("raise_priority", "no rollback priority configured", ref)
        return self._patch(ref, "raise_priority", "priority", value, f"ticket {ref.id} priority {value}")

    def log_time(self, ref: TicketRef, entry: TimeEntry) -> TicketResult:
        resource = self._settings.time_resource_id
        if not resource:
            return self._http.skipped("log_time", "no time_resource_id configured", ref)
        start = entry.started_at
        body = {
            "ticketID": int(ref.id),
            "resourceID": int(resource),
            "dateWorked": start.strftime("%Y-%m-%dT00:00:00Z"),
            "startDateTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "endDateTime": (start + timedelta(minutes=entry.minutes)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "hoursWorked": round(entry.minutes / 60, 2),
            "summaryNotes": entry.notes or "Gatekeeper",
        }
        outcome = self._send("POST", "/TimeEntries", "time", json=body)
        if isinstance(outcome, TicketResult):
            return outcome.model_copy(update={"operation": "log_time", "ref": ref})
        return self._http.result("log_time", outcome, f"{entry.minutes} min on ticket {ref.id}", ref)
