"""Ingestion: from an authenticated request to a normalised event handed to the sink.

Order matters and is the same for every source: size and content type, then which tenants the request
claims, then their credentials over the raw bytes (the one that verifies is the tenant), then parsing, then
every target the event names checked against that tenant's registered identities (`ingest/scope.py`). Until
the credential checks out nothing about tenants is revealed, and until the targets check out nothing is written.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gatekeeper.errors import InputTooLarge, InvalidInput, unauthenticated
from gatekeeper.events.codec import event_to_sealable
from gatekeeper.events.common import Ignored
from gatekeeper.events.identity import source_identities
from gatekeeper.events.model import EventSource, PipelineEvent
from gatekeeper.ingest.edge import (
    IncomingRequest,
    parse_json_object,
    require_bounded_headers,
    require_header,
    require_json_content_type,
    require_size,
)
from gatekeeper.ingest.scope import bind_azure_devops, bind_connector, bind_github, bind_webhook
from gatekeeper.security.signatures import basic_auth_password, verify_github_signature, verify_shared_secret
from gatekeeper.store.tables import TENANT_ID_PATTERN
from gatekeeper.tenancy.model import SecretPurpose, TenantRecord
from gatekeeper.tenancy.registry import TenantRegistry
from gatekeeper.tenancy.secrets import SecretResolver

if TYPE_CHECKING:  # each route imports its own parser, and bearer-token code, on first use (cold start)
    from gatekeeper.ingest.connectwise_signature import SigningKeys
    from gatekeeper.security.identity import TokenValidator
    from gatekeeper.security.principal import Principal

CHECK_SECRET_HEADER = "X-Gatekeeper-Check-Secret"  # noqa: S105 - a header name
SERVICE_HOOK_SECRET_HEADER = "X-Gatekeeper-Hook-Secret"  # noqa: S105 - a header name
GENERIC_TENANT_HEADER = "X-Gatekeeper-Tenant"
GENERIC_KEY_HEADER = "x-functions-key"
MAX_CANDIDATES = 4  # tenants tried per request: more distinct hints than this is not a real delivery
CONNECTORS = {
    s.value: s
    for s in (
        EventSource.CONNECTWISE,
        EventSource.AUTOTASK,
        EventSource.HALOPSA,
        EventSource.NINJARMM,
        EventSource.DATTORMM,
    )
}


class EventSink(Protocol):
    """Where accepted events go (the `pipeline-events` queue in production)."""

    def submit(self, event: PipelineEvent, event_id: str) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """What an ingestion route answers: 202 with an accepted or ignored body."""

    status: str  # "accepted" | "ignored"
    event_id: str
    reason: str | None = None
    event: PipelineEvent | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "eventId": self.event_id}
        if self.event is not None:
            body["kind"] = self.event.kind.value
            body["businessKey"] = self.event.business_key
            if self.event.is_gate_request:
                body["instanceId"] = self.event.instance_id
        if self.reason:
            body["reason"] = self.reason
        return body


class IngestionService:
    def __init__(
        self,
        registry: TenantRegistry,
        secrets: SecretResolver,
        sink: EventSink,
        *,
        max_body_bytes: int = 1_048_576,
        token_validator: TokenValidator | None = None,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        connectwise_keys: SigningKeys | None = None,
    ):
        self._connectwise_keys = connectwise_keys
        self._registry = registry
        self._secrets = secrets
        self._sink = sink
        self._max_body_bytes = max_body_bytes
        self._token_validator = token_validator
        self._new_id = new_id

    # -- GitHub -----------------------------------------------------------------------------------

    def github(self, request: IncomingRequest) -> Outcome:
        from gatekeeper.events.github import parse_github

        document = self._json(request)
        event_name = require_header(request, "X-GitHub-Event")
        signature = request.headers.get("X-Hub-Signature-256")
        tenant = self._authenticate(
            source_identities(EventSource.GITHUB, document, request.headers.as_dict()),
            lambda t: verify_github_signature(
                self._secrets.resolve(t, SecretPurpose.GITHUB_WEBHOOK), request.body, signature
            ),
            "The X-Hub-Signature-256 signature could not be verified.",
        )
        parsed = parse_github(
            event_name, document, tenant_id=tenant.tenant_id, delivery_id=request.headers.get("X-GitHub-Delivery")
        )
        if isinstance(parsed, PipelineEvent):
            parsed = bind_github(tenant, document, parsed)
        return self._hand_over(parsed)

    # -- Azure DevOps -----------------------------------------------------------------------------

    def azure_devops_check(self, request: IncomingRequest) -> Outcome:
        from gatekeeper.events.azure_devops import parse_check_request

        require_size(request, self._max_body_bytes)
        require_bounded_headers(request)
        document = parse_json_object(request.body) if request.body.strip() else {}
        plan_url = require_header(request, "PlanUrl")
        # Only the PlanUrl names the tenant: it is where the decision goes, so the body cannot re-address it.
        identities = source_identities(EventSource.AZURE_DEVOPS, {}, {"PlanUrl": plan_url})
        offered = request.headers.get(CHECK_SECRET_HEADER)
        tenant = self._authenticate(
            identities,
            lambda t: verify_shared_secret(self._secrets.resolve(t, SecretPurpose.AZURE_DEVOPS_CHECK), offered),
        )
        event = parse_check_request(request.headers.as_dict(), document, tenant_id=tenant.tenant_id)
        bind_azure_devops(tenant, document, event)
        return self._hand_over(event)

    def azure_devops_service_hook(self, request: IncomingRequest) -> Outcome:
        from gatekeeper.events.azure_devops import parse_service_hook

        document = self._json(request)
        offered = basic_auth_password(request.headers.get("Authorization")) or request.headers.get(
            SERVICE_HOOK_SECRET_HEADER
        )
        tenant = self._authenticate(
            source_identities(EventSource.AZURE_DEVOPS, document),
            lambda t: verify_shared_secret(self._secrets.resolve(t, SecretPurpose.AZURE_DEVOPS_SERVICE_HOOK), offered),
        )
        parsed = parse_service_hook(document, tenant_id=tenant.tenant_id)
        if isinstance(parsed, PipelineEvent):
            bind_azure_devops(tenant, document, None)
        return self._hand_over(parsed)

    # -- any CI -----------------------------------------------------------------------------------

    def generic(self, request: IncomingRequest) -> Outcome:
        from gatekeeper.events.generic import parse_generic

        document = self._json(request)
        tenant, principal = self._generic_tenant(request)
        event = parse_generic(document, tenant_id=tenant.tenant_id)
        if principal is not None:  # the token says who asks; the body's actor is only shown
            who = (f"entra:oid:{principal.oid.lower()}",)
            event = event.model_copy(update={"requester_ids": who})
        bind_webhook(tenant, event)
        return self._hand_over(event)

    def generic_tenant(self, request: IncomingRequest) -> str:
        """The tenant a request authenticates as on the generic API's terms (Entra bearer token, or the tenant
        header with its generic API key): for routes beside `/api/events`, such as Azure Monitor alerts."""
        return self._generic_tenant(request)[0].tenant_id

    def _generic_tenant(self, request: IncomingRequest) -> tuple[TenantRecord, Principal | None]:
        authorization = request.headers.get("Authorization") or ""
        if authorization.lower().startswith("bearer "):
            from gatekeeper.security.identity import identify_caller

            # Only the bearer token is handed over: the ingestion routes never take the platform's header.
            principal = identify_caller({"Authorization": authorization}, self._token_validator, trust_easyauth=False)
            tenant = self._registry.resolve([f"entra:tenant:{principal.tid.lower()}"])
            if tenant is None:
                raise unauthenticated()
            return tenant, principal
        tenant_id = request.headers.get(GENERIC_TENANT_HEADER)
        tenant = self._registry.get(tenant_id) if tenant_id and TENANT_ID_PATTERN.fullmatch(tenant_id) else None
        self._require_secret(
            tenant if tenant and tenant.enabled else None,
            SecretPurpose.GENERIC_API_KEY,
            request.headers.get(GENERIC_KEY_HEADER),
        )
        assert tenant is not None
        return tenant, None

    # -- connectors (queue messages) --------------------------------------------------------------

    def connector(self, message: bytes | str) -> Outcome:
        """A connector queue message. Invalid input raised here is permanent: the caller dead-letters them."""
        from gatekeeper.events.connectors import parse_connector_message

        body = message.encode() if isinstance(message, str) else message
        document = parse_json_object(body, what="message")
        source = CONNECTORS.get(str(document.get("connector", "")))
        if source is None:
            raise InvalidInput(
                "connector: expected one of " + ", ".join(sorted(CONNECTORS)),
                "connector",
                code="unknown-connector",
                title="Unknown connector",
            )
        tenant = self._authenticate(
            source_identities(source, document),
            lambda t: self._connector_signed(t, document),
            "The connector message could not be authenticated.",
        )
        parsed = parse_connector_message(document, tenant_id=tenant.tenant_id)
        if isinstance(parsed, PipelineEvent):
            bind_connector(tenant, source, document)
        return self._hand_over(parsed)

    def _connector_signed(self, tenant: TenantRecord, document: dict[str, Any]) -> bool:
        """The tenant's connector secret signs the whole envelope; unsigned only where the registry says so."""
        secrets = self._secrets.resolve(tenant, SecretPurpose.CONNECTOR)
        if not secrets:
            return not tenant.connector_secret_required
        signature = document.get("signature")
        return isinstance(signature, str) and verify_github_signature(secrets, canonical_envelope(document), signature)

    # -- connectors (vendor webhooks straight to the route) -------------------------------------------

    def connector_webhook(self, vendor: str, request: IncomingRequest) -> Outcome:
        """`POST /api/connectors/{vendor}`: the vendor's own webhook body, authenticated the vendor's way for
        the tenant the URL names (`gatekeeper.ingest.connector_webhooks`), then parsed and scoped exactly as
        a relay's queue message is."""
        from datetime import UTC, datetime

        from gatekeeper.events.connectors import parse_connector_message
        from gatekeeper.ingest import connector_webhooks as hooks

        webhook = hooks.vendor_webhook(vendor)
        require_size(request, self._max_body_bytes)
        require_bounded_headers(request)
        query = hooks.query_params(request)
        tenant_id = hooks.requested_tenant_id(query)
        tenant = self._registry.get(tenant_id) if tenant_id else None
        # One answer for every failure below: unknown or disabled tenant, no secret, wrong secret, bad address.
        if tenant is None or not tenant.enabled:
            raise unauthenticated()
        if webhook.source is EventSource.CONNECTWISE and tenant.connectwise_site:
            # The tenant names its ConnectWise site: callbacks must carry ConnectWise's own signature
            # (gatekeeper.ingest.connectwise_signature); the secret-in-the-URL fallback no longer opens the route.
            authentic = self._connectwise_signed(tenant.connectwise_site, request)
            signed = True
        else:
            secrets = self._secrets.resolve(tenant, webhook.purpose)
            authentic = bool(secrets) and webhook.verified(secrets, request, query)
            signed = webhook.signed
        if not authentic or (not signed and not hooks.address_allowed(tenant, request)):
            raise unauthenticated()
        require_json_content_type(request)
        document = parse_json_object(request.body)
        account = hooks.registered_account(tenant, webhook)
        if account is None:
            raise InvalidInput(
                f"account: the tenant has no {webhook.identity_prefix}<id> identity registered",
                "account",
                code="connector-not-registered",
                title="The connector account is not registered",
            )
        envelope = {
            "connector": webhook.source.value,
            "account": account,
            "receivedAt": datetime.now(UTC).isoformat(),
            "payload": document,
        }
        try:
            parsed = parse_connector_message(envelope, tenant_id=tenant.tenant_id)
            if isinstance(parsed, PipelineEvent):
                bind_connector(tenant, webhook.source, envelope)
        except InvalidInput as problem:  # name the field in the body the vendor sent, not in the envelope
            if problem.field and problem.field.startswith("payload."):
                problem.field = problem.field.removeprefix("payload.")
            raise
        return self._hand_over(parsed)

    def _connectwise_signed(self, site: str, request: IncomingRequest) -> bool:
        from gatekeeper.ingest.connectwise_signature import SIGNATURE_HEADER, SigningKeys

        if self._connectwise_keys is None:
            self._connectwise_keys = SigningKeys()
        return self._connectwise_keys.verify(site, request.body, request.headers.get(SIGNATURE_HEADER))

    # -- shared steps -----------------------------------------------------------------------------

    def _json(self, request: IncomingRequest) -> dict[str, Any]:
        require_size(request, self._max_body_bytes)
        require_bounded_headers(request)
        require_json_content_type(request)
        return parse_json_object(request.body)

    def _authenticate(
        self,
        identities: list[str],
        verified: Callable[[TenantRecord], bool],
        detail: str = "The request could not be authenticated.",
    ) -> TenantRecord:
        """The first tenant named by the hints whose credential the request carries, else 401.

        The hints may name several tenants (B's organisation beside A's repository); each is tried, at most
        `MAX_CANDIDATES`, and the one that authenticates is the tenant. What else the body names is checked
        against that tenant afterwards (`gatekeeper.ingest.scope`), so naming another tenant's target never
        moves the request into that tenant and never slips past as this one's.
        """
        # Lazily: the hints after the first tenant that authenticates are not looked up (their targets are
        # still checked against that tenant by `ingest/scope.py`); a failure has tried every candidate.
        for tenant in itertools.islice(self._registry.iter_candidates(identities), MAX_CANDIDATES):
            if verified(tenant):
                return tenant
        raise unauthenticated(detail)

    def _require_secret(self, tenant: TenantRecord | None, purpose: SecretPurpose, offered: str | None) -> None:
        if tenant is None or not verify_shared_secret(self._secrets.resolve(tenant, purpose), offered):
            raise unauthenticated()

    def _hand_over(self, parsed: PipelineEvent | Ignored) -> Outcome:
        event_id = self._new_id()
        if isinstance(parsed, Ignored):
            return Outcome("ignored", event_id, reason=parsed.reason)
        require_event_size(parsed)
        self._sink.submit(parsed, event_id)
        return Outcome("accepted", event_id, event=parsed)


