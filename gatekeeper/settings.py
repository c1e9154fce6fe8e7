"""Every app setting the product reads, in one place.

The Bicep sets each of these (or the README names it as the admin's), and a test checks that both lists
agree, so a deployment can never miss a setting the code needs. Read settings only through this module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


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
    Setting("AZURE_CLIENT_ID", None, "Client id of the Function App's user-assigned managed identity."),
    Setting("APPLICATIONINSIGHTS_CONNECTION_STRING", None, "Application Insights connection string."),
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
)

SETTING_NAMES = frozenset(s.name for s in SETTINGS)


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
