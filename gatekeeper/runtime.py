"""Builds the product's services from app settings, once per process.

Trigger functions ask this module for what they need; tests and the demo build the same services
explicitly against Azurite and local keys, so no code path differs except where the settings point.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from gatekeeper import settings
from gatekeeper.ingest.deadletter import DeadLetters
from gatekeeper.ingest.dispatcher import EventDispatcher, OrchestrationGateway
from gatekeeper.ingest.queue import PIPELINE_EVENTS_QUEUE, LargeEventStore, QueueEventSink, Sealer
from gatekeeper.ingest.service import IngestionService, TokenValidator
from gatekeeper.store.envelope import SealedDataUnreadable
from gatekeeper.store.tables import StorageAccount
from gatekeeper.tenancy.model import SecretPurpose
from gatekeeper.tenancy.registry import TenantRegistry
from gatekeeper.tenancy.secrets import SecretResolver

if TYPE_CHECKING:
    from gatekeeper.audit.log import AuditLog
    from gatekeeper.policy.document import PolicyDocument
    from gatekeeper.security.groups import GroupMembership
    from gatekeeper.security.principal import Principal
    from gatekeeper.security.requester import UserDirectory


def storage_from_settings() -> StorageAccount:
    connection = settings.get("GATEKEEPER_STORAGE_CONNECTION")
    if connection:
        return StorageAccount(connection_string=connection)
    account = settings.require("GATEKEEPER_STORAGE_ACCOUNT")
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential(managed_identity_client_id=settings.get("AZURE_CLIENT_ID"))
    return StorageAccount(
        table_endpoint=f"https://{account}.table.core.windows.net",
        queue_endpoint=f"https://{account}.queue.core.windows.net",
        blob_endpoint=f"https://{account}.blob.core.windows.net",
        credential=credential,
    )


_UNBUILT = object()

# With no policy published a tenant still gets gates, never automation: L3, a person decides.
NO_POLICY = {"version": 1, "defaults": {"level": "L3"}, "rules": []}


@dataclass
class Runtime:
    """The long-lived services of one process."""

    storage: StorageAccount
    sealer: Sealer
    token_validator: TokenValidator | None = None
    max_body_bytes: int = 1_048_576
    tenant_cache_seconds: float = 60.0
    queue_name: str = PIPELINE_EVENTS_QUEUE
    # Builds the gatekeeper.audit.signing.CheckpointSigner on first audit use, not with the runtime: reading the
    # key (a Key Vault round trip, or validating a local RSA key) is no part of answering an ingestion route.
    # None = no checkpoints (unless one is assigned to `checkpoint_signer`).
    checkpoint_signer_factory: Callable[[], Any] | None = None
    # The process environment: app settings and the values of `env:` secret references. None = os.environ;
    # the local stack passes its own mapping so a demo never needs to touch the real environment.
    environ: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        self._audit_logs: dict[str, AuditLog] = {}
        self._audit_lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._group_membership: object = _UNBUILT
        self._user_directory: object = _UNBUILT
        self._checkpoint_signer: Any = _UNBUILT
        self._signer_lock = threading.Lock()

    @cached_property
    def request_storage(self) -> StorageAccount:
        """The account with request-path budgets: what the HTTP edge reads and writes through, so a storage
        outage is a 503 within 2 s (gatekeeper.store.budgets), not a minute of SDK retries."""
        return self.storage.bounded()

    @cached_property
    def registry(self) -> TenantRegistry:
        return TenantRegistry(self.request_storage, cache_seconds=self.tenant_cache_seconds)

    @cached_property
    def secrets(self) -> SecretResolver:
        return SecretResolver(self.environ)

    @cached_property
    def large_events(self) -> LargeEventStore:
        """Claim-check blobs for events too large for a queue message (`pipeline-events-large`), as the
        dispatcher reads and deletes them: a background path, with the SDK's default budgets."""
        return LargeEventStore.from_storage(self.storage)

    @cached_property
    def sink(self) -> QueueEventSink:
        """The edge's hand-over: queue and claim-check blobs both on request-path budgets; the queue is
        created when a send finds it missing, not by every new instance (cold start)."""
        large = LargeEventStore.from_storage(self.request_storage)
        return QueueEventSink(self.request_storage, self.sealer, self.queue_name, large)

    @cached_property
    def ingestion(self) -> IngestionService:
        return IngestionService(
            self.registry,
            self.secrets,
            self.sink,
            max_body_bytes=self.max_body_bytes,
            token_validator=self.token_validator,
        )

    @cached_property
    def dead_letters(self) -> DeadLetters:
        return DeadLetters(self.storage)

    @property
    def checkpoint_signer(self) -> Any:
        """The audit checkpoint signer (None = no checkpoints), built once, on first use. A failure to build it
        is raised to that caller and retried by the next, so an unreachable key never fails ingestion."""
        with self._signer_lock:
            if self._checkpoint_signer is _UNBUILT:
                factory = self.checkpoint_signer_factory
                self._checkpoint_signer = factory() if factory is not None else None
            return self._checkpoint_signer

    @checkpoint_signer.setter
    def checkpoint_signer(self, value: Any) -> None:
        with self._signer_lock:
            self._checkpoint_signer = value

    @property
    def group_membership(self) -> GroupMembership | None:
        """Directory lookups for approvers whose token lists too many groups: Graph `checkMemberGroups` in
        GATEKEEPER_GRAPH_TENANT_ID with the managed identity, cached per person and group. None when unset.
        Built once per process, under a lock: it owns an HTTP client and an event-loop thread."""
        with self._build_lock:
            if self._group_membership is _UNBUILT:
                self._group_membership = self._build_group_membership()
            return self._group_membership  # type: ignore[return-value]

    @group_membership.setter
    def group_membership(self, value: GroupMembership | None) -> None:
        with self._build_lock:
            self._group_membership = value

    @group_membership.deleter
    def group_membership(self) -> None:
        with self._build_lock:
            self._group_membership = _UNBUILT

    def _build_group_membership(self) -> GroupMembership | None:
        entra_tenant = (settings.get("GATEKEEPER_GRAPH_TENANT_ID", self.environ) or "").strip()
        if not entra_tenant:
            return None
        from azure.identity import DefaultAzureCredential

        from gatekeeper.integrations.graph_groups import GraphGroupMembership
        from gatekeeper.integrations.graph_notify import make_graph_client
        from gatekeeper.security.groups import CachedGroupMembership

        client_id = settings.get("AZURE_CLIENT_ID", self.environ)
        credential = DefaultAzureCredential(**({"managed_identity_client_id": client_id} if client_id else {}))
        graph_url = settings.get("GATEKEEPER_GRAPH_BASE_URL", self.environ) or "https://graph.microsoft.com/v1.0"
        client, http = make_graph_client(credential, graph_url)
        try:
            return CachedGroupMembership(GraphGroupMembership(client, entra_tenant, http_client=http))
        except ValueError as exc:
            raise ValueError(f"GATEKEEPER_GRAPH_TENANT_ID: {exc}") from None

    @property
    def user_directory(self) -> UserDirectory | None:
        """Every address of a directory user (Graph `GET /users/{id}`), cached: requesters known only by an
        address are matched against approvers through it. Same directory and credential as group checks;
        None when GATEKEEPER_GRAPH_TENANT_ID is unset. Built once per process."""
        with self._build_lock:
            if self._user_directory is _UNBUILT:
                self._user_directory = self._build_user_directory()
            return self._user_directory  # type: ignore[return-value]

    @user_directory.setter
    def user_directory(self, value: UserDirectory | None) -> None:
        with self._build_lock:
            self._user_directory = value

    def _build_user_directory(self) -> UserDirectory | None:
        if not (settings.get("GATEKEEPER_GRAPH_TENANT_ID", self.environ) or "").strip():
            return None
        from azure.identity import DefaultAzureCredential

        from gatekeeper.integrations.graph_notify import make_graph_client
        from gatekeeper.integrations.graph_users import CachedUserDirectory, GraphUserDirectory

        client_id = settings.get("AZURE_CLIENT_ID", self.environ)
        credential = DefaultAzureCredential(**({"managed_identity_client_id": client_id} if client_id else {}))
        graph_url = settings.get("GATEKEEPER_GRAPH_BASE_URL", self.environ) or "https://graph.microsoft.com/v1.0"
        client, http = make_graph_client(credential, graph_url, timeout=10.0)
        return CachedUserDirectory(GraphUserDirectory(client, http_client=http))

    def is_registered_entra_tenant(self, entra_tenant_id: str) -> bool:
        """Only tokens from Entra tenants in the registry are worth fetching signing keys for."""
        return self.registry.resolve([f"entra:tenant:{entra_tenant_id.lower()}"]) is not None

    def audit_for(self, tenant_id: str) -> AuditLog:
        """The tenant's audit log (one per tenant per process; its head is read from the table)."""
        from gatekeeper.audit.log import AuditLog

        with self._audit_lock:
            log = self._audit_logs.get(tenant_id)
            if log is None:
                log = self._audit_logs[tenant_id] = AuditLog(
                    self.storage, self.sealer, self.checkpoint_signer, tenant_id, env=self.environ
                )
            return log

    def record_integrity_failure(self, failure: SealedDataUnreadable, route: str) -> bool:
        """Log and audit a sealed value that did not open (gatekeeper.failures.record_integrity_failure)."""
        from gatekeeper.failures import record_integrity_failure

        return record_integrity_failure(self.audit_for, failure, route)

    def policy_for(self, tenant_id: str) -> PolicyDocument:
        """The tenant's current policy; with none published, the safe default (every change needs a human)."""
        from gatekeeper.policy.document import load_policy
        from gatekeeper.policy.store import NoPolicy, PolicyStore

        try:
            return PolicyStore(self.storage, tenant_id).current().document
        except NoPolicy:
            return load_policy(NO_POLICY, name="built-in safe default")

    def entra_tenants_for(self, tenant_id: str) -> tuple[str, ...]:
        """The Entra ID tenants whose people may act for this tenant (approve, audit); none if unknown."""
        record = self.registry.get(tenant_id) if tenant_id.isalnum() else None
        return record.entra_tenant_ids if record else ()

    def operators_for(self, tenant_id: str) -> tuple[str, ...]:
        record = self.registry.get(tenant_id)
        return record.operators if record else ()

    def github_installations(self, tenant_id: str) -> frozenset[int]:
        """The GitHub App installations registered for the tenant: the only ones its callbacks may use."""
        from gatekeeper.tenancy.ownership import github_installations

        record = self.registry.get(tenant_id) if tenant_id.isalnum() else None
        return github_installations(record.identities) if record and record.enabled else frozenset()

    def webhook_url_allowed(self, tenant_id: str, url: str) -> bool:
        """Whether a gate's webhook callback still lies under the tenant's registered callback URL prefixes."""
        from gatekeeper.tenancy.ownership import callback_url_allowed

        record = self.registry.get(tenant_id) if tenant_id.isalnum() else None
        return bool(record and record.enabled and callback_url_allowed(record.callback_url_prefixes, url))

    def callback_secret(self, tenant_id: str) -> bytes:
        record = self.registry.get(tenant_id)
        found = self.secrets.resolve(record, SecretPurpose.CALLBACK_SIGNING) if record else []
        if not found:
            raise LookupError(f"tenant {tenant_id} has no callback signing secret configured")
        return found[0]

    def dispatcher(self, gateway: OrchestrationGateway) -> EventDispatcher:
        return EventDispatcher(self.storage, self.sealer, gateway)


