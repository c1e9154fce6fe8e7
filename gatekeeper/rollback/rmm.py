"""The watch's RMM step (`watch_rmm`): the tenant's RMM (NinjaOne, Datto RMM) around a post-deploy watch.

- maintenance on at the start: the devices of the services the deployment belongs to
  (`rmm.services[].environments` / `.devices`) go into maintenance for the watch window plus a margin, with the
  configured features disabled (patching, AV scans, scripted tasks by default, not alerts: the watch needs
  them); the devices that took it are kept on the watch record;
- maintenance off at the end, for exactly those devices (settings changed meanwhile or not);
- after a successful rollback, the RMM alerts that fired on the watched devices during the watch are reset
  (NinjaOne) or resolved (Datto RMM), when `rmm.resolve_alerts` is on.

Every action is audited (`connector_event`, `data.source` the RMM connector, `data.direction` outbound) with
its outcome; the clients retry with backoff and return failures, so nothing here blocks the watch or the
rollback decision: the orchestrator goes on whatever `RmmDone` says.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from gatekeeper.contracts.watch import RmmDone, RmmInput
from gatekeeper.gates.common import append_audit
from gatekeeper.gates.needs import GateNeeds
from gatekeeper.ports import MaintenanceWindow, RmmResult

if TYPE_CHECKING:
    from gatekeeper.integrations.rmm import DeviceManagers
    from gatekeeper.rollback.store import WatchRecord, WatchStore
    from gatekeeper.tenancy.rmm_settings import RmmSettings

DEFAULT_WINDOW = timedelta(minutes=30)


class RmmNeeds(GateNeeds, Protocol):
    """What the RMM step needs: the watch store, the tenants' RMM clients, the audit log (GateNeeds)."""

    def watches(self, tenant_id: str) -> WatchStore: ...

    @property
    def device_managers(self) -> DeviceManagers: ...


def plan_flags(services: Any, tenant_id: str, environment: str) -> tuple[bool, bool]:
    """(maintenance, rmm) for a new watch: maintenance when configured and the environment has devices; rmm
    (resolve alerts after a rollback) when the tenant's RMM resolves alerts."""
    managers = getattr(services, "device_managers", None)
    settings = managers.settings(tenant_id) if managers is not None else None
    if settings is None:
        return False, False
    return bool(settings.maintenance_mode and settings.devices_for(environment)), settings.resolve_alerts


def rmm_step(services: RmmNeeds, request: RmmInput) -> RmmDone:
    """One RMM action for the watch, audited; a failure is a result."""
    record = services.watches(request.tenant_id).load(request.instance_id)
    if record is None:
        raise LookupError(f"watch {request.instance_id} has no record")
    managers = services.device_managers
    settings = managers.settings(request.tenant_id)
    if settings is None:
        return RmmDone(ok=True, skipped=True, detail="the tenant has no RMM configured")
    manager = managers.for_tenant(request.tenant_id)
    if request.action == "maintenance_on":
        done, results = _maintenance_on(services, record, settings, manager, request.at)
    elif request.action == "maintenance_off":
        done, results = _maintenance_off(services, record, settings, manager, request.at)
    else:
        done, results = _resolve(services, record, settings, manager, request.at)
    for result in results:
        append_audit(
            services,
            record.tenant_id,
            "connector_event",
            record.instance_id,
            f"{record.deployment.repository or ''} {record.deployment.environment}".strip(),
            {
                "source": settings.connector,
                "direction": "outbound",
                "step": result.action,
                "ok": result.ok,
                "skipped": result.skipped,
                "targets": list(result.targets)[:50],
                "failed": list(result.failed)[:50],
                "attempts": result.attempts,
                "status_code": result.status_code,
                "detail": result.detail[:300],
            },
            request.at,
        )
    return done


def _no_client(action: Any, settings: RmmSettings, targets: tuple[str, ...]) -> RmmResult:
    return RmmResult(
        ok=False,
        action=action,
        vendor=settings.vendor,
        targets=targets,
        failed=targets,
        detail=f"no {settings.vendor} client: the reference {settings.client_secret} resolves to no secret",
    )


def _summary(result: RmmResult) -> RmmDone:
    return RmmDone(ok=result.ok, skipped=result.skipped, detail=result.detail[:300])


def _maintenance_on(
    services: RmmNeeds, record: WatchRecord, settings: RmmSettings, manager: Any, at: datetime
) -> tuple[RmmDone, list[RmmResult]]:
    devices = settings.devices_for(record.deployment.environment)
    if not settings.maintenance_mode or not devices:
        return RmmDone(ok=True, skipped=True, detail="no devices to put in maintenance"), []
    if record.rmm_maintenance:  # a retried activity: already done
        return RmmDone(ok=True, detail="already in maintenance"), []
    ends = (record.ends_at or at + DEFAULT_WINDOW) + timedelta(minutes=settings.maintenance_margin_minutes)
    window = MaintenanceWindow(
        devices=devices[:200],
        start=at,
        end=max(ends, at + timedelta(minutes=1)),
        features=settings.maintenance_features,
        reason=f"Gatekeeper post-deploy watch {record.instance_id}"[:300],
    )
    result = (
        manager.start_maintenance(window) if manager is not None else _no_client("maintenance_on", settings, devices)
    )
    taken = tuple(d for d in window.devices if d not in result.failed) if not result.skipped else ()
    if taken:
        services.watches(record.tenant_id).change(record.instance_id, lambda r: {"rmm_maintenance": taken})
    return _summary(result), [result]


def _maintenance_off(
    services: RmmNeeds, record: WatchRecord, settings: RmmSettings, manager: Any, at: datetime
) -> tuple[RmmDone, list[RmmResult]]:
    devices = record.rmm_maintenance
    if not devices:
        return RmmDone(ok=True, skipped=True, detail="no devices in maintenance"), []
    result = (
        manager.end_maintenance(devices) if manager is not None else _no_client("maintenance_off", settings, devices)
    )
    left = tuple(d for d in devices if d in result.failed)
    services.watches(record.tenant_id).change(record.instance_id, lambda r: {"rmm_maintenance": left})
    return _summary(result), [result]


def _resolve(
    services: RmmNeeds, record: WatchRecord, settings: RmmSettings, manager: Any, at: datetime
) -> tuple[RmmDone, list[RmmResult]]:
    prefix = settings.connector + ":"
    uids = tuple(a[len(prefix) :] for a in record.rmm_alerts if a.startswith(prefix))
    if not settings.resolve_alerts or not uids:
        return RmmDone(ok=True, skipped=True, detail="no RMM alert to resolve"), []
    results = [
        manager.resolve_alert(uid) if manager is not None else _no_client("resolve_alert", settings, (uid,))
        for uid in uids
    ]
    resolved = {prefix + uid for uid, result in zip(uids, results, strict=True) if result.ok}
    if resolved:
        services.watches(record.tenant_id).change(
            record.instance_id, lambda r: {"rmm_alerts": tuple(a for a in r.rmm_alerts if a not in resolved)}
        )
    failed = [r for r in results if not r.ok]
    detail = f"{len(resolved)} of {len(uids)} resolved" + (f"; {failed[0].detail}" if failed else "")
    return RmmDone(ok=not failed, detail=detail[:300]), results
