"""Single-use decision tokens: proof that an approval link was issued for this gate, stage and approver.

The Entra identity says who the caller is; the decision token says the gate asked that person for a
decision on that orchestration instance and stage, until an expiry. It is HMAC-SHA256 over a compact
JSON body with a per-tenant secret (passed in as bytes, never stored in the token), so a leaked link is
useless to anyone else, for any other gate, or after it expires.

Verification here is pure. Single use is the caller's job, because it needs storage: after `verify`,
record the token with `create_entity(single_use_entity(claims))` in the tenant's table (never upsert);
`ResourceExistsError` means it was already used, answer `already_used()` (409).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets as _secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gatekeeper.errors import Problem

PREFIX = "gkd1"
MIN_SECRET_BYTES = 32
MAX_TOKEN_CHARS = 2048


class DecisionClaims(BaseModel):
    """What a decision token binds; `jti` identifies it for single-use bookkeeping."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jti: str = Field(min_length=16, max_length=64)
    instance_id: str = Field(min_length=1, max_length=256)
    approver_oid: str = Field(min_length=1, max_length=128)
    stage: str = Field(min_length=1, max_length=128)
    iat: int
    exp: int


def invalid_token() -> Problem:
    return Problem(
        403,
        "invalid-decision-token",
        "Invalid decision token",
        "The decision token is malformed or was not issued by this gate.",
        field="decision_token",
    )


def mismatch(field: str) -> Problem:
    return Problem(
        403,
        "decision-token-mismatch",
        "Decision token mismatch",
        f"The decision token was issued for a different {field.replace('_', ' ')}.",
        field=field,
    )


def expired() -> Problem:
    return Problem(
        410,
        "decision-token-expired",
        "Decision token expired",
        "The decision token has expired; the decision window for this approval is over.",
        field="decision_token",
    )


def already_used() -> Problem:
    """For the caller whose single-use record already exists."""
    return Problem(
        409,
        "decision-token-used",
        "Decision token already used",
        "This decision token has already been used.",
        field="decision_token",
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, signing_input: str) -> bytes:
    return hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()


def _check_secret(secret: bytes) -> bytes:
    if not isinstance(secret, bytes | bytearray) or len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"decision token secret: at least {MIN_SECRET_BYTES} random bytes are required")
    return bytes(secret)


def _epoch(moment: datetime, name: str) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{name}: a timezone-aware datetime is required")
    return int(moment.timestamp())


def issue(
    secret: bytes,
    *,
    instance_id: str,
    approver_oid: str,
    stage: str,
    expires_at: datetime,
    now: datetime,
    jti: str | None = None,
) -> str:
    """A token `gkd1.<claims>.<mac>` for one approver's decision on one stage of one gate."""
    claims = DecisionClaims(
        jti=jti or _secrets.token_urlsafe(18),
        instance_id=instance_id,
        approver_oid=approver_oid.lower(),
        stage=stage,
        iat=_epoch(now, "now"),
        exp=_epoch(expires_at, "expires_at"),
    )
    if claims.exp <= claims.iat:
        raise ValueError("expires_at: must be after now")
    body = _b64(json.dumps(claims.model_dump(), separators=(",", ":"), sort_keys=True).encode())
    signing_input = f"{PREFIX}.{body}"
    return f"{signing_input}.{_b64(_mac(_check_secret(secret), signing_input))}"


def verify(
    token: str,
    instance_id: str,
    approver_oid: str,
    now: datetime,
    *,
    secret: bytes | Sequence[bytes],
    stage: str | None = None,
) -> DecisionClaims:
    """The token's claims if it is genuine, for this instance/approver (and stage, if given) and unexpired.

    Raises Problem 403 (not ours, tampered, or bound to something else) or 410 (expired). Pass several
    secrets during a secret rotation; any of them may have signed the token."""
    keys = [_check_secret(s) for s in ([secret] if isinstance(secret, bytes | bytearray) else secret)]
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise invalid_token()
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise invalid_token()
    signing_input = f"{parts[0]}.{parts[1]}"
    try:
        presented = _unb64(parts[2])
    except (binascii.Error, ValueError):
        raise invalid_token() from None
    # Compare against every key without short-circuiting, so timing does not say which key matched.
    matches = [hmac.compare_digest(_mac(key, signing_input), presented) for key in keys]
    if not any(matches):
        raise invalid_token()
    try:
        data: Any = json.loads(_unb64(parts[1]))
        claims = DecisionClaims.model_validate(data)
    except (binascii.Error, ValueError, ValidationError):
        raise invalid_token() from None

    if not hmac.compare_digest(claims.instance_id.encode(), instance_id.encode()):
        raise mismatch("instance_id")
    if not hmac.compare_digest(claims.approver_oid.encode(), approver_oid.lower().encode()):
        raise mismatch("approver")
    if stage is not None and claims.stage != stage:
        raise mismatch("stage")
    if _epoch(now, "now") >= claims.exp:
        raise expired()
    return claims


def single_use_entity(claims: DecisionClaims) -> dict[str, Any]:
    """The row that marks a token as used: one partition per gate, the jti as row key."""
    return {
        "PartitionKey": f"decision-token|{claims.instance_id}",
        "RowKey": claims.jti,
        "ApproverOid": claims.approver_oid,
        "Stage": claims.stage,
        "ExpiresAt": claims.exp,
    }
