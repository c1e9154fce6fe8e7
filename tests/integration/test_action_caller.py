"""Who asks for an action (gatekeeper/actions/caller.py), from the credential alone: the GitHub OIDC job's
repository and people, the Entra principal, or the tenant's API key; each answered with the same 401 when it
is not one of a registered tenant's. The tenant registry is the real one in Azurite; the GitHub validator is
the port's double (its own token checks are tests/integration/test_github_oidc.py), the Entra validator the
real one against the local issuer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import jwt
import pytest

from devstack.entra_issuer import LocalEntraIssuer
from gatekeeper.actions.caller import ActionAuthenticator, client_application, repository_allowed
from gatekeeper.errors import Unauthenticated
from gatekeeper.ingest.edge import IncomingRequest
from gatekeeper.security.entra import EntraTokenValidator
from gatekeeper.security.github_oidc import GitHubWorkflowCaller
from gatekeeper.services import set_services
from gatekeeper.tenancy.model import SecretPurpose, TenantRecord
from tests.support.gatekeeper_env import API_KEY, make_env

ISSUER = "https://token.actions.githubusercontent.com"
AUDIENCE = "api://gatekeeper-actions"
OWNER_ID = "4200001"
ENTRA_TID = "5f0c7a4e-1b2d-4c3e-9f8a-7b6c5d4e3f21"


@dataclass
class GitHubDouble:
    """The GitHubValidator port: answers the job it was given for tokens naming GitHub's issuer."""

    job: GitHubWorkflowCaller
    issuer: str = ISSUER

    def validate(self, token: str) -> GitHubWorkflowCaller:
        return self.job


def job(repository: str = "contoso/infra-prod", actor: str = "dev-alice", triggering: str | None = None):
    owner = repository.split("/")[0]
    return GitHubWorkflowCaller(
        repository=repository,
        repository_owner=owner,
        repository_owner_id=OWNER_ID,
        actor=actor,
        triggering_actor=triggering,
        subject=f"repo:{repository}:environment:production",
        run_id="9100001",
    )


def github_token() -> str:
    return jwt.encode({"iss": ISSUER, "sub": "job"}, "not-checked-by-the-double", algorithm="HS256")


@pytest.fixture(scope="module")
def entra() -> Iterator[LocalEntraIssuer]:
    with LocalEntraIssuer() as server:
        yield server


@pytest.fixture
def env(storage_connection_string, tmp_path):
    tenants = (
        TenantRecord(
            tenant_id="tcaller" + tmp_path.name[-6:].lower().replace("_", "x"),
            display_name="Caller test",
            identities=(f"github:owner-id:{OWNER_ID}", "github:repo:Contoso/Infra-Prod", f"entra:tenant:{ENTRA_TID}"),
            secrets={SecretPurpose.GENERIC_API_KEY: ("env:GK_API_KEY",)},
        ),
        TenantRecord(
            tenant_id="tdisabled" + tmp_path.name[-6:].lower().replace("_", "x"),
            display_name="Disabled",
            enabled=False,
            secrets={SecretPurpose.GENERIC_API_KEY: ("env:GK_API_KEY",)},
        ),
    )
    env = make_env(storage_connection_string, tmp_path / "keys", extra_tenants=tenants)
    env.caller_tenant, env.disabled_tenant = tenants[0].tenant_id, tenants[1].tenant_id  # type: ignore[attr-defined]
    set_services(env.services)
    yield env
    set_services(None)


def authenticator(env, entra_issuer: LocalEntraIssuer | None = None, github: GitHubDouble | None = None):
    validator = (
        EntraTokenValidator(AUDIENCE, authority_host=entra_issuer.authority_host) if entra_issuer is not None else None
    )
    return ActionAuthenticator(env.services.registry, env.services.secrets, validator, github)


def bearer(token: str, scheme: str = "Bearer") -> IncomingRequest:
    return IncomingRequest.of(b"{}", {"Authorization": f"{scheme} {token}"})


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_a_github_job_is_the_tenant_that_registered_its_owner_whatever_the_schemes_case(env, scheme):
    caller = authenticator(env, github=GitHubDouble(job())).authenticate(bearer(github_token(), scheme))
    assert caller.tenant.tenant_id == env.caller_tenant and caller.credential == "github-oidc"
    assert caller.caller_key == "github:repo:contoso/infra-prod"  # only this repository's jobs may cancel it
    assert caller.repository == "contoso/infra-prod" and caller.run_id == "9100001"


