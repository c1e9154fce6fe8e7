"""The composition root: `build_services(settings, credential)` returns the one typed `Services` object.

This is the only place adapters are built. Azure builds it from app settings on first use
(`get_services()`); tests, the demo and the local stack build the same object over Azurite, local keys and
local servers, passing explicit adapters where no cloud exists. Every member is built on first use, not with
the object: a cold instance answering a signed webhook imports no token validator, checkpoint signer,
policy, audit, approvals, gates or Graph code, and `azure.identity` only when a member needs the credential.
Domain classes receive values from here, never settings.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from gatekeeper.ingest.queue import PIPELINE_EVENTS_QUEUE, LargeEventStore, QueueEventSink, Sealer
from gatekeeper.ingest.service import IngestionService
from gatekeeper.settings import KeyMode, NotifyMode, Settings
from gatekeeper.store.envelope import SealedDataUnreadable
from gatekeeper.store.tables import StorageAccount
from gatekeeper.tenancy.model import SecretPurpose
from gatekeeper.tenancy.registry import TenantRegistry
from gatekeeper.tenancy.secrets import SecretResolver
from gatekeeper.warmup import FIRST_REQUEST

if TYPE_CHECKING:  # the dispatcher and dead letters serve queue triggers only (cold start of HTTP routes)
    from azure.core.credentials import TokenCredential

    from gatekeeper.actions.caller import ActionAuthenticator, GitHubValidator
    from gatekeeper.actions.service import ActionService
    from gatekeeper.audit.log import AuditLog
    from gatekeeper.gates.commit_time import CommitLookup
    from gatekeeper.gates.effects import AuditTrail, Decider, PipelineCallbacks
    from gatekeeper.gates.store import GateIndex, GateStore
    from gatekeeper.health.report import HealthCache
    from gatekeeper.ingest.connectwise_signature import SigningKeys
    from gatekeeper.ingest.deadletter import DeadLetters
    from gatekeeper.ingest.dispatcher import EventDispatcher, OrchestrationGateway
    from gatekeeper.integrations.callbacks import WebhookAllowed, WebhookSecretResolver
    from gatekeeper.integrations.github_app import DigestSigner, GitHubWorkflows, InstallationResolver
    from gatekeeper.integrations.notify import Notifier
    from gatekeeper.integrations.retry import RetryPolicy
    from gatekeeper.integrations.rmm import DeviceManagers
    from gatekeeper.integrations.rollbacks import RollbackRunners
    from gatekeeper.policy.document import PolicyDocument
    from gatekeeper.ports import DependencyProbe, EventPublisher
    from gatekeeper.psa.systems import TicketSystems
    from gatekeeper.recommend.store import Recommender
    from gatekeeper.rollback.steps import HealthProbe
    from gatekeeper.rollback.store import WatchStore
    from gatekeeper.security.groups import GroupMembership
    from gatekeeper.security.identity import TokenValidator
    from gatekeeper.security.principal import Principal
    from gatekeeper.security.requester import RequesterResolver, UserDirectory
    from gatekeeper.slack.channel import SlackNotifier, SlackVotes
    from gatekeeper.slack.edge import Tenants as SlackTenants
    from gatekeeper.store.envelope import EnvelopeCipher
    from gatekeeper.store.keys import TenantKeyProvider
    from gatekeeper.store.retention import TransitKeyPruner
    from gatekeeper.store.transit import KekPublicKey
    from gatekeeper.teams.auth import BotTokenValidator
    from gatekeeper.teams.bot import BotHost
    from gatekeeper.telemetry import Sink as TelemetrySink
    from gatekeeper.tenancy.bootstrap import FirstTenantBootstrap
    from gatekeeper.tenancy.identities import IdentityMap
    from gatekeeper.tenancy.rmm_settings import RmmSettings

_UNBUILT: Any = object()
_FROM_SETTINGS: Any = object()

# With no policy published a tenant still gets gates, never automation: L3, a person decides.
NO_POLICY = {"version": 1, "defaults": {"level": "L3"}, "rules": []}
LOCAL_APPROVAL_BASE_URL = "http://localhost:7071"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Services:
    """The long-lived services of one process, each built once, on first use, from `settings`.

    Keyword arguments replace a member with an explicit one (tests, the demo, the local stack): storage
    and sealer over Azurite and local keys, a notifier, pipeline callbacks or a decider over local servers,
    a clock you control. Members can also be assigned after construction."""

    def __init__(
        self,
        settings: Settings,
        *,
        credential: TokenCredential | None = None,
        storage: StorageAccount | None = None,
        sealer: EnvelopeCipher | None = None,
        queue_name: str = PIPELINE_EVENTS_QUEUE,
        token_validator: TokenValidator | None = _FROM_SETTINGS,
        checkpoint_signer_factory: Callable[[], Any] | None = _FROM_SETTINGS,
        decider: Decider | None = None,
        notifier: Notifier | None = None,
        callbacks: PipelineCallbacks | None = None,
        github_signer: DigestSigner | None = None,
        allow_loopback_http: bool = False,
        audit_for: Callable[[str], AuditTrail] | None = None,
        operators_for: Callable[[str], tuple[str, ...]] | None = None,
        directory: UserDirectory | None = _FROM_SETTINGS,
        clock: Callable[[], datetime] = _utc_now,
        approval_base_url: str | None = None,
        health_probe: HealthProbe | None = None,
        github_workflows: GitHubWorkflows | None = None,
        rollback_runners: RollbackRunners | None = None,
        events: EventPublisher | None = None,
    ) -> None:
        self.settings = settings
        self.queue_name = queue_name
        self.clock = clock
        self.approval_base_url = approval_base_url or settings.approval_base_url or LOCAL_APPROVAL_BASE_URL
        self._credential = credential
        self._github_signer = github_signer
        self._allow_loopback_http = allow_loopback_http
        self._audit_for_override = audit_for
        self._operators_for_override = operators_for
        for name, value in (
            ("storage", storage),
            ("sealer", sealer),
            ("decider", decider),
            ("notifier", notifier),
            ("callbacks", callbacks),
            ("health_probe", health_probe),
            ("github_workflows", github_workflows),
            ("rollback_runners", rollback_runners),
            ("events", events),
        ):
            if value is not None:  # an explicit member wins over the settings recipe (cached_property)
                self.__dict__[name] = value
        if token_validator is not _FROM_SETTINGS:
            self.__dict__["token_validator"] = token_validator
        self.checkpoint_signer_factory = (
            self._checkpoint_signer_from_settings
            if checkpoint_signer_factory is _FROM_SETTINGS
            else checkpoint_signer_factory
        )
        self._audit_logs: dict[str, AuditLog] = {}
        self._audit_lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._credential_lock = threading.Lock()
        self._signer_lock = threading.Lock()
        self._group_membership: Any = _UNBUILT
        self._user_directory: Any = _UNBUILT if directory is _FROM_SETTINGS else directory
        self._checkpoint_signer: Any = _UNBUILT
        self._stores: dict[str, GateStore] = {}
        self._watch_stores: dict[str, WatchStore] = {}
        self._identity_maps: dict[str, IdentityMap] = {}

    # ----- the one credential, storage and sealing ------------------------------------------------------

    @property
    def credential(self) -> TokenCredential:
        """The process's one Azure credential (the managed identity in Azure, honouring AZURE_CLIENT_ID),
        built on first use: local key mode over a connection string never imports azure.identity."""
        with self._credential_lock:
            if self._credential is None:
                from azure.identity import DefaultAzureCredential

                client_id = self.settings.azure_client_id
                self._credential = DefaultAzureCredential(
                    **({"managed_identity_client_id": client_id} if client_id else {})
                )
            return self._credential

    def _lazy_credential(self) -> TokenCredential:
        return self.credential

    @cached_property
    def storage(self) -> StorageAccount:
        return build_storage(self.settings, self._lazy_credential)

    @cached_property
    def key_provider(self) -> TenantKeyProvider:
        """Tenant key-encryption keys: Key Vault (customer-managed) or a local folder (development)."""
        return build_key_provider(self.settings, self._lazy_credential)

    @cached_property
    def sealer(self) -> EnvelopeCipher:
        from gatekeeper.store.keys import build_cipher

        return build_cipher(self.storage, self.key_provider, self.settings.data_key_cache_seconds)

    @property
    def cipher(self) -> EnvelopeCipher:
        """The sealer, as the gate steps and stores name it."""
        return self.sealer

    @cached_property
    def request_storage(self) -> StorageAccount:
        """The account with request-path budgets: what the HTTP edge reads and writes through, so a storage
        outage is a 503 within 2 s (gatekeeper.store.budgets), not a minute of SDK retries."""
        return self.storage.bounded()

    # ----- ingestion ------------------------------------------------------------------------------------

    @cached_property
    def registry(self) -> TenantRegistry:
        return TenantRegistry(
            self.request_storage,
            cache_seconds=self.settings.tenant_cache_seconds,
            data_boundary=self.settings.data_boundary,
        )

    @cached_property
    def secrets(self) -> SecretResolver:
        """Tenants' `env:NAME` secret references, read from the same mapping the settings came from."""
        return SecretResolver(self.settings.environ)

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
        return QueueEventSink(self.request_storage, self.edge_sealer, self.queue_name, large)

    @cached_property
    def edge_sealer(self) -> Sealer:
        """What the edge seals queued events with: a transit data key wrapped with the tenant KEK's public key
        from its record (no private-key operation, no Key Vault call, no Key Vault SDK), or, for a record
        without `kek_public`, the envelope cipher (`sealer`) as before. The dispatcher opens both."""
        from gatekeeper.store.envelope import EnvelopeCipher
        from gatekeeper.store.transit import EdgeSealer, TransitKeys

        transit = EnvelopeCipher(
            TransitKeys(self.request_storage, self.kek_public_for), cache_seconds=self.settings.data_key_cache_seconds
        )
        return EdgeSealer(transit, lambda tenant_id: self.kek_public_for(tenant_id) is not None, lambda: self.sealer)

    def kek_public_for(self, tenant_id: str) -> KekPublicKey | None:
        """The public key of the tenant's current KEK version, from its record (None: not recorded)."""
        from gatekeeper.store.transit import parse_kek_public

        record = self.registry.get(tenant_id)
        jwk = record.kek_public if record is not None and record.enabled else None
        return parse_kek_public(tenant_id, jwk["kid"], jwk["n"], jwk["e"]) if jwk else None

    @cached_property
    def token_validator(self) -> TokenValidator | None:
        """Entra ID bearer tokens (GATEKEEPER_ENTRA_AUDIENCE), validated by a validator built on the first
        bearer token; None without an audience."""
        if not self.settings.entra_audiences:
            return None
        return DeferredTokenValidator(self._entra_validator)

    def _entra_validator(self) -> TokenValidator:
        return build_entra_validator(self.settings, self.is_registered_entra_tenant)

    @cached_property
    def ingestion(self) -> IngestionService:
        return IngestionService(
            self.registry,
            self.secrets,
            self.sink,
            max_body_bytes=self.settings.max_body_bytes,
            token_validator=self.token_validator,
            connectwise_keys=self.connectwise_keys,
        )

    @cached_property
    def connectwise_keys(self) -> SigningKeys:
        """ConnectWise callback signing keys, fetched from the tenant's own site and cached (one per process)."""
        from gatekeeper.ingest.connectwise_signature import SigningKeys

        return SigningKeys(allow_loopback_http=self._allow_loopback_http)

    @cached_property
    def github_oidc(self) -> GitHubValidator | None:
        """GitHub Actions OIDC tokens (GATEKEEPER_GITHUB_OIDC_AUDIENCE, _ISSUER); None without an audience.
        Imported on first use: only the action routes take these tokens."""
        if not self.settings.github_oidc_audience:
            return None
        from gatekeeper.security.github_oidc import GitHubOidcValidator

        return GitHubOidcValidator(
            self.settings.github_oidc_audience,
            self.settings.github_oidc_issuer,
            jwks_cache_seconds=self.settings.entra_jwks_cache_seconds,
        )

    @cached_property
    def actions_authenticator(self) -> ActionAuthenticator:
        """Who asks for an action (GitHub OIDC, Entra, API key); the MCP endpoint takes its Entra part."""
        from gatekeeper.actions.caller import ActionAuthenticator

        return ActionAuthenticator(self.registry, self.secrets, self.token_validator, self.github_oidc)

    @cached_property
    def actions(self) -> ActionService:
        """The action-approval API (POST/GET /api/actions): the same queue, policy, gates and audit as gates."""
        from gatekeeper.actions.service import ActionService
        from gatekeeper.actions.store import ActionStore

        return ActionService(
            self.actions_authenticator,
            lambda tenant_id: ActionStore(self.request_storage, tenant_id, self.cipher),
            self.gates,
            self.index,
            self.sink,
            self.decider,
            self.audit_for,
            base_url=self.approval_base_url,
            approval_link=self.approval_link,
            clock=self.clock,
            max_body_bytes=self.settings.max_body_bytes,
        )

    @cached_property
    def dead_letters(self) -> DeadLetters:
        from gatekeeper.ingest.deadletter import DeadLetters

        return DeadLetters(self.storage)

    @cached_property
    def transit_pruner(self) -> TransitKeyPruner:
        """Deletes transit keys past `GATEKEEPER_TRANSIT_KEY_RETENTION_DAYS` (timer and `keys prune-transit`)."""
        from gatekeeper.store.retention import TransitKeyPruner

        return TransitKeyPruner(self.storage, self.settings.transit_key_retention_days)

    def dispatcher(self, gateway: OrchestrationGateway) -> EventDispatcher:
        from gatekeeper.ingest.dispatcher import EventDispatcher

        return EventDispatcher(self.storage, self.sealer, gateway)

    # ----- audit ----------------------------------------------------------------------------------------

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

    def _checkpoint_signer_from_settings(self) -> Any:
        return build_checkpoint_signer(self.settings, self._lazy_credential)

    def audit_for(self, tenant_id: str) -> AuditLog:
        """The tenant's audit log (one per tenant per process; its head is read from the table)."""
        if self._audit_for_override is not None:
            return self._audit_for_override(tenant_id)  # type: ignore[return-value]
        from gatekeeper.audit.archive import CheckpointArchive
        from gatekeeper.audit.log import AuditLog

        s = self.settings
        with self._audit_lock:
            log = self._audit_logs.get(tenant_id)
            if log is None:
                log = self._audit_logs[tenant_id] = AuditLog(
                    self.storage,
                    self.sealer,
                    self.checkpoint_signer,
                    tenant_id,
                    checkpoint_every=s.checkpoint_every,
                    checkpoint_interval=timedelta(minutes=s.checkpoint_minutes),
                    archive=CheckpointArchive.from_storage(self.storage, s.audit_container),
                )
            return log

    def record_integrity_failure(self, failure: SealedDataUnreadable, route: str) -> bool:
        """Log and audit a sealed value that did not open (gatekeeper.failures.record_integrity_failure)."""
        from gatekeeper.failures import record_integrity_failure

        return record_integrity_failure(self.audit_for, failure, route)

    # ----- health and the first tenant ------------------------------------------------------------------

    @cached_property
    def health_probes(self) -> tuple[DependencyProbe, ...]:
        """The health route's probes of this process's own dependencies: storage tables, queues and blobs, and
        Key Vault (the checkpoint key) or, in key mode local, the key folder. The task hub probe needs the
        trigger's durable client binding, so the route adds it (functions/health.py)."""
        from gatekeeper.health.probes import (
            KeyVaultProbe,
            LocalKeysProbe,
            StorageBlobsProbe,
            StorageQueuesProbe,
            StorageTablesProbe,
        )
        from gatekeeper.ingest.queue import LARGE_EVENTS_CONTAINER

        s = self.settings
        keys: DependencyProbe = (
            LocalKeysProbe(s.local_key_dir)
            if s.key_mode is KeyMode.LOCAL
            else KeyVaultProbe(
                _require(s.key_vault_url, "GATEKEEPER_KEY_VAULT_URL"), self._lazy_credential, s.checkpoint_key_name
            )
        )
        return (
            StorageTablesProbe(self.storage),
            StorageQueuesProbe(self.storage, self.queue_name),
            StorageBlobsProbe(self.storage, LARGE_EVENTS_CONTAINER),
            keys,
        )

    @cached_property
    def health_cache(self) -> HealthCache:
        """The health route's last answer, reused for a few seconds (gatekeeper.health.report.HealthCache)."""
        from gatekeeper.health.report import HealthCache

        return HealthCache()

    @cached_property
    def bootstrap(self) -> FirstTenantBootstrap:
        """The first tenant from GATEKEEPER_BOOTSTRAP_TENANT_* (gatekeeper.tenancy.bootstrap): run by the timer in
        functions/bootstrap.py, reported by the health route."""
        from gatekeeper.policy.store import PolicyStore
        from gatekeeper.tenancy.bootstrap import FirstTenantBootstrap

        return FirstTenantBootstrap(
            self.settings.bootstrap,
            self.settings.data_boundary,
            storage=self.storage,
            status_storage=self.request_storage,
            registry=TenantRegistry(self.storage, cache_seconds=0, data_boundary=self.settings.data_boundary),
            policies=lambda tenant_id: PolicyStore(self.storage, tenant_id),
            audit_for=self.audit_for,
            kek_public=self._onboarding_kek_public,
            clock=self.clock,
        )

    def _onboarding_kek_public(self, tenant_id: str) -> dict[str, str] | None:
        """The public key of the tenant's KEK for its record (as `tenants import` records it), or None when it
        cannot be read now: the edge then seals with the tenant's data key, and `keys rotate` records it later."""
        from gatekeeper.store.key_errors import KeyProviderError

        try:
            return self.key_provider.public_jwk(tenant_id, create=True)
        except (KeyProviderError, ValueError) as exc:
            logging.getLogger("gatekeeper.bootstrap").warning(
                "KEK public key of the first tenant not recorded (%s)", type(exc).__name__
            )
            return None

    # ----- tenants --------------------------------------------------------------------------------------

    def is_registered_entra_tenant(self, entra_tenant_id: str) -> bool:
        """Only tokens from Entra tenants in the registry are worth fetching signing keys for."""
        return self.registry.resolve([f"entra:tenant:{entra_tenant_id.lower()}"]) is not None

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
        """Who hears about L1 changes and failed callbacks when the policy names nobody (tenant contacts)."""
        if self._operators_for_override is not None:
            return self._operators_for_override(tenant_id)
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

    # ----- directory (Graph) ----------------------------------------------------------------------------

    @property
    def group_membership(self) -> GroupMembership | None:
        """Directory lookups for approvers whose token lists too many groups: Graph `checkMemberGroups` in
        GATEKEEPER_GRAPH_TENANT_ID with the process credential, cached per person and group. None when unset.
        Built once per process, under a lock: it owns an HTTP client and an event-loop thread."""
        with self._build_lock:
            if self._group_membership is _UNBUILT:
                self._group_membership = self._build_group_membership()
            return self._group_membership

    @group_membership.setter
    def group_membership(self, value: GroupMembership | None) -> None:
        with self._build_lock:
            self._group_membership = value

    @group_membership.deleter
    def group_membership(self) -> None:
        with self._build_lock:
            self._group_membership = _UNBUILT

    def _build_group_membership(self) -> GroupMembership | None:
        entra_tenant = self.settings.graph_tenant_id
        if not entra_tenant:
            return None
        from gatekeeper.integrations.graph_groups import GraphGroupMembership
        from gatekeeper.integrations.graph_notify import make_graph_client
        from gatekeeper.security.groups import CachedGroupMembership

        client, http = make_graph_client(self.credential, self.settings.graph_base_url)
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
            return self._user_directory

    @user_directory.setter
    def user_directory(self, value: UserDirectory | None) -> None:
        with self._build_lock:
            self._user_directory = value

    @property
    def directory(self) -> UserDirectory | None:
        return self.user_directory

    def _build_user_directory(self) -> UserDirectory | None:
        if not self.settings.graph_tenant_id:
            return None
        from gatekeeper.integrations.graph_notify import make_graph_client
        from gatekeeper.integrations.graph_users import CachedUserDirectory, GraphUserDirectory

        client, http = make_graph_client(self.credential, self.settings.graph_base_url, timeout=10.0)
        return CachedUserDirectory(GraphUserDirectory(client, http_client=http))

    # ----- gates ----------------------------------------------------------------------------------------

    @cached_property
    def decider(self) -> Decider:
        from gatekeeper.gates.effects import PolicyDecider

        return PolicyDecider(self.policy_for)

    @cached_property
    def notifier(self) -> Notifier:
        """The Graph (or outbox) channel, with a Teams bot (GATEKEEPER_BOT_APP_ID) the bot's cards, and Slack
        (which sends only for tenants whose record has `slack:`)."""
        channel = build_notifier(self.settings, self._lazy_credential)
        from gatekeeper.integrations.notify import FanOutNotifier

        teams = [self.teams_cards] if self.settings.bot_app_id else []
        return FanOutNotifier([channel, *teams, self.slack])

    @cached_property
    def slack_tenants(self) -> SlackTenants:
        """Tenants by Slack workspace, with their Slack secrets (`slack.bot_token`, `slack.signing_secrets`)."""
        from gatekeeper.slack.edge import Tenants

        environ = self.settings.environ
        registry = self.registry

        def secret(ref: str) -> bytes | None:
            value = environ.get(ref.removeprefix("env:"))
            return value.encode("utf-8") if value else None

        return Tenants(registry.tenant_for_identity, registry.get, registry.records, secret)

    @cached_property
    def slack(self) -> SlackNotifier:
        """Slack: approval requests as Block Kit messages, kept up to date (gatekeeper.slack.channel)."""
        from gatekeeper.slack.channel import SlackNotifier

        return SlackNotifier(
            tenants=self.slack_tenants,
            storage=self.storage,
            cipher=self.sealer,
            directory=self.user_directory,
            base_url=self.approval_base_url,
        )

    @cached_property
    def slack_votes(self) -> SlackVotes:
        """Slack interactions off the queue: the person through the identity map, the vote through the
        decision service."""
        from gatekeeper.gates.followup import FollowUpService
        from gatekeeper.slack.channel import SlackVotes

        return SlackVotes(
            tenants=self.slack_tenants,
            notifier=self.slack,
            identities=self.identities,
            audit_for=self.audit_for,
            entra_tenants_for=self.entra_tenants_for,
            storage=self.storage,
            directory=self.user_directory,
            # L1 Acknowledge / Flag for rollback and L3 Mark done, as on the Teams card; the queue trigger passes
            # its own (functions/messages.follow_ups) with the Durable client for the PSA time entry
            followups=FollowUpService(
                self.storage,
                self.sealer,
                entra_tenants_for=self.entra_tenants_for,
                operators_for=self.operators_for,
                audit_for=self.audit_for,
                base_url=self.approval_base_url,
            ),
        )

    @cached_property
    def teams_cards(self) -> Notifier:
        """The bot's approval cards in 1:1 chats (GATEKEEPER_BOT_APP_ID, GATEKEEPER_BOT_SERVICE_URL), installing
        the Teams app (GATEKEEPER_TEAMS_APP_ID) through Graph where it is missing."""
        from gatekeeper.teams.proactive import TeamsCardNotifier

        installer = None
        if self.settings.teams_app_id:
            from gatekeeper.integrations.graph_notify import make_graph_client
            from gatekeeper.teams.install import GraphAppInstaller

            client, http = make_graph_client(self.credential, self.settings.graph_base_url)
            installer = GraphAppInstaller(
                client, self.settings.teams_app_id, self.settings.graph_base_url, http_client=http
            )
        return TeamsCardNotifier(
            app_id=self.settings.bot_app_id or "",
            service_url=self.settings.bot_service_url,
            credential=self.credential,
            storage=self.storage,
            cipher=self.sealer,
            entra_tenants_for=self.entra_tenants_for,
            installer=installer,
            base_url=self.approval_base_url,
            bot_tenant_id=self.settings.bot_tenant_id,
            directory=self.user_directory,
        )

    @cached_property
    def callbacks(self) -> PipelineCallbacks:
        return build_pipeline_callbacks(
            self.settings,
            signer=self._github_signer,
            credential=self._lazy_credential,
            webhook_secret=self.callback_secret,
            allow_loopback_http=self._allow_loopback_http,
            github_installations=self.github_installations,
            webhook_allowed=self.webhook_url_allowed,
        )

    def identities(self, tenant_id: str) -> IdentityMap:
        """The tenant's identity map (external identities -> Entra object ids)."""
        from gatekeeper.tenancy.identities import IdentityMap

        found = self._identity_maps.get(tenant_id)
        if found is None:
            found = self._identity_maps[tenant_id] = IdentityMap(self.storage, tenant_id, self.cipher)
        return found

    @cached_property
    def requesters(self) -> RequesterResolver:
        from gatekeeper.security.requester import RequesterResolver

        return RequesterResolver(self.identities, self.directory)

    def gates(self, tenant_id: str) -> GateStore:
        from gatekeeper.gates.store import GateStore

        store = self._stores.get(tenant_id)
        if store is None:
            store = self._stores[tenant_id] = GateStore(self.storage, tenant_id, self.cipher)
        return store

    @cached_property
    def recommender(self) -> Recommender:
        """The L2 recommendation from the tenant's current model (gatekeeper.recommend), cached per tenant."""
        from gatekeeper.recommend.store import Recommender

        return Recommender(self.storage, self.cipher)

    @cached_property
    def index(self) -> GateIndex:
        from gatekeeper.gates.store import GateIndex

        return GateIndex(self.storage)

    @cached_property
    def bot_validator(self) -> BotTokenValidator:
        """The Bot Connector's tokens on /api/messages (GATEKEEPER_BOT_APP_ID, GATEKEEPER_BOT_OPENID_METADATA;
        Entra-issued ones from GATEKEEPER_BOT_TENANT_ID or a Microsoft service tenant, keys from
        GATEKEEPER_ENTRA_AUTHORITY_HOST); with no bot app id it refuses every activity."""
        from gatekeeper.teams.auth import BotTokenValidator

        return BotTokenValidator(
            self.settings.bot_app_id,
            self.settings.bot_openid_metadata,
            tenant_id=self.settings.bot_tenant_id,
            allowed_callers=self.settings.bot_allowed_callers,
            authority_host=self.settings.entra_authority_host,
        )

    @cached_property
    def bot_host(self) -> BotHost:
        """The Agents SDK host behind /api/messages, calling out with the process credential (the managed
        identity). Imports the SDK: built on the first bot request only."""
        from gatekeeper.teams.bot import BotHost

        return BotHost(self.credential, self.settings.bot_app_id or "", self.settings.bot_tenant_id)

    @cached_property
    def events(self) -> EventPublisher:
        """The event mesh: Event Grid with the managed identity, or off without a topic endpoint."""
        from gatekeeper.integrations.eventgrid import DisabledPublisher, EventGridPublisher

        endpoint = self.settings.eventgrid_topic_endpoint
        if not endpoint:
            return DisabledPublisher()
        return EventGridPublisher(endpoint, self._lazy_credential())

    @cached_property
    def tickets(self) -> TicketSystems:
        """Each tenant's PSA (`psa` on its record): ConnectWise, Autotask or HaloPSA, credentials by reference."""
        from gatekeeper.psa.systems import TicketSystems

        return TicketSystems(
            self.registry.get, self.secrets, allow_loopback_http=self._allow_loopback_http, clock=self.clock
        )

    @property
    def mesh_deployment(self) -> str:
        """The deployment's name in every CloudEvent `source`: the Event Grid topic's name."""
        from gatekeeper.integrations.eventgrid import topic_name

        return topic_name(self.settings.eventgrid_topic_endpoint or "https://local")

    def approval_link(self, gate_id: str) -> str:
        """Where a person opens the gate: the approval page (`ApprovalView.page_url`), never the JSON route,
        which answers a browser's click with 401."""
        return f"{self.approval_base_url.rstrip('/')}/api/approvals/{quote(gate_id, safe='')}/page"

    # ----- post-deploy watch and rollback ---------------------------------------------------------------

    def watches(self, tenant_id: str) -> WatchStore:
        from gatekeeper.rollback.store import WatchStore

        store = self._watch_stores.get(tenant_id)
        if store is None:
            store = self._watch_stores[tenant_id] = WatchStore(self.storage, tenant_id, self.cipher)
        return store

    @cached_property
    def health_probe(self) -> HealthProbe:
        """The HTTP health probe of the post-deploy watch (outbound URL rules as for callbacks)."""
        from gatekeeper.rollback.kql import KqlProbe
        from gatekeeper.rollback.probes import HttpHealthProbe, Probes

        kql = KqlProbe(self._lazy_credential, self.settings.log_analytics_endpoint, self.owns_workspace)
        from gatekeeper.rollback.rmm_probe import RmmDeviceProbe

        rmm = RmmDeviceProbe(lambda: self.device_managers)
        return Probes(HttpHealthProbe(allow_loopback_http=self._allow_loopback_http), kql, rmm)

    def owns_workspace(self, tenant_id: str, workspace_id: str) -> bool:
        """Whether a Log Analytics workspace is registered for the tenant (azure-monitor:workspace:<id>)."""
        from gatekeeper.tenancy.ownership import owns_identity

        record = self.registry.get(tenant_id) if tenant_id.isalnum() else None
        return bool(
            record and record.enabled and owns_identity(record.identities, f"azure-monitor:workspace:{workspace_id}")
        )

    @cached_property
    def github_workflows(self) -> GitHubWorkflows | None:
        """Rollback workflows through the GitHub App (None without GATEKEEPER_GITHUB_APP_ID)."""
        if not self.settings.github_app_id:
            return None
        from gatekeeper.integrations.github_app import GitHubApp, GitHubWorkflows
        from gatekeeper.integrations.retry import RetryPolicy

        app = GitHubApp(
            self.settings.github_app_id,
            self._github_signer or github_app_signer(self.settings, self._lazy_credential),
            self.settings.github_api_url,
            policy=RetryPolicy(max_attempts=self.settings.callback_max_attempts),
            allow_loopback_http=self._allow_loopback_http,
            installations=self.github_installations,
        )
        return GitHubWorkflows(app)

    @cached_property
    def commit_lookup(self) -> CommitLookup | None:
        """When a gated commit was made, asked of GitHub as the tenant's App installation (DORA lead time):
        one short, bounded attempt (gatekeeper.integrations.github_commits); None without
        GATEKEEPER_GITHUB_APP_ID. Azure DevOps has none: the product holds no credential meant to read repos.
        An App that cannot be built (its key missing) means no lookup, never a failed gate: logged once."""
        if not self.settings.github_app_id:
            return None
        from gatekeeper.integrations.github_app import GitHubApp
        from gatekeeper.integrations.github_commits import LOOKUP_POLICY, GitHubCommitTimes

        try:
            app = GitHubApp(
                self.settings.github_app_id,
                self._github_signer or github_app_signer(self.settings, self._lazy_credential),
                self.settings.github_api_url,
                policy=LOOKUP_POLICY,
                allow_loopback_http=self._allow_loopback_http,
                installations=self.github_installations,
            )
        except Exception as exc:  # the commit time is advice for a metric; the callbacks report the App's state
            logging.getLogger("gatekeeper.gates.commit_time").warning(
                "commit times: the GitHub App could not be set up (%s); gates go on without them", type(exc).__name__
            )
            return None
        return GitHubCommitTimes(app, clock=self.clock)

    @cached_property
    def rollback_runners(self) -> RollbackRunners:
        """Rollback runs by target type: GitHub (with the App), Azure DevOps pipelines, signed webhooks."""
        from gatekeeper.integrations.retry import RetryPolicy
        from gatekeeper.integrations.rollbacks import (
            AzureDevOpsRollbacks,
            GitHubRollbacks,
            RollbackRunners,
            WebhookRollbacks,
        )
        from gatekeeper.integrations.webhook import WebhookSender
        from gatekeeper.ports import RollbackRunner

        policy = RetryPolicy(max_attempts=self.settings.callback_max_attempts)
        runners: dict[str, RollbackRunner] = {
            "azure-devops": AzureDevOpsRollbacks(
                self.pipelines_token,
                self.owns_azure_devops_org,
                policy=policy,
                allow_loopback_http=self._allow_loopback_http,
            ),
            "webhook": WebhookRollbacks(
                WebhookSender(policy=policy, allow_loopback_http=self._allow_loopback_http),
                self.callback_secret,
                self.webhook_url_allowed,
            ),
        }
        if self.github_workflows is not None:
            runners["github"] = GitHubRollbacks(self.github_workflows)
        return RollbackRunners(runners)

    @cached_property
    def device_managers(self) -> DeviceManagers:
        """Each tenant's RMM client (NinjaOne, Datto RMM) from its `rmm:` settings, for the post-deploy watch."""
        from gatekeeper.integrations.retry import RetryPolicy
        from gatekeeper.integrations.rmm import DeviceManagers

        return DeviceManagers(
            self.rmm_settings_for,
            self.settings.environ,
            policy=RetryPolicy(max_attempts=self.settings.callback_max_attempts),
            allow_loopback_http=self._allow_loopback_http,
        )

    def rmm_settings_for(self, tenant_id: str) -> RmmSettings | None:
        """The tenant's `rmm:` settings (None: no RMM, or an unknown or disabled tenant)."""
        record = self.registry.get(tenant_id) if tenant_id.isalnum() else None
        return record.rmm if record is not None and record.enabled else None

    def pipelines_token(self, tenant_id: str) -> str | None:
        """The tenant's Azure DevOps PAT for queuing rollback pipelines (secret purpose azure_devops_pipelines)."""
        record = self.registry.get(tenant_id) if tenant_id.isalnum() else None
        found = self.secrets.resolve(record, SecretPurpose.AZURE_DEVOPS_PIPELINES) if record else []
        return found[0].decode("utf-8") if found else None

    def owns_azure_devops_org(self, tenant_id: str, organization: str) -> bool:
        from gatekeeper.tenancy.ownership import owns_identity

        record = self.registry.get(tenant_id) if tenant_id.isalnum() else None
        return bool(record and record.enabled and owns_identity(record.identities, f"azure-devops:org:{organization}"))


