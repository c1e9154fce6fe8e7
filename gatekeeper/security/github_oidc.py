"""Validate GitHub Actions OIDC tokens (`id-token: write`) with PyJWT against the issuer's published keys.

A workflow job asks GitHub for a token whose audience is this deployment's
(`GATEKEEPER_GITHUB_OIDC_AUDIENCE`) and sends it as `Authorization: Bearer <jwt>`. The checks mirror the Entra
validator (`gatekeeper.security.entra`): RS256 only, a `kid` the issuer publishes (JWKS cached, refresh with a
cooldown), the exact issuer, the audience, `exp`/`nbf`/`iat` with a small leeway, and the claims a tenant is
resolved from (`repository_owner_id`, `repository`) and the requester comes from (`actor`). Nothing in the
token is trusted before the signature checks out, and nothing from it is echoed back in an error.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWKClient

from gatekeeper.errors import DependencyUnavailable, Unauthenticated
from gatekeeper.security.entra import jwks_signing_key, refused, verified_claims

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
ACCEPTED_ALGORITHMS = ("RS256",)
REQUIRED_CLAIMS = ("iss", "aud", "exp", "nbf", "iat", "sub", "repository", "repository_owner_id", "actor")
MAX_TOKEN_CHARS = 8 * 1024
_NUMERIC_ID = re.compile(r"^[0-9]{1,20}$")
_REPOSITORY = re.compile(r"^[A-Za-z0-9-]{1,39}/[A-Za-z0-9._-]{1,100}$")
_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$")


@dataclass(frozen=True)
class GitHubWorkflowCaller:
    """The verified workflow job: which repository (and owner, by id) and who triggered it."""

    repository: str
    repository_owner: str
    repository_owner_id: str
    actor: str
    triggering_actor: str | None
    subject: str
    run_id: str | None = None
    run_attempt: str | None = None
    workflow_ref: str | None = None
    ref: str | None = None
    sha: str | None = None
    environment: str | None = None

    @property
    def requester(self) -> str:
        """Who asked: the person who triggered this run (a re-run's triggering actor), else the actor."""
        return self.triggering_actor or self.actor


def is_github_token(token: str, issuer: str = GITHUB_ISSUER) -> bool:
    """Whether an (unverified) bearer token names GitHub's issuer: picks the validator, decides nothing."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    return isinstance(claims, dict) and claims.get("iss") == issuer


def keys_unavailable() -> DependencyUnavailable:
    return DependencyUnavailable(
        "The signing keys of the GitHub Actions OIDC issuer could not be fetched; retry later.",
        code="identity-provider-unavailable",
        title="Identity provider unavailable",
    )


class GitHubOidcValidator:
    """Validates GitHub Actions OIDC tokens for one audience. Thread-safe; the JWKS is cached."""

    def __init__(
        self,
        audience: str,
        issuer: str = GITHUB_ISSUER,
        *,
        jwks_cache_seconds: float = 3600,
        leeway_seconds: float = 60,
        refresh_cooldown_seconds: float = 30,
        http_timeout_seconds: float = 10,
    ) -> None:
        if not audience:
            raise ValueError("audience: a non-empty audience is required")
        self.audience = audience
        self.issuer = issuer.rstrip("/")
        self.leeway_seconds = leeway_seconds
        self._lock = threading.Lock()
        self._client = PyJWKClient(
            f"{self.issuer}/.well-known/jwks",
            cache_jwk_set=True,
            lifespan=jwks_cache_seconds,
            timeout=http_timeout_seconds,
            cooldown_duration=refresh_cooldown_seconds,
        )

    def _signing_key(self, kid: str) -> Any:
        with self._lock:
            return jwks_signing_key(
                self._client,
                kid,
                no_keys="The issuer publishes no signing keys.",
                unknown_key="The token was signed with a key the issuer does not publish.",
                unavailable=keys_unavailable,
            )

    def validate(self, token: str) -> GitHubWorkflowCaller:
        """The verified workflow job, or Unauthenticated (401) / DependencyUnavailable (keys unreachable)."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise refused("The bearer token is missing or too large.", "malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise refused("The bearer token is not a well-formed JWT.", "malformed") from None
        if header.get("alg") not in ACCEPTED_ALGORITHMS:
            raise refused("The bearer token is not signed with an accepted algorithm (RS256).", "algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 200:
            raise refused("The bearer token names no signing key (kid).", "unknown-key")
        key = self._signing_key(kid)
        claims = verified_claims(
            token,
            key=key,
            audience=self.audience,
            issuer=self.issuer,
            leeway=self.leeway_seconds,
            required=REQUIRED_CLAIMS,
        )
        return caller_from_claims(claims)


def caller_from_claims(claims: Mapping[str, Any]) -> GitHubWorkflowCaller:
    """Map verified claims to the caller; the identifying claims must have GitHub's shapes."""

    def text(name: str, pattern: re.Pattern[str] | None = None, *, required: bool = False) -> str | None:
        value = claims.get(name)
        if value is None and not required:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value or len(value) > 500 or (pattern and not pattern.fullmatch(value)):
            if required:
                raise refused(f"The bearer token's '{name}' claim is not valid.", "missing-claim")
            return None
        return value

    def required(name: str, pattern: re.Pattern[str] | None = None) -> str:
        value = text(name, pattern, required=True)
        if value is None:  # pragma: no cover - text(required=True) raises instead
            raise Unauthenticated("invalid claim")
        return value

    repository = required("repository", _REPOSITORY)
    owner = text("repository_owner", _LOGIN) or repository.split("/")[0]
    if owner.lower() != repository.split("/")[0].lower():
        raise refused("The bearer token's repository and owner claims disagree.", "missing-claim")
    return GitHubWorkflowCaller(
        repository=repository,
        repository_owner=owner,
        repository_owner_id=required("repository_owner_id", _NUMERIC_ID),
        actor=required("actor", _LOGIN),
        triggering_actor=text("triggering_actor", _LOGIN),
        subject=required("sub"),
        run_id=text("run_id", _NUMERIC_ID),
        run_attempt=text("run_attempt", _NUMERIC_ID),
        workflow_ref=text("workflow_ref"),
        ref=text("ref"),
        sha=text("sha"),
        environment=text("environment"),
    )
