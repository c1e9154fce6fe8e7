"""A local Bot Connector (the Teams service's REST API for bots), for the bot's tests and the demo.

Answers the documented paths the Agents SDK's connector client calls: `POST /v3/conversations` (create a 1:1
conversation with a user by Entra object id and tenant), `POST /v3/conversations/{id}/activities` (send) and
`PUT /v3/conversations/{id}/activities/{activityId}` (update a card). Every call must carry the bot's token
(checked by `verify`, e.g. `LocalBotFrameworkIssuer.verify_bot_token`); a user in `not_installed` gets the 403
Teams answers when the bot's app is not installed for them, until `install(user)` (the local Graph calls it).
Everything received is recorded (`conversations`, `activities`, `updates`).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

from devstack.server import LocalServer, Response, bearer_token, json_response


class LocalBotConnector(LocalServer):
    name = "local-bot-connector"

    def __init__(self, verify: Callable[[str], bool]) -> None:
        super().__init__()
        self._verify = verify
        self._state = threading.Lock()
        self.not_installed: set[str] = set()
        self.conversations: dict[str, dict[str, Any]] = {}  # conversation id -> create request
        self.activities: dict[str, dict[str, dict[str, Any]]] = {}  # conversation id -> activity id -> latest

    def install(self, user_id: str) -> None:
        with self._state:
            self.not_installed.discard(user_id.lower())

    def cards(self, conversation_id: str) -> list[dict[str, Any]]:
        """The latest card content of every activity in the conversation, in the order they were sent."""
        with self._state:
            sent = list(self.activities.get(conversation_id, {}).values())
        return [
            a["content"]
            for activity in sent
            for a in activity.get("attachments") or []
            if a.get("contentType") == "application/vnd.microsoft.card.adaptive"
        ]

    def conversation_of(self, user_id: str) -> str | None:
        with self._state:
            return next(
                (cid for cid, c in self.conversations.items() if any(m.get("id") == user_id for m in c["members"])),
                None,
            )

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        token = bearer_token(headers)
        if token is None or not self._verify(token):
            return json_response(401, {"error": {"code": "Unauthorized", "message": "Authorization has been denied."}})
        parts = [p for p in path.split("/") if p]
        document = json.loads(body) if body else {}
        if method == "POST" and parts == ["v3", "conversations"]:
            return self._create(document)
        if len(parts) >= 4 and parts[:2] == ["v3", "conversations"] and parts[3] == "activities":
            conversation = parts[2]
            with self._state:
                if conversation not in self.conversations:
                    return json_response(404, {"error": {"code": "ConversationNotFound", "message": "Not found."}})
                sent = self.activities.setdefault(conversation, {})
                if method == "POST" and len(parts) == 4:
                    activity_id = "1:" + uuid.uuid4().hex
                    sent[activity_id] = document
                    return json_response(201, {"id": activity_id})
                if method == "PUT" and len(parts) == 5 and parts[4] in sent:
                    sent[parts[4]] = document
                    return json_response(200, {"id": parts[4]})
            return json_response(404, {"error": {"code": "ActivityNotFound", "message": "Not found."}})
        return json_response(404, {"error": {"code": "NotFound", "message": f"No route {method} {path}"}})

    def _create(self, document: dict[str, Any]) -> Response:
        members = document.get("members") or []
        tenant = document.get("tenantId") or ((document.get("channelData") or {}).get("tenant") or {}).get("id")
        if not members or not tenant or document.get("isGroup"):
            return json_response(400, {"error": {"code": "BadArgument", "message": "One member and a tenant."}})
        user = str(members[0].get("id", "")).lower()
        with self._state:
            if user in self.not_installed:
                return json_response(
                    403, {"error": {"code": "Forbidden", "message": "The bot is not installed for this user."}}
                )
            conversation = next(
                (cid for cid, c in self.conversations.items() if c["members"][0]["id"].lower() == user), None
            )
            if conversation is None:
                conversation = "a:" + uuid.uuid4().hex
                self.conversations[conversation] = document
        return json_response(201, {"id": conversation})
