"""Local Datto RMM API (v2) for the RMM client: the OAuth token endpoint and the calls it makes.

    POST /auth/oauth/token              Basic public-client:public; form grant_type=password,
                                        username=<API key>, password=<secret key>
                                        -> {"access_token", "token_type": "bearer", "expires_in", "scope"}
    POST /api/v2/alert/{alertUid}/resolve  -> 200 (404 for an unknown alert)
    GET  /api/v2/device/{deviceUid}        -> the device (`uid`, `hostname`, `online`)

API calls without a current token answer 401. Outages: `fail_next(n, 503 | 429, retry_after=...)` from the
base. Source: https://rmm.datto.com/help/en/Content/2SETUP/APIv2.htm.
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any
from urllib.parse import parse_qs

from devstack.server import LocalServer, Response, bearer_token, json_response

PUBLIC_CLIENT = "Basic " + base64.b64encode(b"public-client:public").decode()


class DattoRmmServer(LocalServer):
    name = "local Datto RMM"

    def __init__(self, api_key: str, api_secret: str, *, expires_in: int = 360_000) -> None:
        super().__init__()
        self.api_key = api_key
        self.api_secret = api_secret
        self.expires_in = expires_in
        self.tokens: dict[str, float] = {}
        self.devices: dict[str, dict[str, Any]] = {}
        self.alerts: dict[str, bool] = {}  # uid -> resolved

    def add_device(self, uid: str, hostname: str, *, online: bool = True) -> None:
        self.devices[uid] = {"uid": uid, "hostname": hostname, "online": online}

    def add_alert(self, uid: str) -> None:
        self.alerts[uid] = False

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        if path == "/auth/oauth/token" and method == "POST":
            return self._token(headers, body)
        token = bearer_token(headers)
        if token is None or self.tokens.get(token, 0) < time.time():
            return json_response(401, {"error": "invalid_token"})
        parts = path.strip("/").split("/")
        if parts[:3] == ["api", "v2", "alert"] and len(parts) == 5 and parts[4] == "resolve" and method == "POST":
            if parts[3] not in self.alerts:
                return json_response(404, {"message": "alert not found"})
            self.alerts[parts[3]] = True
            return json_response(200, {})
        if parts[:3] == ["api", "v2", "device"] and len(parts) == 4 and method == "GET":
            device = self.devices.get(parts[3])
            return json_response(200, device) if device else json_response(404, {"message": "device not found"})
        return json_response(404, {"message": "not found"})

    def _token(self, headers: dict[str, str], body: bytes) -> Response:
        if headers.get("authorization") != PUBLIC_CLIENT:
            return json_response(401, {"error": "unauthorized", "error_description": "client authentication"})
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "password":
            return json_response(400, {"error": "unsupported_grant_type"})
        if form.get("username") != self.api_key or form.get("password") != self.api_secret:
            return json_response(400, {"error": "invalid_grant", "error_description": "Bad credentials"})
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.time() + self.expires_in
        return json_response(
            200, {"access_token": token, "token_type": "bearer", "expires_in": self.expires_in, "scope": "default"}
        )
