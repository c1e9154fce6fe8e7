"""Local NinjaOne public API (v2) for the RMM client: the OAuth token endpoint and the calls it makes.

    POST /ws/oauth/token              form grant_type=client_credentials, client_id, client_secret, scope
                                      -> {"access_token", "token_type": "Bearer", "expires_in", "scope"}; 401
                                      {"error": "invalid_client"} for wrong credentials, 400 for another grant
    PUT    /v2/device/{id}/maintenance  {"disabledFeatures": [...], "start", "end", "reasonMessage"} -> 204
    DELETE /v2/device/{id}/maintenance  -> 204 (404 when none is scheduled)
    POST   /v2/alert/{uid}/reset        -> 204 (404 for an unknown alert)
    GET    /v2/device/{id}              -> the device (`offline`, `systemName`, `maintenance`)

API calls without a current token answer 401. Outages: `fail_next(n, 503 | 429, retry_after=...)` from the
base. Sources: https://app.ninjarmm.com/apidocs/?links.active=authorization and ?links.active=core.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qs

from devstack.server import LocalServer, Response, bearer_token, empty_response, json_response

FEATURES = frozenset({"ALERTS", "PATCHING", "AVSCANS", "TASKS"})


class NinjaOneServer(LocalServer):
    name = "local NinjaOne"

    def __init__(self, client_id: str, client_secret: str, *, expires_in: int = 3600) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.expires_in = expires_in
        self.tokens: dict[str, float] = {}  # token -> expiry (epoch seconds)
        self.devices: dict[str, dict[str, Any]] = {}
        self.maintenance: dict[str, dict[str, Any]] = {}
        self.alerts: dict[str, str] = {}  # uid -> TRIGGERED | RESET

    def add_device(self, device_id: str, name: str, *, offline: bool = False) -> None:
        self.devices[device_id] = {"id": int(device_id), "systemName": name, "displayName": name, "offline": offline}

    def add_alert(self, uid: str) -> None:
        self.alerts[uid] = "TRIGGERED"

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        if path == "/ws/oauth/token" and method == "POST":
            return self._token(headers, body)
        token = bearer_token(headers)
        if token is None or self.tokens.get(token, 0) < time.time():
            return json_response(401, {"error": "invalid_token"})
        parts = path.strip("/").split("/")
        if parts[:2] == ["v2", "device"] and len(parts) == 4 and parts[3] == "maintenance":
            return self._maintenance(method, parts[2], body)
        if parts[:2] == ["v2", "device"] and len(parts) == 3 and method == "GET":
            device = self.devices.get(parts[2])
            if device is None:
                return json_response(404, {"resultCode": "DEVICE_NOT_FOUND"})
            window = self.maintenance.get(parts[2])
            shown = {**device, "maintenance": {"status": "IN_MAINTENANCE", **window}} if window else device
            return json_response(200, shown)
        if parts[:2] == ["v2", "alert"] and len(parts) == 4 and parts[3] == "reset" and method == "POST":
            if parts[2] not in self.alerts:
                return json_response(404, {"resultCode": "ALERT_NOT_FOUND"})
            self.alerts[parts[2]] = "RESET"
            return empty_response(204)
        return json_response(404, {"resultCode": "NOT_FOUND"})

    def _token(self, headers: dict[str, str], body: bytes) -> Response:
        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return json_response(400, {"error": "invalid_request"})
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return json_response(400, {"error": "unsupported_grant_type"})
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return json_response(401, {"error": "invalid_client"})
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.time() + min(self.expires_in, 10**9)  # the answer may name any number
        return json_response(
            200,
            {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in, "scope": form.get("scope")},
        )

    def _maintenance(self, method: str, device_id: str, body: bytes) -> Response:
        if device_id not in self.devices:
            return json_response(404, {"resultCode": "DEVICE_NOT_FOUND"})
        if method == "DELETE":
            if self.maintenance.pop(device_id, None) is None:
                return json_response(404, {"resultCode": "NO_MAINTENANCE"})
            return empty_response(204)
        if method != "PUT":
            return json_response(405, {"resultCode": "METHOD_NOT_ALLOWED"})
        try:
            window = json.loads(body)
        except ValueError:
            return json_response(400, {"resultCode": "INVALID_JSON"})
        features = window.get("disabledFeatures")
        start, end = window.get("start"), window.get("end")
        if not isinstance(features, list) or not features or not set(features) <= FEATURES:
            return json_response(400, {"resultCode": "INVALID_DISABLED_FEATURES"})
        if not isinstance(end, int) or (start is not None and (not isinstance(start, int) or start >= end)):
            return json_response(400, {"resultCode": "INVALID_MAINTENANCE_WINDOW"})
        self.maintenance[device_id] = window
        return empty_response(204)
