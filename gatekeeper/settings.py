"""Every app setting the product reads, in one place, and `Settings`: their typed values, read once.

The Bicep sets each of these (or the README names it as the admin's), and a test checks that both lists
agree, so a deployment can never miss a setting the code needs. The composition root
(`gatekeeper.services.build_services`) reads them once with `Settings.from_environ` and hands values, not
settings, to everything it builds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None
    description: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "GATEKEEPER_STORAGE_CONNECTION",
        None,
        "Connection string for the data storage account (local and Azurite only; "
        "in Azure leave unset and use GATEKEEPER_STORAGE_ACCOUNT with the managed identity).",
        secret=True,
    ),
    Setting(
        "GATEKEEPER_STORAGE_ACCOUNT",
        None,
        "Name of the data storage account reached with the managed identity (Azure).",
    ),
    Setting(
        "GATEKEEPER_STORAGE_ENDPOINT_SUFFIX",
        "core.windows.net",
        "DNS suffix of the cloud's storage endpoints (https://<account>.table.<suffix>); the template sets "
        "the cloud's own (sovereign clouds differ).",
    ),
    Setting("GATEKEEPER_TASK_HUB", "GatekeeperHub", "Durable Functions task hub name (host.json reads it)."),
    Setting(
        "GATEKEEPER_KEY_MODE",
        "keyvault",
        "Where tenant keys live: 'keyvault' (customer-managed keys) or 'local' (development only).",
    ),
    Setting("GATEKEEPER_KEY_VAULT_URL", None, "Key Vault URL holding tenant keys and the checkpoint key."),
    Setting("GATEKEEPER_LOCAL_KEY_DIR", ".gatekeeper/keys", "Folder for local JSON Web Keys (key mode 'local')."),
    Setting("GATEKEEPER_MAX_BODY_BYTES", "1048576", "Largest request body accepted by the ingestion routes."),
    Setting("GATEKEEPER_TENANT_CACHE_SECONDS", "60", "How long resolved tenant records are cached in process."),
    Setting(
        "GATEKEEPER_ENTRA_AUDIENCE",
        None,
        "Audience (application ID URI or client id) that Entra ID bearer tokens must carry.",
    ),
    Setting(
        "GATEKEEPER_ENTRA_AUTHORITY_HOST",
        "https://login.microsoftonline.com",
        "Entra ID authority host used to build issuer and JWKS URLs.",
    ),
    Setting(
        "GATEKEEPER_GITHUB_OIDC_AUDIENCE",
        None,
        "Audience GitHub Actions OIDC tokens must carry to request action approvals (POST /api/actions); "
        "empty: GitHub OIDC tokens are refused.",
    ),
    Setting(
        "GATEKEEPER_GITHUB_OIDC_ISSUER",
        "https://token.actions.githubusercontent.com",
        "Issuer of GitHub Actions OIDC tokens (GitHub Enterprise Cloud with a custom issuer: its URL); "
        "the signing keys are read from <issuer>/.well-known/jwks.",
    ),
    Setting("AZURE_CLIENT_ID", None, "Client id of the Function App's user-assigned managed identity."),
    Setting(
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        None,
        "Application Insights connection string; set: product events and metrics are exported with the managed "
        "identity (OpenTelemetry, Entra ID authentication), unset: logged locally only.",
    ),
    Setting(
        "GATEKEEPER_TRUST_EASYAUTH_HEADER",
        "false",
        "Read the X-MS-CLIENT-PRINCIPAL header as identity; 'true' only behind App Service authentication, "
        "which strips client-sent copies and sets its own.",
    ),
    Setting(
        "GATEKEEPER_ENTRA_JWKS_CACHE_SECONDS",
        "3600",
        "How long an Entra ID tenant's signing keys (JWKS) are cached before they are fetched again.",
    ),
    Setting(
        "GATEKEEPER_AUDIT_CONTAINER",
        "audit-checkpoints",
        "Blob container (immutable, WORM policy in Azure) that receives every signed audit checkpoint.",
    ),
    Setting("GATEKEEPER_CHECKPOINT_EVERY", "100", "Sign an audit checkpoint at least every this many entries."),
    Setting(
        "GATEKEEPER_CHECKPOINT_MINUTES",
        "15",
        "Sign an audit checkpoint when this many minutes passed since the last one and entries were added.",
    ),
    Setting(
        "GATEKEEPER_CHECKPOINT_KEY_NAME",
        "audit-checkpoint",
        "Key Vault key (RSA, the template's RSA-HSM 3072, or EC P-256) that signs audit checkpoints; "
        "locally a JWK of that name.",
    ),
    Setting(
        "GATEKEEPER_DATA_KEY_CACHE_SECONDS",
        "300",
        "How long an unwrapped tenant data key is cached in process: Key Vault is asked to unwrap once per "
        "tenant per period, and crypto-shredding takes effect within it.",
    ),
    Setting(
        "GATEKEEPER_TRANSIT_KEY_RETENTION_DAYS",
        "30",
        "Days the ingestion edge's transit keys are kept before they are deleted (crypto-shredded), 8 to 3650: "
        "longer than a queued message lives (7 days); dead letters sealed under an older key can no longer be read.",
    ),
    Setting(
        "GATEKEEPER_GITHUB_API_URL",
        "https://api.github.com",
        "GitHub REST API root (GitHub Enterprise Server: https://<host>/api/v3).",
    ),
    Setting(
        "GATEKEEPER_GITHUB_APP_ID", None, "The GitHub App's id (JWT issuer) used to answer deployment protection rules."
    ),
    Setting(
        "GATEKEEPER_GITHUB_APP_KEY_NAME",
        "github-app",
        "Key Vault key holding the GitHub App's private key (imported RSA key, sign permission); "
        "locally a JWK of that name.",
    ),
    Setting("GATEKEEPER_APPROVAL_BASE_URL", None, "Public base URL of the approval page; notifications link to it."),
    Setting(
        "GATEKEEPER_TEAMS_APP_ID",
        None,
        "Teams app id (manifest id) whose activity types the activity-feed notifications use.",
    ),
    Setting(
        "GATEKEEPER_BOT_APP_ID",
        None,
        "App id of the Azure Bot that sends approval cards in Teams (the user-assigned managed identity's client "
        "id); empty: no Teams bot, cards are not sent and /api/messages refuses every activity.",
    ),
    Setting(
        "GATEKEEPER_BOT_TENANT_ID",
        None,
        "Entra tenant of the bot's identity (the MSP's tenant); inbound bot tokens must be issued for it.",
    ),
    Setting(
        "GATEKEEPER_BOT_ALLOWED_CALLERS",
        None,
        "Comma-separated app ids whose Entra tokens issued by the bot's own tenant may post to /api/messages "
        "(any app of that tenant can get such a token); empty: only Bot Framework and Microsoft service tokens.",
    ),
    Setting(
        "GATEKEEPER_BOT_SERVICE_URL",
        "https://smba.trafficmanager.net/teams/",
        "Bot Connector endpoint for the first proactive message to a user (later ones use the conversation's "
        "own serviceUrl).",
    ),
    Setting(
        "GATEKEEPER_BOT_OPENID_METADATA",
        "https://login.botframework.com/v1/.well-known/openidconfiguration",
        "OpenID configuration whose keys sign the Bot Connector's tokens on activities sent to /api/messages.",
    ),
    Setting(
        "GATEKEEPER_MAIL_SENDER", None, "Mailbox (UPN or object id) that sends fallback mail through Graph sendMail."
    ),
    Setting(
        "GATEKEEPER_GRAPH_BASE_URL",
        "https://graph.microsoft.com/v1.0",
        "Microsoft Graph root (national clouds differ).",
    ),
    Setting(
        "GATEKEEPER_GRAPH_TENANT_ID",
        None,
        "Entra tenant whose directory the managed identity reads through Graph to check an approver's groups "
        "when the token lists too many; empty: no lookups (such approvers must be named directly).",
    ),
    Setting(
        "GATEKEEPER_NOTIFY_MODE",
        "graph",
        "How notifications go out: 'graph' (Teams activity feed, mail fallback) or 'outbox' (local files).",
    ),
    Setting("GATEKEEPER_OUTBOX_DIR", ".gatekeeper/outbox", "Folder the local outbox notifier writes to."),
    Setting(
        "GATEKEEPER_CALLBACK_MAX_ATTEMPTS",
        "5",
        "Attempts per pipeline callback (GitHub, Azure DevOps, webhook) before it is reported as failed.",
    ),
    Setting(
        "GATEKEEPER_LOG_ANALYTICS_ENDPOINT",
        "https://api.loganalytics.io",
        "Log Analytics query API root for the post-deploy watch's KQL probes (national clouds differ).",
    ),
    Setting(
        "GATEKEEPER_EVENTGRID_TOPIC_ENDPOINT",
        None,
        "Event Grid topic endpoint (CloudEvents 1.0 schema) the gate lifecycle events are published to with the "
        "managed identity; empty: publishing off.",
    ),
    Setting(
        "GATEKEEPER_DATA_BOUNDARY",
        "any",
        "The geography this deployment (stamp) keeps data in: 'EU', 'US' or 'any'; a tenant whose record "
        "requires another boundary is refused at import (an 'any' tenant fits every stamp).",
    ),
    Setting(
        "GATEKEEPER_BOOTSTRAP_TENANT_ID",
        None,
        "First managed tenant the app imports on its first run (with the example policy), idempotently; "
        "empty: no bootstrap.",
    ),
    Setting("GATEKEEPER_BOOTSTRAP_TENANT_NAME", None, "Display name of the bootstrap tenant."),
    Setting(
        "GATEKEEPER_BOOTSTRAP_TENANT_ENTRA_ID",
        None,
        "Entra tenant id (GUID) of the bootstrap tenant: whose people approve and audit its gates.",
    ),
    Setting(
        "GATEKEEPER_BOOTSTRAP_TENANT_OPERATORS",
        None,
        "Comma-separated mail addresses of the bootstrap tenant's operators (L1 notices, L3 tasks).",
    ),
    Setting(
        "GATEKEEPER_BOOTSTRAP_TENANT_GITHUB",
        "false",
        "'true' when the bootstrap tenant's pipelines run on GitHub (a GitHub webhook secret reference).",
    ),
    Setting(
        "GATEKEEPER_BOOTSTRAP_TENANT_AZURE_DEVOPS",
        "false",
        "'true' when the bootstrap tenant's pipelines run on Azure DevOps (check and service hook secret references).",
    ),
)

SETTING_NAMES = frozenset(s.name for s in SETTINGS)
BOOTSTRAP_PREFIX = "GATEKEEPER_BOOTSTRAP_TENANT_"


def get(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The value of a declared setting, or its default. Undeclared names are a programming error."""
    if name not in SETTING_NAMES:
        raise KeyError(f"setting {name} is not declared in gatekeeper.settings.SETTINGS")
    source = os.environ if env is None else env
    value = source.get(name)
    if value not in (None, ""):
        return value
    return next(s.default for s in SETTINGS if s.name == name)


