"""`gatekeeper tenants github-oidc`: binds a GitHub owner (by numeric id) to a tenant, optionally narrowed to
named repositories; the action routes' authenticator then resolves a workflow's OIDC token to that tenant."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from devstack.github_oidc import LocalGitHubOidcIssuer
from gatekeeper.actions.caller import ActionAuthenticator
from gatekeeper.cli import main
from gatekeeper.errors import Unauthenticated
from gatekeeper.ingest.edge import IncomingRequest
from gatekeeper.security.github_oidc import GitHubOidcValidator
from gatekeeper.store.tables import StorageAccount
from gatekeeper.tenancy.model import TenantRecord
from gatekeeper.tenancy.registry import TenantRegistry
from gatekeeper.tenancy.secrets import SecretResolver

pytestmark = pytest.mark.azurite

AUDIENCE = "api://gatekeeper-cli-tests"


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalGitHubOidcIssuer]:
    with LocalGitHubOidcIssuer() as server:
        yield server


@pytest.fixture
def setup(storage_connection_string, issuer):
    storage = StorageAccount(connection_string=storage_connection_string)
    tenant = "t" + uuid.uuid4().hex[:10]
    owner = 10_000_000 + uuid.uuid4().int % 1_000_000  # an owner id no other test registers
    TenantRegistry(storage).import_records([TenantRecord(tenant_id=tenant, display_name="Contoso")])
    conn = ["--storage-connection", storage_connection_string]

    def authenticate(**claims) -> str:
        registry = TenantRegistry(storage, cache_seconds=0)
        auth = ActionAuthenticator(registry, SecretResolver({}), None, GitHubOidcValidator(AUDIENCE, issuer.issuer))
        token = issuer.issue(AUDIENCE, repository_owner_id=owner, **claims)
        return auth.authenticate(IncomingRequest.of(b"", {"Authorization": f"Bearer {token}"})).tenant.tenant_id

    return tenant, owner, conn, authenticate


def test_binding_an_owner_lets_its_workflows_in_and_removing_it_shuts_them_out(setup, capsys):
    tenant, owner, conn, authenticate = setup
    with pytest.raises(Unauthenticated):
        authenticate(repository="contoso/infra")
    assert main(["tenants", "github-oidc", tenant, "--owner-id", str(owner), *conn]) == 0
    assert f"bound GitHub OIDC owner {owner} for tenant {tenant}" in capsys.readouterr().out
    assert authenticate(repository="contoso/infra") == tenant
    assert authenticate(repository="contoso/web") == tenant
    assert main(["tenants", "github-oidc", tenant, "--owner-id", str(owner), "--remove", *conn]) == 0
    with pytest.raises(Unauthenticated):
        authenticate(repository="contoso/infra")


def test_named_repositories_narrow_the_binding(setup):
    tenant, owner, conn, authenticate = setup
    assert (
        main(["tenants", "github-oidc", tenant, "--owner-id", str(owner), "--repository", "contoso/infra", *conn]) == 0
    )
    assert authenticate(repository="contoso/infra") == tenant
    with pytest.raises(Unauthenticated):
        authenticate(repository="contoso/web")


@pytest.mark.parametrize(
    ("args", "named"),
    [(["--owner-id", "12ab"], "--owner-id"), (["--owner-id", "1", "--repository", "no-slash"], "--repository")],
)
def test_bad_options_exit_2_naming_the_option(setup, capsys, args, named):
    tenant, _, conn, _ = setup
    assert main(["tenants", "github-oidc", tenant, *args, *conn]) == 2
    assert named in capsys.readouterr().err


def test_an_unknown_tenant_exits_2(setup, capsys):
    _, _, conn, _ = setup
    assert main(["tenants", "github-oidc", "tnobody", "--owner-id", "1", *conn]) == 2
    assert "not registered" in capsys.readouterr().err
