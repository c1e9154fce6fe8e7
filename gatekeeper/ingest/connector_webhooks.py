"""Vendor webhooks straight to `POST /api/connectors/{vendor}`: how each vendor's delivery is authenticated.

The tenant is named in the URL (`?tenant=<id>`, what every vendor's webhook form lets an admin type) and is
only a lookup key: the request is the tenant's when it carries that tenant's per-vendor secret, checked in
constant time, and (for the unsigned vendors, when the tenant lists networks) comes from an allowed address.
Unknown tenant, disabled tenant, no secret configured, wrong or missing credential, address not allowed: the
same 401 as every other route, so nothing is revealed.

Per vendor (sources read 2026-12-05):
- Autotask signs: `X-Hook-Signature` is the base64 HMAC-SHA1 of the raw body under the webhook's
  `SecretKey` (https://ww1.autotask.net/help/DeveloperHelp/Content/APIs/Webhooks/REST_WebhooksEntity.htm,
  "SecretKey", and the webhooks overview
  https://www.autotask.net/help/developerhelp/Content/APIs/Webhooks/WEBHOOKS.htm). A `sha1=` prefix is
  accepted too. The body is then trusted whole, so no address check is needed.
- ConnectWise PSA callbacks (https://developer.connectwise.com/Best_Practices/PSA_Callbacks) carry an
  `x-content-signature` whose key is fetched from `Metadata.key_url` in the callback itself. When the tenant
  names its ConnectWise site (`connectwise_site`), that signature is required and the key URL is followed only
  on that site (`gatekeeper.ingest.connectwise_signature`). Otherwise the fallback: the tenant's secret in the
  callback URL (`&secret=`) or in `X-Gatekeeper-Connector-Secret` when a relay can set headers, plus the
  tenant's optional allow-list of ConnectWise's egress addresses.
- HaloPSA outbound webhooks offer Basic auth, a bearer token or an API-key header
  (Configuration > Integrations > Webhooks, `authentication_type`; https://halopsa.com/guides/article/?kbid=2058):
  the secret is the Basic password, the bearer token, or `X-Gatekeeper-Connector-Secret`.
- NinjaOne webhooks (`PUT /v2/webhook` with `url`, `activities` and custom `headers`;
  https://app.ninjarmm.com/apidocs/?links.active=webhooks) are unsigned: the secret travels in the custom
  header `X-Gatekeeper-Connector-Secret`.
- Datto RMM alert webhooks (https://rmm.datto.com/help/en/Content/3NEWUI/Monitors/Webhooks.htm) let the admin
  add request headers to the webhook: the same custom header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from gatekeeper.errors import NotFound
from gatekeeper.events.model import EventSource
from gatekeeper.ingest.edge import IncomingRequest
from gatekeeper.security.signatures import basic_auth_password, verify_shared_secret
from gatekeeper.store.tables import TENANT_ID_PATTERN
from gatekeeper.tenancy.model import SecretPurpose, TenantRecord

SECRET_HEADER = "X-Gatekeeper-Connector-Secret"  # noqa: S105 - a header name
AUTOTASK_SIGNATURE_HEADER = "X-Hook-Signature"
MAX_QUERY_CHARS = 2048  # the whole query string; a longer one is not a vendor's callback URL


def autotask_signature(secret: bytes, body: bytes) -> str:
    """What Autotask sends in X-Hook-Signature: base64 of HMAC-SHA1(SecretKey, raw body)."""
    return base64.b64encode(hmac.new(secret, body, hashlib.sha1).digest()).decode("ascii")


def verify_autotask(secrets: list[bytes], body: bytes, header: str | None) -> bool:
    """Constant-time check of Autotask's signature under each configured secret (rotation)."""
    if not header:
        return False
    offered = header.strip().removeprefix("sha1=").encode("ascii", errors="replace")
    matched = False
    for secret in secrets:  # every secret is tried: timing says nothing about which one matched
        matched |= hmac.compare_digest(offered, autotask_signature(secret, body).encode("ascii"))
    return matched


def query_params(request: IncomingRequest) -> dict[str, str]:
    """The request URL's query, first value per name; an oversized or odd query reads as empty."""
    try:
        query = urlsplit(request.path).query
    except ValueError:
        return {}
    if len(query) > MAX_QUERY_CHARS:
        return {}
    return {name: values[0] for name, values in parse_qs(query, max_num_fields=16).items() if values}


