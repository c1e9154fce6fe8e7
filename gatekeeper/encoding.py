"""base64url (RFC 4648 §5, unpadded) and the JWK integer encoding (RFC 7518 §6.3), in one place.

JWS/JWT pieces, JSON Web Keys and sealed values all use unpadded base64url. Two decoders on purpose:
`b64url_decode` reads what a JWK file or a JWT may hold (it tolerates missing padding), while
`b64url_decode_strict` accepts only the one canonical text for the bytes, for sealed values where a
second spelling of the same ciphertext must not open (a tested security property of the envelope).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping

RSA_JWK_FIELDS = ("n", "e", "d", "p", "q", "dp", "dq", "qi")
"""The base64url-encoded integers of an RSA private JWK (RFC 7518 §6.3), public ones first."""

__all__ = [
    "RSA_JWK_FIELDS",
    "b64url",
    "b64url_decode",
    "b64url_decode_strict",
    "int_to_b64url",
    "int_to_bytes",
    "jwk_binary_fields",
]


def b64url(data: bytes) -> str:
    """Unpadded base64url text of `data`."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The bytes of a base64url text, padded or not."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_decode_strict(text: str) -> bytes:
    """Strict base64url: unpadded and canonical. The decoder alone ignores the unused low bits of the last
    character (and characters outside the alphabet), so a changed text could still open; re-encoding must
    give back the very same text. Raises ValueError otherwise."""
    if not text or "=" in text:
        raise ValueError("empty or padded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(data) != text:
        raise ValueError("not canonical base64url")
    return data


def int_to_bytes(value: int) -> bytes:
    """The big-endian bytes of a non-negative integer, shortest form (a JWK's integer encoding)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def int_to_b64url(value: int) -> str:
    """A JWK integer member (`n`, `e`, `d`, ...)."""
    return b64url(int_to_bytes(value))


def jwk_binary_fields(jwk: Mapping[str, str], names: Iterable[str] = RSA_JWK_FIELDS) -> dict[str, bytes]:
    """The decoded members `names` that `jwk` has (for `azure.keyvault.keys.JsonWebKey`)."""
    return {name: b64url_decode(jwk[name]) for name in names if name in jwk}
