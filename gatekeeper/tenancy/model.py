"""The tenant record: which sources belong to a tenant and where its secrets are kept.

Secrets are held as references (`env:NAME`: an app setting, which in Azure is a Key Vault reference),
never as values, so the registry table and its exports never contain a secret.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gatekeeper.settings import DataBoundary, parse_data_boundary
from gatekeeper.store.tables import TENANT_ID_PATTERN
from gatekeeper.tenancy.ownership import normalise_callback_prefix, normalise_identity
from gatekeeper.tenancy.psa_settings import PsaSettings
from gatekeeper.tenancy.rmm_settings import RmmSettings
from gatekeeper.tenancy.slack_settings import SlackSettings

IDENTITY_PATTERN = re.compile(
    r"^(github:(installation|org|repo|owner-id)|azure-devops:(org|account)|entra:tenant|"
    r"connectwise:company|autotask:account|halopsa:instance|ninjarmm:org|dattormm:site|azure-monitor:workspace):\S+$"
)
SECRET_REF_PATTERN = re.compile(r"^env:[A-Za-z_][A-Za-z0-9_]*$")
SITE_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,62}\.)*[a-z0-9-]{1,63}(:[0-9]{1,5})?$"


class SecretPurpose(StrEnum):
    """What a tenant secret authenticates. Each maps to one or more references (rotation)."""

    GITHUB_WEBHOOK = "github_webhook"
    AZURE_DEVOPS_CHECK = "azure_devops_check"
    AZURE_DEVOPS_SERVICE_HOOK = "azure_devops_service_hook"
    GENERIC_API_KEY = "generic_api_key"
    CALLBACK_SIGNING = "callback_signing"
    CONNECTOR = "connector"
    AZURE_DEVOPS_PIPELINES = "azure_devops_pipelines"  # a PAT that may queue the tenant's rollback pipelines
    # Vendor webhooks straight to POST /api/connectors/{vendor} (gatekeeper.ingest.connector_webhooks): one
    # secret per vendor, so a secret leaked from one vendor's configuration opens no other vendor's route.
    AUTOTASK_WEBHOOK = "autotask_webhook"  # the webhook's SecretKey (HMAC-SHA1 X-Hook-Signature)
    CONNECTWISE_WEBHOOK = "connectwise_webhook"  # in the callback URL (ConnectWise callbacks are unsigned)
    HALOPSA_WEBHOOK = "halopsa_webhook"  # the webhook's Basic auth password or bearer token
    NINJAONE_WEBHOOK = "ninjaone_webhook"  # a custom header value configured on the NinjaOne webhook
    DATTORMM_WEBHOOK = "dattormm_webhook"  # a custom header value configured on the Datto RMM webhook


class TenantRecord(BaseModel):
    """One MSP client. `identities` are the source identities that route events to it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN.pattern)
    display_name: str = Field(min_length=1, max_length=200)
    identities: tuple[str, ...] = ()
    entra_tenant_ids: tuple[str, ...] = ()
    secrets: dict[SecretPurpose, tuple[str, ...]] = Field(default_factory=dict)
    operators: tuple[str, ...] = ()  # who hears about L1 changes and failed callbacks (UPNs, group:<id>)
    key_name: str | None = None  # Key Vault key wrapping the tenant's data keys; default tenant-<id>
    # Where gate decisions may be sent as signed webhooks (generic API `callbackUrl`): absolute https URL
    # prefixes such as https://ci.contoso.com/hooks/. Empty: the tenant's gates cannot name a callback URL.
    callback_url_prefixes: tuple[str, ...] = ()
    # Connector queue messages must carry an HMAC over the whole envelope made with the tenant's
    # `connector` secret. Only a tenant whose connectors cannot sign may set this to false, explicitly.
    connector_secret_required: bool = True
    # Optional source-address allow-list (CIDRs) for vendor webhooks that carry no signature (ConnectWise,
    # HaloPSA, NinjaOne, Datto RMM): empty means no address check, only the secret.
    connector_allowed_networks: tuple[str, ...] = ()
    # The tenant's ConnectWise PSA site (`na.myconnectwise.net`, or an on-premises `host[:port]`). Set: ConnectWise
    # callbacks must carry ConnectWise's `x-content-signature`, whose key is fetched only from this host
    # (gatekeeper.ingest.connectwise_signature). Unset: the per-tenant secret in the callback URL.
    connectwise_site: str | None = Field(default=None, max_length=260, pattern=SITE_PATTERN)
    enabled: bool = True
    # The public half of the tenant's current KEK version as a JWK {kty, kid, n, e}, written by `gatekeeper
    # tenants import` and `gatekeeper keys rotate` from Key Vault (or the local key). The ingestion edge wraps
    # transit data keys with it, so it needs no private-key operation and no Key Vault call
    # (gatekeeper.store.transit). Absent: the edge seals with the tenant's active data key as before.
    kek_public: dict[str, str] | None = None
    # The geography the tenant's data must stay in ('EU', 'US' or 'any'): a deployment keeping data elsewhere
    # refuses to import it (gatekeeper.tenancy.boundary). Records written before the field existed read 'any'.
    data_boundary: DataBoundary = DataBoundary.ANY
    # The tenant's RMM (NinjaOne or Datto RMM) for the post-deploy watch: maintenance mode, alert resolution,
    # device status (gatekeeper.tenancy.rmm_settings; credentials by reference like `secrets`).
    rmm: RmmSettings | None = None
    # The tenant's PSA, where gates write their notes, statuses and tickets (gatekeeper.tenancy.psa_settings)
    psa: PsaSettings | None = None
    # A PSA change decision applies to a gate only when its ticket is the tenant's client company's: the company
    # the vendor's callback names must be `psa.company` (gatekeeper.gates.psa.company_refusal). True accepts a
    # decision whose company cannot be compared (no `psa:` settings of that vendor, or a callback naming no
    # company); a decision naming another company is refused either way.
    psa_decisions_without_company: bool = False
    # The tenant's Slack workspace (gatekeeper.tenancy.slack_settings): approvals in Slack. Its team id is one of
    # the tenant's identities (`slack:team:<id>`), so no other tenant can register the workspace.
    slack: SlackSettings | None = None

    @field_validator("data_boundary", mode="before")
    @classmethod
    def _boundary_is_known(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return parse_data_boundary(value, "data_boundary")
            except ValueError:
                raise ValueError(f"must be 'EU', 'US' or 'any', not {value[:40]!r}") from None
        return value

    @model_validator(mode="after")
    def _kek_public_is_the_tenants(self) -> TenantRecord:
        if self.kek_public is not None:
            from gatekeeper.store.transit import InvalidPublicKey, parse_kek_public

            jwk = self.kek_public
            if set(jwk) != {"kty", "kid", "n", "e"} or jwk["kty"] != "RSA":
                raise ValueError("kek_public: expected exactly the members kty (RSA), kid, n and e")
            try:
                parse_kek_public(self.tenant_id, jwk["kid"], jwk["n"], jwk["e"])
            except InvalidPublicKey as exc:
                raise ValueError(f"kek_public.{exc}") from None
        return self

    @field_validator("identities")
    @classmethod
    def _identities_are_well_formed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, identity in enumerate(value):
            if not IDENTITY_PATTERN.match(identity):
                raise ValueError(
                    f"identities[{index}]: {identity!r} is not a known source identity "
                    "(github:installation:<id>, github:org:<login>, github:repo:<owner/name>, "
                    "github:owner-id:<number> (GitHub Actions OIDC), "
                    "azure-devops:org:<url>, azure-devops:account:<id>, entra:tenant:<guid>, connectwise:company:<id>, "
                    "autotask:account:<id>, halopsa:instance:<host>, ninjarmm:org:<id>, dattormm:site:<uid>, "
                    "azure-monitor:workspace:<id>)"
                )
        return tuple(normalise_identity(i) for i in value)

    @field_validator("connector_allowed_networks")
    @classmethod
    def _networks_are_cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        networks = []
        for index, network in enumerate(value):
            try:
                networks.append(str(ipaddress.ip_network(network.strip(), strict=False)))
            except ValueError:
                raise ValueError(
                    f"connector_allowed_networks[{index}]: {network[:64]!r} is not an IP network (CIDR)"
                ) from None
        return tuple(networks)

    @field_validator("callback_url_prefixes")
    @classmethod
    def _prefixes_are_https(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(normalise_callback_prefix(prefix, f"callback_url_prefixes[{i}]") for i, prefix in enumerate(value))

    @field_validator("secrets")
    @classmethod
    def _secrets_are_references(
        cls, value: dict[SecretPurpose, tuple[str, ...]]
    ) -> dict[SecretPurpose, tuple[str, ...]]:
        for purpose, refs in value.items():
            for ref in refs:
                if not SECRET_REF_PATTERN.match(ref):
                    raise ValueError(
                        f"secrets.{purpose.value}: references must look like env:SETTING_NAME; "
                        "put the secret itself in an app setting (a Key Vault reference in Azure)"
                    )
        return value

    @property
    def all_identities(self) -> tuple[str, ...]:
        slack = (self.slack.identity,) if self.slack is not None else ()
        return self.identities + tuple(f"entra:tenant:{tid.lower()}" for tid in self.entra_tenant_ids) + slack