def _bearer(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


def _header_or_query(request: IncomingRequest, query: Mapping[str, str]) -> str | None:
    return request.headers.get(SECRET_HEADER) or query.get("secret")


def _halopsa(request: IncomingRequest, _query: Mapping[str, str]) -> str | None:
    authorization = request.headers.get("Authorization")
    return basic_auth_password(authorization) or _bearer(authorization) or request.headers.get(SECRET_HEADER)


def _header(request: IncomingRequest, _query: Mapping[str, str]) -> str | None:
    return request.headers.get(SECRET_HEADER)


@dataclass(frozen=True)
class VendorWebhook:
    """One vendor's route: its connector, the tenant secret it uses, and how the request proves it."""

    vendor: str  # the route's `{vendor}`
    source: EventSource  # the connector module that parses the body
    purpose: SecretPurpose
    identity_prefix: str  # the tenant's registered account for this vendor: `<prefix><account>`
    signed: bool  # True: an HMAC over the body (no address check); False: a shared secret (+ allow-list)
    offered: Callable[[IncomingRequest, Mapping[str, str]], str | None] | None = None

    def verified(self, secrets: list[bytes], request: IncomingRequest, query: Mapping[str, str]) -> bool:
        if self.signed:
            return verify_autotask(secrets, request.body, request.headers.get(AUTOTASK_SIGNATURE_HEADER))
        assert self.offered is not None
        offered = self.offered(request, query)
        return verify_shared_secret(secrets, offered[:1024] if offered else None)


VENDORS: Mapping[str, VendorWebhook] = {
    v.vendor: v
    for v in (
        VendorWebhook(
            "autotask", EventSource.AUTOTASK, SecretPurpose.AUTOTASK_WEBHOOK, "autotask:account:", signed=True
        ),
        VendorWebhook(
            "connectwise",
            EventSource.CONNECTWISE,
            SecretPurpose.CONNECTWISE_WEBHOOK,
            "connectwise:company:",
            signed=False,
            offered=_header_or_query,
        ),
        VendorWebhook(
            "halopsa",
            EventSource.HALOPSA,
            SecretPurpose.HALOPSA_WEBHOOK,
            "halopsa:instance:",
            signed=False,
            offered=_halopsa,
        ),
        VendorWebhook(
            "ninjaone",
            EventSource.NINJARMM,
            SecretPurpose.NINJAONE_WEBHOOK,
            "ninjarmm:org:",
            signed=False,
            offered=_header,
        ),
        VendorWebhook(
            "dattormm",
            EventSource.DATTORMM,
            SecretPurpose.DATTORMM_WEBHOOK,
            "dattormm:site:",
            signed=False,
            offered=_header,
        ),
    )
}
"""The route's `{vendor}` -> how that vendor authenticates (the public list of connector routes)."""


def vendor_webhook(vendor: str) -> VendorWebhook:
    found = VENDORS.get(vendor.strip().lower()) if len(vendor) <= 32 else None
    if found is None:
        raise NotFound(
            "vendor: expected one of " + ", ".join(sorted(VENDORS)),
            field="path:vendor",
            code="unknown-connector",
            title="Unknown connector",
        )
    return found


def requested_tenant_id(query: Mapping[str, str]) -> str | None:
    """The tenant the URL names, if it is a well-formed tenant id (anything else finds no tenant)."""
    tenant_id = query.get("tenant", "")
    return tenant_id if TENANT_ID_PATTERN.fullmatch(tenant_id) else None


def client_address(request: IncomingRequest) -> str | None:
    """The caller's address as the Azure front end reports it: the right-most `X-Forwarded-For` entry is
    the one the platform appended (earlier entries are whatever the caller sent), without its port."""
    forwarded = request.headers.get("X-Forwarded-For") or ""
    last = forwarded.rsplit(",", 1)[-1].strip()
    if last.startswith("["):  # [v6]:port
        last = last[1:].split("]", 1)[0]
    elif last.count(":") == 1:  # v4:port
        last = last.split(":", 1)[0]
    return last or None


def address_allowed(tenant: TenantRecord, request: IncomingRequest) -> bool:
    """True without an allow-list; with one, the caller's address must lie in one of the networks."""
    if not tenant.connector_allowed_networks:
        return True
    try:
        address = ipaddress.ip_address(client_address(request) or "")
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network) for network in tenant.connector_allowed_networks)


def registered_account(tenant: TenantRecord, webhook: VendorWebhook) -> str | None:
    """The tenant's registered account with this vendor (first one): the envelope's `account`."""
    for identity in tenant.identities:
        if identity.startswith(webhook.identity_prefix):
            return identity[len(webhook.identity_prefix) :]
    return None