MAX_EVENT_BYTES = 262_144  # the normalised event, sealed, must fit one table entity (gatekeeper.store.chunks)


def require_event_size(event: PipelineEvent) -> None:
    """413 before anything is written when the normalised event (mostly inline evidence) is larger than the
    gate can keep; below it, events over the queue's 64 KiB travel by claim check."""
    size = len(json.dumps(event_to_sealable(event), ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_EVENT_BYTES:
        raise InputTooLarge(
            f"The normalised event has {size} bytes; the limit is {MAX_EVENT_BYTES} bytes (move big evidence "
            "behind a uri).",
            "evidence" if event.evidence else None,
            code="payload-too-large",
            title="The event is too large",
        )


def canonical_envelope(document: dict[str, Any]) -> bytes:
    """The bytes a connector relay signs: the whole envelope except `signature` (connector, account,
    receivedAt, payload, ...) as compact, key-sorted, ASCII-escaped JSON, so re-addressing a message to another
    account or connector breaks its signature. The `signature` member reads `sha256=<hex HMAC-SHA256>`."""
    unsigned = {key: value for key, value in document.items() if key != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign_envelope(secret: bytes, document: dict[str, Any]) -> dict[str, Any]:
    """A connector relay's side: the envelope with `signature` = `sha256=<hex HMAC-SHA256(secret, canonical)>`."""
    digest = hmac.new(secret, canonical_envelope(document), hashlib.sha256).hexdigest()
    return {**{k: v for k, v in document.items() if k != "signature"}, "signature": f"sha256={digest}"}
