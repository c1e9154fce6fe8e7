"""NinjaOne (public API v2) as a `DeviceManager`.

Sources (read 2026-12-05): authorization https://app.ninjarmm.com/apidocs/?links.active=authorization (OAuth
2.0 client credentials at `POST {instance}/ws/oauth/token`, form `grant_type=client_credentials`,
`client_id`, `client_secret`, `scope`), the core API https://app.ninjarmm.com/apidocs/?links.active=core:
- `PUT /v2/device/{id}/maintenance` `{"disabledFeatures": [ALERTS|PATCHING|AVSCANS|TASKS], "start": <epoch s>,
  "end": <epoch s>, "reasonMessage": ...}` schedules maintenance; `DELETE /v2/device/{id}/maintenance` ends it;
- `POST /v2/alert/{uid}/reset` resets (resolves) a triggered condition alert;
- `GET /v2/device/{id}` the device (`offline`, `systemName`, `displayName`, `maintenance`).
The instance is the tenant's region (app., eu., ca., oc., us2.ninjarmm.com). Scopes: `monitoring management`.
"""

from __future__ import annotations

from urllib.parse import quote

import requests

from gatekeeper.integrations.rmm_device import device_object
from gatekeeper.integrations.rmm_oauth import OAuthApi
from gatekeeper.ports import DeviceStatus, MaintenanceWindow, RmmAction, RmmResult

SCOPES = "monitoring management"


class NinjaOne(OAuthApi):
    vendor = "ninjaone"

    def token_request(self) -> requests.PreparedRequest:
        return requests.Request(
            "POST",
            self.settings.api_url + "/ws/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.settings.client_id,
                "client_secret": self._secret,
                "scope": SCOPES,
            },
            headers={"Accept": "application/json"},
        ).prepare()

    def _each(self, action: RmmAction, method: str, paths: dict[str, str], body: object = None) -> RmmResult:
        failed: list[str] = []
        details: list[str] = []
        attempts, status = 0, None
        for target, path in paths.items():
            outcome, detail = self.call(method, path, json_body=body, what=action.replace("_", " "))
            attempts += outcome.attempts if outcome else 0
            status = outcome.status_code if outcome else status
            # Ending maintenance that already ended is the state we want (404: none scheduled).
            done = outcome is not None and (outcome.ok or (action == "maintenance_off" and status == 404))
            if not done:
                failed.append(target)
                details.append(f"{target}: {detail}")
        return RmmResult(
            ok=not failed,
            action=action,
            vendor=self.vendor,
            targets=tuple(paths),
            failed=tuple(failed),
            status_code=status,
            attempts=attempts,
            detail="; ".join(details)[:500] if failed else f"{len(paths)} done",
        )

    def start_maintenance(self, window: MaintenanceWindow) -> RmmResult:
        body = {
            "disabledFeatures": list(window.features),
            "start": int(window.start.timestamp()),
            "end": int(window.end.timestamp()),
            "reasonMessage": window.reason[:300],
        }
        paths = {d: f"/v2/device/{quote(d, safe='')}/maintenance" for d in window.devices}
        return self._each("maintenance_on", "PUT", paths, body)

    def end_maintenance(self, devices: tuple[str, ...]) -> RmmResult:
        paths = {d: f"/v2/device/{quote(d, safe='')}/maintenance" for d in devices}
        return self._each("maintenance_off", "DELETE", paths)

    def resolve_alert(self, alert_uid: str) -> RmmResult:
        return self._each("resolve_alert", "POST", {alert_uid: f"/v2/alert/{quote(alert_uid, safe='')}/reset"})

    def device_status(self, device_id: str) -> DeviceStatus:
        outcome, detail = self.call("GET", f"/v2/device/{quote(device_id, safe='')}", what="device status")
        body = device_object(self.vendor, device_id, outcome, detail)
        if isinstance(body, DeviceStatus):
            return body
        offline = body.get("offline")
        name = body.get("displayName") or body.get("systemName")
        maintenance = body.get("maintenance")
        return DeviceStatus(
            ok=True,
            device_id=device_id,
            online=(not offline) if isinstance(offline, bool) else None,
            name=str(name)[:200] if name else None,
            in_maintenance=(maintenance.get("status") == "IN_MAINTENANCE") if isinstance(maintenance, dict) else None,
            detail=detail,
        )
