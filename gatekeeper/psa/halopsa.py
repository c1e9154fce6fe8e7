"""HaloPSA tickets through the Halo API.

Documented at https://halopsa.com/apidoc/info (authorisation: OAuth 2.0 client credentials at the
authorisation server `{instance}/auth/token`, `tenant` query parameter for hosted instances) and
https://halopsa.com/apidoc/resources/tickets, .../resources/actions (tickets and their actions); checked
2026-12-05.

- Token: `POST /auth/token[?tenant=]` form `grant_type=client_credentials`, `client_id`, `client_secret`,
  `scope=all` -> `{"access_token", "expires_in"}`; kept until a minute before it expires and fetched again
  after a 401.
- `GET /api/Tickets/{id}` checks a linked ticket (its `client_id` must be the tenant's `company`); `GET
  /api/Tickets?search={key}` finds the ticket this gate opened before (the key is in its summary); `POST
  /api/Tickets` with a list creates (no `id`) or updates (`id`, `status_id` / `priority_id`); `POST
  /api/Actions` with a list adds an action (a note; `hiddenfromuser` for internal ones, `timetaken` in hours
  for time).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.ports import PsaVendor, TicketNote, TicketRef, TicketResult, TicketSpec, TicketStatus, TimeEntry
from gatekeeper.psa.http import OTHER_COMPANY, PsaHttp, base_url, body_of, ticket_id
from gatekeeper.tenancy.psa_settings import HaloSettings

TOKEN_MARGIN = 60.0
MAX_TOKEN_SECONDS = 7 * 24 * 3600  # a longer lifetime in the answer is not believed


def _first(answer: Any) -> dict[str, Any] | None:
    """Halo answers a list POST with the object or a list of objects."""
    if isinstance(answer, list):
        answer = answer[0] if answer else None
    return answer if isinstance(answer, dict) else None


class HaloTickets:
    """The `TicketSystem` of one tenant on HaloPSA."""

    def __init__(
        self,
        settings: HaloSettings,
        client_id: str,
        client_secret: str,
        *,
        policy: RetryPolicy,
        allow_loopback_http: bool = False,
        session: Any = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._base = base_url(settings.url, allow_loopback_http, "psa.url")
        self._client_id = client_id
        self._client_secret = client_secret
        self._monotonic = monotonic
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()
        self._http = PsaHttp("halopsa", policy, (client_secret,), session, allow_loopback_http=allow_loopback_http)

    def __repr__(self) -> str:
        return f"HaloTickets(url={self._settings.url!r})"

    @property
    def vendor(self) -> PsaVendor:
        return "halopsa"

    def _bearer(self) -> str | TicketResult:
        with self._lock:
            if self._token is not None and self._token[1] > self._monotonic():
                return self._token[0]
            params = {"tenant": self._settings.halo_tenant} if self._settings.halo_tenant else None
            form = {
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
                "scope": "all",
            }
            outcome = self._http.send(
                "POST",
                f"{self._base}/auth/token",
                headers=lambda: {"Accept": "application/json"},
                operation="token",
                data=form,
                params=params,
            )
            answer = body_of(outcome)
            token = answer.get("access_token") if isinstance(answer, dict) else None
            if not outcome.ok or not isinstance(token, str) or not token:
                if outcome.ok:
                    return self._http.failed("find_or_open", "token: the answer carried no access_token")
                return self._http.result("find_or_open", outcome, "token")
            lifetime = answer.get("expires_in") if isinstance(answer.get("expires_in"), int) else 3600
            lifetime = min(max(lifetime, 0), MAX_TOKEN_SECONDS)  # before float(): JSON numbers are unbounded
            self._token = (token, self._monotonic() + max(0.0, float(lifetime) - TOKEN_MARGIN))
            return token

    def _send(self, method: str, path: str, operation: Any, **kwargs: Any) -> Any:
        for _ in range(2):  # once more with a new token after a 401
            token = self._bearer()
            if isinstance(token, TicketResult):
                return token
            bearer = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            outcome = self._http.send(
                method,
                f"{self._base}/api{path}",
                headers=lambda bearer=bearer: bearer,  # type: ignore[misc]
                operation=operation,
                **kwargs,
            )
            if outcome.status_code != 401:
                return outcome
            with self._lock:
                self._token = None
        return outcome

    def _done(self, operation: Any, outcome: Any, what: str, ref: TicketRef | None) -> TicketResult:
        if isinstance(outcome, TicketResult):
            return outcome.model_copy(update={"operation": operation, "ref": ref})
        return self._http.result(operation, outcome, what, ref)

    def find_or_open(self, ticket: TicketSpec) -> TicketResult:
        if ticket.ticket_id is not None:
            outcome = self._send("GET", f"/Tickets/{ticket.ticket_id}", "find")
            ok = not isinstance(outcome, TicketResult) and outcome.ok
            found = body_of(outcome) if ok else None
            if ok and str(found.get("client_id") if isinstance(found, dict) else "") != self._settings.company:
                return self._http.failed("find_or_open", f"ticket {ticket.ticket_id}: {OTHER_COMPANY}")
            ref = TicketRef(vendor="halopsa", id=ticket.ticket_id) if ok else None
            return self._done("find_or_open", outcome, f"ticket {ticket.ticket_id}", ref)
        found = self._send("GET", "/Tickets", "find", params={"search": ticket.key, "count": "5"})
        if isinstance(found, TicketResult) or not found.ok:
            return self._done("find_or_open", found, "ticket search", None)
        answer = body_of(found)
        rows = answer.get("tickets") if isinstance(answer, dict) else None
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and ticket.key in str(row.get("summary", "")) and ticket_id(row.get("id")):
                ref = TicketRef(vendor="halopsa", id=str(row["id"]), opened=True)
                return self._http.result("find_or_open", found, f"ticket {ref.id} (opened before)", ref)
        body: dict[str, Any] = {
            "summary": f"{ticket.summary[: 100 - len(ticket.key) - 3]} ({ticket.key})",
            "details": ticket.description or ticket.summary,
            "client_id": int(self._settings.company),
            "team": self._settings.board,
        }
        if self._settings.ticket_type_id:
            body["tickettype_id"] = int(self._settings.ticket_type_id)
        if self._settings.statuses.in_progress:
            body["status_id"] = int(self._settings.statuses.in_progress)
        opened = self._send("POST", "/Tickets", "open", json=[body])
        if isinstance(opened, TicketResult):
            return self._done("find_or_open", opened, "", None)
        created = _first(body_of(opened))
        new_id = ticket_id(created.get("id")) if created else None
        if opened.ok and new_id is None:
            return self._http.failed("find_or_open", "ticket opened but the answer named no id")
        ref = TicketRef(vendor="halopsa", id=new_id, opened=True) if new_id else None
        return self._http.result("find_or_open", opened, f"ticket opened for team {self._settings.board}", ref)

    def add_note(self, ref: TicketRef, note: TicketNote) -> TicketResult:
        action = {
            "ticket_id": int(ref.id),
            "outcome": note.title[:100],
            "note": note.text,
            "hiddenfromuser": note.internal,
        }
        outcome = self._send("POST", "/Actions", "note", json=[action])
        return self._done("add_note", outcome, f"note on ticket {ref.id}", ref)

    def _update(self, ref: TicketRef, operation: Any, field: str, value: str, what: str) -> TicketResult:
        outcome = self._send("POST", "/Tickets", operation, json=[{"id": int(ref.id), field: int(value)}])
        return self._done(operation, outcome, what, ref)

    def set_status(self, ref: TicketRef, status: TicketStatus) -> TicketResult:
        value = getattr(self._settings.statuses, status)
        if not value:
            return self._http.skipped("set_status", f"no status mapped for {status}", ref)
        return self._update(ref, "set_status", "status_id", value, f"ticket {ref.id} status {value}")

    def raise_priority(self, ref: TicketRef) -> TicketResult:
        value = self._settings.rollback_priority
        if not value:
            return self._http.skipped("raise_priority", "no rollback priority configured", ref)
        return self._update(ref, "raise_priority", "priority_id", value, f"ticket {ref.id} priority {value}")

    def log_time(self, ref: TicketRef, entry: TimeEntry) -> TicketResult:
        action = {
            "ticket_id": int(ref.id),
            "outcome": "Time",
            "note": entry.notes or "Gatekeeper",
            "timetaken": round(entry.minutes / 60, 2),
            "hiddenfromuser": True,
        }
        outcome = self._send("POST", "/Actions", "time", json=[action])
        return self._done("log_time", outcome, f"{entry.minutes} min on ticket {ref.id}", ref)
