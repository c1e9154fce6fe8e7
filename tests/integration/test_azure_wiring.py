"""The recipe a deployment runs: `build_services` over the app settings the Bicep sets in Azure (Key Vault keys,
Graph notifications and directory, the GitHub App, the Teams bot and app, managed-identity storage), built
member by member with the adapter each setting names. No member may contact anything while it is built: the
Key Vault, Graph and GitHub addresses here do not exist, so a build that called out would fail.

The local recipe (`GATEKEEPER_KEY_MODE=local`, outbox notifications) is what every other test builds; without
this file a typo on the Azure branch of a builder would first show in Azure."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.credentials import AccessToken

from gatekeeper.services import Services, build_services, github_app_signer
from gatekeeper.settings import Settings

VAULT = "https://kv-gatekeeper-test.vault.azure.net"
AZURE = {
    "GATEKEEPER_STORAGE_ACCOUNT": "stgatekeepertest",
    "GATEKEEPER_KEY_MODE": "keyvault",
    "GATEKEEPER_KEY_VAULT_URL": VAULT,
    "GATEKEEPER_NOTIFY_MODE": "graph",
    "GATEKEEPER_GRAPH_TENANT_ID": "00000000-0000-0000-0000-0000000000bb",
    "GATEKEEPER_GRAPH_BASE_URL": "https://graph.invalid/v1.0",
    "GATEKEEPER_MAIL_SENDER": "gatekeeper@contoso.example",
    "GATEKEEPER_GITHUB_APP_ID": "123456",
    "GATEKEEPER_GITHUB_API_URL": "https://github-api.invalid",
    "GATEKEEPER_BOT_APP_ID": "00000000-0000-0000-0000-0000000000cc",
    "GATEKEEPER_BOT_TENANT_ID": "00000000-0000-0000-0000-0000000000bb",
    "GATEKEEPER_TEAMS_APP_ID": "00000000-0000-0000-0000-0000000000dd",
    "GATEKEEPER_ENTRA_AUDIENCE": "api://00000000-0000-0000-0000-0000000000aa",
    "GATEKEEPER_APPROVAL_BASE_URL": "https://gatekeeper.contoso.example",
}


class NeverAskedCredential:
    """A managed identity that records whether any member asked it for a token while being built."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        raise AssertionError(f"a token for {scopes} was asked for while the services were built")


@pytest.fixture
def azure() -> tuple[Services, NeverAskedCredential]:
    credential = NeverAskedCredential()
    return build_services(Settings.from_environ(AZURE), credential=credential), credential  # type: ignore[arg-type]


def test_storage_is_the_accounts_https_endpoints_with_the_managed_identity(azure) -> None:
    services, credential = azure
    storage = services.storage
    assert storage.table_endpoint == "https://stgatekeepertest.table.core.windows.net"
    assert storage.queue_endpoint == "https://stgatekeepertest.queue.core.windows.net"
    assert storage.blob_endpoint == "https://stgatekeepertest.blob.core.windows.net"
    assert credential.scopes == []


def test_keys_are_the_tenants_key_vault_keys(azure) -> None:
    from gatekeeper.store.keys import KeyVaultKeyProvider

    services, credential = azure
    assert isinstance(services.key_provider, KeyVaultKeyProvider)
    assert services.key_provider._keys.vault_url.rstrip("/") == VAULT  # the SDK client it talks through
    assert credential.scopes == []


def test_notifications_go_through_graph_and_the_directory_is_graphs(azure) -> None:
    from gatekeeper.integrations.graph_notify import GraphNotifier
    from gatekeeper.integrations.graph_users import CachedUserDirectory
    from gatekeeper.integrations.notify import FanOutNotifier

    services, credential = azure
    notifier = services.notifier
    channels = notifier._channels if isinstance(notifier, FanOutNotifier) else (notifier,)
    assert any(isinstance(c, GraphNotifier) for c in channels), channels
    assert isinstance(services.user_directory, CachedUserDirectory)
    assert credential.scopes == []


def test_the_teams_bot_installs_the_app_through_graph(azure) -> None:
    from gatekeeper.teams.proactive import TeamsCardNotifier

    services, credential = azure
    cards = services.teams_cards
    assert isinstance(cards, TeamsCardNotifier)
    assert cards._installer is not None  # GATEKEEPER_TEAMS_APP_ID set: missing installs are made through Graph
    assert credential.scopes == []


def test_the_github_app_signs_with_its_key_vault_key(azure) -> None:
    from azure.keyvault.keys.crypto import CryptographyClient

    from gatekeeper.integrations.github_app import GitHubWorkflows

    services, credential = azure
    assert isinstance(services.github_workflows, GitHubWorkflows)
    signer = github_app_signer(services.settings, lambda: credential)  # type: ignore[arg-type,return-value]
    assert isinstance(signer, CryptographyClient)
    assert signer.key_id == f"{VAULT}/keys/{services.settings.github_app_key_name}"
    assert credential.scopes == []


def test_without_a_credential_the_github_app_key_in_key_vault_is_refused() -> None:
    with pytest.raises(ValueError, match="credential is required"):
        github_app_signer(Settings.from_environ(AZURE), None)


def test_graph_notifications_need_the_managed_identity() -> None:
    from gatekeeper.services import build_notifier

    with pytest.raises(ValueError, match="GATEKEEPER_NOTIFY_MODE=graph"):
        build_notifier(Settings.from_environ(AZURE), None)


def test_every_member_builds_without_calling_out(azure) -> None:
    """Every service a trigger, activity or CLI command can ask for, built in the Azure recipe."""
    services, credential = azure
    for name in (
        "storage",
        "key_provider",
        "sealer",
        "request_storage",
        "registry",
        "secrets",
        "large_events",
        "sink",
        "edge_sealer",
        "token_validator",
        "ingestion",
        "connectwise_keys",
        "github_oidc",
        "actions_authenticator",
        "actions",
        "dead_letters",
        "transit_pruner",
        "health_probes",
        "health_cache",
        "bootstrap",
        "decider",
        "notifier",
        "slack_tenants",
        "slack",
        "slack_votes",
        "teams_cards",
        "callbacks",
        "requesters",
        "recommender",
        "index",
        "bot_validator",
        "events",
        "tickets",
        "health_probe",
        "github_workflows",
        "commit_lookup",
        "rollback_runners",
        "device_managers",
        "user_directory",
        "group_membership",
    ):
        assert getattr(services, name) is not None or name in {"github_oidc", "group_membership"}, name
    assert credential.scopes == []
