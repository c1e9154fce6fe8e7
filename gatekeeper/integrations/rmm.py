"""RMM clients behind the `DeviceManager` port, per tenant: NinjaOne (gatekeeper.integrations.ninjaone) and
Datto RMM (gatekeeper.integrations.dattormm), both on `rmm_oauth.OAuthApi` (cached tokens, retried calls).

`DeviceManagers.for_tenant` builds the tenant's client from its `rmm:` settings
(gatekeeper.tenancy.rmm_settings), one per tenant and settings, so its token is reused across activities.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.ports import DeviceManager
from gatekeeper.tenancy.references import reference_problem
from gatekeeper.tenancy.rmm_settings import RmmSettings

log = logging.getLogger("gatekeeper.integrations.rmm")


class DeviceManagers:
    """The tenant's `DeviceManager`, built from its `rmm:` settings and cached per tenant and settings."""

    def __init__(
        self,
        settings_for: Callable[[str], RmmSettings | None],
        environ: Mapping[str, str],
        *,
        policy: RetryPolicy | None = None,
        allow_loopback_http: bool = False,
    ) -> None:
        self._settings_for = settings_for
        self._environ = environ
        self._policy = policy
        self._allow_loopback_http = allow_loopback_http
        self._clients: dict[str, tuple[RmmSettings, DeviceManager]] = {}
        self._lock = threading.Lock()

    def settings(self, tenant_id: str) -> RmmSettings | None:
        return self._settings_for(tenant_id)

    def for_tenant(self, tenant_id: str) -> DeviceManager | None:
        """None when the tenant has no RMM configured or its secret reference resolves to nothing."""
        settings = self._settings_for(tenant_id)
        if settings is None:
            return None
        with self._lock:
            cached = self._clients.get(tenant_id)
            if cached is not None and cached[0] == settings:
                return cached[1]
        if reference_problem(tenant_id, settings.client_secret) is not None:
            log.warning("tenant %s: rmm.client_secret names an app setting not its own; no RMM client", tenant_id)
            return None  # a record stored before the rule (gatekeeper.tenancy.references)
        secret = settings.secret(self._environ)
        if secret is None:
            return None
        client = build_device_manager(
            settings, secret, policy=self._policy, allow_loopback_http=self._allow_loopback_http
        )
        with self._lock:
            self._clients[tenant_id] = (settings, client)
        return client


def build_device_manager(
    settings: RmmSettings, secret: str, *, policy: RetryPolicy | None = None, allow_loopback_http: bool = False
) -> DeviceManager:
    """The vendor's client (imported on first use)."""
    if settings.vendor == "ninjaone":
        from gatekeeper.integrations.ninjaone import NinjaOne

        return NinjaOne(settings, secret, policy=policy, allow_loopback_http=allow_loopback_http)
    from gatekeeper.integrations.dattormm import DattoRmm

    return DattoRmm(settings, secret, policy=policy, allow_loopback_http=allow_loopback_http)
