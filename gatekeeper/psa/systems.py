"""Which `TicketSystem` a tenant has: its `psa` settings (the tenant record), credentials resolved from their
references at the moment of use, one client per tenant and settings version, kept for the process (a
HaloPSA token, an Autotask zone are reused). Returns None for a tenant without a PSA; raises
`PsaConfigError` naming the field when the settings cannot be used (a reference that is not set)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.ports import TicketSystem
from gatekeeper.psa.http import PsaConfigError
from gatekeeper.tenancy.model import TenantRecord
from gatekeeper.tenancy.psa_settings import AutotaskSettings, ConnectWiseSettings, HaloSettings
from gatekeeper.tenancy.references import reference_problem
from gatekeeper.tenancy.secrets import SecretResolver

PSA_RETRY = RetryPolicy(max_attempts=4, initial_wait=1.0, max_wait=10.0, max_retry_after=30.0, read_timeout=15.0)
"""Four attempts, about 15 s of backoff at worst (30 s when the PSA asks): an activity after the pipeline was
answered, so it may wait a little, never long."""


class TicketSystems:
    def __init__(
        self,
        tenant: Callable[[str], TenantRecord | None],
        secrets: SecretResolver,
        *,
        policy: RetryPolicy = PSA_RETRY,
        allow_loopback_http: bool = False,
        clock: Callable[[], datetime] | None = None,
        session: Any = None,
    ) -> None:
        self._tenant = tenant
        self._secrets = secrets
        self._policy = policy
        self._loopback = allow_loopback_http
        self._clock = clock
        self._session = session
        self._built: dict[str, tuple[Any, TicketSystem]] = {}
        self._lock = threading.Lock()

    def settings_for(self, tenant_id: str) -> ConnectWiseSettings | AutotaskSettings | HaloSettings | None:
        record = self._tenant(tenant_id) if tenant_id.isalnum() else None
        return record.psa if record is not None and record.enabled else None

    def for_tenant(self, tenant_id: str) -> TicketSystem | None:
        settings = self.settings_for(tenant_id)
        if settings is None:
            return None
        with self._lock:
            cached = self._built.get(tenant_id)
            if cached is not None and cached[0] == settings:
                return cached[1]
        system = self._build(settings, tenant_id)
        with self._lock:
            self._built[tenant_id] = (settings, system)
        return system

    def _secret(self, settings: Any, name: str, tenant_id: str) -> str:
        ref = getattr(settings.credentials, name)
        refused = reference_problem(tenant_id, ref)  # a record stored before the rule (gatekeeper.tenancy.references)
        if refused is not None:
            raise PsaConfigError(f"psa.credentials.{name}: {refused}")
        value = self._secrets.reference(ref)
        if not value:
            raise PsaConfigError(f"psa.credentials.{name}: the reference {ref} is not set in the app settings")
        return value

    def _build(self, settings: ConnectWiseSettings | AutotaskSettings | HaloSettings, tenant_id: str) -> TicketSystem:
        common: dict[str, Any] = {"policy": self._policy, "allow_loopback_http": self._loopback}
        if self._session is not None:
            common["session"] = self._session
        if isinstance(settings, ConnectWiseSettings):
            from gatekeeper.psa.connectwise import ConnectWiseTickets

            return ConnectWiseTickets(
                settings,
                self._secret(settings, "public_key", tenant_id),
                self._secret(settings, "private_key", tenant_id),
                self._secret(settings, "client_id", tenant_id),
                **common,
            )
        if isinstance(settings, AutotaskSettings):
            from gatekeeper.psa.autotask import AutotaskTickets

            return AutotaskTickets(
                settings,
                self._secret(settings, "username", tenant_id),
                self._secret(settings, "secret", tenant_id),
                self._secret(settings, "integration_code", tenant_id),
                clock=self._clock,
                **common,
            )
        from gatekeeper.psa.halopsa import HaloTickets

        return HaloTickets(
            settings,
            self._secret(settings, "client_id", tenant_id),
            self._secret(settings, "client_secret", tenant_id),
            **common,
        )
