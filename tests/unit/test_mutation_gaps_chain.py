"""The approval chain's values and counting (issue 21: survivors of `make mutation MODULES=approvals`).

A stage counts only its own approvals: an approval given at an earlier stage must not count towards a later
stage's quorum. Outcomes, refusals and plans are immutable values, and the documented bounds hold exactly.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from gatekeeper.approvals import chain
from gatekeeper.approvals.chain import ChainPlan, ChainStatus, Decision, StagePlan, Vote

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
ANNA, PIET, KAI = "anna@contoso.com", "piet@contoso.com", "kai@contoso.com"


def test_an_approval_at_an_earlier_stage_does_not_count_towards_a_later_quorum():
    plan = ChainPlan.model_validate(
        {
            "stages": [
                {"name": "lead", "approvers": [ANNA], "quorum": 1, "timeout": "PT1H"},
                {"name": "cab", "approvers": [PIET, KAI], "quorum": 2, "timeout": "PT1H"},
            ]
        }
    )
    state = chain.start(plan, {"dev@contoso.com"}, T0)
    state, outcome = chain.apply(state, Vote(voter_id=ANNA, decision=Decision.APPROVE, at=T0, aliases={ANNA}))
    assert isinstance(outcome, chain.StagePassed) and state.stage == 1
    at = T0 + timedelta(minutes=5)
    state, outcome = chain.apply(state, Vote(voter_id=PIET, decision=Decision.APPROVE, at=at, aliases={PIET}))
    assert isinstance(outcome, chain.VoteCounted) and (outcome.approvals, outcome.quorum) == (1, 2)
    assert state.status is ChainStatus.PENDING and state.approvals() == (PIET,) and state.approvals(0) == (ANNA,)


def test_a_rejection_is_not_an_approval():
    plan = ChainPlan.model_validate(
        {"stages": [{"name": "cab", "approvers": [ANNA, PIET], "quorum": 2, "timeout": "PT1H"}]}
    )
    state = chain.start(plan, set(), T0)
    rejected = Vote(voter_id=ANNA, decision=Decision.REJECT, at=T0, aliases={ANNA})
    state = state.model_copy(update={"votes": (*state.votes, rejected.model_copy(update={"stage": 0}))})
    assert state.approvals() == ()


OUTCOMES = [
    chain.VoteCounted(stage=0, approvals=1, quorum=2),
    chain.StagePassed(stage=0, next_stage=1),
    chain.ChainApproved(stage=0),
    chain.ChainRejected(stage=0, reason="rejected"),
    chain.Escalated(from_stage=0, to_stage=1),
    chain.Refusal("x"),
    chain.NotAnApprover("x"),
    chain.SelfApproval("x"),
    chain.DuplicateVote("x"),
    chain.ChainClosed("x"),
    chain.PastDeadline("x"),
]


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda o: type(o).__name__)
def test_outcomes_and_refusals_are_immutable(outcome):
    field = dataclasses.fields(outcome)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(outcome, field, 7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.added_later = 1  # type: ignore[attr-defined]


def test_plans_and_votes_are_immutable():
    stage = StagePlan(name="cab", approvers=(ANNA,), quorum=1, timeout="PT1H")
    plan = ChainPlan(stages=(stage,))
    vote = Vote(voter_id=ANNA, decision=Decision.APPROVE, at=T0)
    for model, field, value in ((stage, "quorum", 2), (plan, "stages", ()), (vote, "decision", Decision.REJECT)):
        with pytest.raises(ValidationError):
            setattr(model, field, value)


def test_the_documented_bounds_hold_exactly():
    assert StagePlan(name="cab", approvers=("group:ops",), quorum=1000, timeout="PT1H").quorum == 1000
    with pytest.raises(ValidationError):
        StagePlan(name="cab", approvers=("group:ops",), quorum=1001, timeout="PT1H")
    assert len(Vote(voter_id=ANNA, decision=Decision.APPROVE, at=T0, comment="c" * 2000).comment) == 2000
    with pytest.raises(ValidationError):
        Vote(voter_id=ANNA, decision=Decision.APPROVE, at=T0, comment="c" * 2001)


def test_a_policy_approval_model_becomes_the_chain_plan():
    from gatekeeper.policy.approval import ApprovalChainSpec

    spec = ApprovalChainSpec.model_validate(
        {"stages": [{"name": "cab", "approvers": [ANNA, PIET], "quorum": 2, "timeout": "PT4H"}]}
    )
    plan = ChainPlan.from_policy(spec)
    assert [(s.name, s.approvers, s.quorum, s.timeout) for s in plan.stages] == [
        ("cab", (ANNA, PIET), 2, timedelta(hours=4))
    ]


def test_a_stage_timeout_may_be_any_positive_duration_and_a_name_64_characters():
    assert StagePlan(name="n" * 64, approvers=(ANNA,), quorum=1, timeout=timedelta(hours=1)).timeout == timedelta(
        hours=1
    )
    for bad in ({"timeout": timedelta(0)}, {"timeout": timedelta(seconds=-1)}, {"name": "n" * 65}):
        with pytest.raises(ValidationError):
            StagePlan(**{"name": "cab", "approvers": (ANNA,), "quorum": 1, "timeout": timedelta(hours=1), **bad})


def test_a_timeout_serialises_in_days_never_in_ambiguous_years():
    stage = StagePlan(name="cab", approvers=(ANNA,), quorum=1, timeout=timedelta(days=400))
    dumped = stage.model_dump(mode="json")
    assert dumped["timeout"] == "P400D"  # a "year" has no fixed length; the chain's deadline must not move
    assert StagePlan.model_validate(dumped).timeout == timedelta(days=400)


def test_names_ids_and_stage_counts_have_their_documented_bounds():
    stage = StagePlan(name="s", approvers=(ANNA,), quorum=1, timeout="PT1H")
    assert len(ChainPlan(stages=(stage,) * 10).stages) == 10
    for build in (
        lambda: ChainPlan(stages=(stage,) * 11),
        lambda: ChainPlan(stages=()),
        lambda: StagePlan(name="", approvers=(ANNA,), quorum=1, timeout="PT1H"),
        lambda: Vote(voter_id="", decision=Decision.APPROVE, at=T0),
    ):
        with pytest.raises(ValidationError):
            build()


def test_a_late_vote_is_told_when_the_stage_closed():
    plan = ChainPlan.model_validate({"stages": [{"name": "cab", "approvers": [ANNA], "quorum": 1, "timeout": "PT1H"}]})
    state = chain.start(plan, set(), T0)
    late = chain.check(state, Vote(voter_id=ANNA, decision=Decision.APPROVE, at=T0 + timedelta(hours=2)))
    assert isinstance(late, chain.PastDeadline)
    assert late.detail == f"stage 'cab' closed at {(T0 + timedelta(hours=1)).isoformat()}"


def test_a_stage_names_at_most_100_approvers_and_a_voter_id_may_be_one_character():
    hundred = tuple(f"user{i}@contoso.com" for i in range(100))
    assert len(StagePlan(name="cab", approvers=hundred, quorum=1, timeout="PT1H").approvers) == 100
    with pytest.raises(ValidationError):
        StagePlan(name="cab", approvers=(*hundred, "one.more@contoso.com"), quorum=1, timeout="PT1H")
    assert Vote(voter_id="a", decision=Decision.APPROVE, at=T0).voter_id == "a"


def test_a_stage_that_names_no_quorum_needs_one_approval():
    """The default quorum is 1 (pydantic does not validate defaults, so a default of 0 would pass unnoticed and
    a stage would need no approval at all)."""
    stage = StagePlan.model_validate({"name": "leads", "approvers": ["anna", "piet"], "timeout": "PT1H"})
    assert stage.quorum == 1
    state = chain.start(ChainPlan(stages=(stage,)), ("dev",), datetime(2030, 6, 3, 10, 0, tzinfo=UTC))
    assert state.status is ChainStatus.PENDING
    after, outcome = chain.apply(state, Vote(voter_id="anna", decision=Decision.APPROVE, at=state.stage_started_at))
    assert isinstance(outcome, chain.ChainApproved) and after.status is ChainStatus.APPROVED


def test_a_withdrawn_request_closes_an_open_chain_and_leaves_a_closed_one_as_it_is():
    t0 = datetime(2030, 6, 3, 10, 0, tzinfo=UTC)
    plan = ChainPlan.model_validate({"stages": [{"name": "s", "approvers": ["anna"], "quorum": 1, "timeout": "PT1H"}]})
    open_state = chain.start(plan, ("dev",), t0)
    closed, outcome = chain.cancel(open_state, t0 + timedelta(minutes=1), "withdrawn")
    assert (closed.status, closed.reason, closed.decided_at) == (
        ChainStatus.REJECTED,
        "withdrawn",
        t0 + timedelta(minutes=1),
    )
    assert isinstance(outcome, chain.ChainRejected) and outcome.reason == "withdrawn"
    again, refusal = chain.cancel(closed, t0 + timedelta(minutes=2))
    assert again is closed and isinstance(refusal, chain.ChainClosed)


def test_a_psa_stage_names_at_most_ten_sources():
    psa = {"name": "cab", "kind": "psa_change_approval", "timeout": "P2D"}
    ten = [f"psa{i}" for i in range(10)]
    assert len(StagePlan.model_validate({**psa, "sources": ten}).sources) == 10
    with pytest.raises(ValidationError, match="sources"):
        StagePlan.model_validate({**psa, "sources": [*ten, "psa10"]})


def test_a_people_stage_serialises_as_before_psa_stages_existed_and_a_psa_stage_says_its_kind():
    people = StagePlan.model_validate({"name": "leads", "approvers": ["anna"], "quorum": 1, "timeout": "PT4H"})
    assert set(people.model_dump(mode="json")) == {"name", "approvers", "quorum", "timeout", "on_timeout"}
    psa = StagePlan.model_validate({"name": "cab", "kind": "psa_change_approval", "timeout": "P2D"})
    dumped = psa.model_dump(mode="json")
    assert dumped["kind"] == "psa_change_approval" and dumped["sources"] == []


def test_a_counted_vote_and_the_chain_state_cannot_be_changed_afterwards():
    """What the chain recorded is a value: a counted approval cannot be moved to another stage or turned into
    a rejection in place, and a state's status changes only through a transition (which returns a new state)."""
    plan = ChainPlan.model_validate(
        {"stages": [{"name": "cab", "approvers": [ANNA, PIET], "quorum": 2, "timeout": "PT1H"}]}
    )
    state, outcome = chain.apply(
        chain.start(plan, set(), T0), Vote(voter_id=ANNA, decision=Decision.APPROVE, at=T0, aliases={ANNA})
    )
    assert isinstance(outcome, chain.VoteCounted)
    [recorded] = state.votes
    for field, value in (("stage", 1), ("decision", Decision.REJECT), ("voter_id", PIET)):
        with pytest.raises(ValidationError):
            setattr(recorded, field, value)
    with pytest.raises(ValidationError):
        state.status = ChainStatus.APPROVED  # type: ignore[misc]
    assert (recorded.stage, recorded.decision, state.status) == (0, Decision.APPROVE, ChainStatus.PENDING)
