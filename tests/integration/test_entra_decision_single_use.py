"""The documented single-use pattern for decision tokens works against real Table storage (Azurite)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient

from gatekeeper.errors import Problem
from gatekeeper.security import decision_tokens as dt

SECRET = b"\x01" * 32
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
INSTANCE = "gate-0123456789abcdef0123456789abcdef01234567"
APPROVER = "5f6c2b1e-8d3a-4c1b-9e7f-0a1b2c3d4e5f"


def redeem(table, token: str) -> dt.DecisionClaims:
    """What the approvals route does: verify, then claim the jti with create_entity (never upsert)."""
    claims = dt.verify(token, INSTANCE, APPROVER, NOW, secret=SECRET)
    try:
        table.create_entity(dt.single_use_entity(claims))
    except ResourceExistsError:
        raise dt.already_used() from None
    return claims


@pytest.mark.azurite
def test_second_redemption_is_409(storage_connection_string, unique_name):
    table = TableServiceClient.from_connection_string(storage_connection_string).create_table(unique_name)
    token = dt.issue(
        SECRET, instance_id=INSTANCE, approver_oid=APPROVER, stage="1", expires_at=NOW + timedelta(hours=1), now=NOW
    )
    other = dt.issue(
        SECRET, instance_id=INSTANCE, approver_oid=APPROVER, stage="1", expires_at=NOW + timedelta(hours=1), now=NOW
    )
    first = redeem(table, token)
    assert first.instance_id == INSTANCE
    with pytest.raises(Problem) as info:
        redeem(table, token)
    assert (info.value.status, info.value.slug) == (409, "decision-token-used")
    assert redeem(table, other).jti != first.jti  # another token for the same gate is its own use
    row = table.get_entity(f"decision-token|{INSTANCE}", first.jti)
    assert row["ApproverOid"] == APPROVER
