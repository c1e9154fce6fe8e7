"""An RMM's answer about one device, read the same way for every vendor: bounded JSON, one object, or a
failed `DeviceStatus` saying why not (no answer, not JSON, not an object). The vendor clients read their own
fields from the object; nothing a vendor sends reaches the watch unbounded."""

from __future__ import annotations

from typing import Any

from gatekeeper import json_bounded
from gatekeeper.integrations.retry import HttpOutcome
from gatekeeper.ports import DeviceStatus


def device_object(
    vendor: str, device_id: str, outcome: HttpOutcome | None, detail: str
) -> dict[str, Any] | DeviceStatus:
    """The device object the vendor answered `GET device` with, or the failed status to return instead."""
    if outcome is None or not outcome.ok or outcome.response is None or outcome.body is None:
        return DeviceStatus(ok=False, device_id=device_id, detail=detail)
    try:
        body = json_bounded.loads(outcome.body)  # bounded: a vendor answer is input too
    except ValueError:
        return DeviceStatus(ok=False, device_id=device_id, detail=f"{vendor} device status: not JSON")
    if not isinstance(body, dict):
        return DeviceStatus(ok=False, device_id=device_id, detail=f"{vendor} device status: not an object")
    return body
