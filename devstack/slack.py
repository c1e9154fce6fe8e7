"""A local Slack Web API (https://docs.slack.dev/reference/methods) for the `slack_sdk.WebClient`: the methods
Gatekeeper calls, answering in Slack's envelope (`{"ok": true, ...}` / `{"ok": false, "error": "..."}` with
HTTP 200, as Slack does), checking the bot token, and recording what was posted so tests can read each
person's messages. Also signs interaction payloads as Slack signs them (signature v0), for the tests and the
demo. Never deployed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlencode

from devstack.server import LocalServer, Response, bearer_token, json_response


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack puts on a request: `X-Slack-Request-Timestamp` and the v0 signature over
    `v0:{timestamp}:{body}` (https://docs.slack.dev/authentication/verifying-requests-from-slack)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest}",
    }


def form_body(payload: dict[str, Any]) -> bytes:
    """An interaction as Slack posts it: `payload=<JSON>` form-encoded."""
    return urlencode({"payload": json.dumps(payload)}).encode()


class LocalSlack(LocalServer):
    """One workspace's Web API. `users` maps user id -> {"email", "real_name"}; DMs to a user id land in the
    IM channel `D<user id>`."""

    name = "local Slack Web API"

    def __init__(self, token: str, team_id: str, users: dict[str, dict[str, str]] | None = None) -> None:
        super().__init__()
        self.token = token
        self.team_id = team_id
        self.users = dict(users or {})
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> {text, blocks, updates}
        self.ephemeral: list[dict[str, Any]] = []
        self.views: list[dict[str, Any]] = []
        self._seq = 0
        self._guard = threading.Lock()

    @property
    def api_url(self) -> str:
        """The WebClient's base_url."""
        return self.url + "/api/"

    def dm_channel(self, user_id: str) -> str:
        return "D" + user_id

    def messages_in(self, channel: str) -> list[dict[str, Any]]:
        return [m for (c, _), m in sorted(self.messages.items()) if c == channel]

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        if bearer_token(headers) != self.token:
            return json_response(200, {"ok": False, "error": "invalid_auth"})
        name = path.removeprefix("/api/")
        args: dict[str, Any] = {k: v[0] for k, v in query.items()}
        if body and headers.get("content-type", "").startswith("application/json"):
            args.update(json.loads(body))
        elif body:  # the WebClient sends some methods form-encoded
            args.update({k: v[0] for k, v in parse_qs(body.decode()).items()})
        handler = {
            "chat.postMessage": self._post,
            "chat.update": self._update,
            "chat.postEphemeral": self._ephemeral,
            "users.info": self._user_info,
            "users.lookupByEmail": self._lookup,
            "views.open": self._views_open,
        }.get(name)
        if handler is None:
            return json_response(200, {"ok": False, "error": "unknown_method"})
        return json_response(200, handler(args))

    def _channel(self, channel: str) -> str:
        return self.dm_channel(channel) if channel in self.users else channel

    def _post(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel") or not (args.get("text") or args.get("blocks")):
            return {"ok": False, "error": "no_text" if args.get("channel") else "channel_not_found"}
        if len(args.get("blocks") or []) > 50:
            return {"ok": False, "error": "invalid_blocks"}
        channel = self._channel(str(args["channel"]))
        with self._guard:
            self._seq += 1
            ts = f"{1_900_000_000 + self._seq}.{self._seq:06d}"
            self.messages[(channel, ts)] = {"text": args.get("text"), "blocks": args.get("blocks"), "updates": 0}
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": args.get("text")}}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        key = (str(args.get("channel")), str(args.get("ts")))
        with self._guard:
            message = self.messages.get(key)
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            message.update(text=args.get("text"), blocks=args.get("blocks"), updates=message["updates"] + 1)
        return {"ok": True, "channel": key[0], "ts": key[1]}

    def _ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("user") not in self.users:
            return {"ok": False, "error": "user_not_in_channel"}
        self.ephemeral.append(args)
        return {"ok": True, "message_ts": f"{int(time.time())}.000001"}

    def _user_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user")))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {
            "ok": True,
            "user": {
                "id": args["user"],
                "team_id": self.team_id,
                "real_name": user.get("real_name", ""),
                "profile": {"email": user.get("email"), "real_name": user.get("real_name", "")},
            },
        }

    def _lookup(self, args: dict[str, Any]) -> dict[str, Any]:
        wanted = str(args.get("email", "")).casefold()
        for user_id, user in self.users.items():
            if str(user.get("email", "")).casefold() == wanted:
                return self._user_info({"user": user_id})
        return {"ok": False, "error": "users_not_found"}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("trigger_id") or not isinstance(args.get("view"), dict):
            return {"ok": False, "error": "invalid_arguments"}
        self.views.append(args)
        return {"ok": True, "view": {"id": f"V{len(self.views):08d}", **args["view"]}}
