"""A local stand-in for GitHub Actions' OIDC token issuer: OpenID configuration, JWKS and minted job tokens.

GitHub publishes `https://token.actions.githubusercontent.com/.well-known/openid-configuration` and
`/.well-known/jwks`; this server answers the same paths on 127.0.0.1 and mints RS256 tokens with the claim
shape GitHub documents ("About security hardening with OpenID Connect"): `sub` such as
`repo:octo-org/octo-repo:environment:prod`, `repository`, `repository_owner`, `repository_owner_id`, `actor`,
`actor_id`, `triggering_actor`, `run_id`, `workflow_ref`, `job_workflow_ref`, ... Tests run the real
validator (`gatekeeper.security.github_oidc`) against it over HTTP.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

import jwt

from devstack.entra_issuer import SigningKey
from devstack.server import LoopbackServer


class LocalGitHubOidcIssuer(LoopbackServer):
    """Serves GitHub-shaped OIDC discovery and keys and mints workflow job tokens. A context manager."""

    name = "local-github-oidc"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._key = SigningKey.generate()
        self.requests: Counter[str] = Counter()

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with issuer._lock:
                    issuer.requests[self.path] += 1
                status, body = issuer._route(self.path)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _route(self, path: str) -> tuple[int, dict[str, Any]]:
        if path == "/.well-known/jwks":
            return 200, {"keys": [self._key.public_jwk(self.issuer)]}
        if path == "/.well-known/openid-configuration":
            return 200, {
                "issuer": self.issuer,
                "jwks_uri": f"{self.issuer}/.well-known/jwks",
                "subject_types_supported": ["public", "pairwise"],
                "response_types_supported": ["id_token"],
                "claims_supported": [
                    "sub",
                    "aud",
                    "exp",
                    "iat",
                    "iss",
                    "jti",
                    "nbf",
                    "ref",
                    "repository",
                    "repository_id",
                    "repository_owner",
                    "repository_owner_id",
                    "run_id",
                    "run_number",
                    "run_attempt",
                    "actor",
                    "actor_id",
                    "workflow",
                    "workflow_ref",
                    "head_ref",
                    "base_ref",
                    "event_name",
                    "ref_type",
                    "environment",
                    "job_workflow_ref",
                    "triggering_actor",
                ],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid"],
            }
        return 404, {"message": "Not Found"}

    def issue(
        self,
        audience: str,
        *,
        repository: str = "contoso/infra",
        repository_owner_id: int = 4200001,
        actor: str = "dev-alice",
        actor_id: int = 5100001,
        triggering_actor: str | None = None,
        environment: str | None = "production",
        ref: str = "refs/heads/main",
        sha: str = "a" * 40,
        run_id: int = 9100001,
        lifetime: timedelta = timedelta(minutes=5),
        issued_at: float | None = None,
        issuer: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A job token as GitHub mints it for `id-token: write`; `issued_at` lets tests make expired ones."""
        iat = int(time.time() if issued_at is None else issued_at)
        owner = repository.split("/")[0]
        workflow_ref = f"{repository}/.github/workflows/deploy.yml@{ref}"
        claims: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "sub": f"repo:{repository}:environment:{environment}" if environment else f"repo:{repository}:ref:{ref}",
            "aud": audience,
            "ref": ref,
            "sha": sha,
            "repository": repository,
            "repository_owner": owner,
            "repository_owner_id": str(repository_owner_id),
            "repository_id": str(repository_owner_id * 10 + 7),
            "repository_visibility": "private",
            "run_id": str(run_id),
            "run_number": "17",
            "run_attempt": "1",
            "runner_environment": "github-hosted",
            "actor": actor,
            "actor_id": str(actor_id),
            "triggering_actor": triggering_actor or actor,
            "workflow": "deploy",
            "workflow_ref": workflow_ref,
            "workflow_sha": sha,
            "job_workflow_ref": workflow_ref,
            "job_workflow_sha": sha,
            "head_ref": "",
            "base_ref": "",
            "event_name": "push",
            "ref_type": "branch",
            "ref_protected": "true",
            "iss": issuer or self.issuer,
            "nbf": iat - 5,
            "iat": iat,
            "exp": iat + int(lifetime.total_seconds()),
        }
        if environment:
            claims["environment"] = environment
        claims.update(extra_claims or {})
        return self.sign(claims)

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str:
        """Sign arbitrary claims with the issuer's key (tests of malformed tokens)."""
        return jwt.encode(
            dict(claims),
            self._key.private_key,
            algorithm="RS256",
            headers={"kid": self._key.kid, "typ": "JWT", "x5t": self._key.kid, **(headers or {})},
        )