def _require(value: str | None, name: str) -> str:
    if not value:
        raise RuntimeError(f"app setting {name} is required but not set")
    return value


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


# ----- adapters built from settings (the services above call these; tests build them directly) ----------
# `credential` is a zero-argument callable: the credential is built only when an adapter needs it.


def build_storage(settings: Settings, credential: Callable[[], TokenCredential]) -> StorageAccount:
    """A connection string (local, Azurite) or the account's endpoints with the managed identity (Azure)."""
    if settings.storage_connection:
        return StorageAccount(connection_string=settings.storage_connection)
    account = _require(settings.storage_account, "GATEKEEPER_STORAGE_ACCOUNT")
    suffix = settings.storage_endpoint_suffix  # the cloud's, from the template: sovereign clouds differ
    return StorageAccount(
        table_endpoint=f"https://{account}.table.{suffix}",
        queue_endpoint=f"https://{account}.queue.{suffix}",
        blob_endpoint=f"https://{account}.blob.{suffix}",
        credential=credential(),
    )


def build_key_provider(settings: Settings, credential: Callable[[], TokenCredential]) -> TenantKeyProvider:
    """`GATEKEEPER_KEY_MODE` 'keyvault' (the credential) or 'local' (JWKs in GATEKEEPER_LOCAL_KEY_DIR)."""
    from gatekeeper.store.keys import KeyVaultKeyProvider, LocalKeyProvider

    if settings.key_mode is KeyMode.LOCAL:
        return LocalKeyProvider(settings.local_key_dir)
    return KeyVaultKeyProvider(_require(settings.key_vault_url, "GATEKEEPER_KEY_VAULT_URL"), credential())