def require(name: str, env: Mapping[str, str] | None = None) -> str:
    value = get(name, env)
    if not value:
        raise RuntimeError(f"app setting {name} is required but not set")
    return value


class DataBoundary(StrEnum):
    """Where a deployment keeps its data, and where a tenant requires its data to stay."""

    EU = "EU"
    US = "US"
    ANY = "any"


def parse_data_boundary(raw: str, field_name: str) -> DataBoundary:
    """'EU', 'US' or 'any' (case-insensitive); anything else is a ValueError naming `field_name`."""
    text = raw.strip()
    for member in DataBoundary:
        if text.lower() == member.value.lower():
            return member
    raise ValueError(f"{field_name}: must be 'EU', 'US' or 'any', not {raw[:40]!r}")


class KeyMode(StrEnum):
    KEYVAULT = "keyvault"  # customer-managed keys in Key Vault (Azure)
    LOCAL = "local"  # JSON Web Keys in a folder (development only)


class NotifyMode(StrEnum):
    GRAPH = "graph"  # Teams activity feed, mail fallback, through Microsoft Graph
    OUTBOX = "outbox"  # files in a folder (local)


_DEFAULT_CALLBACK_ATTEMPTS = 5
_DEFAULT_DATA_KEY_CACHE_SECONDS = 300.0


