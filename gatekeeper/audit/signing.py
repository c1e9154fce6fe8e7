"""The checkpoint signing key: a Key Vault key in Azure, a local JWK in development.

New keys are RSA-3072 (RS256). A checkpoint is signed once per hundred entries or quarter hour but verified
by every audit, export check and auditor, and RSA with e = 65537 verifies in about 44 us against 70 us for
ECDSA P-256 at the same 128-bit strength; signing is the slower side, and it happens rarely. EC P-256 keys
(ES256) keep working: logs signed with them still verify, and an existing key file or vault key is used as
it is.

Both paths sign through `azure.keyvault.keys.crypto.CryptographyClient.sign` over SHA-256(note), so the
product runs one code path; the private key of a Key Vault key never leaves the vault. The public key is
exported as PEM for auditors, who verify offline with `python -m gatekeeper audit verify`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from azure.keyvault.keys import JsonWebKey, KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gatekeeper.audit.checkpoints import ES256, MIN_RSA_BITS, PublicKey, algorithm_for, key_fingerprint, public_key_pem
from gatekeeper.audit.ports import NoteSignature
from gatekeeper.encoding import b64url_decode, int_to_b64url
from gatekeeper.store import budgets

_ALGORITHMS = {ES256: SignatureAlgorithm.es256, "RS256": SignatureAlgorithm.rs256}
_NAME = re.compile(r"^[A-Za-z0-9-]{1,127}$")
RSA_KEY_BITS = 3072  # new local keys; infra/modules/keyvault.bicep creates the vault key at the same size
# The JWK members (RFC 7518 section 6) a private key file must hold, by key type.
_PRIVATE_FIELDS = {"RSA": ("n", "e", "d", "p", "q", "dp", "dq", "qi"), "EC": ("x", "y", "d")}


class CheckpointKeyError(RuntimeError):
    """The checkpoint key cannot be loaded or used; the message names the key, never its material."""


def _rsa_fields(public: rsa.RSAPublicNumbers, private: rsa.RSAPrivateNumbers) -> tuple[tuple[str, int], ...]:
    return (
        ("n", public.n),
        ("e", public.e),
        ("d", private.d),
        ("p", private.p),
        ("q", private.q),
        ("dp", private.dmp1),
        ("dq", private.dmq1),
        ("qi", private.iqmp),
    )


def public_key_from_jwk(jwk: JsonWebKey) -> PublicKey:
    """The public half of a Key Vault JsonWebKey (EC P-256 or RSA) as a `cryptography` key."""

    def field(name: str) -> Any:  # JsonWebKey sets its fields dynamically
        value = getattr(jwk, name, None)
        return getattr(value, "value", value)

    kty = str(field("kty") or "")
    if kty.startswith("EC"):
        if str(field("crv")) != "P-256":
            raise CheckpointKeyError(f"checkpoint key curve {field('crv')} is not P-256 (ES256)")
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(field("x") or b"", "big"), int.from_bytes(field("y") or b"", "big"), ec.SECP256R1()
        )
        return numbers.public_key()
    if kty.startswith("RSA"):
        return rsa.RSAPublicNumbers(
            int.from_bytes(field("e") or b"", "big"), int.from_bytes(field("n") or b"", "big")
        ).public_key()
    raise CheckpointKeyError(f"checkpoint key type {kty!r} is neither EC nor RSA")


class CheckpointSigner:
    """Signs checkpoint notes with one CryptographyClient (remote Key Vault key or local JWK)."""

    def __init__(self, client: CryptographyClient, public_key: PublicKey) -> None:
        self._client = client
        self._public_key = public_key
        self.algorithm = algorithm_for(public_key)
        self.key_fingerprint = key_fingerprint(public_key)

    def __repr__(self) -> str:
        return f"CheckpointSigner(algorithm={self.algorithm!r}, key_fingerprint={self.key_fingerprint[:16]!r}...)"

    @property
    def key_id(self) -> str:
        return str(self._client.key_id or "")

    def public_key_pem(self) -> str:
        return public_key_pem(self._public_key)

    def sign_note(self, note: bytes) -> NoteSignature:
        digest = hashlib.sha256(note).digest()
        try:
            result = self._client.sign(_ALGORITHMS[self.algorithm], digest)
        except Exception as exc:  # the SDK's errors may quote request details; keep only the kind
            raise CheckpointKeyError(f"checkpoint key: signing failed ({type(exc).__name__})") from exc
        return NoteSignature(
            algorithm=self.algorithm,
            key_id=str(result.key_id or self.key_id),
            key_fingerprint=self.key_fingerprint,
            signature=bytes(result.signature),
        )


class LocalCheckpointKey:
    """A development checkpoint key: a private JWK in `key_dir/<name>.jwk.json` (mode 0600), created on first
    use as RSA-3072 (an EC P-256 file from an earlier version is still used). Signing runs through
    `CryptographyClient.from_jwk`, exactly as the product's Key Vault path."""

    def __init__(self, key_dir: str | os.PathLike[str], name: str = "audit-checkpoint") -> None:
        if not _NAME.match(name):
            raise ValueError(f"name: {name!r} must be 1-127 letters, digits and hyphens")
        self.key_dir = Path(key_dir)
        self.name = name

    def __repr__(self) -> str:
        return f"LocalCheckpointKey({str(self.key_dir)!r}, {self.name!r})"

    @property
    def path(self) -> Path:
        return self.key_dir / f"{self.name}.jwk.json"

    def _create(self) -> None:
        private = rsa.generate_private_key(65537, RSA_KEY_BITS).private_numbers()
        public = private.public_numbers
        jwk = {
            "kty": "RSA",
            "kid": f"local://keys/{self.name}/{os.urandom(16).hex()}",
            **{name: int_to_b64url(value) for name, value in _rsa_fields(public, private)},
            "key_ops": ["sign", "verify"],
        }
        self.key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temp = tempfile.mkstemp(dir=self.key_dir, prefix=f".{self.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(jwk, handle)
            with contextlib.suppress(FileExistsError):  # create-if-absent: two processes never make two keys
                os.link(temp, self.path)
        finally:
            Path(temp).unlink(missing_ok=True)

    def _jwk(self) -> JsonWebKey:
        if not self.path.exists():
            self._create()
        try:
            jwk = json.loads(self.path.read_text())
            names = _PRIVATE_FIELDS.get(str(jwk.get("kty"))) if isinstance(jwk, dict) else None
            if not names or not all(isinstance(jwk.get(name), str) and jwk[name] for name in names):
                raise ValueError("not an RSA or EC private JWK")
            if jwk["kty"] == "EC" and jwk.get("crv") != "P-256":
                raise ValueError("not an EC P-256 JWK")
            fields = {name: b64url_decode(jwk[name]) for name in names}
            if jwk["kty"] == "RSA" and int.from_bytes(fields["n"], "big").bit_length() < MIN_RSA_BITS:
                raise ValueError("RSA key too short")  # verifiers would refuse its signatures
        except (OSError, ValueError) as exc:
            raise CheckpointKeyError(f"local checkpoint key {self.path}: unreadable ({type(exc).__name__})") from None
        curve = {"crv": "P-256"} if jwk["kty"] == "EC" else {}
        return JsonWebKey(kid=jwk.get("kid"), kty=jwk["kty"], key_ops=["sign", "verify"], **curve, **fields)

    def signer(self) -> CheckpointSigner:
        key = self._jwk()
        return CheckpointSigner(CryptographyClient.from_jwk(key), public_key_from_jwk(key))

    def public_key_pem(self) -> str:
        return self.signer().public_key_pem()


class KeyVaultCheckpointKey:
    """The checkpoint key in Azure Key Vault (RSA for RS256, as the template creates it, or EC P-256 for
    ES256). Needs keys/get and keys/sign; the current version signs, and each checkpoint records the
    versioned key id. The key is read when the process builds its runtime (on a first request) and signs
    after audit appends on request paths, so its clients get the bounded request-path budgets
    (gatekeeper.store.budgets) unless `client_kwargs` says otherwise."""

    def __init__(self, vault_url: str, name: str, credential: Any, **client_kwargs: Any) -> None:
        self.vault_url = vault_url.rstrip("/")
        self.name = name
        self._credential = credential
        self._client_kwargs = {**budgets.keyvault_client_options(), **client_kwargs}

    def __repr__(self) -> str:
        return f"KeyVaultCheckpointKey({self.vault_url!r}, {self.name!r})"

    def signer(self) -> CheckpointSigner:
        try:
            key = KeyClient(self.vault_url, self._credential, **self._client_kwargs).get_key(self.name)
        except Exception as exc:
            raise CheckpointKeyError(
                f"checkpoint key {self.name!r}: cannot be read from Key Vault ({type(exc).__name__})"
            ) from exc
        public = public_key_from_jwk(key.key)
        client = CryptographyClient(str(key.id), self._credential, **self._client_kwargs)
        return CheckpointSigner(client, public)

    def public_key_pem(self) -> str:
        return self.signer().public_key_pem()
