"""The services gate activities use, resolved through one registry.

Activities are plain functions called by the Functions host (or the local runner) with a JSON input and
nothing else, so they find their collaborators here: tests and the demo `configure()` explicit services
(Azurite, local keys, the outbox, local HTTP servers); when nothing is configured (Azure), the first
activity builds them from app settings (`gatekeeper.gates.wiring`); `configure_factory()` replaces that recipe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from gatekeeper.gates.effects import AuditTrail, Decider, PipelineCallbacks
from gatekeeper.gates.store import GateIndex, GateStore
from gatekeeper.integrations.notify import Notifier
from gatekeeper.security.requester import RequesterResolver, UserDirectory
from gatekeeper.store.envelope import EnvelopeCipher
from gatekeeper.store.tables import StorageAccount
from gatekeeper.tenancy.identities import IdentityMap


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _nobody(_tenant_id: str) -> tuple[str, ...]:
    return ()


@dataclass
class GateServices:
    storage: StorageAccount
    cipher: EnvelopeCipher
    decider: Decider
    audit_for: Callable[[str], AuditTrail]
    notifier: Notifier
    callbacks: PipelineCallbacks
    approval_base_url: str = "http://localhost:7071"
    # Who hears about L1 changes and failed callbacks when the policy names nobody (tenant contacts).
    operators_for: Callable[[str], tuple[str, ...]] = _nobody
    clock: Callable[[], datetime] = _utc_now
    # Addresses and object ids of directory users (Graph), to resolve requesters known only by address.
    directory: UserDirectory | None = None
    _stores: dict[str, GateStore] = field(default_factory=dict, repr=False)
    _identity_maps: dict[str, IdentityMap] = field(default_factory=dict, repr=False)

    def identities(self, tenant_id: str) -> IdentityMap:
        """The tenant's identity map (external identities -> Entra object ids)."""
        found = self._identity_maps.get(tenant_id)
        if found is None:
            found = self._identity_maps[tenant_id] = IdentityMap(self.storage, tenant_id, self.cipher)
        return found

    @cached_property
    def requesters(self) -> RequesterResolver:
        return RequesterResolver(self.identities, self.directory)

    def gates(self, tenant_id: str) -> GateStore:
        store = self._stores.get(tenant_id)
        if store is None:
            store = self._stores[tenant_id] = GateStore(self.storage, tenant_id, self.cipher)
        return store

    @cached_property
    def index(self) -> GateIndex:
        return GateIndex(self.storage)

    def approval_link(self, gate_id: str) -> str:
        return f"{self.approval_base_url.rstrip('/')}/api/approvals/{gate_id}"


_services: GateServices | None = None
_factory: Callable[[], GateServices] | None = None
_lock = threading.Lock()


def configure(services: GateServices | None) -> None:
    """Install the services activities use (tests, the demo, the composition root); None clears them."""
    global _services
    with _lock:
        _services = services


def configure_factory(factory: Callable[[], GateServices] | None) -> None:
    """Install a builder that runs on first use instead of the app-settings recipe (None restores it)."""
    global _factory
    with _lock:
        _factory = factory


def get() -> GateServices:
    global _services
    if _services is None:
        with _lock:
            if _services is None:
                _services = (_factory or _from_settings)()
    return _services


def _from_settings() -> GateServices:
    """The production default (Azure, `func start`): built from app settings on first use, imported only
    then so that indexing the Functions app stays fast."""
    from gatekeeper.gates.wiring import gate_services_from_settings

    return gate_services_from_settings()
