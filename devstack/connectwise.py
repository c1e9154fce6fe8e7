"""Local ConnectWise PSA REST API (v3.0) for the ticket write-back: the paths, authentication and shapes
the product's client uses (gatekeeper/psa/connectwise.py cites the vendor's documentation).

- Every request needs `Authorization: Basic base64("{company}+{public}:{private}")` and a `clientId`
  header; otherwise 401 (`{"code": "Unauthorized", ...}`) or 400 for a missing clientId, as documented.
- `GET /v4_6_release/apis/3.0/service/tickets/{id}`, `GET .../service/tickets?conditions=summary like
  "%x%"`, `POST .../service/tickets` (201 with the ticket), `POST .../service/tickets/{id}/notes`,
  `PATCH .../service/tickets/{id}` (a JSON Patch list: `status`, `priority`), `POST .../time/entries`.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from devstack.psa_tickets import LocalPsaServer, LocalTicket
from devstack.server import Response, json_response

PREFIX = "/v4_6_release/apis/3.0"
_LIKE = re.compile(r'^summary like "%(.+)%"$')


class LocalConnectWise(LocalPsaServer):
    name = "local ConnectWise PSA"

    def __init__(self, company: str, public_key: str, private_key: str, client_id: str) -> None:
        super().__init__(first_id=41000)
        token = base64.b64encode(f"{company}+{public_key}:{private_key}".encode()).decode()
        self._authorization = f"Basic {token}"
        self._client_id = client_id

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        if not path.startswith(PREFIX):
            return json_response(404, {"code": "NotFound", "message": "Not found"})
        if not headers.get("clientid"):
            return json_response(400, {"code": "InvalidObject", "message": "clientId header is required"})
        if headers.get("authorization") != self._authorization or headers.get("clientid") != self._client_id:
            return json_response(401, {"code": "Unauthorized", "message": "Authentication failed"})
        rest = path[len(PREFIX) :].rstrip("/")
        document: Any = json.loads(body) if body else None
        ticket: LocalTicket | None
        parts = rest.split("/")
        if rest == "/service/tickets" and method == "GET":
            match = _LIKE.match((query.get("conditions") or [""])[0])
            if not match:
                return json_response(400, {"code": "InvalidObject", "message": "conditions not understood"})
            found = [{"id": t.id} for t in self.tickets.values() if match.group(1) in t.summary]
            return json_response(200, found[: int((query.get("pageSize") or ["25"])[0])])
        if rest == "/service/tickets" and method == "POST":
            if not isinstance(document, dict) or not document.get("summary") or "board" not in document:
                return json_response(400, {"code": "InvalidObject", "message": "summary and board are required"})
            ticket = self.open_ticket(
                document["summary"],
                company=(document.get("company") or {}).get("identifier"),
                board=(document.get("board") or {}).get("name"),
                status=(document.get("status") or {}).get("name"),
                description=document.get("initialDescription", ""),
            )
            return json_response(201, {"id": ticket.id, "summary": ticket.summary})
        if len(parts) >= 4 and parts[1:3] == ["service", "tickets"] and parts[3].isdigit():
            ticket = self.tickets.get(int(parts[3]))
            if ticket is None:
                return json_response(404, {"code": "NotFound", "message": "Ticket not found"})
            if len(parts) == 4 and method == "GET":
                company = {"identifier": ticket.company} if ticket.company else None
                return json_response(200, {"id": ticket.id, "summary": ticket.summary, "company": company})
            if len(parts) == 4 and method == "PATCH":
                if not isinstance(document, list):
                    return json_response(400, {"code": "InvalidObject", "message": "a JSON Patch list is required"})
                for op in document:
                    value = op.get("value") or {}
                    name = value.get("name") if isinstance(value, dict) else None
                    name = name or (str(value.get("id")) if isinstance(value, dict) and "id" in value else None)
                    if op.get("path") == "status":
                        ticket.status = name
                    elif op.get("path") == "priority":
                        ticket.priority = name
                return json_response(200, {"id": ticket.id, "status": {"name": ticket.status}})
            if len(parts) == 5 and parts[4] == "notes" and method == "POST":
                if not isinstance(document, dict) or not document.get("text"):
                    return json_response(400, {"code": "InvalidObject", "message": "text is required"})
                note = {"id": len(ticket.notes) + 1, "ticketId": ticket.id, **document}
                ticket.notes.append(note)
                return json_response(201, note)
        if rest == "/time/entries" and method == "POST":
            ticket = self.tickets.get(int((document or {}).get("chargeToId") or 0))
            if ticket is None or (document or {}).get("chargeToType") != "ServiceTicket":
                return json_response(400, {"code": "InvalidObject", "message": "chargeToId is not a ticket"})
            ticket.time.append(document)
            return json_response(201, {"id": len(ticket.time), **document})
        return json_response(404, {"code": "NotFound", "message": "Not found"})
