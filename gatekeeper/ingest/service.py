"""Ingestion: from an authenticated request to a normalised event handed to the sink.

Order matters and is the same for every source: size and content type, then which tenant the request
claims, then that tenant's credential over the raw bytes, and only then parsing. Until the credential
checks out, nothing about tenants is revealed and nothing is written.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gatekeeper.errors import Problem, unauthenticated
from gatekeeper.events.azure_devops import parse_check_request, parse_service_hook
from gatekeeper.events.common import Ignored
from gatekeeper.events.connectors import parse_connector_message
from gatekeeper.events.generic import parse_generic
from gatekeeper.events.github import parse_github
from gatekeeper.events.identity import source_identities
from gatekeeper.events.model import EventSource, PipelineEvent
from gatekeeper.ingest.edge import (
    IncomingRequest,
    parse_json_object,
    require_header,
    require_json_content_type,
    require_size,
)
from gatekeeper.security.identity import TokenValidator, identify_caller
from gatekeeper.security.principal import Principal
from gatekeeper.security.signatures import basic_auth_password, verify_github_signature, verify_shared_secret
from gatekeeper.tenancy.model import SecretPurpose, TenantRecord
from gatekeeper.tenancy.registry import TenantRegistry
from gatekeeper.tenancy.secrets import SecretResolver

CHECK_SECRET_HEADER = "X-Gatekeeper-Check-Secret"  # noqa: S105 - a header name
SERVICE_HOOK_SECRET_HEADER = "X-Gatekeeper-Hook-Secret"  # noqa: S105 - a header name
GENERIC_TENANT_HEADER = "X-Gatekeeper-Tenant"
GENERIC_KEY_HEADER = "x-functions-key"
CONNECTORS = {
    s.value: s for s in (EventSource.CONNECTWISE, EventSource.AUTOTASK, EventSource.HALOPSA, EventSource.NINJARMM)
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
    ):
        self._registry = registry
        self._secrets = secrets
        self._sink = sink
        self._max_body_bytes = max_body_bytes
        self._token_validator = token_validator
        self._new_id = new_id

    # -- GitHub -----------------------------------------------------------------------------------

    def github(self, request: IncomingRequest) -> Outcome:
        document = self._json(request)
        event_name = require_header(request, "X-GitHub-Event")
        tenant = self._registry.resolve(source_identities(EventSource.GITHUB, document, request.headers.as_dict()))
        if tenant is None or not verify_github_signature(
            self._secrets.resolve(tenant, SecretPurpose.GITHUB_WEBHOOK),
            request.body,
            request.headers.get("X-Hub-Signature-256"),
        ):
            raise unauthenticated("The X-Hub-Signature-256 signature could not be verified.")
        parsed = parse_github(
            event_name, document, tenant_id=tenant.tenant_id, delivery_id=request.headers.get("X-GitHub-Delivery")
        )
        return self._hand_over(parsed)

    # -- Azure DevOps -----------------------------------------------------------------------------

    def azure_devops_check(self, request: IncomingRequest) -> Outcome:
        require_size(request, self._max_body_bytes)
        document = parse_json_object(request.body) if request.body.strip() else {}
        plan_url = require_header(request, "PlanUrl")
        identities = source_identities(EventSource.AZURE_DEVOPS, document, {"PlanUrl": plan_url})
        tenant = self._registry.resolve(identities)
        self._require_secret(tenant, SecretPurpose.AZURE_DEVOPS_CHECK, request.headers.get(CHECK_SECRET_HEADER))
        assert tenant is not None
        event = parse_check_request(request.headers.as_dict(), document, tenant_id=tenant.tenant_id)
        return self._hand_over(event)

    def azure_devops_service_hook(self, request: IncomingRequest) -> Outcome:
        document = self._json(request)
        tenant = self._registry.resolve(source_identities(EventSource.AZURE_DEVOPS, document))
        offered = basic_auth_password(request.headers.get("Authorization")) or request.headers.get(
            SERVICE_HOOK_SECRET_HEADER
        )
        self._require_secret(tenant, SecretPurpose.AZURE_DEVOPS_SERVICE_HOOK, offered)
        assert tenant is not None
        return self._hand_over(parse_service_hook(document, tenant_id=tenant.tenant_id))

    # -- any CI -----------------------------------------------------------------------------------

    def generic(self, request: IncomingRequest) -> Outcome:
        document = self._json(request)
        tenant, principal = self._generic_tenant(request)
        parsed = parse_generic(document, tenant_id=tenant.tenant_id)
        if principal is not None:  # the token says who asks; the body's actor is only shown
            who = (f"entra:oid:{principal.oid.lower()}",)
            parsed = parsed.model_copy(update={"requester_ids": who})
        return self._hand_over(parsed)

    def _generic_tenant(self, request: IncomingRequest) -> tuple[TenantRecord, Principal | None]:
        authorization = request.headers.get("Authorization") or ""
        if authorization.lower().startswith("bearer "):
            principal = identify_caller({"Authorization": authorization}, self._token_validator)
            tenant = self._registry.resolve([f"entra:tenant:{principal.tid.lower()}"])
            if tenant is None:
                raise unauthenticated()
            return tenant, principal
        tenant_id = request.headers.get(GENERIC_TENANT_HEADER)
        tenant = self._registry.get(tenant_id) if tenant_id and tenant_id.isalnum() else None
        self._require_secret(
            tenant if tenant and tenant.enabled else None,
            SecretPurpose.GENERIC_API_KEY,
            request.headers.get(GENERIC_KEY_HEADER),
        )
        assert tenant is not None
        return tenant, None

    # -- connectors (queue messages) --------------------------------------------------------------

    def connector(self, message: bytes | str) -> Outcome:
        """A connector queue message. Problems raised here are permanent: the caller dead-letters them."""
        body = message.encode() if isinstance(message, str) else message
        document = parse_json_object(body, what="message")
        source = CONNECTORS.get(str(document.get("connector", "")))
        if source is None:
            raise Problem(
                422,
                "unknown-connector",
                "Unknown connector",
                "connector: expected one of " + ", ".join(sorted(CONNECTORS)),
                field="connector",
            )
        tenant = self._registry.resolve(source_identities(source, document))
        if tenant is None:
            raise unauthenticated("The connector account is not registered.")
        secrets = self._secrets.resolve(tenant, SecretPurpose.CONNECTOR)
        if secrets and not verify_github_signature(secrets, canonical_payload(document), document.get("signature")):
            raise unauthenticated("The connector message signature could not be verified.")
        return self._hand_over(parse_connector_message(document, tenant_id=tenant.tenant_id))

    # -- shared steps -----------------------------------------------------------------------------

    def _json(self, request: IncomingRequest) -> dict[str, Any]:
        require_size(request, self._max_body_bytes)
        require_json_content_type(request)
        return parse_json_object(request.body)

    def _require_secret(self, tenant: TenantRecord | None, purpose: SecretPurpose, offered: str | None) -> None:
        if tenant is None or not verify_shared_secret(self._secrets.resolve(tenant, purpose), offered):
            raise unauthenticated()

    def _hand_over(self, parsed: PipelineEvent | Ignored) -> Outcome:
        event_id = self._new_id()
        if isinstance(parsed, Ignored):
            return Outcome("ignored", event_id, reason=parsed.reason)
        self._sink.submit(parsed, event_id)
        return Outcome("accepted", event_id, event=parsed)


def canonical_payload(document: dict[str, Any]) -> bytes:
    """The bytes a connector relay signs: the `payload` member as compact, key-sorted JSON."""
    return json.dumps(document.get("payload"), sort_keys=True, separators=(",", ":")).encode()
