"""Filling the identity map from a GitHub organisation's SAML/SCIM identities: the real GitHub App client
(installation token with a locally held key), the local GitHub's GraphQL, the local Microsoft Graph through
msgraph-sdk, the identity map in Azurite and the audit log."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.keyvault.keys.crypto import CryptographyClient
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.github import LocalGitHubServer
from devstack.graph import LocalGraphServer
from devstack.server import StaticTokenCredential
from gatekeeper.audit.log import AuditLog
from gatekeeper.cli import main
from gatekeeper.integrations.github_app import GitHubApp, rsa_jwk
from gatekeeper.integrations.github_saml import (
    SamlIdentitiesUnavailable,
    fill_identity_map,
    graphql_url,
    saml_members,
)
from gatekeeper.integrations.graph_notify import make_graph_client
from gatekeeper.integrations.graph_users import GraphUserDirectory
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount
from gatekeeper.tenancy.identities import IdentityLink, IdentityMap

APP_ID = "424242"
INSTALLATION = 77
GRAPH_TOKEN = "graph-token-for-saml-fill-tests-012345"
DEV = "0d0d0d0d-0000-4000-8000-00000000de00"
ANNA = "0a0a0a0a-0000-4000-8000-00000000a000"
MEMBERS = [
    {"login": "Dev-GH", "databaseId": 4242, "nameId": "Dev@Contoso.onmicrosoft.com"},
    {"login": "anna-gh", "databaseId": 5151, "scimUsername": "anna@contoso.onmicrosoft.com"},
    {"login": "contractor", "databaseId": 6161, "nameId": "contractor@elsewhere.example"},
    {"nameId": "unbound@contoso.onmicrosoft.com"},  # an identity not linked to a GitHub account yet
]


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def github(app_key) -> Iterator[LocalGitHubServer]:
    with LocalGitHubServer(APP_ID, app_key.public_key(), installation_id=INSTALLATION) as server:
        server.saml_identities["contoso"] = MEMBERS
        server.graphql_page_size = 2  # three pages: the cursor is followed
        yield server


@pytest.fixture
def app(app_key, github) -> GitHubApp:
    return GitHubApp(APP_ID, CryptographyClient.from_jwk(rsa_jwk(app_key)), github.api_url, allow_loopback_http=True)


@pytest.fixture
def directory() -> Iterator[GraphUserDirectory]:
    users = {
        DEV: {"userPrincipalName": "dev@contoso.onmicrosoft.com", "mail": "dev@contoso.com"},
        ANNA: {"userPrincipalName": "anna@contoso.onmicrosoft.com"},
    }
    with LocalGraphServer(GRAPH_TOKEN, users=users) as graph:
        client, http = make_graph_client(StaticTokenCredential(GRAPH_TOKEN), graph.base_url)
        with GraphUserDirectory(client, http_client=http) as found:
            yield found


def test_members_are_read_page_by_page_with_an_installation_token(app, github):
    members = saml_members(app, INSTALLATION, "contoso")
    assert [(m.login, m.database_id, m.address) for m in members] == [
        ("Dev-GH", 4242, "dev@contoso.onmicrosoft.com"),
        ("anna-gh", 5151, "anna@contoso.onmicrosoft.com"),
        ("contractor", 6161, "contractor@elsewhere.example"),
    ]
    assert len([r for r in github.requests if r.path == "/graphql"]) == 2


@pytest.mark.azurite
def test_members_are_linked_by_login_and_id_through_the_directory_and_audited(
    app, directory, storage_connection_string, tmp_path
):
    storage = StorageAccount(connection_string=storage_connection_string)
    tenant = "t" + uuid.uuid4().hex[:10]
    cipher = build_cipher(storage, LocalKeyProvider(str(tmp_path / "keys")))
    identity_map, audit = IdentityMap(storage, tenant, cipher), AuditLog(storage, cipher, None, tenant)

    def link(external: str, oid: str) -> None:
        identity_map.link(IdentityLink(external=external, oid=oid), audit, by="ops", how="github-saml")

    report = fill_identity_map(saml_members(app, INSTALLATION, "contoso"), directory, link)
    assert identity_map.oid_of("github:login:dev-gh") == DEV and identity_map.oid_of("github:id:4242") == DEV
    assert identity_map.oid_of("github:login:anna-gh") == ANNA
    assert identity_map.oid_of("github:login:contractor") is None
    assert [login for login, _ in report.skipped] == ["contractor"]
    records = [r for r in audit.records() if r.kind == "identity_linked"]
    assert len(records) == 4 and {r.data["how"] for r in records} == {"github-saml"}


def test_an_org_without_saml_or_permission_is_reported_not_guessed(app, github):
    with pytest.raises(SamlIdentitiesUnavailable, match="no SAML"):
        saml_members(app, INSTALLATION, "fabrikam")
    github.graphql_forbidden.add("contoso")
    with pytest.raises(SamlIdentitiesUnavailable, match="not accessible by integration"):
        saml_members(app, INSTALLATION, "contoso")
    with pytest.raises(SamlIdentitiesUnavailable, match="installation"):
        saml_members(app, 999, "contoso")


def test_graphql_endpoint_for_github_and_ghes():
    assert graphql_url("https://api.github.com") == "https://api.github.com/graphql"
    assert graphql_url("https://ghe.contoso.com/api/v3") == "https://ghe.contoso.com/api/graphql"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "give either FILE or --from-github-org"),
        (["file.json", "--from-github-org", "contoso"], "give either FILE or --from-github-org"),
        (["--from-github-org", "contoso"], "--installation-id"),
    ],
)
def test_cli_import_from_github_checks_its_arguments(args, says, capsys):
    assert main(["identities", "import", "--tenant", "contoso", *args]) == 2
    assert says in capsys.readouterr().err