def build_checkpoint_signer(settings: Settings, credential: Callable[[], TokenCredential]) -> Any:
    """GATEKEEPER_KEY_MODE local: a JWK in GATEKEEPER_LOCAL_KEY_DIR; keyvault: the key
    GATEKEEPER_CHECKPOINT_KEY_NAME in GATEKEEPER_KEY_VAULT_URL with the credential."""
    from gatekeeper.audit.signing import KeyVaultCheckpointKey, LocalCheckpointKey

    if settings.key_mode is KeyMode.LOCAL:
        return LocalCheckpointKey(settings.local_key_dir, settings.checkpoint_key_name).signer()
    vault = _require(settings.key_vault_url, "GATEKEEPER_KEY_VAULT_URL")
    return KeyVaultCheckpointKey(vault, settings.checkpoint_key_name, credential()).signer()


def build_entra_validator(settings: Settings, allowed_tenants: Callable[[str], bool] | None = None) -> TokenValidator:
    """Entra ID bearer tokens for GATEKEEPER_ENTRA_AUDIENCE (comma-separated), _AUTHORITY_HOST and
    _JWKS_CACHE_SECONDS; `allowed_tenants` limits whose signing keys are ever fetched."""
    from gatekeeper.security.entra import EntraTokenValidator

    if not settings.entra_audiences:
        _require(None, "GATEKEEPER_ENTRA_AUDIENCE")
    return EntraTokenValidator(
        audience=list(settings.entra_audiences),
        authority_host=settings.entra_authority_host,
        allowed_tenants=allowed_tenants,
        jwks_cache_seconds=settings.entra_jwks_cache_seconds,
    )


