"""What the three local PSA servers (ConnectWise, Autotask, HaloPSA) share: a ticket book the tests read
(tickets, their notes, statuses, priorities, time), numbered like the vendors number tickets, and an
outage switch (`down`: every call answers 503, or 429 with `Retry-After`). Each vendor's wire format,
paths and authentication live in its own module (connectwise.py, autotask.py, halopsa.py)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from devstack.server import LocalServer, RecordedRequest, Response, json_response


@dataclass
class LocalTicket:
    id: int
    summary: str
    company: str | None = None
    board: str | None = None
    status: str | None = None
    priority: str | None = None
    external_id: str | None = None
    description: str = ""
    notes: list[dict[str, Any]] = field(default_factory=list)
    time: list[dict[str, Any]] = field(default_factory=list)


class LocalPsaServer(LocalServer):
    """A recording PSA: `tickets` by id, `outage(status)` until `restore()`."""

    def __init__(self, first_id: int = 1000) -> None:
        super().__init__()
        self.tickets: dict[int, LocalTicket] = {}
        self._ids = itertools.count(first_id)
        self._down: tuple[int, int | None] | None = None

    def add_ticket(self, summary: str, **fields: Any) -> LocalTicket:
        """A ticket that already exists in the PSA (a change request the service desk opened)."""
        with self._lock:
            ticket = LocalTicket(id=next(self._ids), summary=summary, **fields)
            self.tickets[ticket.id] = ticket
            return ticket

    def open_ticket(self, summary: str, **fields: Any) -> LocalTicket:
        return self.add_ticket(summary, **fields)

    def outage(self, status: int = 503, retry_after: int | None = None) -> None:
        self._down = (status, retry_after)

    def restore(self) -> None:
        self._down = None

    def notes_of(self, ticket_id: int | str) -> list[dict[str, Any]]:
        ticket = self.tickets.get(int(ticket_id))
        return list(ticket.notes) if ticket else []

    def _dispatch(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        down = self._down
        if down is not None:
            status, retry_after = down
            extra = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            answer = json_response(status, {"message": "service unavailable (local outage)"}, extra)
            with self._lock:
                self.requests.append(RecordedRequest(method, path, query, headers, body, status))
            return answer
        return super()._dispatch(method, path, query, headers, body)
