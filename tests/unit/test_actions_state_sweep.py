"""`gatekeeper.actions.state`: what an action's status is (the client runs the step only on `approved`), the
immediate answer per level and the long poll's `wait`. Cases a hand sweep of planted bugs found untested
(docs/mutation.md, second sweep)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gatekeeper.actions.state import MAX_WAIT_SECONDS, action_state, immediate_answer, parse_wait
from gatekeeper.actions.store import ActionRecord
from gatekeeper.contracts.gate import GateStatus
from gatekeeper.errors import InvalidInput
from gatekeeper.gates.store import GateRecord

NOW = datetime(2030, 6, 3, 10, 0, tzinfo=UTC)


def record(**changes: Any) -> ActionRecord:
    base: dict[str, Any] = {
        "action_id": "gate-a1",
        "tenant_id": "contoso",
        "idempotency_key": "k1",
        "fingerprint": "f" * 64,
        "command": "terraform apply",
        "action": "deploy",
        "environment": "production",
        "credential": "entra",
        "caller_key": "entra:oid:x",
        "level": "L2",
        "created_at": NOW - timedelta(minutes=5),
    }
    base.update(changes)
    return ActionRecord(**base)


def gate(status: GateStatus, reason: str | None = None) -> GateRecord:
    return GateRecord(
        instance_id="gate-a1",
        tenant_id="contoso",
        status=status,
        level="L2",
        created_at=NOW - timedelta(minutes=5),
        updated_at=NOW - timedelta(minutes=1),
        decided_at=NOW - timedelta(minutes=1),
        outcome_reason=reason,
    )


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (GateStatus.APPROVED, "approved by anna", ("approved", "approved")),
        (GateStatus.REJECTED, "rejected by piet", ("denied", "denied")),
        (GateStatus.REJECTED, "no decision in time (timeout)", ("expired", "denied")),
        (GateStatus.HUMAN_TASK, "L3: a person carries it out", ("human_only", "denied")),
        (GateStatus.AWAITING_APPROVAL, None, ("pending", None)),
        (GateStatus.EVALUATED, None, ("pending", None)),
    ],
)
def test_only_an_approved_gate_makes_an_approved_action(status, reason, expected):
    state = action_state(record(), gate(status, reason), NOW)
    assert (state.status, state.decision) == expected
    if expected[0] != "pending":
        assert state.decided_at == NOW - timedelta(minutes=1) and state.reason == reason


def test_a_rejection_that_merely_mentions_a_timeout_is_a_denial_not_an_expiry():
    state = action_state(record(), gate(GateStatus.REJECTED, "rejected: the timeout setting is wrong"), NOW)
    assert (state.status, state.decision) == ("denied", "denied")


@pytest.mark.parametrize("immediate", ["denied", "human_only"])
def test_an_immediate_refusal_is_a_denial_whatever_the_gate_says_later(immediate):
    state = action_state(record(immediate=immediate, reason="policy"), gate(GateStatus.APPROVED), NOW)
    assert (state.status, state.decision, state.reason) == (immediate, "denied", "policy")


def test_a_closed_action_stays_closed_whatever_its_gate_says():
    closed = NOW - timedelta(minutes=2)
    cancelled = action_state(record(closed="cancelled", closed_at=closed), gate(GateStatus.APPROVED), NOW)
    assert (cancelled.status, cancelled.decision, cancelled.decided_at) == ("cancelled", None, closed)
    expired = action_state(record(closed="expired", closed_at=closed), gate(GateStatus.APPROVED), NOW)
    assert (expired.status, expired.decision, expired.decided_at) == ("expired", "denied", closed)


def test_the_requests_own_timeout_counts_from_its_exact_instant():
    at = action_state(record(expires_at=NOW), gate(GateStatus.AWAITING_APPROVAL), NOW)
    assert at.status == "expiring"
    before = action_state(record(expires_at=NOW + timedelta(microseconds=1)), None, NOW)
    assert before.status == "pending"


def test_only_l0_and_l1_are_approved_at_once_and_a_block_denies_every_level():
    assert immediate_answer("L2", False, ()) == (None, "")
    assert immediate_answer("L3", False, ())[0] == "human_only"
    for level in ("L0", "L1", "L2", "L3"):
        assert immediate_answer(level, True, ("frozen",)) == ("denied", "frozen")
    reason = immediate_answer("L0", True, tuple("r" * 100 for _ in range(10)))[1]
    assert len(reason) == 500


def test_wait_is_exactly_bounded_and_takes_no_trailing_newline():
    assert parse_wait(str(MAX_WAIT_SECONDS)) == MAX_WAIT_SECONDS
    for refused in (str(MAX_WAIT_SECONDS + 1), "5\n", " 5", "+5"):
        with pytest.raises(InvalidInput) as problem:
            parse_wait(refused)
        assert problem.value.field == "wait", refused