def github_app_signer(settings: Settings, credential: Callable[[], TokenCredential] | None) -> DigestSigner:
    """Key Vault key `GATEKEEPER_GITHUB_APP_KEY_NAME` (mode keyvault) or `<LOCAL_KEY_DIR>/<name>.jwk.json`."""
    from pathlib import Path

    from azure.keyvault.keys.crypto import CryptographyClient

    from gatekeeper.integrations.github_signer import load_local_signer

    name = settings.github_app_key_name
    if settings.key_mode is KeyMode.LOCAL:
        return load_local_signer(Path(settings.local_key_dir) / f"{name}.jwk.json")
    if credential is None:
        raise ValueError("github app signer: a credential is required for Key Vault")
    vault = _require(settings.key_vault_url, "GATEKEEPER_KEY_VAULT_URL").rstrip("/")
    return CryptographyClient(f"{vault}/keys/{name}", credential())


def build_pipeline_callbacks(
    settings: Settings,
    *,
    credential: Callable[[], TokenCredential] | None = None,
    signer: DigestSigner | None = None,
    webhook_secret: WebhookSecretResolver | None = None,
    allow_loopback_http: bool = False,
    github_installations: InstallationResolver | None = None,
    webhook_allowed: WebhookAllowed | None = None,
    policy: RetryPolicy | None = None,
) -> PipelineCallbacks:
    """GitHub only when `GATEKEEPER_GITHUB_APP_ID` is set; Azure DevOps and webhooks always.

    `github_installations` (tenant id -> registered installation ids) confines the App to each tenant's own
    installations and `webhook_allowed` (tenant id, url) re-checks a webhook against the tenant's registered
    callback URL prefixes at send time; every composition that serves tenants passes both."""
    from gatekeeper.integrations.azure_devops import AzureDevOpsClient
    from gatekeeper.integrations.callbacks import PipelineCallbacks
    from gatekeeper.integrations.github_app import GitHubApp
    from gatekeeper.integrations.retry import RetryPolicy
    from gatekeeper.integrations.webhook import WebhookSender

    policy = policy or RetryPolicy(max_attempts=settings.callback_max_attempts)
    github = None
    if settings.github_app_id:
        github = GitHubApp(
            settings.github_app_id,
            signer or github_app_signer(settings, credential),
            settings.github_api_url,
            policy=policy,
            allow_loopback_http=allow_loopback_http,
            installations=github_installations,
        )
    return PipelineCallbacks(
        github=github,
        azure_devops=AzureDevOpsClient(policy=policy, allow_loopback_http=allow_loopback_http),
        webhooks=WebhookSender(policy=policy, allow_loopback_http=allow_loopback_http),
        webhook_secret=webhook_secret,
        webhook_allowed=webhook_allowed,
    )


