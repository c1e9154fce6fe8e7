"""Datto RMM (API v2) as a `DeviceManager`.

Sources (read 2026-12-05): https://rmm.datto.com/help/en/Content/2SETUP/APIv2.htm (enable API access, create
an API user's key and secret key; the token: `POST {api_url}/auth/oauth/token` with HTTP Basic
`public-client:public` and form `grant_type=password`, `username=<API key>`, `password=<secret key>`; the API
URL is the account's platform, `https://<platform>-api.centrastage.net`) and the platform's Swagger
description (`/api/swagger-ui/index.html`):
- `POST /api/v2/alert/{alertUid}/resolve` resolves an open alert;
- `GET /api/v2/device/{deviceUid}` the device (`online`, `hostname`, `description`).
API v2 has no device maintenance mode (the settings refuse `maintenance_mode` for Datto RMM); asked anyway,
the client answers `skipped` and calls nothing.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

import requests

from gatekeeper.integrations.rmm_device import device_object
from gatekeeper.integrations.rmm_oauth import OAuthApi
from gatekeeper.ports import DeviceStatus, MaintenanceWindow, RmmResult

PUBLIC_CLIENT = base64.b64encode(b"public-client:public").decode("ascii")  # documented, not a secret


class DattoRmm(OAuthApi):
    vendor = "dattormm"

    def token_request(self) -> requests.PreparedRequest:
        return requests.Request(
            "POST",
            self.settings.api_url + "/auth/oauth/token",
            data={"grant_type": "password", "username": self.settings.client_id, "password": self._secret},
            headers={"Authorization": f"Basic {PUBLIC_CLIENT}", "Accept": "application/json"},
        ).prepare()

    def start_maintenance(self, window: MaintenanceWindow) -> RmmResult:
        return RmmResult(
            ok=False,
            action="maintenance_on",
            vendor=self.vendor,
            targets=window.devices,
            skipped=True,
            detail="Datto RMM's API v2 has no device maintenance mode",
        )

    def end_maintenance(self, devices: tuple[str, ...]) -> RmmResult:
        return RmmResult(
            ok=False,
            action="maintenance_off",
            vendor=self.vendor,
            targets=devices,
            skipped=True,
            detail="Datto RMM's API v2 has no device maintenance mode",
        )

    def resolve_alert(self, alert_uid: str) -> RmmResult:
        outcome, detail = self.call("POST", f"/api/v2/alert/{quote(alert_uid, safe='')}/resolve", what="resolve alert")
        ok = outcome is not None and outcome.ok
        return RmmResult(
            ok=ok,
            action="resolve_alert",
            vendor=self.vendor,
            targets=(alert_uid,),
            failed=() if ok else (alert_uid,),
            status_code=outcome.status_code if outcome else None,
            attempts=outcome.attempts if outcome else 0,
            detail=detail,
        )

    def device_status(self, device_id: str) -> DeviceStatus:
        outcome, detail = self.call("GET", f"/api/v2/device/{quote(device_id, safe='')}", what="device status")
        body = device_object(self.vendor, device_id, outcome, detail)
        if isinstance(body, DeviceStatus):
            return body
        online = body.get("online")
        name = body.get("hostname") or body.get("description")
        return DeviceStatus(
            ok=True,
            device_id=device_id,
            online=online if isinstance(online, bool) else None,
            name=str(name)[:200] if name else None,
            detail=detail,
        )
