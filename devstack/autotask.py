"""Local Autotask REST API (v1.0) for the ticket write-back: zone discovery and the `Tickets`,
`TicketNotes` and `TimeEntries` entities as the product's client uses them (gatekeeper/psa/autotask.py
cites the vendor's documentation).

- `GET /atservicesrest/v1.0/zoneInformation?user=` needs no authentication and answers the zone
  (`{"zoneName", "url", "webUrl", "ci"}`); its `url` is this server's `/ATServicesRest/`.
- Every other call needs the headers `ApiIntegrationCode`, `UserName` and `Secret` of the API user;
  otherwise 401 (`{"errors": [...]}`), as the service answers.
- `GET /Tickets/{id}` -> `{"item": {...}}` (`{"item": null}` when none); `GET /Tickets/query?search=` with
  an `eq` filter on `externalID` or `id` -> `{"items": [...], "pageDetails": {...}}`; `POST /Tickets`
  (companyID, queueID, title, status, priority required) -> `{"itemId": n}`; `PATCH /Tickets` with `id`;
  `POST /Tickets/{id}/Notes` (title or description, noteType, publish) -> `{"itemId": n}`;
  `POST /TimeEntries` -> `{"itemId": n}`.
"""

from __future__ import annotations

import json
from typing import Any

from devstack.psa_tickets import LocalPsaServer, LocalTicket
from devstack.server import Response, json_response

REQUIRED_TICKET = ("companyID", "queueID", "title", "status", "priority")


def _error(status: int, message: str) -> Response:
    return json_response(status, {"errors": [message]})


class LocalAutotask(LocalPsaServer):
    name = "local Autotask"

    def __init__(self, username: str, secret: str, integration_code: str) -> None:
        super().__init__(first_id=7300)
        self._auth = {"username": username, "secret": secret, "apiintegrationcode": integration_code}
        self.username = username

    @property
    def discovery_url(self) -> str:
        return f"{self.url}/atservicesrest"

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        lowered = path.lower().rstrip("/")
        if lowered == "/atservicesrest/v1.0/zoneinformation" and method == "GET":
            if (query.get("user") or [""])[0].lower() != self.username.lower():
                return _error(404, "Zone information could not be determined for the user")
            return json_response(
                200, {"zoneName": "Local", "url": f"{self.url}/ATServicesRest/", "webUrl": self.url, "ci": 1}
            )
        if not lowered.startswith("/atservicesrest/v1.0/"):
            return _error(404, "Not found")
        if any(headers.get(name) != value for name, value in self._auth.items()):
            return _error(401, "Unauthorized")
        rest = path[len("/atservicesrest/v1.0") :].rstrip("/")
        document: Any = json.loads(body) if body else None
        ticket: LocalTicket | None
        parts = rest.split("/")
        if rest == "/Tickets/query" and method == "GET":
            search = json.loads((query.get("search") or ["{}"])[0])
            filters = search.get("filter") or []
            items = [t for t in self.tickets.values()]
            for item in filters:
                if item.get("op") != "eq":
                    return _error(400, "only eq filters are understood here")
                if item.get("field") == "externalID":
                    items = [t for t in items if t.external_id == item.get("value")]
                elif item.get("field") == "id":
                    items = [t for t in items if t.id == int(item.get("value"))]
            rows = [{"id": t.id, "title": t.summary, "externalID": t.external_id} for t in items]
            return json_response(200, {"items": rows, "pageDetails": {"count": len(rows)}})
        if rest == "/Tickets" and method == "POST":
            missing = [name for name in REQUIRED_TICKET if not isinstance(document, dict) or name not in document]
            if missing:
                return _error(500, f"Missing required field(s): {', '.join(missing)}")
            ticket = self.open_ticket(
                document["title"],
                company=str(document["companyID"]),
                board=str(document["queueID"]),
                status=str(document["status"]),
                priority=str(document["priority"]),
                external_id=document.get("externalID"),
                description=document.get("description", ""),
            )
            return json_response(200, {"itemId": ticket.id})
        if rest == "/Tickets" and method == "PATCH":
            ticket = self.tickets.get(int((document or {}).get("id") or 0))
            if ticket is None:
                return _error(404, "Ticket not found")
            if "status" in document:
                ticket.status = str(document["status"])
            if "priority" in document:
                ticket.priority = str(document["priority"])
            return json_response(200, {"itemId": ticket.id})
        if len(parts) >= 3 and parts[1] == "Tickets" and parts[2].isdigit():
            ticket = self.tickets.get(int(parts[2]))
            if len(parts) == 3 and method == "GET":
                item = None
                if ticket is not None:
                    company = int(ticket.company) if ticket.company and ticket.company.isdigit() else None
                    item = {"id": ticket.id, "title": ticket.summary, "status": ticket.status, "companyID": company}
                return json_response(200, {"item": item})
            if ticket is None:
                return _error(404, "Ticket not found")
            if len(parts) == 4 and parts[3] == "Notes" and method == "POST":
                if not isinstance(document, dict) or not (document.get("title") or document.get("description")):
                    return _error(500, "title or description is required")
                if "noteType" not in document or "publish" not in document:
                    return _error(500, "Missing required field(s): noteType, publish")
                note = {"id": 90_000 + len(ticket.notes), **document, "ticketID": ticket.id}
                ticket.notes.append(note)
                return json_response(200, {"itemId": note["id"]})
        if rest == "/TimeEntries" and method == "POST":
            ticket = self.tickets.get(int((document or {}).get("ticketID") or 0))
            if ticket is None or "resourceID" not in (document or {}):
                return _error(500, "ticketID and resourceID are required")
            ticket.time.append(document)
            return json_response(200, {"itemId": len(ticket.time)})
        return _error(404, "Not found")