def build_notifier(settings: Settings, credential: Callable[[], TokenCredential] | None = None) -> Notifier:
    """`GATEKEEPER_NOTIFY_MODE`: 'graph' (msgraph-sdk with the credential, e.g. the managed identity) or
    'outbox' (files under `GATEKEEPER_OUTBOX_DIR`)."""
    if settings.notify_mode is NotifyMode.OUTBOX:
        from gatekeeper.integrations.outbox import OutboxNotifier

        return OutboxNotifier(
            settings.outbox_dir, portal_url=settings.approval_base_url, teams_app_id=settings.teams_app_id
        )
    if credential is None:
        raise ValueError("GATEKEEPER_NOTIFY_MODE=graph: a credential (managed identity) is required")
    from gatekeeper.integrations.graph_notify import GraphNotifier, make_graph_client

    client, http = make_graph_client(credential(), settings.graph_base_url)
    return GraphNotifier(
        client,
        settings.teams_app_id,
        settings.mail_sender,
        portal_url=settings.approval_base_url,
        http_client=http,
    )


def azure_monitor(settings: Settings | None = None) -> TelemetrySink | None:
    """Telemetry's exporter for this process (`gatekeeper.telemetry.enable` calls it on the first event):
    Azure Monitor with the process's one credential (the managed identity, Entra ID authentication), or None
    when APPLICATIONINSIGHTS_CONNECTION_STRING is unset, in which case nothing of OpenTelemetry is imported."""
    settings = settings or Settings.from_environ()
    if not settings.applicationinsights_connection_string:
        return None
    from gatekeeper.otel import configure_azure_monitor

    return configure_azure_monitor(settings.applicationinsights_connection_string, get_services().credential)


