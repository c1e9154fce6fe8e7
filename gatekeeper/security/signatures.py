"""Shared-secret request authentication: GitHub's HMAC signatures and per-tenant shared secrets.

Both compare in constant time and say nothing about why a check failed beyond "not authenticated",
so a caller cannot probe which tenants or secrets exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

GITHUB_SIGNATURE_PREFIX = "sha256="


def github_signature(secret: bytes, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for this body."""
    return GITHUB_SIGNATURE_PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_github_signature(secrets: list[bytes], body: bytes, header: str | None) -> bool:
    """True when the header is a valid HMAC-SHA256 of the raw body under one of the secrets.

    Several secrets are accepted so a tenant can rotate its webhook secret without downtime.
    """
    if not header or not header.startswith(GITHUB_SIGNATURE_PREFIX):
        return False
    offered = header.encode("ascii", errors="replace")
    matched = False
    for secret in secrets:
        # Evaluate every secret so timing does not reveal which one matched.
        matched |= hmac.compare_digest(offered, github_signature(secret, body).encode("ascii"))
    return matched


def verify_shared_secret(secrets: list[bytes], offered: str | None) -> bool:
    """True when the offered value equals one of the tenant's shared secrets (constant time)."""
    if not offered:
        return False
    candidate = offered.encode("utf-8")
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(candidate, secret)
    return matched


def basic_auth_password(authorization: str | None) -> str | None:
    """The password of an HTTP Basic `Authorization` header (Azure DevOps service hooks use it)."""
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, sep, password = decoded.partition(":")
    return password if sep else None
