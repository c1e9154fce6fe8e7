"""Decision tokens: round trip, binding to instance/approver/stage, expiry, tampering, key rotation."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from gatekeeper.errors import Problem
from gatekeeper.security import decision_tokens as dt

SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(1, 33))
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
INSTANCE = "gate-0123456789abcdef0123456789abcdef01234567"
APPROVER = "5f6c2b1e-8d3a-4c1b-9e7f-0a1b2c3d4e5f"


def make(**overrides) -> str:
    args = {
        "instance_id": INSTANCE,
        "approver_oid": APPROVER,
        "stage": "1",
        "expires_at": NOW + timedelta(hours=4),
        "now": NOW,
    }
    args.update(overrides)
    return dt.issue(SECRET, **args)


def refused(token: str, **overrides) -> Problem:
    args = {"instance_id": INSTANCE, "approver_oid": APPROVER, "now": NOW, "secret": SECRET}
    args.update(overrides)
    with pytest.raises(Problem) as info:
        dt.verify(token, **args)
    return info.value


def test_round_trip_returns_the_bound_claims():
    token = make()
    claims = dt.verify(token, INSTANCE, APPROVER.upper(), NOW + timedelta(hours=1), secret=SECRET, stage="1")
    assert (claims.instance_id, claims.approver_oid, claims.stage) == (INSTANCE, APPROVER, "1")
    assert claims.exp - claims.iat == 4 * 3600
    assert SECRET.hex() not in token


def test_each_token_has_its_own_jti():
    assert (
        dt.verify(make(), INSTANCE, APPROVER, NOW, secret=SECRET).jti
        != dt.verify(make(), INSTANCE, APPROVER, NOW, secret=SECRET).jti
    )


def test_wrong_instance_approver_or_stage_is_403_naming_the_binding():
    token = make()
    p = refused(token, instance_id="gate-ffff")
    assert (p.status, p.slug, p.field) == (403, "decision-token-mismatch", "instance_id")
    p = refused(token, approver_oid="00000000-0000-4000-8000-000000000000")
    assert (p.status, p.field) == (403, "approver")
    p = refused(token, stage="2")
    assert (p.status, p.field) == (403, "stage")


def test_expired_is_410_at_and_after_expiry():
    token = make()
    for moment in (NOW + timedelta(hours=4), NOW + timedelta(days=3)):
        p = refused(token, now=moment)
        assert (p.status, p.slug) == (410, "decision-token-expired")


def test_tampered_claims_or_foreign_secret_is_403_invalid():
    token = make()
    prefix, body, mac = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["approver_oid"] = "00000000-0000-4000-8000-000000000000"
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for bad in (
        f"{prefix}.{forged_body}.{mac}",
        dt.issue(
            OTHER_SECRET,
            instance_id=INSTANCE,
            approver_oid=APPROVER,
            stage="1",
            expires_at=NOW + timedelta(hours=1),
            now=NOW,
        ),
    ):
        p = refused(bad)
        assert (p.status, p.slug) == (403, "invalid-decision-token")


@pytest.mark.parametrize("bad", ["", "gkd1", "gkd1.a.b.c", "jwt.abc.def", "gkd1.e30.!!!", "gkd1.e30." + "A" * 4000])
def test_malformed_is_403_invalid(bad):
    assert refused(bad).slug == "invalid-decision-token"


def test_rotation_accepts_any_listed_secret():
    token = make()
    assert dt.verify(token, INSTANCE, APPROVER, NOW, secret=[OTHER_SECRET, SECRET]).instance_id == INSTANCE
    assert refused(token, secret=[OTHER_SECRET]).status == 403


def test_programming_errors_are_value_errors():
    with pytest.raises(ValueError, match="secret"):
        dt.issue(
            b"short",
            instance_id=INSTANCE,
            approver_oid=APPROVER,
            stage="1",
            expires_at=NOW + timedelta(hours=1),
            now=NOW,
        )
    with pytest.raises(ValueError, match="expires_at"):
        make(expires_at=NOW)
    with pytest.raises(ValueError, match="timezone"):
        make(now=datetime(2025, 3, 1, 12, 0))


def test_single_use_entity_keys_on_instance_and_jti():
    claims = dt.verify(make(jti="fixed-jti-0123456789"), INSTANCE, APPROVER, NOW, secret=SECRET)
    entity = dt.single_use_entity(claims)
    assert entity["PartitionKey"].endswith(INSTANCE) and entity["RowKey"] == "fixed-jti-0123456789"
    assert dt.already_used().status == 409
