"""Local HaloPSA API for the ticket write-back: the OAuth 2.0 client-credentials token endpoint and the
`Tickets` and `Actions` resources as the product's client uses them (gatekeeper/psa/halopsa.py cites the
vendor's documentation).

- `POST /auth/token` (form: grant_type=client_credentials, client_id, client_secret, scope) ->
  `{"access_token", "token_type": "Bearer", "expires_in"}`; a wrong secret -> 400 `invalid_client`.
  `expire_tokens()` makes every issued token stale (the next call gets 401 and must fetch a new one).
- `/api/...` needs `Authorization: Bearer <issued token>`, else 401.
- `GET /api/Tickets/{id}`; `GET /api/Tickets?search=` -> `{"record_count", "tickets": [...]}`;
  `POST /api/Tickets` with a list: an entry without `id` creates, with `id` updates (`status_id`,
  `priority_id`), answering the ticket(s); `POST /api/Actions` with a list -> the action(s).
"""

from __future__ import annotations

import json
import secrets as token_source
from typing import Any
from urllib.parse import parse_qs

from devstack.psa_tickets import LocalPsaServer
from devstack.server import Response, bearer_token, json_response


class LocalHaloPsa(LocalPsaServer):
    name = "local HaloPSA"

    def __init__(self, client_id: str, client_secret: str) -> None:
        super().__init__(first_id=5100)
        self._client = (client_id, client_secret)
        self._tokens: set[str] = set()
        self.tokens_issued = 0

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        if path.rstrip("/") == "/auth/token" and method == "POST":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            if form.get("grant_type") != "client_credentials":
                return json_response(400, {"error": "unsupported_grant_type"})
            if (form.get("client_id"), form.get("client_secret")) != self._client:
                return json_response(400, {"error": "invalid_client"})
            token = token_source.token_urlsafe(24)
            with self._lock:
                self._tokens.add(token)
                self.tokens_issued += 1
            return json_response(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})
        if not path.startswith("/api/"):
            return json_response(404, {"message": "Not found"})
        if bearer_token(headers) not in self._tokens:
            return json_response(401, {"message": "Unauthorized"})
        rest = path[len("/api") :].rstrip("/")
        document: Any = json.loads(body) if body else None
        parts = rest.split("/")
        if rest == "/Tickets" and method == "GET":
            term = (query.get("search") or [""])[0]
            rows = [{"id": t.id, "summary": t.summary} for t in self.tickets.values() if term and term in t.summary]
            return json_response(200, {"record_count": len(rows), "tickets": rows})
        if rest == "/Tickets" and method == "POST":
            if not isinstance(document, list) or not document:
                return json_response(400, {"message": "a list of tickets is required"})
            answers = []
            for entry in document:
                if "id" in entry:
                    ticket = self.tickets.get(int(entry["id"]))
                    if ticket is None:
                        return json_response(400, {"message": f"ticket {entry['id']} not found"})
                    if "status_id" in entry:
                        ticket.status = str(entry["status_id"])
                    if "priority_id" in entry:
                        ticket.priority = str(entry["priority_id"])
                else:
                    if not entry.get("summary") or "client_id" not in entry:
                        return json_response(400, {"message": "summary and client_id are required"})
                    ticket = self.open_ticket(
                        entry["summary"],
                        company=str(entry["client_id"]),
                        board=entry.get("team"),
                        status=str(entry["status_id"]) if "status_id" in entry else None,
                        description=entry.get("details", ""),
                    )
                answers.append({"id": ticket.id, "summary": ticket.summary, "status_id": ticket.status})
            return json_response(201, answers[0] if len(answers) == 1 else answers)
        if len(parts) == 3 and parts[1] == "Tickets" and parts[2].isdigit() and method == "GET":
            ticket = self.tickets.get(int(parts[2]))
            if ticket is None:
                return json_response(404, {"message": "Ticket not found"})
            client = int(ticket.company) if ticket.company and ticket.company.isdigit() else None
            answer = {"id": ticket.id, "summary": ticket.summary, "status_id": ticket.status, "client_id": client}
            return json_response(200, answer)
        if rest == "/Actions" and method == "POST":
            if not isinstance(document, list) or not document:
                return json_response(400, {"message": "a list of actions is required"})
            answers = []
            for entry in document:
                ticket = self.tickets.get(int(entry.get("ticket_id") or 0))
                if ticket is None:
                    return json_response(400, {"message": "ticket_id is not a ticket"})
                action = {"id": 300 + len(ticket.notes) + len(ticket.time), **entry}
                (ticket.time if "timetaken" in entry else ticket.notes).append(action)
                answers.append(action)
            return json_response(201, answers[0] if len(answers) == 1 else answers)
        return json_response(404, {"message": "Not found"})
