"""A local HTTPS server that answers Azure Key Vault's keys REST API, for tests and the demo.

Key Vault has no local emulator, yet the envelope-encryption path must run the real `azure-keyvault-keys`
clients (challenge auth, bearer token, JSON wire format, remote unwrap). This server speaks just enough of
the documented API (`/keys/{name}[/{version}]`, `create`, `rotate`, `versions`, `wrapkey`, `unwrapkey`,
`encrypt`, `decrypt`, `sign`, `verify`, `DELETE /keys/{name}`, `GET /deletedkeys/{name}`, `PATCH` to
enable/disable) and counts every operation, so tests can assert how often Key Vault is called. Setting
`outage` simulates a vault that answers 503, 500 or 403, that accepts connections and never answers, or
("garbage") something else answering 200 with an HTML page in its place (a proxy or firewall).

TLS: the SDK refuses bearer tokens over plain HTTP, so the server makes a throw-away CA and a certificate
for 127.0.0.1 at start-up; clients get `connection_verify=<ca file>` and `verify_challenge_resource=False`
(the host is not *.vault.azure.net) through `client_kwargs()`.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Self
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

from devstack.tls import TlsServer
from gatekeeper.encoding import b64url, b64url_decode

ENTRA_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"  # any GUID: the challenge only names an authority
CHALLENGE = (
    f'Bearer authorization="https://login.microsoftonline.com/{ENTRA_TENANT}", resource="https://vault.azure.net"'
)
KEY_VAULT_SCOPE = "https://vault.azure.net/.default"

RSA_OPS = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]
EC_OPS = ["sign", "verify"]
_CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_OAEP_HASH: dict[str, type[hashes.HashAlgorithm]] = {"RSA-OAEP": hashes.SHA1, "RSA-OAEP-256": hashes.SHA256}
# operation path segment -> (JWK key operation that must be allowed, request kind)
_KEY_OPERATIONS = {
    "wrapkey": "wrapKey",
    "unwrapkey": "unwrapKey",
    "encrypt": "encrypt",
    "decrypt": "decrypt",
    "sign": "sign",
    "verify": "verify",
}


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


class StaticTokenCredential:
    """A TokenCredential that hands out one fixed bearer token: the local server accepts exactly it.

    It records the scopes it was asked for, so a test can check the SDK asked for Key Vault's scope."""

    def __init__(self, token: str) -> None:
        self._token = token
        self.scopes_requested: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes_requested.extend(scopes)
        return AccessToken(self._token, int(time.time()) + 3600)

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return "StaticTokenCredential(<redacted>)"


