"""The approval chain state machine: quorum, groups, separation of duties, duplicates, deadlines, escalation."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from gatekeeper.approvals import chain
from gatekeeper.approvals.chain import (
    ChainApproved,
    ChainClosed,
    ChainPlan,
    ChainRejected,
    ChainStatus,
    Decision,
    DuplicateVote,
    Escalated,
    NotAnApprover,
    PastDeadline,
    SelfApproval,
    StagePassed,
    Vote,
    VoteCounted,
)
from gatekeeper.errors import Conflict, Forbidden, Gone
from gatekeeper.policy import load_policy

T0 = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
OPS = "group:5f0c7a52-3b8e-4c1d-9a6f-2e4b8d7c1a90"
OPS_ID = OPS.split(":", 1)[1]


def plan(*stages: dict) -> ChainPlan:
    return ChainPlan.model_validate({"stages": list(stages)})


def stage(name="s", approvers=("anna", "piet", "sara"), quorum=1, timeout="PT1H", on_timeout="reject") -> dict:
    return {"name": name, "approvers": list(approvers), "quorum": quorum, "timeout": timeout, "on_timeout": on_timeout}


def vote(who: str, decision: str = "approve", minutes: int = 1, **kw) -> Vote:
    return Vote(voter_id=who, decision=Decision(decision), at=T0 + timedelta(minutes=minutes), **kw)


def started(p: ChainPlan, requester=("dev",)) -> chain.ChainState:
    return chain.start(p, requester, T0)


# ----- plans ------------------------------------------------------------------------------------------


def test_plan_parses_iso_timeouts_and_normalises_approvers():
    p = plan(stage(approvers=("Anna@Contoso.com", "anna@contoso.com", OPS.upper().replace("GROUP", "group"))))
    assert p.stages[0].timeout == timedelta(hours=1)
    assert p.stages[0].approvers == ("anna@contoso.com", OPS)
    assert p.model_dump(mode="json")["stages"][0]["timeout"] == "PT1H"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"quorum": 4}, "quorum"),
        ({"quorum": 0}, "quorum"),
        ({"timeout": "P1M"}, "timeout"),
        ({"timeout": "soon"}, "timeout"),
        ({"approvers": []}, "approvers"),
        ({"approvers": ["group:"]}, "approvers"),
        ({"approvers": ["two words"]}, "approvers"),
        ({"on_timeout": "ignore"}, "on_timeout"),
    ],
)
def test_plan_refuses_impossible_stages_naming_the_field(changes, field):
    with pytest.raises(ValidationError) as info:
        plan({**stage(), **changes})
    assert any(
        field in ".".join(map(str, e["loc"])) or e["msg"].startswith(f"Value error, {field}:")
        for e in info.value.errors()
    )


def test_group_quorum_may_exceed_the_number_of_entries():
    assert plan(stage(approvers=(OPS,), quorum=3)).stages[0].quorum == 3


def test_from_policy_accepts_the_policy_engines_approval_block(tmp_path):
    policy = load_policy(str(__import__("pathlib").Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"))
    rule = next(r for r in policy.rules if r.name == "production-deploy")
    p = ChainPlan.from_policy(rule.approval)
    assert [s.name for s in p.stages] == ["release-managers", "change-advisory-board"]
    assert p.stages[0].on_timeout is chain.OnTimeout.ESCALATE and p.stages[1].quorum == 2


# ----- quorum -----------------------------------------------------------------------------------------


def test_two_of_three_quorum_passes_on_the_second_distinct_approval():
    state = started(plan(stage(quorum=2)))
    state, out = chain.apply(state, vote("anna"))
    assert out == VoteCounted(stage=0, approvals=1, quorum=2) and state.status is ChainStatus.PENDING
    state, out = chain.apply(state, vote("sara", minutes=2))
    assert out == ChainApproved(stage=0)
    assert state.status is ChainStatus.APPROVED and state.reason == "quorum"
    assert state.decided_at == T0 + timedelta(minutes=2)
    assert state.approvals(0) == ("anna", "sara")


@pytest.mark.parametrize("order", list(itertools.permutations(["anna", "piet", "sara"], 2)))
def test_any_two_of_three_approve_in_any_order(order):
    state = started(plan(stage(quorum=2)))
    for i, who in enumerate(order):
        state, out = chain.apply(state, vote(who, minutes=i + 1))
    assert isinstance(out, ChainApproved)


def test_distinct_members_of_one_group_fill_distinct_quorum_slots():
    state = started(plan(stage(approvers=(OPS,), quorum=2)))
    state, out = chain.apply(state, vote("m1", groups=frozenset({OPS_ID})))
    assert isinstance(out, VoteCounted)
    state, out = chain.apply(state, vote("m2", groups=frozenset({OPS_ID.upper()})))
    assert isinstance(out, ChainApproved)


def test_a_person_named_and_in_the_group_counts_once():
    state = started(plan(stage(approvers=("anna", OPS), quorum=2)))
    state, _ = chain.apply(state, vote("anna", groups=frozenset({OPS_ID})))
    state, out = chain.apply(state, vote("anna", groups=frozenset({OPS_ID}), minutes=2))
    assert isinstance(out, DuplicateVote) and len(state.approvals()) == 1


def test_upn_alias_matches_a_named_approver():
    state = started(plan(stage(approvers=("anna@contoso.com",))))
    _, out = chain.apply(state, vote("0000-oid", aliases=frozenset({"Anna@Contoso.com"})))
    assert isinstance(out, ChainApproved)


# ----- refusals ---------------------------------------------------------------------------------------


def test_not_an_approver_is_refused_and_changes_nothing():
    state = started(plan(stage()))
    after, out = chain.apply(state, vote("mallory", groups=frozenset({"other-group"})))
    assert isinstance(out, NotAnApprover) and out.kind is Forbidden
    assert after == state


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_the_requester_cannot_decide_even_when_listed_as_approver(decision):
    state = started(plan(stage(approvers=("dev", "anna"))), requester=("Dev",))
    after, out = chain.apply(state, vote("dev", decision))
    assert isinstance(out, SelfApproval) and out.kind is Forbidden and after == state


def test_self_approval_is_detected_through_an_alias():
    state = started(plan(stage(approvers=("anna@contoso.com",))), requester=("anna@contoso.com",))
    _, out = chain.apply(state, vote("oid-1", aliases=frozenset({"anna@contoso.com"})))
    assert isinstance(out, SelfApproval)


def test_second_vote_of_the_same_person_is_a_duplicate_even_with_another_decision():
    state = started(plan(stage(quorum=2)))
    state, _ = chain.apply(state, vote("anna"))
    after, out = chain.apply(state, vote("ANNA", "reject", minutes=2))
    assert isinstance(out, DuplicateVote) and out.kind is Conflict and after == state


def test_one_person_counts_once_per_chain_not_per_stage():
    p = plan(stage("a", quorum=1), stage("b", approvers=("anna", "tom"), quorum=1))
    state, out = chain.apply(started(p), vote("anna"))
    assert out == StagePassed(stage=0, next_stage=1)
    _, out = chain.apply(state, vote("anna", minutes=2))
    assert isinstance(out, DuplicateVote)


def test_vote_at_or_after_the_deadline_is_refused_as_late():
    state = started(plan(stage(timeout="PT1H")))
    _, out = chain.apply(state, vote("anna", minutes=60))
    assert isinstance(out, PastDeadline) and out.kind is Gone
    _, out = chain.apply(state, vote("anna", minutes=59))
    assert isinstance(out, ChainApproved)


def test_vote_cast_for_a_stage_that_is_no_longer_current_is_late():
    p = plan(stage("a", on_timeout="escalate"), stage("b"))
    state, _ = chain.expire(started(p), T0 + timedelta(hours=1))
    _, out = chain.apply(state, vote("anna", minutes=61, stage=0))
    assert isinstance(out, PastDeadline)


def test_votes_after_the_chain_closed_are_refused_as_decided():
    state, _ = chain.apply(started(plan(stage())), vote("anna"))
    _, out = chain.apply(state, vote("piet", minutes=2))
    assert isinstance(out, ChainClosed) and out.kind is Gone


def test_refusal_order_closed_before_late_before_self_before_duplicate():
    p = plan(stage(approvers=("dev", "anna", "piet"), quorum=3))
    state, _ = chain.apply(started(p), vote("anna"))
    assert isinstance(chain.check(state, vote("dev", minutes=61)), PastDeadline)  # late wins over self
    assert isinstance(chain.check(state, vote("dev", minutes=2)), SelfApproval)
    assert isinstance(chain.check(state, vote("anna", minutes=2)), DuplicateVote)
    closed, out = chain.apply(state, vote("piet", "reject", minutes=2))
    assert isinstance(out, ChainRejected)
    assert isinstance(chain.check(closed, vote("anna", minutes=90)), ChainClosed)  # closed wins over all


# ----- rejection, stages, timeouts --------------------------------------------------------------------


def test_any_rejection_ends_the_chain_at_once():
    p = plan(stage(quorum=2), stage("b"))
    state, _ = chain.apply(started(p), vote("anna"))
    state, out = chain.apply(state, vote("piet", "reject", minutes=5))
    assert out == ChainRejected(stage=0, reason="rejected", by="piet")
    assert state.status is ChainStatus.REJECTED and state.stage == 0


def test_stages_run_in_order_and_the_next_starts_when_the_previous_passes():
    p = plan(stage("a", timeout="PT1H"), stage("b", approvers=("tom",), timeout="PT2H"))
    passed_at = T0 + timedelta(minutes=30)
    state, out = chain.apply(started(p), vote("anna", minutes=10), now=passed_at)
    assert isinstance(out, StagePassed) and state.stage == 1
    assert state.deadline == passed_at + timedelta(hours=2)
    state, out = chain.apply(state, vote("tom", minutes=40))
    assert isinstance(out, ChainApproved) and state.stage == 1


def test_timeout_with_escalate_hands_over_to_the_next_stage():
    p = plan(stage("team", on_timeout="escalate"), stage("managers", approvers=("tom",)))
    state, out = chain.expire(started(p), T0 + timedelta(hours=1))
    assert out == Escalated(from_stage=0, to_stage=1)
    assert state.stage == 1 and state.escalations == (0,) and state.stage_started_at == T0 + timedelta(hours=1)
    state, out = chain.apply(state, vote("tom", minutes=70))
    assert isinstance(out, ChainApproved)


def test_timeout_with_reject_rejects():
    state, out = chain.expire(started(plan(stage())), T0 + timedelta(hours=2))
    assert out == ChainRejected(stage=0, reason="timeout") and state.reason == "timeout"


def test_escalation_from_the_last_stage_rejects():
    state, out = chain.expire(started(plan(stage(on_timeout="escalate"))), T0 + timedelta(hours=1))
    assert isinstance(out, ChainRejected) and state.status is ChainStatus.REJECTED


def test_expire_before_the_deadline_is_a_programming_error():
    with pytest.raises(ValueError, match="does not expire"):
        chain.expire(started(plan(stage())), T0 + timedelta(minutes=59))


def test_expire_on_a_closed_chain_changes_nothing():
    state, _ = chain.apply(started(plan(stage())), vote("anna"))
    after, out = chain.expire(state, T0 + timedelta(hours=5))
    assert isinstance(out, ChainClosed) and after == state


def test_states_are_immutable_values():
    state = started(plan(stage()))
    with pytest.raises(ValidationError):
        state.stage = 3  # type: ignore[misc]
    new, _ = chain.apply(state, vote("anna"))
    assert state.status is ChainStatus.PENDING and new.status is ChainStatus.APPROVED


def test_exhaustive_small_electorate_outcomes_match_the_rules():
    """Every sequence of up to three votes by four people (one the requester, one a stranger)."""
    people = ["anna", "piet", "dev", "eve"]
    p = plan(stage(approvers=("anna", "piet", "dev"), quorum=2))
    for n in range(1, 4):
        for voters in itertools.product(people, repeat=n):
            for decisions in itertools.product(["approve", "reject"], repeat=n):
                state = started(p, requester=("dev",))
                seen: set[str] = set()
                expected_status = ChainStatus.PENDING
                approvals = 0
                for i, (who, what) in enumerate(zip(voters, decisions, strict=True)):
                    state, out = chain.apply(state, vote(who, what, minutes=i + 1))
                    if expected_status is not ChainStatus.PENDING:
                        assert isinstance(out, ChainClosed)
                    elif who == "dev":
                        assert isinstance(out, SelfApproval)
                    elif who in seen:
                        assert isinstance(out, DuplicateVote)
                    elif who == "eve":
                        assert isinstance(out, NotAnApprover)
                    else:
                        seen.add(who)
                        if what == "reject":
                            expected_status = ChainStatus.REJECTED
                        else:
                            approvals += 1
                            if approvals == 2:
                                expected_status = ChainStatus.APPROVED
                    assert state.status is expected_status, (voters, decisions)
