"""A local stand-in for Microsoft Entra ID's token signing: OpenID metadata, a JWKS and RS256 tokens.

There is no Entra emulator, so tests and the demo run the real PyJWT validation over HTTP against this
server, which answers the same paths and JSON shapes as `login.microsoftonline.com`:
`/{tid}/v2.0/.well-known/openid-configuration` and `/{tid}/discovery/v2.0/keys`. It binds to 127.0.0.1
only, and its keys live in memory for the life of the process.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from devstack.server import LoopbackServer
from gatekeeper.encoding import b64url

_METADATA = re.compile(r"^/([0-9a-f-]{36})/v2\.0/\.well-known/openid-configuration$")
_KEYS = re.compile(r"^/([0-9a-f-]{36})/discovery/v2\.0/keys$")


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        # RFC 7638 thumbprint as kid, like Entra's stable, opaque key ids.
        canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
        kid = b64url(hashlib.sha256(canonical.encode()).digest())
        return cls(kid=kid, private_key=key)

    def public_jwk(self, issuer_template: str) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": jwk["n"],
            "e": jwk["e"],
            "issuer": issuer_template,
        }

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class LocalEntraIssuer(LoopbackServer):
    """Serves Entra-shaped discovery and keys on a free loopback port and mints v2 access tokens.

    Use as a context manager. `requests` counts hits per path so tests can prove JWKS caching."""

    name = "local-entra"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._keys: list[SigningKey] = [SigningKey.generate()]
        self.requests: Counter[str] = Counter()

    # lifecycle (start, stop, context manager: LoopbackServer) ------------------------------------
    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer._count(self.path)
                status, body = issuer._route(self.path)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                return

        return Handler

    # addresses ---------------------------------------------------------------------------------
    @property
    def authority_host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def issuer(self, tid: str) -> str:
        return f"{self.authority_host}/{tid}/v2.0"

    def jwks_path(self, tid: str) -> str:
        return f"/{tid}/discovery/v2.0/keys"

    # keys ----------------------------------------------------------------------------------------
    @property
    def kid(self) -> str:
        """The key id new tokens are signed with."""
        with self._lock:
            return self._keys[-1].kid

    def public_pem(self) -> bytes:
        with self._lock:
            return self._keys[-1].public_pem()

    def rotate(self, keep_previous: bool = True) -> str:
        """Publish a new signing key and sign with it from now on; return its kid."""
        new = SigningKey.generate()
        with self._lock:
            self._keys = [*self._keys, new] if keep_previous else [new]
        return new.kid

    # tokens --------------------------------------------------------------------------------------
    def issue(
        self,
        oid: str,
        tid: str,
        audience: str,
        *,
        name: str | None = "Local Approver",
        upn: str | None = None,
        groups: Iterable[str] = (),
        roles: Iterable[str] = (),
        lifetime: timedelta = timedelta(hours=1),
        issued_at: float | None = None,
        scopes: Iterable[str] | None = ("access_as_user",),
        app_only: bool = False,
        issuer: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """An RS256 token shaped like an Entra ID v2 access token. `issued_at` (epoch seconds) lets tests
        mint expired or not-yet-valid tokens; `app_only` mints a client-credentials token (no user)."""
        iat = int(time.time() if issued_at is None else issued_at)
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": issuer or self.issuer(tid),
            "iat": iat,
            "nbf": iat,
            "exp": iat + int(lifetime.total_seconds()),
            "oid": oid,
            "tid": tid,
            "sub": oid if app_only else _pairwise_sub(oid, audience),
            "ver": "2.0",
            "uti": uuid.uuid4().hex[:22],
            "idtyp": "app" if app_only else "user",
        }
        if not app_only:
            claims["name"] = name
            claims["preferred_username"] = upn or f"{oid[:8]}@example.onmicrosoft.com"
            if scopes:
                claims["scp"] = " ".join(scopes)
        if groups := list(groups):
            claims["groups"] = groups
        if roles := list(roles):
            claims["roles"] = roles
        claims.update(extra_claims or {})
        return self.sign({k: v for k, v in claims.items() if v is not None})

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str:
        """Sign arbitrary claims with the current key (for tests that need a malformed token)."""
        with self._lock:
            key = self._keys[-1]
        return jwt.encode(
            dict(claims), key.private_key, algorithm="RS256", headers={"kid": key.kid, "typ": "JWT", **(headers or {})}
        )

    # HTTP ----------------------------------------------------------------------------------------
    def _count(self, path: str) -> None:
        with self._lock:
            self.requests[path] += 1

    def _route(self, path: str) -> tuple[int, dict[str, Any]]:
        if _KEYS.match(path):
            with self._lock:
                keys = list(self._keys)
            template = f"{self.authority_host}/{{tenantid}}/v2.0"
            return 200, {"keys": [k.public_jwk(template) for k in keys]}
        if match := _METADATA.match(path):
            tid = match.group(1)
            base = f"{self.authority_host}/{tid}"
            return 200, {
                "issuer": f"{base}/v2.0",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "claims_supported": [
                    "sub",
                    "iss",
                    "aud",
                    "exp",
                    "iat",
                    "nbf",
                    "name",
                    "oid",
                    "tid",
                    "preferred_username",
                    "ver",
                ],
                "tenant_region_scope": None,
                "cloud_instance_name": "127.0.0.1",
            }
        return 404, {"error": "invalid_tenant", "error_description": "Unknown path."}


def _pairwise_sub(oid: str, audience: str) -> str:
    """Entra's `sub` is pairwise (per user and app), never the object id."""
    return b64url(hashlib.sha256(f"{oid}|{audience}".encode()).digest())