_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_SUFFIX = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})+")


class _Reader:
    """Reads declared settings from one mapping; every error names the setting."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ

    def text(self, name: str) -> str | None:
        return get(name, self.environ)

    def required(self, name: str) -> str:
        value = self.text(name)
        if value is None:  # only settings with a default reach here
            raise ValueError(f"{name}: is required but not set")
        return value

    def integer(self, name: str, low: int, high: int, message: str) -> int:
        raw = self.required(name).strip()
        if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:  # not "٣٠": ASCII digits only
            raise ValueError(f"{name}: must be {message}, not {raw!r}")
        return int(raw)

    def number(self, name: str, low: float, high: float, message: str, *, low_open: bool = False) -> float:
        raw = self.required(name).strip()
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not (low < value if low_open else low <= value) or not value <= high:
            raise ValueError(f"{name}: must be {message}, not {raw!r}")
        return value

    def flag(self, name: str) -> bool:
        return self.required(name).strip().lower() in {"1", "true", "yes"}

    def choice(self, name: str, kind: type[StrEnum]) -> str:
        raw = self.required(name).strip().lower()
        allowed = [m.value for m in kind]
        if raw not in allowed:
            quoted = " or ".join(repr(a) for a in allowed)
            raise ValueError(f"{name}: must be {quoted}, not {raw!r}")
        return raw

    def dns_suffix(self, name: str) -> str:
        raw = self.required(name).strip().lower()
        if len(raw) > 253 or not _DNS_SUFFIX.fullmatch(raw):
            raise ValueError(f"{name}: must be a DNS suffix such as 'core.windows.net', not {raw!r}")
        return raw

    def url(self, name: str) -> str | None:
        raw = self.text(name)
        if raw is None:
            return None
        parts = urlsplit(raw.strip())
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError(f"{name}: must be an absolute http(s) URL, not {raw!r}")
        return raw.strip()


@dataclass(frozen=True)
class Settings:
    """The typed value of every declared app setting, read once from the environment.

    `environ` is the mapping they were read from: the values of tenants' `env:NAME` secret references are
    looked up in it (gatekeeper.tenancy.secrets.SecretResolver), and it never appears in a repr."""

    storage_connection: str | None = field(default=None, repr=False)
    storage_account: str | None = None
    storage_endpoint_suffix: str = "core.windows.net"
    key_mode: KeyMode = KeyMode.KEYVAULT
    key_vault_url: str | None = None
    local_key_dir: str = ".gatekeeper/keys"
    max_body_bytes: int = 1_048_576
    tenant_cache_seconds: float = 60.0
    entra_audiences: tuple[str, ...] = ()
    entra_authority_host: str = "https://login.microsoftonline.com"
    entra_jwks_cache_seconds: float = 3600.0
    github_oidc_audience: str | None = None
    github_oidc_issuer: str = "https://token.actions.githubusercontent.com"
    azure_client_id: str | None = None
    applicationinsights_connection_string: str | None = field(default=None, repr=False)
    trust_easyauth_header: bool = False
    audit_container: str = "audit-checkpoints"
    checkpoint_every: int = 100
    checkpoint_minutes: float = 15.0
    checkpoint_key_name: str = "audit-checkpoint"
    data_key_cache_seconds: float = _DEFAULT_DATA_KEY_CACHE_SECONDS
    transit_key_retention_days: int = 30
    github_api_url: str = "https://api.github.com"
    github_app_id: str | None = None
    github_app_key_name: str = "github-app"
    approval_base_url: str | None = None
    teams_app_id: str | None = None
    bot_app_id: str | None = None
    bot_tenant_id: str | None = None
    bot_allowed_callers: tuple[str, ...] = ()
    bot_service_url: str = "https://smba.trafficmanager.net/teams/"
    bot_openid_metadata: str = "https://login.botframework.com/v1/.well-known/openidconfiguration"
    mail_sender: str | None = None
    graph_base_url: str = "https://graph.microsoft.com/v1.0"
    graph_tenant_id: str | None = None
    notify_mode: NotifyMode = NotifyMode.GRAPH
    outbox_dir: str = ".gatekeeper/outbox"
    callback_max_attempts: int = _DEFAULT_CALLBACK_ATTEMPTS
    log_analytics_endpoint: str = "https://api.loganalytics.io"
    eventgrid_topic_endpoint: str | None = None
    data_boundary: DataBoundary = DataBoundary.ANY
    # The bootstrap tenant's settings as given (GATEKEEPER_BOOTSTRAP_TENANT_*): checked by
    # gatekeeper.tenancy.bootstrap, so a bad value refuses the bootstrap (named, in health), not the app.
    bootstrap: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False, compare=False)
    environ: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False, compare=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse every declared setting from `environ` (None: the process environment), once. A value that
        does not parse raises ValueError naming the setting; unset settings take their declared default."""
        source: Mapping[str, str] = os.environ if environ is None else environ
        r = _Reader(source)
        audiences = tuple(a.strip() for a in (r.text("GATEKEEPER_ENTRA_AUDIENCE") or "").split(",") if a.strip())
        return cls(
            storage_connection=r.text("GATEKEEPER_STORAGE_CONNECTION"),
            storage_account=r.text("GATEKEEPER_STORAGE_ACCOUNT"),
            storage_endpoint_suffix=r.dns_suffix("GATEKEEPER_STORAGE_ENDPOINT_SUFFIX"),
            key_mode=KeyMode(r.choice("GATEKEEPER_KEY_MODE", KeyMode)),
            key_vault_url=r.url("GATEKEEPER_KEY_VAULT_URL"),
            local_key_dir=r.required("GATEKEEPER_LOCAL_KEY_DIR"),
            max_body_bytes=r.integer("GATEKEEPER_MAX_BODY_BYTES", 1, 2**31, "a whole number of bytes"),
            tenant_cache_seconds=r.number("GATEKEEPER_TENANT_CACHE_SECONDS", 0, 86400, "a number of seconds"),
            entra_audiences=audiences,
            entra_authority_host=r.url("GATEKEEPER_ENTRA_AUTHORITY_HOST") or "https://login.microsoftonline.com",
            entra_jwks_cache_seconds=r.number(
                "GATEKEEPER_ENTRA_JWKS_CACHE_SECONDS", 0, 86400 * 7, "a number of seconds"
            ),
            github_oidc_audience=(r.text("GATEKEEPER_GITHUB_OIDC_AUDIENCE") or "").strip() or None,
            github_oidc_issuer=(
                r.url("GATEKEEPER_GITHUB_OIDC_ISSUER") or "https://token.actions.githubusercontent.com"
            ).rstrip("/"),
            azure_client_id=r.text("AZURE_CLIENT_ID"),
            applicationinsights_connection_string=(r.text("APPLICATIONINSIGHTS_CONNECTION_STRING") or "").strip()
            or None,
            trust_easyauth_header=r.flag("GATEKEEPER_TRUST_EASYAUTH_HEADER"),
            audit_container=r.required("GATEKEEPER_AUDIT_CONTAINER"),
            checkpoint_every=r.integer("GATEKEEPER_CHECKPOINT_EVERY", 1, 10**9, "a whole number of entries"),
            checkpoint_minutes=r.number(
                "GATEKEEPER_CHECKPOINT_MINUTES", 0, 10**6, "a number of minutes", low_open=True
            ),
            checkpoint_key_name=r.required("GATEKEEPER_CHECKPOINT_KEY_NAME"),
            data_key_cache_seconds=r.number(
                "GATEKEEPER_DATA_KEY_CACHE_SECONDS", 0, 86400, "a number of seconds in (0, 86400]", low_open=True
            ),
            transit_key_retention_days=r.integer(
                "GATEKEEPER_TRANSIT_KEY_RETENTION_DAYS", 8, 3650, "a whole number of days from 8 to 3650"
            ),
            github_api_url=r.url("GATEKEEPER_GITHUB_API_URL") or "https://api.github.com",
            github_app_id=r.text("GATEKEEPER_GITHUB_APP_ID"),
            github_app_key_name=r.required("GATEKEEPER_GITHUB_APP_KEY_NAME"),
            approval_base_url=r.url("GATEKEEPER_APPROVAL_BASE_URL"),
            teams_app_id=r.text("GATEKEEPER_TEAMS_APP_ID"),
            bot_app_id=(r.text("GATEKEEPER_BOT_APP_ID") or "").strip() or None,
            bot_tenant_id=(r.text("GATEKEEPER_BOT_TENANT_ID") or "").strip() or None,
            bot_allowed_callers=tuple(
                c.strip() for c in (r.text("GATEKEEPER_BOT_ALLOWED_CALLERS") or "").split(",") if c.strip()
            ),
            bot_service_url=r.url("GATEKEEPER_BOT_SERVICE_URL") or "https://smba.trafficmanager.net/teams/",
            bot_openid_metadata=r.url("GATEKEEPER_BOT_OPENID_METADATA")
            or "https://login.botframework.com/v1/.well-known/openidconfiguration",
            mail_sender=r.text("GATEKEEPER_MAIL_SENDER"),
            graph_base_url=r.url("GATEKEEPER_GRAPH_BASE_URL") or "https://graph.microsoft.com/v1.0",
            graph_tenant_id=(r.text("GATEKEEPER_GRAPH_TENANT_ID") or "").strip() or None,
            notify_mode=NotifyMode(r.choice("GATEKEEPER_NOTIFY_MODE", NotifyMode)),
            outbox_dir=r.required("GATEKEEPER_OUTBOX_DIR"),
            callback_max_attempts=r.integer("GATEKEEPER_CALLBACK_MAX_ATTEMPTS", 1, 10, "a whole number from 1 to 10"),
            log_analytics_endpoint=r.url("GATEKEEPER_LOG_ANALYTICS_ENDPOINT") or "https://api.loganalytics.io",
            eventgrid_topic_endpoint=r.url("GATEKEEPER_EVENTGRID_TOPIC_ENDPOINT"),
            data_boundary=parse_data_boundary(r.required("GATEKEEPER_DATA_BOUNDARY"), "GATEKEEPER_DATA_BOUNDARY"),
            bootstrap=MappingProxyType(
                {name: r.text(name) or "" for name in SETTING_NAMES if name.startswith(BOOTSTRAP_PREFIX)}
            ),
            environ=source,
        )
