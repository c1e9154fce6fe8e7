"""The `psa_change_approval` stage kind: decided by the linked PSA change ticket's CAB decision (a vote whose
voter is `psa:<source>:<ticket>`), never by a person; and no PSA decision ever counts on a people stage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from gatekeeper.approvals import chain
from gatekeeper.approvals.chain import ChainPlan, Decision, Vote, psa_voter
from gatekeeper.events.model import EventKind, EventSource, PipelineEvent
from gatekeeper.gates.psa import change_decision, company_refusal, linked_ticket, ticket_matches
from gatekeeper.policy import load_policy
from gatekeeper.tenancy.model import TenantRecord

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
PSA = {"name": "cab", "kind": "psa_change_approval", "timeout": "P2D"}
PEOPLE = {"name": "leads", "approvers": ["anna"], "quorum": 1, "timeout": "PT4H"}


def state(*stages: dict) -> chain.ChainState:
    return chain.start(ChainPlan.model_validate({"stages": list(stages)}), ("dev",), T0)


def psa_vote(source: str = "autotask", ticket: str = "7311", decision: str = "approve") -> Vote:
    return Vote(voter_id=psa_voter(source, ticket), decision=Decision(decision), at=T0 + timedelta(minutes=5))


def test_a_psa_approval_passes_the_psa_stage():
    after, outcome = chain.apply(state(PSA), psa_vote())
    assert isinstance(outcome, chain.ChainApproved)
    assert after.status is chain.ChainStatus.APPROVED
    assert after.votes[0].voter_id == "psa:autotask:7311"


def test_a_psa_rejection_rejects_the_chain():
    after, outcome = chain.apply(state(PSA, PEOPLE), psa_vote(decision="reject"))
    assert isinstance(outcome, chain.ChainRejected) and outcome.by == "psa:autotask:7311"
    assert after.status is chain.ChainStatus.REJECTED


def test_a_person_cannot_decide_a_psa_stage():
    _, outcome = chain.apply(state(PSA), Vote(voter_id="anna", decision=Decision.APPROVE, at=T0))
    assert isinstance(outcome, chain.NotAnApprover)


def test_a_psa_decision_never_counts_on_a_people_stage():
    _, outcome = chain.apply(state(PEOPLE), psa_vote())
    assert isinstance(outcome, chain.NotAnApprover)


def test_only_the_stage_sources_may_decide():
    only_cw = {**PSA, "sources": ["connectwise"]}
    _, refused = chain.apply(state(only_cw), psa_vote("autotask"))
    assert isinstance(refused, chain.NotAnApprover)
    _, counted = chain.apply(state(only_cw), psa_vote("connectwise", "T-42"))
    assert isinstance(counted, chain.ChainApproved)


def test_psa_then_people_runs_in_order():
    first, outcome = chain.apply(state(PSA, PEOPLE), psa_vote())
    assert isinstance(outcome, chain.StagePassed) and first.stage == 1
    _, done = chain.apply(first, Vote(voter_id="anna", decision=Decision.APPROVE, at=T0 + timedelta(minutes=9)))
    assert isinstance(done, chain.ChainApproved)


def test_one_ticket_counts_once():
    first, _ = chain.apply(state(PSA, {**PSA, "name": "cab2"}), psa_vote())
    _, again = chain.apply(first, psa_vote())
    assert isinstance(again, chain.DuplicateVote)


@pytest.mark.parametrize(
    "bad",
    [
        {**PSA, "approvers": ["anna"]},  # the PSA decides, not people
        {**PSA, "quorum": 2},
        {**PEOPLE, "sources": ["autotask"]},  # sources only on a PSA stage
        {"name": "nobody", "timeout": "PT1H"},  # a people stage needs approvers
    ],
)
def test_impossible_stages_are_refused(bad):
    with pytest.raises(ValidationError):
        ChainPlan.model_validate({"stages": [bad]})


def test_the_policy_accepts_a_psa_stage_and_the_chain_plan_keeps_its_kind(tmp_path):
    source = {
        "version": 1,
        "defaults": {
            "level": "L2",
            "approval": {
                "stages": [{"name": "cab", "kind": "psa_change_approval", "sources": ["autotask"], "timeout": "P1D"}]
            },
        },
    }
    policy = load_policy(source)
    plan = ChainPlan.from_policy(policy.defaults.approval)
    assert plan.stages[0].kind is chain.StageKind.PSA_CHANGE_APPROVAL
    assert plan.stages[0].sources == ("autotask",)


@pytest.mark.parametrize(
    "stage",
    [
        {"name": "cab", "kind": "psa_change_approval", "approvers": ["anna@contoso.com"], "timeout": "P1D"},
        {"name": "cab", "kind": "psa_change_approval", "sources": ["servicenow"], "timeout": "P1D"},
        {"name": "leads", "approvers": ["anna@contoso.com"], "sources": ["autotask"], "timeout": "P1D"},
        {"name": "leads", "timeout": "P1D"},
    ],
)
def test_the_policy_refuses_impossible_psa_stages(stage):
    with pytest.raises(Exception) as raised:
        load_policy({"version": 1, "defaults": {"level": "L2", "approval": {"stages": [stage]}}})
    assert "stages" in str(raised.value)


# ----- which ticket a gate is linked to, and which decisions name it ---------------------------------------


def _event(**fields: object) -> PipelineEvent:
    base: dict[str, object] = {"tenant_id": "contoso", "source": EventSource.GENERIC, "kind": EventKind.GATE_REQUEST}
    return PipelineEvent.model_validate({**base, **fields})


@pytest.mark.parametrize(
    ("fields", "linked"),
    [
        ({"ticket": "Autotask:7311"}, ("autotask:7311", "event")),
        ({"ticket": "T20250304.0012"}, ("t20250304.0012", "event")),
        ({"labels": ("env:prod", "change-ticket:CW-4711")}, ("cw-4711", "label")),
        ({"ticket": "servicenow:CHG1"}, None),  # not a PSA this stage kind knows
        ({"ticket": "7311/../x"}, None),
        ({"labels": ("change-ticket:",)}, None),
        ({}, None),
    ],
)
def test_a_gate_is_linked_by_its_ticket_or_a_change_ticket_label(fields, linked):
    assert linked_ticket(_event(**fields)) == linked


def test_only_psa_change_decisions_name_a_ticket():
    approved = _event(source=EventSource.AUTOTASK, kind=EventKind.CHANGE_APPROVED, subject="7311", status="approved")
    assert change_decision(approved) == ("autotask", "7311", True)
    rejected = approved.model_copy(update={"kind": EventKind.CHANGE_REJECTED, "source": EventSource.HALOPSA})
    assert change_decision(rejected) == ("halopsa", "7311", False)
    patch = approved.model_copy(update={"source": EventSource.NINJARMM})  # an RMM patch approval is no CAB
    assert change_decision(patch) is None
    assert change_decision(approved.model_copy(update={"kind": EventKind.ALERT})) is None


def test_a_pinned_ticket_matches_only_its_psa():
    assert ticket_matches("autotask:7311", "autotask", "7311")
    assert not ticket_matches("autotask:7311", "halopsa", "7311")
    assert ticket_matches("7311", "halopsa", "7311")
    assert not ticket_matches("7312", "autotask", "7311")


def _tenant(psa: dict | None = None, opt_in: bool = False) -> TenantRecord:
    return TenantRecord(tenant_id="contoso", display_name="Contoso", psa=psa, psa_decisions_without_company=opt_in)


_CW = {
    "vendor": "connectwise",
    "url": "https://api-na.myconnectwise.net",
    "login_company": "fabrikammsp",
    "company": "ContosoLtd",
    "board": "Change Management",
    "credentials": {
        "public_key": "env:GK_CONTOSO_CW_PUBLIC",
        "private_key": "env:GK_CONTOSO_CW_PRIVATE",
        "client_id": "env:GK_CONTOSO_CW_CLIENT",
    },
}


def _approval(source: EventSource = EventSource.CONNECTWISE, company: str | None = "ContosoLtd") -> PipelineEvent:
    return PipelineEvent(
        tenant_id="contoso", source=source, kind=EventKind.CHANGE_APPROVED, subject="48213", company=company
    )


@pytest.mark.parametrize(
    ("event", "tenant", "refusal"),
    [
        (_approval(), _tenant(_CW), None),
        (_approval(company="contosoltd"), _tenant(_CW), None),
        (_approval(company="FabrikamInc"), _tenant(_CW), "ticket-of-another-company"),
        (_approval(company="FabrikamInc"), _tenant(_CW, opt_in=True), "ticket-of-another-company"),
        (_approval(company=None), _tenant(_CW), "company-not-named"),
        (_approval(company=None), _tenant(_CW, opt_in=True), None),
        (_approval(EventSource.HALOPSA, "12"), _tenant(_CW), "no-psa-company-configured"),
        (_approval(), _tenant(), "no-psa-company-configured"),
        (_approval(), _tenant(opt_in=True), None),
        (_approval(), None, "tenant-unknown"),
    ],
)
def test_a_psa_decision_applies_only_to_the_tenants_client_company(
    event: PipelineEvent, tenant: TenantRecord | None, refusal: str | None
):
    assert company_refusal(event, tenant) == refusal
