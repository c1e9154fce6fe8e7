"""Build the callback and notification adapters from app settings (composition roots call these).

Everything is read through `gatekeeper.settings`; tests and the demo pass an `env` mapping and, where no
cloud exists locally, a signer or credential of their own.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from azure.core.credentials import TokenCredential
from azure.keyvault.keys import JsonWebKey
from azure.keyvault.keys.crypto import CryptographyClient

from gatekeeper import settings
from gatekeeper.integrations.azure_devops import AzureDevOpsClient
from gatekeeper.integrations.callbacks import PipelineCallbacks, WebhookAllowed, WebhookSecretResolver
from gatekeeper.integrations.github_app import DigestSigner, GitHubApp, InstallationResolver
from gatekeeper.integrations.notify import Notifier
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.integrations.webhook import WebhookSender

_JWK_BINARY_FIELDS = ("n", "e", "d", "p", "q", "dp", "dq", "qi")


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_local_signer(path: str | Path) -> CryptographyClient:
    """A `CryptographyClient.from_jwk` on a local RSA JWK file (a single JWK or a JWK Set whose last key
    is current), the development stand-in for the Key Vault key."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    jwk = document["keys"][-1] if isinstance(document, dict) and "keys" in document else document
    if jwk.get("kty") != "RSA" or "d" not in jwk:
        raise ValueError(f"{path}: must be an RSA private JWK")
    fields: dict[str, Any] = {"kid": jwk.get("kid", Path(path).stem), "kty": "RSA", "key_ops": ["sign", "verify"]}
    fields.update({name: _unb64u(jwk[name]) for name in _JWK_BINARY_FIELDS if name in jwk})
    return CryptographyClient.from_jwk(JsonWebKey(**fields))


def github_app_signer(credential: TokenCredential | None, env: Mapping[str, str] | None = None) -> DigestSigner:
    """Key Vault key `GATEKEEPER_GITHUB_APP_KEY_NAME` (mode keyvault) or `<LOCAL_KEY_DIR>/<name>.jwk.json`."""
    name = settings.get("GATEKEEPER_GITHUB_APP_KEY_NAME", env) or "github-app"
    mode = (settings.get("GATEKEEPER_KEY_MODE", env) or "").lower()
    if mode == "local":
        return load_local_signer(Path(settings.require("GATEKEEPER_LOCAL_KEY_DIR", env)) / f"{name}.jwk.json")
    if credential is None:
        raise ValueError("github app signer: a credential is required for Key Vault")
    vault = settings.require("GATEKEEPER_KEY_VAULT_URL", env).rstrip("/")
    return CryptographyClient(f"{vault}/keys/{name}", credential)


def callback_policy(env: Mapping[str, str] | None = None) -> RetryPolicy:
    raw = settings.get("GATEKEEPER_CALLBACK_MAX_ATTEMPTS", env) or "5"
    if not raw.isdigit() or not 1 <= int(raw) <= 10:
        raise ValueError(f"GATEKEEPER_CALLBACK_MAX_ATTEMPTS: must be a whole number from 1 to 10, not {raw!r}")
    return RetryPolicy(max_attempts=int(raw))


def build_pipeline_callbacks(
    *,
    env: Mapping[str, str] | None = None,
    credential: TokenCredential | None = None,
    signer: DigestSigner | None = None,
    webhook_secret: WebhookSecretResolver | None = None,
    policy: RetryPolicy | None = None,
    allow_loopback_http: bool = False,
    github_installations: InstallationResolver | None = None,
    webhook_allowed: WebhookAllowed | None = None,
) -> PipelineCallbacks:
    """GitHub only when `GATEKEEPER_GITHUB_APP_ID` is set; Azure DevOps and webhooks always.

    `github_installations` (tenant id -> registered installation ids) confines the App to each tenant's own
    installations and `webhook_allowed` (tenant id, url) re-checks a webhook against the tenant's registered
    callback URL prefixes at send time; every composition root that serves tenants passes both."""
    policy = policy or callback_policy(env)
    github = None
    app_id = settings.get("GATEKEEPER_GITHUB_APP_ID", env)
    if app_id:
        github = GitHubApp(
            app_id,
            signer or github_app_signer(credential, env),
            settings.get("GATEKEEPER_GITHUB_API_URL", env) or "https://api.github.com",
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


def build_notifier(*, env: Mapping[str, str] | None = None, credential: TokenCredential | None = None) -> Notifier:
    """`GATEKEEPER_NOTIFY_MODE`: 'graph' (msgraph-sdk with `credential`, e.g. the managed identity) or
    'outbox' (files under `GATEKEEPER_OUTBOX_DIR`)."""
    mode = (settings.get("GATEKEEPER_NOTIFY_MODE", env) or "graph").strip().lower()
    portal = settings.get("GATEKEEPER_APPROVAL_BASE_URL", env)
    teams_app_id = settings.get("GATEKEEPER_TEAMS_APP_ID", env)
    if mode == "outbox":
        from gatekeeper.integrations.outbox import OutboxNotifier

        return OutboxNotifier(
            settings.get("GATEKEEPER_OUTBOX_DIR", env) or ".gatekeeper/outbox",
            portal_url=portal,
            teams_app_id=teams_app_id,
        )
    if mode == "graph":
        if credential is None:
            raise ValueError("GATEKEEPER_NOTIFY_MODE=graph: a credential (managed identity) is required")
        from gatekeeper.integrations.graph_notify import GraphNotifier, make_graph_client

        client, http = make_graph_client(
            credential, settings.get("GATEKEEPER_GRAPH_BASE_URL", env) or "https://graph.microsoft.com/v1.0"
        )
        return GraphNotifier(
            client, teams_app_id, settings.get("GATEKEEPER_MAIL_SENDER", env), portal_url=portal, http_client=http
        )
    raise ValueError(f"GATEKEEPER_NOTIFY_MODE: must be 'graph' or 'outbox', not {mode!r}")
