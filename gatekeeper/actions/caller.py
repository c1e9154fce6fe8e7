"""Who asks for an action, and for which tenant: from the credential alone, never from the body.

Three credentials are accepted, as the action-approval contract says:
- a GitHub Actions OIDC token (`Authorization: Bearer`, issuer GitHub's): the tenant is the one that registered
  the token's `repository_owner_id` (`github:owner-id:<number>`); when the tenant also registered single
  repositories of that owner (`github:repo:`) and not the whole owner (`github:org:`), the token's
  `repository` must be one of them. The requester is `triggering_actor` (else `actor`) as `github:login:`,
  resolved through the tenant's identity map when the gate is evaluated;
- an Entra ID bearer token (a person, or a workload identity: service connection, managed identity): the
  tenant registered for its `tid`; the requester is its object id;
- the tenant's API key, as `POST /api/events` takes it (`X-Gatekeeper-Tenant` + `x-functions-key`): no person
  is known, so the requester is unresolved and policy raises the bar or denies.
`caller_key` says which credential asked, so only that credential may cancel the action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gatekeeper.errors import unauthenticated
from gatekeeper.ingest.edge import IncomingRequest
from gatekeeper.ingest.service import GENERIC_KEY_HEADER, GENERIC_TENANT_HEADER
from gatekeeper.security.identity import TokenValidator, identify_caller
from gatekeeper.security.requester import external_id
from gatekeeper.security.signatures import verify_shared_secret
from gatekeeper.store.tables import TENANT_ID_PATTERN
from gatekeeper.tenancy.model import SecretPurpose, TenantRecord
from gatekeeper.tenancy.ownership import normalise_identity
from gatekeeper.tenancy.registry import TenantRegistry
from gatekeeper.tenancy.secrets import SecretResolver

if TYPE_CHECKING:
    from gatekeeper.security.github_oidc import GitHubWorkflowCaller


@dataclass(frozen=True)
class ActionCaller:
    tenant: TenantRecord
    credential: str  # "github-oidc" | "entra" | "api-key"
    caller_key: str  # which credential asked (compared for cancel)
    requester_ids: tuple[str, ...] = ()
    display: str | None = None  # who the credential says asked, shown to approvers
    repository: str | None = None  # GitHub OIDC: the workflow's repository (verified)
    run_id: str | None = None
    via: str | None = None  # "mcp" when an agent asked through the MCP server (audited with the request)
    agent: str | None = None  # the client application the token was issued to (`azp`/`appid`), if known


class GitHubValidator(Protocol):
    """What the caller needs of `gatekeeper.security.github_oidc.GitHubOidcValidator`."""

    @property
    def issuer(self) -> str: ...

    def validate(self, token: str) -> GitHubWorkflowCaller: ...


class ActionAuthenticator:
    def __init__(
        self,
        registry: TenantRegistry,
        secrets: SecretResolver,
        entra: TokenValidator | None,
        github: GitHubValidator | None,
    ) -> None:
        self._registry = registry
        self._secrets = secrets
        self._entra = entra
        self._github = github

    def authenticate(self, request: IncomingRequest) -> ActionCaller:
        """The caller, or 401 (one answer for every wrong credential: nothing about tenants is revealed)."""
        authorization = (request.headers.get("Authorization") or "").strip()
        if authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
            from gatekeeper.security.github_oidc import is_github_token

            if self._github is not None and is_github_token(token, self._github.issuer):
                return self._github_caller(token)
            return self._entra_caller(authorization)
        return self._api_key_caller(request)

    def _github_caller(self, token: str) -> ActionCaller:
        assert self._github is not None
        job = self._github.validate(token)
        tenant = self._registry.resolve([f"github:owner-id:{job.repository_owner_id}"])
        if tenant is None or not repository_allowed(tenant, job.repository_owner, job.repository):
            raise unauthenticated("The workflow's repository is not registered for GitHub OIDC with any tenant.")
        who = tuple(
            dict.fromkeys(
                i
                for i in (external_id("github", "login", job.requester), external_id("github", "login", job.actor))
                if i
            )
        )
        return ActionCaller(
            tenant=tenant,
            credential="github-oidc",
            caller_key=f"github:repo:{job.repository.lower()}",
            requester_ids=who,
            display=job.requester,
            repository=job.repository,
            run_id=job.run_id,
        )

    def entra_caller(self, authorization: str) -> ActionCaller:
        """An Entra bearer token's caller only (the MCP endpoint accepts nothing else); 401 otherwise."""
        return self._entra_caller(authorization)

    def _entra_caller(self, authorization: str) -> ActionCaller:
        principal = identify_caller({"Authorization": authorization}, self._entra, trust_easyauth=False)
        tenant = self._registry.resolve([f"entra:tenant:{principal.tid.lower()}"])
        if tenant is None:
            raise unauthenticated()
        oid = principal.oid.lower()
        return ActionCaller(
            tenant=tenant,
            credential="entra",
            caller_key=f"entra:oid:{oid}",
            requester_ids=(f"entra:oid:{oid}",),
            display=principal.upn or principal.name or oid,
            agent=client_application(authorization[7:].strip()),
        )

    def _api_key_caller(self, request: IncomingRequest) -> ActionCaller:
        tenant_id = request.headers.get(GENERIC_TENANT_HEADER)
        tenant = self._registry.get(tenant_id) if tenant_id and TENANT_ID_PATTERN.fullmatch(tenant_id) else None
        offered = request.headers.get(GENERIC_KEY_HEADER)
        if tenant is None or not tenant.enabled:
            raise unauthenticated()
        if not verify_shared_secret(self._secrets.resolve(tenant, SecretPurpose.GENERIC_API_KEY), offered):
            raise unauthenticated()
        return ActionCaller(tenant=tenant, credential="api-key", caller_key=f"api-key:{tenant.tenant_id}")


def client_application(token: str) -> str | None:
    """`azp` (v2) or `appid` (v1) of a token that was just validated: which application (the agent, the
    pipeline's service connection, mcp-guard's identity) holds it. Audited, never used to decide."""
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:  # pragma: no cover - the token was validated a moment ago
        return None
    value = claims.get("azp") or claims.get("appid")
    return str(value)[:128] if isinstance(value, str) and value else None


def repository_allowed(tenant: TenantRecord, owner: str, repository: str) -> bool:
    """The owner id is registered; single repositories of that owner, if the tenant lists some and not the
    whole owner, narrow it to those."""
    ids = {normalise_identity(i) for i in tenant.identities}
    owner, repository = owner.lower(), repository.lower()
    if f"github:org:{owner}" in ids:
        return True
    listed = {i.removeprefix("github:repo:") for i in ids if i.startswith(f"github:repo:{owner}/")}
    return not listed or repository in listed
