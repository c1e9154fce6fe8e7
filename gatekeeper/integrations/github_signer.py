"""The GitHub App's signing key outside Key Vault: a local RSA JWK file (development and the CLI's local mode).

In Azure the App's key is a Key Vault key and `CryptographyClient` signs remotely; the composition root
(`gatekeeper.services`) picks one or the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from azure.keyvault.keys import JsonWebKey
from azure.keyvault.keys.crypto import CryptographyClient

from gatekeeper.encoding import jwk_binary_fields


def load_local_signer(path: str | Path) -> CryptographyClient:
    """A `CryptographyClient.from_jwk` on a local RSA JWK file (a single JWK or a JWK Set whose last key
    is current), the development stand-in for the Key Vault key."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    jwk = document["keys"][-1] if isinstance(document, dict) and "keys" in document else document
    if jwk.get("kty") != "RSA" or "d" not in jwk:
        raise ValueError(f"{path}: must be an RSA private JWK")
    fields: dict[str, Any] = {"kid": jwk.get("kid", Path(path).stem), "kty": "RSA", "key_ops": ["sign", "verify"]}
    fields.update(jwk_binary_fields(jwk))
    return CryptographyClient.from_jwk(JsonWebKey(**fields))