class DeferredTokenValidator:
    """Builds the Entra ID token validator on the first bearer token it is asked to check.

    Most requests (signed webhooks, checks, API keys) carry no bearer token; importing PyJWT and its
    cryptography backends for them made every cold start pay for a route it did not serve."""

    def __init__(self, build: Callable[[], TokenValidator]) -> None:
        self._build = build
        self._built: TokenValidator | None = None
        self._lock = threading.Lock()

    def validate(self, token: str, expected_tenant_id: str | None = None) -> Principal:
        with self._lock:
            if self._built is None:
                self._built = self._build()
            validator = self._built
        return validator.validate(token, expected_tenant_id)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def runtime() -> Runtime:
    """The process-wide runtime, built lazily from settings on first use (not at import: cold start)."""
    global _runtime
    if _runtime is None:
        with _runtime_lock:
            if _runtime is None:
                _runtime = _build_from_settings()
    return _runtime


def set_runtime(value: Runtime | None) -> None:
    """Install a runtime explicitly (the local host and tests), or clear it."""
    global _runtime
    _runtime = value


def _signer_from_settings() -> Any:
    from gatekeeper.audit.signing import signer_from_settings

    return signer_from_settings()


def _build_from_settings() -> Runtime:
    from gatekeeper.store.keys import cipher_from_settings

    storage = storage_from_settings()
    built = Runtime(
        storage=storage,
        sealer=cipher_from_settings(storage),
        checkpoint_signer_factory=_signer_from_settings,
        max_body_bytes=int(settings.get("GATEKEEPER_MAX_BODY_BYTES") or 1_048_576),
        tenant_cache_seconds=float(settings.get("GATEKEEPER_TENANT_CACHE_SECONDS") or 60),
    )
    if settings.get("GATEKEEPER_ENTRA_AUDIENCE"):

        def entra_validator() -> TokenValidator:
            from gatekeeper.security.entra import EntraTokenValidator

            return EntraTokenValidator.from_settings(allowed_tenants=built.is_registered_entra_tenant)

        built.token_validator = DeferredTokenValidator(entra_validator)
    return built
