"""ConnectWise PSA (Manage) tickets through its REST API, version 3.0.

Documented at https://developer.connectwise.com/Products/ConnectWise_PSA/REST (service tickets, notes,
time entries) and https://developer.connectwise.com/ClientID (the `clientId` header every request must
carry); checked 2026-12-05.

- Base: `https://{site}/v4_6_release/apis/3.0` (the tenant's `url` is the site, e.g.
  https://api-na.myconnectwise.net).
- Auth: `Authorization: Basic base64("{login_company}+{publicKey}:{privateKey}")` (an API member's key
  pair) and `clientId: {guid}` (the integration's id).
- `GET /service/tickets/{id}?fields=id,company/identifier`: check a linked ticket exists and is the tenant's
  client company's (the request names it; the MSP's PSA holds every client's tickets); `GET
  /service/tickets?conditions=summary like "%{key}%"`: the ticket this gate opened before; `POST
  /service/tickets` opens one on the board for the client company; `POST /service/tickets/{id}/notes` adds a
  note (`internalAnalysisFlag` for internal); `PATCH /service/tickets/{id}` (JSON Patch) moves `status` or
  `priority` by name; `POST /time/entries` (`chargeToType` ServiceTicket) logs time.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.ports import PsaVendor, TicketNote, TicketRef, TicketResult, TicketSpec, TicketStatus, TimeEntry
from gatekeeper.psa.http import OTHER_COMPANY, PsaHttp, base_url, body_of, ticket_id
from gatekeeper.tenancy.psa_settings import ConnectWiseSettings

API_PATH = "/v4_6_release/apis/3.0"


class ConnectWiseTickets:
    """The `TicketSystem` of one tenant on ConnectWise PSA."""

    def __init__(
        self,
        settings: ConnectWiseSettings,
        public_key: str,
        private_key: str,
        client_id: str,
        *,
        policy: RetryPolicy,
        allow_loopback_http: bool = False,
        session: Any = None,
    ) -> None:
        self._settings = settings
        self._base = base_url(settings.url, allow_loopback_http, "psa.url") + API_PATH
        basic = base64.b64encode(f"{settings.login_company}+{public_key}:{private_key}".encode()).decode()
        self._headers = {
            "Authorization": f"Basic {basic}",
            "clientId": client_id,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        self._http = PsaHttp(
            "connectwise",
            policy,
            (private_key, public_key, client_id, basic),
            session,
            allow_loopback_http=allow_loopback_http,
        )

    def __repr__(self) -> str:
        return f"ConnectWiseTickets(site={self._settings.url!r})"

    @property
    def vendor(self) -> PsaVendor:
        return "connectwise"

    def _send(self, method: str, path: str, operation: str, **kwargs: Any) -> Any:
        return self._http.send(method, self._base + path, headers=lambda: self._headers, operation=operation, **kwargs)

    def find_or_open(self, ticket: TicketSpec) -> TicketResult:
        if ticket.ticket_id is not None:
            fields = {"fields": "id,company/identifier"}
            outcome = self._send("GET", f"/service/tickets/{ticket.ticket_id}", "find", params=fields)
            found = body_of(outcome)
            company = (found.get("company") or {}) if isinstance(found, dict) else {}
            identifier = company.get("identifier") if isinstance(company, dict) else None
            if outcome.ok and str(identifier or "").casefold() != self._settings.company.casefold():
                return self._http.failed("find_or_open", f"ticket {ticket.ticket_id}: {OTHER_COMPANY}")
            ref = TicketRef(vendor="connectwise", id=ticket.ticket_id) if outcome.ok else None
            return self._http.result("find_or_open", outcome, f"ticket {ticket.ticket_id}", ref)
        query = {"conditions": f'summary like "%{ticket.key}%"', "fields": "id", "pageSize": "1"}
        found = self._send("GET", "/service/tickets", "find", params=query)
        rows = body_of(found)
        if not found.ok:
            return self._http.result("find_or_open", found, "ticket search")
        if isinstance(rows, list) and rows and isinstance(rows[0], dict) and ticket_id(rows[0].get("id")):
            ref = TicketRef(vendor="connectwise", id=str(rows[0]["id"]), opened=True)
            return self._http.result("find_or_open", found, f"ticket {ref.id} (opened before)", ref)
        summary = f"{ticket.summary[: 100 - len(ticket.key) - 3]} ({ticket.key})"
        body: dict[str, Any] = {
            "summary": summary,
            "initialDescription": ticket.description or ticket.summary,
            "board": {"name": self._settings.board},
            "company": {"identifier": self._settings.company},
        }
        if self._settings.statuses.in_progress:
            body["status"] = {"name": self._settings.statuses.in_progress}
        opened = self._send("POST", "/service/tickets", "open", json=body)
        new_id = ticket_id((body_of(opened) or {}).get("id")) if isinstance(body_of(opened), dict) else None
        if opened.ok and new_id is None:
            return self._http.failed("find_or_open", "ticket opened but the answer named no id")
        ref = TicketRef(vendor="connectwise", id=new_id, opened=True) if new_id else None
        return self._http.result("find_or_open", opened, f"ticket opened on board {self._settings.board}", ref)

    def add_note(self, ref: TicketRef, note: TicketNote) -> TicketResult:
        body = {
            "text": f"{note.title}\n\n{note.text}",
            "detailDescriptionFlag": not note.internal,
            "internalAnalysisFlag": note.internal,
            "resolutionFlag": False,
        }
        outcome = self._send("POST", f"/service/tickets/{ref.id}/notes", "note", json=body)
        return self._http.result("add_note", outcome, f"note on ticket {ref.id}", ref)

    def set_status(self, ref: TicketRef, status: TicketStatus) -> TicketResult:
        name = getattr(self._settings.statuses, status)
        if not name:
            return self._http.skipped("set_status", f"no status mapped for {status}", ref)
        patch = [{"op": "replace", "path": "status", "value": {"name": name}}]
        outcome = self._send("PATCH", f"/service/tickets/{ref.id}", "status", json=patch)
        return self._http.result("set_status", outcome, f"ticket {ref.id} status {name}", ref)

    def raise_priority(self, ref: TicketRef) -> TicketResult:
        name = self._settings.rollback_priority
        if not name:
            return self._http.skipped("raise_priority", "no rollback priority configured", ref)
        value = {"id": int(name)} if name.isdigit() else {"name": name}
        patch = [{"op": "replace", "path": "priority", "value": value}]
        outcome = self._send("PATCH", f"/service/tickets/{ref.id}", "priority", json=patch)
        return self._http.result("raise_priority", outcome, f"ticket {ref.id} priority {name}", ref)

    def log_time(self, ref: TicketRef, entry: TimeEntry) -> TicketResult:
        start = entry.started_at
        body = {
            "chargeToId": int(ref.id),
            "chargeToType": "ServiceTicket",
            "timeStart": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "timeEnd": (start + timedelta(minutes=entry.minutes)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "notes": entry.notes or "Gatekeeper",
        }
        outcome = self._send("POST", "/time/entries", "time", json=body)
        return self._http.result("log_time", outcome, f"{entry.minutes} min on ticket {ref.id}", ref)
