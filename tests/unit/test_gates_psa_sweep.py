"""`gatekeeper.gates.psa`: which PSA ticket a gate is linked to and which change decision may touch it. Cases a
hand sweep of planted bugs found untested (docs/mutation.md, second sweep)."""

from __future__ import annotations

import pytest

from gatekeeper.events.model import EventKind, EventSource, PipelineEvent
from gatekeeper.gates.psa import change_decision, company_refusal, linked_ticket, parse_ticket, ticket_matches
from tests.unit.test_psa_change_stage import _CW, _approval, _tenant


def test_a_ticket_reference_is_case_blind_and_bounded_to_64_characters():
    assert parse_ticket(" AutoTask:T-42 ") == ("autotask", "t-42")
    assert parse_ticket("a" * 64) == (None, "a" * 64)
    assert parse_ticket("a" * 65) is None
    assert parse_ticket("autotask:" + "a" * 65) is None


@pytest.mark.parametrize("value", ["jira:7311", "autotask:7311:x", "autotask:", "-7311", "7311\nx", "", "73 11"])
def test_anything_but_an_optional_known_psa_and_one_id_is_no_ticket(value):
    assert parse_ticket(value) is None


def _gate(ticket: str | None = None, labels: tuple[str, ...] = ()) -> PipelineEvent:
    return PipelineEvent(
        tenant_id="contoso", source=EventSource.GENERIC, kind=EventKind.GATE_REQUEST, ticket=ticket, labels=labels
    )


def test_an_unreadable_ticket_field_leaves_the_label_to_link_the_gate():
    assert linked_ticket(_gate("not a ticket!", ("change-ticket:7311",))) == ("7311", "label")
    assert linked_ticket(_gate("not a ticket!")) is None


def test_only_a_label_starting_with_change_ticket_links_and_its_prefix_is_case_blind():
    assert linked_ticket(_gate(labels=("Change-Ticket:AutoTask:7311",))) == ("autotask:7311", "label")
    assert linked_ticket(_gate(labels=("no-change-ticket:7311",))) is None
    assert linked_ticket(_gate(labels=("xchange-ticket:7311",))) is None


def test_the_decision_names_the_psa_it_came_from_not_the_one_its_subject_claims():
    claimed = PipelineEvent(
        tenant_id="contoso", source=EventSource.AUTOTASK, kind=EventKind.CHANGE_APPROVED, subject="halopsa:7311"
    )
    assert change_decision(claimed) == ("autotask", "7311", True)


def test_a_ticket_matches_whole_never_by_prefix():
    assert not ticket_matches("73110", "autotask", "7311")
    assert not ticket_matches("autotask:7311", "autotask", "731")
    assert ticket_matches("AUTOTASK:7311", "autotask", "7311")


def test_a_company_whose_name_is_a_prefix_of_the_tenants_is_another_company():
    assert company_refusal(_approval(company="Contoso"), _tenant(_CW)) == "ticket-of-another-company"
    assert company_refusal(_approval(company="ContosoLtd2"), _tenant(_CW)) == "ticket-of-another-company"
    assert company_refusal(_approval(company="  CONTOSOLTD "), _tenant(_CW)) is None