class KeyVaultError(Exception):
    """An error answer in Key Vault's shape: {"error": {"code", "message"}} with an HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class _KeyVersion:
    name: str
    version: str
    kty: str
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    key_ops: list[str]
    created: int
    enabled: bool = True
    updated: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    crv: str | None = None


class LocalKeyVault(TlsServer):
    """The server's state and admin handle. Use as a context manager or call start()/stop()."""

    name = "local-keyvault"

    def __init__(self, *, token: str | None = None) -> None:
        super().__init__()
        self.token = token or secrets.token_urlsafe(24)
        self._lock = threading.Lock()
        self._keys: dict[str, list[_KeyVersion]] = {}
        self._deleted: dict[str, tuple[list[_KeyVersion], int]] = {}
        self._counts: Counter[str] = Counter()
        self._counts_by_key: Counter[tuple[str, str]] = Counter()
        self.api_versions: set[str] = set()
        # None, "unavailable" (503), "error" (500), "forbidden" (403), or "hang": accept and never answer
        # (until the outage is lifted or the server stops), as a stuck vault or a black-holed network does
        self.outage: str | None = None
        # seconds the vault takes to generate a key pair before it answers create/rotate (an HSM takes seconds)
        self.key_generation_seconds: float = 0.0
        self._released = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Self:
        self._released.clear()
        return super().start()

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return type("_BoundHandler", (_Handler,), {"vault": self})

    def stop(self) -> None:
        self._released.set()  # let hanging handlers go
        super().stop()

    @property
    def vault_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def credential(self) -> StaticTokenCredential:
        return StaticTokenCredential(self.token)

    def client_kwargs(self, *, retries: int = 0) -> dict[str, Any]:
        """Keyword arguments for KeyClient/CryptographyClient to reach this server (TLS trust, no resource
        check, and no retries by default so outage tests stay fast)."""
        return {"connection_verify": self.ca_file, "verify_challenge_resource": False, "retry_total": retries}

    # -- counters --------------------------------------------------------------------------------
    def count(self, operation: str, key_name: str | None = None) -> int:
        """How many authenticated requests of one operation (e.g. "unwrapkey", "get") were answered."""
        with self._lock:
            if key_name is None:
                return self._counts[operation]
            return self._counts_by_key[(operation, key_name)]

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()
            self._counts_by_key.clear()

    def _record(self, operation: str, key_name: str) -> None:
        with self._lock:
            self._counts[operation] += 1
            self._counts_by_key[(operation, key_name)] += 1

    # -- admin (in-process, not counted) -----------------------------------------------------------
    def create_key(
        self,
        name: str,
        kty: str = "RSA",
        *,
        size: int = 3072,
        curve: str = "P-256",
        key_ops: list[str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> str:
        """Create a key, or a new version of an existing key (Key Vault semantics); returns the kid."""
        base = kty.removesuffix("-HSM")
        if base == "RSA":
            if size not in (2048, 3072, 4096):
                raise KeyVaultError(400, "BadParameter", f"RSA key size {size} is not supported")
            private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = rsa.generate_private_key(65537, size)
            ops = list(key_ops or RSA_OPS)
            crv = None
        elif base == "EC":
            if curve not in _CURVES:
                raise KeyVaultError(400, "BadParameter", f"curve {curve} is not supported")
            private = ec.generate_private_key(_CURVES[curve])
            ops = list(key_ops or EC_OPS)
            crv = curve
        else:
            raise KeyVaultError(400, "BadParameter", f"key type {kty} is not supported")
        now = int(time.time())
        version = _KeyVersion(name, secrets.token_hex(16), kty, private, ops, now, True, now, dict(tags or {}), crv)
        with self._lock:
            self._deleted.pop(name, None)
            self._keys.setdefault(name, []).append(version)
        return self._kid(version)

    def rotate_key(self, name: str) -> str:
        """A new version with the same type, size and operations as the current one."""
        current = self._latest(name)
        if isinstance(current.private_key, rsa.RSAPrivateKey):
            return self.create_key(name, current.kty, size=current.private_key.key_size, key_ops=current.key_ops)
        return self.create_key(name, current.kty, curve=current.crv or "P-256", key_ops=current.key_ops)

    def delete_key(self, name: str) -> None:
        """Delete every version of a key (soft delete; the material is unreachable through the API)."""
        with self._lock:
            versions = self._keys.pop(name, None)
            if versions is None:
                raise KeyVaultError(404, "KeyNotFound", f"A key with (name/id) {name} was not found in this key vault.")
            self._deleted[name] = (versions, int(time.time()))

    def set_enabled(self, name: str, enabled: bool, version: str | None = None) -> None:
        target = self._find(name, version)
        with self._lock:
            target.enabled = enabled
            target.updated = int(time.time())

    def key_names(self) -> list[str]:
        with self._lock:
            return sorted(self._keys)

    # -- lookups ---------------------------------------------------------------------------------
    def _kid(self, version: _KeyVersion) -> str:
        return f"{self.vault_url}/keys/{version.name}/{version.version}"

    def _latest(self, name: str) -> _KeyVersion:
        return self._find(name, None)

    def _find(self, name: str, version: str | None) -> _KeyVersion:
        with self._lock:
            versions = self._keys.get(name)
            if versions:
                if not version:
                    return versions[-1]
                for candidate in versions:
                    if candidate.version == version:
                        return candidate
        shown = f"{name}/{version}" if version else name
        raise KeyVaultError(404, "KeyNotFound", f"A key with (name/id) {shown} was not found in this key vault.")

    # -- wire format -----------------------------------------------------------------------------
    def bundle(self, version: _KeyVersion) -> dict[str, Any]:
        jwk: dict[str, Any] = {"kid": self._kid(version), "kty": version.kty, "key_ops": list(version.key_ops)}
        public = version.private_key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            numbers = public.public_numbers()
            jwk.update(n=b64url(_int_bytes(numbers.n)), e=b64url(_int_bytes(numbers.e)))
        else:
            point = public.public_numbers()
            size = (public.curve.key_size + 7) // 8
            jwk.update(
                crv=version.crv, x=b64url(point.x.to_bytes(size, "big")), y=b64url(point.y.to_bytes(size, "big"))
            )
        return {
            "key": jwk,
            "attributes": {
                "enabled": version.enabled,
                "created": version.created,
                "updated": version.updated,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
                "exportable": False,
            },
            "tags": dict(version.tags),
        }

    def deleted_bundle(self, name: str) -> dict[str, Any]:
        with self._lock:
            entry = self._deleted.get(name)
        if entry is None:
            raise KeyVaultError(404, "KeyNotFound", f"Deleted Key not found: {name}")
        versions, deleted_at = entry
        body = self.bundle(versions[-1])
        body.update(
            recoveryId=f"{self.vault_url}/deletedkeys/{name}",
            deletedDate=deleted_at,
            scheduledPurgeDate=deleted_at + 90 * 86400,
        )
        return body

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Route one authenticated request; returns (status, JSON body). Raises KeyVaultError."""
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "deletedkeys" and method == "GET":
            self._record("get_deleted", parts[1])
            return 200, self.deleted_bundle(parts[1])
        if not parts or parts[0] != "keys" or len(parts) < 2:
            raise KeyVaultError(404, "NotFound", "no such route")
        name = parts[1]
        rest = parts[2:]
        if method == "POST" and rest == ["create"]:
            self._record("create", name)
            time.sleep(self.key_generation_seconds)
            kid = self.create_key(
                name,
                str(body.get("kty", "RSA")),
                size=int(body.get("key_size") or 2048),
                curve=str(body.get("crv") or "P-256"),
                key_ops=body.get("key_ops"),
                tags=body.get("tags"),
            )
            return 200, self.bundle(self._find(name, kid.rsplit("/", 1)[1]))
        if method == "POST" and rest == ["rotate"]:
            self._record("rotate", name)
            time.sleep(self.key_generation_seconds)
            kid = self.rotate_key(name)
            return 200, self.bundle(self._find(name, kid.rsplit("/", 1)[1]))
        if method == "GET" and rest == ["versions"]:
            self._record("versions", name)
            with self._lock:
                versions = list(self._keys.get(name, []))
            items = [{"kid": self._kid(v), "attributes": self.bundle(v)["attributes"]} for v in versions]
            return 200, {"value": items, "nextLink": None}
        if method == "DELETE" and not rest:
            self._record("delete", name)
            self.delete_key(name)
            return 200, self.deleted_bundle(name)
        if method == "GET" and len(rest) <= 1:
            self._record("get", name)
            return 200, self.bundle(self._find(name, rest[0] if rest else None))
        if method == "PATCH" and len(rest) <= 1:
            self._record("update", name)
            version = self._find(name, rest[0] if rest else None)
            attributes = body.get("attributes") or {}
            with self._lock:
                if "enabled" in attributes:
                    version.enabled = bool(attributes["enabled"])
                if body.get("key_ops"):
                    version.key_ops = list(body["key_ops"])
                if body.get("tags") is not None:
                    version.tags = dict(body["tags"])
                version.updated = int(time.time())
            return 200, self.bundle(version)
        if method == "POST" and len(rest) == 2 and rest[1] in _KEY_OPERATIONS:
            operation = rest[1]
            self._record(operation, name)
            return 200, self._operate(self._find(name, rest[0]), operation, body)
        raise KeyVaultError(405, "MethodNotAllowed", f"{method} is not supported on this path")

    def _operate(self, version: _KeyVersion, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        key_op = _KEY_OPERATIONS[operation]
        if not version.enabled:
            raise KeyVaultError(403, "Forbidden", f"Operation {key_op} is not allowed on a disabled key.")
        if key_op not in version.key_ops:
            raise KeyVaultError(403, "Forbidden", f"Operation {key_op} is not permitted on this key.")
        algorithm = str(body.get("alg", ""))
        try:
            value = b64url_decode(str(body["value"]))
        except (KeyError, ValueError) as exc:
            raise KeyVaultError(400, "BadParameter", "Property 'value' is missing or not base64url.") from exc
        kid = self._kid(version)
        private = version.private_key
        if operation in ("wrapkey", "encrypt", "unwrapkey", "decrypt"):
            if not isinstance(private, rsa.RSAPrivateKey):
                raise KeyVaultError(400, "BadParameter", f"Operation {key_op} needs an RSA key.")
            pad = _rsa_padding(algorithm)
            if operation in ("wrapkey", "encrypt"):
                return {"kid": kid, "value": b64url(private.public_key().encrypt(value, pad))}
            try:
                return {"kid": kid, "value": b64url(private.decrypt(value, pad))}
            except ValueError as exc:
                raise KeyVaultError(400, "BadParameter", "Error decrypting the value.") from exc
        if operation == "sign":
            return {"kid": kid, "value": b64url(_sign(private, algorithm, value))}
        try:
            signature = b64url_decode(str(body.get("value", "")))
            digest = b64url_decode(str(body["digest"]))
        except (KeyError, ValueError) as exc:
            raise KeyVaultError(400, "BadParameter", "Property 'digest' is missing or not base64url.") from exc
        return {"value": _verify(private, algorithm, digest, signature)}


def _rsa_padding(algorithm: str) -> padding.AsymmetricPadding:
    if algorithm in _OAEP_HASH:
        digest = _OAEP_HASH[algorithm]
        return padding.OAEP(mgf=padding.MGF1(digest()), algorithm=digest(), label=None)
    if algorithm == "RSA1_5":
        return padding.PKCS1v15()
    raise KeyVaultError(400, "BadParameter", f"Algorithm {algorithm!r} is not supported for this operation.")


def _sign_params(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, algorithm: str) -> tuple[Any, ...]:
    family, bits = algorithm[:2], algorithm[2:]
    if bits not in _HASHES:
        raise KeyVaultError(400, "BadParameter", f"Algorithm {algorithm!r} is not supported.")
    digest = _HASHES[bits]()
    if family == "RS" and isinstance(key, rsa.RSAPrivateKey):
        return (padding.PKCS1v15(), Prehashed(digest))
    if family == "PS" and isinstance(key, rsa.RSAPrivateKey):
        return (padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size), Prehashed(digest))
    if family == "ES" and isinstance(key, ec.EllipticCurvePrivateKey):
        return (ec.ECDSA(Prehashed(digest)),)
    raise KeyVaultError(400, "BadParameter", f"Algorithm {algorithm!r} does not match the key type.")


def _sign(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, algorithm: str, digest: bytes) -> bytes:
    params = _sign_params(key, algorithm)
    try:
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(digest, params[0], params[1])
        r, s = decode_dss_signature(key.sign(digest, params[0]))
    except ValueError as exc:
        raise KeyVaultError(400, "BadParameter", "The digest length does not match the algorithm.") from exc
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")  # JWS form: r || s


def _verify(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, algorithm: str, digest: bytes, signature: bytes
) -> bool:
    params = _sign_params(key, algorithm)
    try:
        if isinstance(key, rsa.RSAPrivateKey):
            key.public_key().verify(signature, digest, params[0], params[1])
        else:
            half = len(signature) // 2
            der = encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
            key.public_key().verify(der, digest, params[0])
    except (InvalidSignature, ValueError):
        return False
    return True


class _Handler(BaseHTTPRequestHandler):
    vault: LocalKeyVault
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _send(self, status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"error": {"code": code, "message": message}}, headers)

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        for pair in url.query.split("&"):
            if pair.startswith("api-version="):
                self.vault.api_versions.add(pair.partition("=")[2])
        if self.vault.outage == "hang":
            with self.vault._lock:
                self.vault._counts["hung"] += 1
            while self.vault.outage == "hang" and not self.vault._released.wait(0.05):
                pass
            self.close_connection = True
            return
        if self.vault.outage == "unavailable":
            self._error(503, "ServiceUnavailable", "The service is unavailable (simulated outage).")
            return
        if self.vault.outage == "error":
            self._error(500, "InternalServerError", "An unexpected error occurred (simulated outage).")
            return
        if self.vault.outage == "garbage":  # a proxy's or firewall's page where the vault should answer
            page = b"<html><body>Access to this site is blocked by your organisation's proxy.</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        authorization = self.headers.get("Authorization", "")
        if not secrets.compare_digest(authorization.encode(), f"Bearer {self.vault.token}".encode()):
            with self.vault._lock:
                self.vault._counts["challenge"] += 1
            self._error(
                401,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
                {"WWW-Authenticate": CHALLENGE},
            )
            return
        if self.vault.outage == "forbidden":
            self._error(403, "Forbidden", "The user, group or application does not have keys permissions.")
            return
        try:
            body = json.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise KeyVaultError(400, "BadParameter", "The request body must be a JSON object.")
            status, answer = self.vault.handle(self.command, url.path, body)
        except json.JSONDecodeError:
            self._error(400, "BadParameter", "The request body is not valid JSON.")
        except KeyVaultError as exc:
            self._error(exc.status, exc.code, exc.message)
        else:
            self._send(status, answer)

    do_GET = _dispatch
    do_POST = _dispatch
    do_DELETE = _dispatch
    do_PATCH = _dispatch
    do_PUT = _dispatch


def main() -> None:  # pragma: no cover - manual use: python -m devstack.keyvault_server
    with LocalKeyVault() as vault:
        print(f"local Key Vault at {vault.vault_url} (CA file {vault.ca_file}); Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    main()