def build_services(settings: Settings, credential: TokenCredential | None = None, **members: Any) -> Services:
    """The process's services from settings; `credential` None = the managed identity
    (DefaultAzureCredential), built only when a member needs it. `members` replace single services."""
    return Services(settings, credential=credential, **members)


# ----- the one accessor -----------------------------------------------------------------------------------

_services: Services | None = None
_services_lock = threading.Lock()


class _Scope:
    """Services served to one context: given, or built by `factory` on the first `get_services()` in it."""

    def __init__(self, value: Services | Callable[[], Services]) -> None:
        self._value = value if isinstance(value, Services) else None
        self._factory = None if isinstance(value, Services) else value
        self._lock = threading.Lock()

    def get(self) -> Services:
        with self._lock:
            if self._value is None:
                assert self._factory is not None
                self._value = self._factory()
            return self._value


_scoped: ContextVar[_Scope | None] = ContextVar("gatekeeper_services", default=None)


def get_services() -> Services:
    """The one accessor: the services triggers, activities and CLI commands use. Those of the innermost
    `using_services` scope, else the process-wide ones, built from the environment on first use (not at
    import: cold start)."""
    scope = _scoped.get()
    if scope is not None:
        return scope.get()
    global _services
    if _services is None:
        with _services_lock, FIRST_REQUEST.hold():
            if _services is None:
                _services = build_services(Settings.from_environ())
    return _services


def set_services(value: Services | None) -> None:
    """Install the process-wide services explicitly (the local host and tests), or clear them."""
    global _services
    with _services_lock:
        _services = value


@contextmanager
def using_services(value: Services | Callable[[], Services]) -> Iterator[None]:
    """Serve `value` (or what `value()` builds, on first use) to `get_services()` callers in this context
    only: the local runner's activities get the local gate's services while the routes of the same test keep
    theirs, and each CLI command gets services built from the environment at that moment."""
    token = _scoped.set(_Scope(value))
    try:
        yield
    finally:
        _scoped.reset(token)
