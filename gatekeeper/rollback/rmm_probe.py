"""The watch's `rmm` probe: the tenant's RMM (NinjaOne, Datto RMM) asked whether the named devices are online.

`pass` when every device is online; `fail` when the RMM reports one offline (named in the detail); `error`
when it cannot be evaluated (no RMM configured for the tenant, its secret missing, the RMM not answering after
the client's retries, a device it does not report on), which counts towards `consecutive_error_limit`, as
for the other probes. Devices are asked in order and the first offline one decides.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from gatekeeper.policy.watch import RmmProbeSpec
from gatekeeper.rollback.probes import ProbeResult

if TYPE_CHECKING:
    from gatekeeper.integrations.rmm import DeviceManagers


class RmmDeviceProbe:
    """Runs `RmmProbeSpec`s through the tenant's `DeviceManager` (looked up per run: settings may change)."""

    def __init__(self, managers: Callable[[], DeviceManagers]) -> None:
        self._managers = managers

    def run(self, spec: RmmProbeSpec, tenant_id: str, deployed_at: datetime | None = None) -> ProbeResult:
        manager = self._managers().for_tenant(tenant_id)
        if manager is None:
            return ProbeResult(spec.name, "error", "no RMM configured for the tenant (or its secret is missing)")
        online: list[str] = []
        for device in spec.devices:
            status = manager.device_status(device)
            if not status.ok or status.online is None:
                return ProbeResult(spec.name, "error", f"device {device}: {status.detail or 'status unknown'}")
            if not status.online:
                shown = f"{device} ({status.name})" if status.name else device
                return ProbeResult(spec.name, "fail", f"device {shown} is offline in {manager.vendor}")
            online.append(device)
        return ProbeResult(spec.name, "pass", f"{len(online)} device(s) online in {manager.vendor}")
