"""`settled`: the chain as its stored votes leave it, counted in their stored order, before the orchestration
has counted them. A vote checked against it cannot be answered "accepted" and then be ignored by the chain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gatekeeper.approvals import chain
from gatekeeper.approvals.chain import ChainPlan, ChainState, ChainStatus, Decision, RecordedVote
from gatekeeper.gates.decisions import settled

T0 = datetime(2030, 6, 3, 10, 0, tzinfo=UTC)
APPROVE, REJECT = Decision.APPROVE, Decision.REJECT


def plan(*quorums: int) -> ChainPlan:
    return ChainPlan.model_validate(
        {
            "stages": [
                {"name": f"s{i}", "approvers": ["a", "b", "c", "d"], "quorum": q, "timeout": "PT1H"}
                for i, q in enumerate(quorums)
            ]
        }
    )


def state(p: ChainPlan, *votes: tuple[str, Decision, int], stage: int = 0) -> ChainState:
    recorded = tuple(
        RecordedVote(voter_id=v, decision=d, stage=s, at=T0 + timedelta(minutes=i + 1))
        for i, (v, d, s) in enumerate(votes)
    )
    return ChainState(plan=p, stage=stage, stage_started_at=T0, votes=recorded)


def test_no_votes_or_too_few_approvals_leave_the_stage_open():
    assert settled(state(plan(2))) == state(plan(2))
    open_state = state(plan(2), ("a", APPROVE, 0))
    assert settled(open_state) == open_state


def test_a_stored_rejection_closes_the_chain_at_its_time():
    after = settled(state(plan(2), ("a", APPROVE, 0), ("b", REJECT, 0)))
    assert (after.status, after.reason, after.decided_at) == (
        ChainStatus.REJECTED,
        "rejected",
        T0 + timedelta(minutes=2),
    )


def test_the_quorum_of_the_last_stage_approves_at_the_deciding_vote():
    after = settled(state(plan(2), ("a", APPROVE, 0), ("b", APPROVE, 0)))
    assert (after.status, after.reason, after.decided_at) == (ChainStatus.APPROVED, "quorum", T0 + timedelta(minutes=2))


def test_votes_are_counted_in_their_stored_order_so_a_later_rejection_does_not_count():
    after = settled(state(plan(1), ("a", APPROVE, 0), ("b", REJECT, 0)))
    assert after.status is ChainStatus.APPROVED and after.decided_at == T0 + timedelta(minutes=1)
    after = settled(state(plan(1), ("b", REJECT, 0), ("a", APPROVE, 0)))
    assert after.status is ChainStatus.REJECTED and after.decided_at == T0 + timedelta(minutes=1)


def test_a_passed_stage_moves_on_to_the_next_which_starts_at_the_deciding_vote():
    after = settled(state(plan(1, 1), ("a", APPROVE, 0)))
    assert (after.status, after.stage, after.stage_started_at) == (ChainStatus.PENDING, 1, T0 + timedelta(minutes=1))
    late = chain.Vote(voter_id="b", decision=REJECT, at=T0 + timedelta(minutes=2), stage=0)
    assert isinstance(chain.check(after, late), chain.PastDeadline)


def test_votes_of_other_stages_do_not_count_for_the_current_one():
    current = state(plan(1, 2), ("a", APPROVE, 0), ("b", APPROVE, 1), stage=1)
    assert settled(current) == current
    assert settled(state(plan(1, 2), ("a", APPROVE, 0), ("b", REJECT, 0), stage=1)).status is ChainStatus.PENDING


def test_one_voter_counts_once_whatever_the_case_of_the_id():
    assert settled(state(plan(2), ("A", APPROVE, 0), ("a", APPROVE, 0))).status is ChainStatus.PENDING


@pytest.mark.parametrize("status", [ChainStatus.APPROVED, ChainStatus.REJECTED])
def test_a_closed_chain_is_left_as_it_is(status):
    closed = state(plan(1), ("a", REJECT, 0)).model_copy(update={"status": status, "decided_at": T0})
    assert settled(closed) is closed


def test_a_vote_of_an_earlier_stage_stored_first_does_not_stop_the_count():
    """Votes are stored across stages in one sequence: an earlier stage's vote before the current stage's
    deciding vote is skipped, and the count goes on to that vote."""
    after = settled(state(plan(1, 1), ("a", APPROVE, 0), ("b", APPROVE, 1), stage=1))
    assert (after.status, after.reason, after.decided_at) == (ChainStatus.APPROVED, "quorum", T0 + timedelta(minutes=2))
    after = settled(state(plan(1, 1), ("a", APPROVE, 0), ("b", REJECT, 1), stage=1))
    assert (after.status, after.decided_at) == (ChainStatus.REJECTED, T0 + timedelta(minutes=2))
