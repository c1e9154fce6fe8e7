"""The GitHub App's signing key outside Key Vault: a local RSA JWK file (development and the CLI's local mode).

In Azure the App's key is a Key Vault key and `CryptographyClient` signs remotely; the composition root
(`gatekeeper.services`) picks one or the other.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from azure.keyvault.keys import JsonWebKey
from azure.keyvault.keys.crypto import CryptographyClient

_JWK_BINARY_FIELDS = ("n", "e", "d", "p", "q", "dp", "dq", "qi")


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_local_signer(path: str | Path) -> CryptographyClient:
    """A `CryptographyClient.from_jwk` on a local RSA JWK file (a single JWK or a JWK Set whose last key
    is current), the development stand-in for the Key Vault key."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    jwk = document["keys"][-1] if isinstance(document, dict) and "keys" in document else document
    if jwk.get("kty") != "RSA" or "d" not in jwk:
        raise ValueError(f"{path}: must be an RSA private JWK")
    fields: dict[str, Any] = {"kid": jwk.get("kid", Path(path).stem), "kty": "RSA", "key_ops": ["sign", "verify"]}
    fields.update({name: _unb64u(jwk[name]) for name in _JWK_BINARY_FIELDS if name in jwk})
    return CryptographyClient.from_jwk(JsonWebKey(**fields))