def test_a_re_run_by_another_person_names_both_and_shows_who_triggered_it(env):
    """The person who triggered the re-run asked, and the original actor is one of the requesters too: neither
    may approve it (self-approval is checked against every requester id)."""
    caller = authenticator(env, github=GitHubDouble(job(actor="dev-alice", triggering="dev-bob"))).authenticate(
        bearer(github_token())
    )
    assert caller.requester_ids == ("github:login:dev-bob", "github:login:dev-alice")
    assert caller.display == "dev-bob"


@pytest.mark.parametrize(
    ("listed", "repository", "allowed"),
    [
        (("github:repo:contoso/infra-prod",), "contoso/infra-prod", True),
        (("github:repo:Contoso/Infra-Prod",), "CONTOSO/infra-PROD", True),  # GitHub names are case-insensitive
        (("github:repo:contoso/infra-prod",), "contoso/infra", False),  # a prefix is another repository
        (("github:repo:contoso/infra",), "contoso/infra-prod", False),
        (("github:repo:contoso/one",), "CONTOSO/two", False),  # the owner's case does not escape the narrowing
        (("github:org:contoso",), "contoso/anything", True),  # the whole owner registered
        (("github:org:contoso", "github:repo:contoso/one"), "contoso/two", True),
        ((), "contoso/anything", True),  # only the owner id registered: every repository of it
        (("github:repo:fabrikam/web",), "contoso/web", True),  # another owner's listing narrows nothing here
    ],
)
def test_listed_repositories_narrow_the_owner_to_exactly_those(listed, repository, allowed):
    tenant = TenantRecord(tenant_id="tnarrow", display_name="x", identities=(f"github:owner-id:{OWNER_ID}", *listed))
    assert repository_allowed(tenant, repository.split("/")[0], repository) is allowed


def test_a_job_of_an_unlisted_repository_of_the_owner_gets_the_one_401(env):
    with pytest.raises(Unauthenticated):
        authenticator(env, github=GitHubDouble(job("contoso/infra"))).authenticate(bearer(github_token()))


def test_an_entra_principal_is_the_tenant_of_its_tid_with_its_object_id(env, entra):
    oid = "0a1b2c3d-0000-4000-8000-00000000abcd"  # the validator takes lower-case GUIDs only
    token = entra.issue(oid, ENTRA_TID, AUDIENCE, upn="ana@contoso.example")
    caller = authenticator(env, entra).authenticate(bearer(token, "bearer"))
    assert caller.tenant.tenant_id == env.caller_tenant and caller.credential == "entra"
    assert caller.requester_ids == (f"entra:oid:{oid}",) and caller.caller_key == f"entra:oid:{oid}"
    assert caller.display == "ana@contoso.example"


def test_an_entra_principal_of_an_unregistered_tenant_gets_the_one_401(env, entra):
    token = entra.issue("0a1b2c3d-0000-4000-8000-00000000abcd", "9e8d7c6b-0000-4000-8000-000000000001", AUDIENCE)
    with pytest.raises(Unauthenticated):
        authenticator(env, entra).authenticate(bearer(token))


def test_the_api_key_caller_is_the_named_tenant_and_nobody_in_particular(env):
    request = IncomingRequest.of(b"{}", {"X-Gatekeeper-Tenant": env.caller_tenant, "x-functions-key": API_KEY})
    caller = authenticator(env).authenticate(request)
    assert (caller.credential, caller.caller_key, caller.requester_ids) == (
        "api-key",
        f"api-key:{env.caller_tenant}",
        (),
    )


@pytest.mark.parametrize("which", ["disabled", "malformed", "unknown", "wrong-key", "no-key"])
def test_an_api_key_for_a_disabled_unknown_or_malformed_tenant_gets_the_one_401(env, which):
    tenant = {
        "disabled": env.disabled_tenant,
        "malformed": "../" + env.caller_tenant,
        "unknown": "tnosuchtenant",
    }.get(which, env.caller_tenant)
    headers = {"X-Gatekeeper-Tenant": tenant}
    if which != "no-key":
        headers["x-functions-key"] = "not-the-key" if which == "wrong-key" else API_KEY
    with pytest.raises(Unauthenticated) as refused:
        authenticator(env).authenticate(IncomingRequest.of(b"{}", headers))
    assert refused.value.detail == "The request could not be authenticated."


def test_the_agent_is_the_tokens_client_application_v2_then_v1():
    def token(**claims: str) -> str:
        return jwt.encode(claims, "k", algorithm="HS256")

    assert client_application(token(azp="agent-v2", appid="ignored")) == "agent-v2"
    assert client_application(token(appid="agent-v1")) == "agent-v1"
    assert client_application(token(sub="x")) is None
    assert client_application(token(azp="a" * 300)) == "a" * 128
